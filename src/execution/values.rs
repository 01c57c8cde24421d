//! PostgreSQL values in text format → faithful JSON.
//!
//! Results are requested in text format, so every type — built-in, enum, domain, composite or
//! from an extension — arrives as PostgreSQL's own text form. Types JSON can carry exactly
//! become JSON values; the rest stay strings, never lossy numbers. The session pins
//! `DateStyle=ISO`, `IntervalStyle=iso_8601`, `TimeZone=UTC`, `bytea_output=hex` and
//! `extra_float_digits=3`, so these texts have one shape.

use serde_json::{Number, Value};

/// Type OIDs (pg_type.dat).
mod oid {
    pub const BOOL: u32 = 16;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const JSONB: u32 = 3802;
}

/// How a value of a type is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    Bool,
    Integer,
    Float,
    Json,
    Timestamp,
    /// Text as PostgreSQL printed it (numeric, text, dates, intervals, uuid, inet, bytea in
    /// hex, enums, domains, composites, extension types, …).
    Text,
    /// An array of the given element rendering.
    Array(&'static Render),
}

const BOOL: Render = Render::Bool;
const INTEGER: Render = Render::Integer;
const FLOAT: Render = Render::Float;
const JSON_: Render = Render::Json;
const TIMESTAMP: Render = Render::Timestamp;
const TEXT: Render = Render::Text;

/// The rendering of type `oid`.
pub fn render_for(type_oid: u32) -> Render {
    match type_oid {
        oid::BOOL => BOOL,
        oid::INT8 | oid::INT2 | oid::INT4 | oid::OID => INTEGER,
        oid::FLOAT4 | oid::FLOAT8 => FLOAT,
        oid::JSON | oid::JSONB => JSON_,
        oid::TIMESTAMP | oid::TIMESTAMPTZ => TIMESTAMP,
        1000 => Render::Array(&BOOL),
        1005 | 1007 | 1016 | 1028 => Render::Array(&INTEGER),
        1021 | 1022 => Render::Array(&FLOAT),
        199 | 3807 => Render::Array(&JSON_),
        1115 | 1185 => Render::Array(&TIMESTAMP),
        // numeric, text, varchar, bpchar, name, date, time, timetz, interval, uuid, inet,
        // cidr, macaddr, bytea arrays: elements stay text.
        1231 | 1009 | 1015 | 1014 | 1003 | 1182 | 1183 | 1270 | 1187 | 2951 | 1041 | 651 | 1040
        | 1001 => Render::Array(&TEXT),
        _ => TEXT,
    }
}

/// Converts one value (`None` is SQL NULL).
pub fn to_json(render: Render, text: Option<&str>) -> Value {
    let Some(t) = text else { return Value::Null };
    match render {
        Render::Bool => match t {
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            other => Value::String(other.to_string()),
        },
        Render::Integer => t
            .parse::<i64>()
            .map(|n| Value::Number(n.into()))
            .unwrap_or_else(|_| Value::String(t.to_string())),
        // NaN and ±Infinity have no JSON number: they stay strings.
        Render::Float => t
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(t.to_string())),
        Render::Json => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())),
        Render::Timestamp => Value::String(iso_timestamp(t)),
        Render::Text => Value::String(t.to_string()),
        Render::Array(elem) => {
            parse_array(t, *elem).unwrap_or_else(|| Value::String(t.to_string()))
        }
    }
}

/// `2024-01-02 03:04:05.5+00` → `2024-01-02T03:04:05.5+00:00` (ISO 8601 / RFC 3339).
fn iso_timestamp(t: &str) -> String {
    if !t.as_bytes().first().is_some_and(u8::is_ascii_digit) || t.ends_with(" BC") {
        return t.to_string(); // infinity, -infinity, BC dates
    }
    let mut s = t.replacen(' ', "T", 1);
    // A zone offset written as +HH or +HH:MM[:SS] after the time.
    if let Some(pos) = s.rfind(['+', '-']).filter(|p| *p > 10) {
        let zone = &s[pos + 1..];
        if zone.len() == 2 {
            s.push_str(":00");
        }
    }
    s
}

/// Parses PostgreSQL's array text form (`{1,2,NULL}`, `{{"a b",c},{d,e}}`, `[0:1]={…}`).
fn parse_array(t: &str, elem: Render) -> Option<Value> {
    let body = match t.find('=') {
        Some(eq) if t.starts_with('[') => &t[eq + 1..],
        _ => t,
    };
    let bytes = body.as_bytes();
    let mut pos = 0;
    let v = parse_level(body, bytes, &mut pos, elem)?;
    (pos == bytes.len()).then_some(v)
}

fn parse_level(s: &str, b: &[u8], pos: &mut usize, elem: Render) -> Option<Value> {
    if b.get(*pos) != Some(&b'{') {
        return None;
    }
    *pos += 1;
    let mut items = Vec::new();
    if b.get(*pos) == Some(&b'}') {
        *pos += 1;
        return Some(Value::Array(items));
    }
    loop {
        match b.get(*pos)? {
            b'{' => items.push(parse_level(s, b, pos, elem)?),
            b'"' => {
                *pos += 1;
                let mut out = String::new();
                loop {
                    match b.get(*pos)? {
                        b'\\' => {
                            let c = s[*pos + 1..].chars().next()?;
                            out.push(c);
                            *pos += 1 + c.len_utf8();
                        }
                        b'"' => {
                            *pos += 1;
                            break;
                        }
                        _ => {
                            let c = s[*pos..].chars().next()?;
                            out.push(c);
                            *pos += c.len_utf8();
                        }
                    }
                }
                items.push(to_json(elem, Some(&out)));
            }
            _ => {
                let start = *pos;
                while !matches!(b.get(*pos)?, b',' | b'}') {
                    *pos += 1;
                }
                let raw = s[start..*pos].trim();
                items.push(if raw.eq_ignore_ascii_case("NULL") {
                    Value::Null
                } else {
                    to_json(elem, Some(raw))
                });
            }
        }
        match b.get(*pos)? {
            b',' => *pos += 1,
            b'}' => {
                *pos += 1;
                return Some(Value::Array(items));
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars() {
        assert_eq!(
            to_json(render_for(20), Some("9007199254740993")),
            json!(9007199254740993i64)
        );
        assert_eq!(to_json(render_for(701), Some("NaN")), json!("NaN"));
        assert_eq!(
            to_json(render_for(701), Some("-Infinity")),
            json!("-Infinity")
        );
        assert_eq!(to_json(render_for(701), Some("1.5")), json!(1.5));
        assert_eq!(to_json(render_for(16), Some("t")), json!(true));
        assert_eq!(
            to_json(render_for(3802), Some("{\"a\": [1]}")),
            json!({"a": [1]})
        );
        assert_eq!(
            to_json(render_for(1184), Some("2024-01-02 03:04:05.5+00")),
            json!("2024-01-02T03:04:05.5+00:00")
        );
        assert_eq!(
            to_json(render_for(1184), Some("infinity")),
            json!("infinity")
        );
        assert_eq!(to_json(render_for(1700), Some("1.10")), json!("1.10"));
        assert_eq!(to_json(render_for(25), None), Value::Null);
    }

    #[test]
    fn arrays() {
        assert_eq!(
            to_json(render_for(1007), Some("{1,NULL,3}")),
            json!([1, null, 3])
        );
        assert_eq!(
            to_json(render_for(1009), Some(r#"{"a b","x\"y",NULL,"NULL"}"#)),
            json!(["a b", "x\"y", null, "NULL"])
        );
        assert_eq!(
            to_json(render_for(1007), Some("{{1,2},{3,4}}")),
            json!([[1, 2], [3, 4]])
        );
        assert_eq!(
            to_json(render_for(1007), Some("[0:1]={5,6}")),
            json!([5, 6])
        );
        assert_eq!(to_json(render_for(1007), Some("{}")), json!([]));
        assert_eq!(to_json(render_for(1009), Some("{é,ü}")), json!(["é", "ü"]));
    }
}
