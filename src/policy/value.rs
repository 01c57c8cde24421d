//! Builds the policy input as a regorus [`Value`] straight from the Rust structs.
//!
//! The obvious route — `serde_json::to_value`, then regorus' `From<serde_json::Value>` (which
//! deserializes the tree again) — cost ~70 µs per call for a 2 KB facts document, more than
//! the analysis of the query. This serializer walks the structs once and allocates only the
//! values the policy reads. It produces the same value as the JSON route (tested below and in
//! `tests/policy.rs`), so a policy sees exactly the documented JSON shape.

use std::collections::BTreeMap;
use std::fmt;

use regorus::Value;
use serde::ser::{self, Serialize};

/// Why a value could not be built (only non-string map keys and similar misuse).
#[derive(Debug)]
pub struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

/// Serializes `v` into a regorus value with the shape `serde_json` would give it.
pub fn to_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, ValueError> {
    v.serialize(ValueSerializer { policy: false })
}

/// Like [`to_value`], without the byte positions the facts carry for `analyze` and the audit
/// log ([`POSITIONS`]): what the policy sees. Positions change with every constant's length;
/// without them, calls that differ only in constants have equal inputs (and one cached
/// decision).
pub fn to_policy_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, ValueError> {
    v.serialize(ValueSerializer { policy: true })
}

/// The fields left out of the policy input, per struct: `(struct, fields)`.
pub const POSITIONS: &[(&str, &[&str])] = &[
    ("Facts", &["sql_bytes"]),
    ("StatementFacts", &["location", "length"]),
];

fn omitted(policy: bool, name: &'static str) -> &'static [&'static str] {
    if !policy {
        return &[];
    }
    POSITIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, fields)| *fields)
        .unwrap_or(&[])
}

/// The value of a `&'static str` (a field name, an enum variant), made once per thread:
/// every facts document repeats the same few dozen keys, and a copy of a made value is a
/// reference count, not an allocation.
fn interned(s: &'static str) -> Value {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        // Keyed by address and length: a `&'static str` never changes or moves.
        static MADE: RefCell<HashMap<(usize, usize), Value, foldhash::fast::FixedState>> =
            const { RefCell::new(HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0))) };
    }
    MADE.with(|made| {
        made.borrow_mut()
            .entry((s.as_ptr() as usize, s.len()))
            .or_insert_with(|| Value::from(s))
            .clone()
    })
}

#[derive(Clone, Copy)]
struct ValueSerializer {
    policy: bool,
}

/// Object keys must be strings, as in JSON.
fn key_of<T: Serialize + ?Sized>(key: &T) -> Result<Value, ValueError> {
    match key.serialize(ValueSerializer { policy: false })? {
        v @ Value::String(_) => Ok(v),
        Value::Number(n) => Ok(Value::from(n.format_decimal())),
        Value::Bool(b) => Ok(Value::from(b.to_string())),
        _ => Err(ValueError("object keys must be strings".into())),
    }
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Variant<Seq>;
    type SerializeMap = Map;
    type SerializeStruct = Map;
    type SerializeStructVariant = Variant<Map>;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        // JSON has no NaN or infinity: serde_json writes null for them.
        Ok(if v.is_finite() {
            Value::from(v)
        } else {
            Value::Null
        })
    }
    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::from(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::from(
            v.iter()
                .map(|b| Value::from(u64::from(*b)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, ValueError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(interned(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        Ok(variant_object(variant, v.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, ValueError> {
        Ok(Seq(Vec::with_capacity(len.unwrap_or(0)), self))
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<Seq>, ValueError> {
        Ok(Variant(variant, self.serialize_seq(Some(len))?))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map, ValueError> {
        Ok(Map::new(self, &[]))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Map, ValueError> {
        Ok(Map::new(self, omitted(self.policy, name)))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<Map>, ValueError> {
        Ok(Variant(variant, Map::new(self, &[])))
    }
}

struct Seq(Vec<Value>, ValueSerializer);

impl ser::SerializeSeq for Seq {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.0.push(v.serialize(self.1)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::from(self.0))
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

struct Map {
    entries: BTreeMap<Value, Value>,
    key: Option<Value>,
    ser: ValueSerializer,
    /// Fields not written (positions, for the policy input).
    omit: &'static [&'static str],
}

impl Map {
    fn new(ser: ValueSerializer, omit: &'static [&'static str]) -> Map {
        Map {
            entries: BTreeMap::new(),
            key: None,
            ser,
            omit,
        }
    }
}

impl ser::SerializeMap for Map {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.key = Some(key_of(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| ValueError("a map value came without its key".into()))?;
        self.entries.insert(key, v.serialize(self.ser)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::from(self.entries))
    }
}

impl ser::SerializeStruct for Map {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        if !self.omit.contains(&key) {
            self.entries.insert(interned(key), v.serialize(self.ser)?);
        }
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::from(self.entries))
    }
}

/// An enum variant with content, collected until `end`.
struct Variant<T>(&'static str, T);

/// An enum variant with content as serde_json writes it: `{"variant": content}`.
fn variant_object(variant: &'static str, content: Value) -> Value {
    Value::from(BTreeMap::from([(interned(variant), content)]))
}

impl ser::SerializeTupleVariant for Variant<Seq> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(&mut self.1, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(variant_object(self.0, ser::SerializeSeq::end(self.1)?))
    }
}

impl ser::SerializeStructVariant for Variant<Map> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(&mut self.1, key, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(variant_object(self.0, ser::SerializeStruct::end(self.1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    fn via_json<T: Serialize>(v: &T) -> Value {
        Value::from(serde_json::to_value(v).unwrap())
    }

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        UnitOne,
        Newtype(u32),
        Tuple(i8, String),
        Struct { a: Option<bool> },
    }

    #[derive(Serialize)]
    struct Doc {
        name: String,
        n: i64,
        big: u64,
        f: f64,
        nan: f64,
        none: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
        list: Vec<Kind>,
        map: BTreeMap<String, Vec<u8>>,
        numeric_keys: BTreeMap<u32, bool>,
        unicode: &'static str,
    }

    #[test]
    fn same_value_as_the_json_route() {
        let doc = Doc {
            name: "users".into(),
            n: -42,
            big: u64::MAX,
            f: 1.5,
            nan: f64::NAN,
            none: None,
            skipped: None,
            list: vec![
                Kind::UnitOne,
                Kind::Newtype(7),
                Kind::Tuple(-1, "x".into()),
                Kind::Struct { a: Some(true) },
                Kind::Struct { a: None },
            ],
            map: [("k".to_string(), vec![1, 2]), ("".to_string(), vec![])].into(),
            numeric_keys: [(3, true), (10, false)].into(),
            unicode: "é \"quoted\" \u{1F600} \\",
        };
        assert_eq!(to_value(&doc).unwrap(), via_json(&doc));
    }

    #[test]
    fn the_facts_of_real_queries_convert_identically() {
        for sql in [
            "SELECT 1",
            "WITH w AS (DELETE FROM t RETURNING *) SELECT * FROM w FOR UPDATE",
            "SELECT set_config('role', 'x', true), current_setting('a.b'), t.* FROM s.t",
            "SHOW ALL; EXPLAIN ANALYZE UPDATE t SET a = $1",
        ] {
            let facts = crate::analysis::analyze(sql).unwrap();
            assert_eq!(to_value(&facts).unwrap(), via_json(&facts), "{sql}");
        }
    }
}
