//! The schema of `data.sqlguard` (`policies/data.schema.json`): every data file is checked
//! against it before it is merged, so that a typo (`tabels`, `emial`) or a wrong type is refused
//! with its path instead of silently falling back to a default that opens access.
//!
//! The file is a JSON Schema (draft 2020-12) and editors can use it as one; sqlguard reads the
//! subset it is written in: `type`, `enum`, `properties`, `additionalProperties`, `required`,
//! `items`, `minimum` and local `$ref`s, plus its own `x-merge` annotation (see
//! [`Merge`]). The subset is small enough that a validator crate would cost more than it saves.

use serde_json::Value;

/// The schema built into the binary.
pub const EMBEDDED_SCHEMA: &str = include_str!("../../policies/data.schema.json");

/// How a layer's value at one path meets the built-in default's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// The layer's value replaces the default (allow lists, limits, switches).
    Replace,
    /// The layer's entries are added to the default's (`"x-merge": "union"`: lists that deny
    /// or protect, so that a layer naming one more table cannot drop the built-in ones).
    Union,
}

/// A parsed schema.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Value,
}

impl Schema {
    pub fn parse(text: &str) -> Result<Schema, String> {
        let root: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if !root.is_object() {
            return Err("not a JSON Schema object".into());
        }
        Ok(Schema { root })
    }

    pub fn embedded() -> Schema {
        Schema::parse(EMBEDDED_SCHEMA).expect("policies/data.schema.json is a JSON object")
    }

    /// Follows a local `$ref` (`#/$defs/name`).
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(r) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let target = r
                .strip_prefix("#/")
                .map(|p| p.split('/').try_fold(&self.root, |n, k| n.get(k)));
            match target {
                Some(Some(t)) => node = t,
                _ => return node,
            }
        }
        node
    }

    /// The first place `doc` (a whole data file) breaks the schema, as a sentence naming the
    /// path (`data.sqlguard.tables.allow`) and what to change.
    pub fn validate(&self, doc: &Value) -> Result<(), String> {
        let mut path = String::from("data");
        self.check(&self.root, doc, &mut path)
    }

    fn check(&self, node: &Value, v: &Value, path: &mut String) -> Result<(), String> {
        let node = self.resolve(node);
        if let Some(options) = node.get("enum").and_then(Value::as_array) {
            if !options.contains(v) {
                let shown: Vec<String> = options.iter().map(Value::to_string).collect();
                return Err(format!(
                    "{path} is {v}, which is not one of {}",
                    shown.join(", ")
                ));
            }
        }
        if let Some(t) = node.get("type").and_then(Value::as_str) {
            if !has_type(v, t) {
                return Err(format!("{path} must be {}, not {}", article(t), kind(v)));
            }
        }
        if let (Some(min), Some(n)) = (node.get("minimum").and_then(Value::as_f64), v.as_f64()) {
            if n < min {
                return Err(format!("{path} is {n}, below its minimum {min}"));
            }
        }
        if let Value::Object(map) = v {
            let properties = node.get("properties").and_then(Value::as_object);
            for (key, value) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                let result = match properties.and_then(|p| p.get(key)) {
                    Some(child) => self.check(child, value, path),
                    None => match node.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            let known: Vec<&str> = properties
                                .map(|p| p.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            Err(unknown_key(path, key, &known))
                        }
                        Some(child @ Value::Object(_)) => self.check(child, value, path),
                        _ => Ok(()),
                    },
                };
                result?;
                path.truncate(len);
            }
            if let Some(required) = node.get("required").and_then(Value::as_array) {
                for key in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(key) {
                        return Err(format!("{path} needs the key {key}"));
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item)) = (v, node.get("items")) {
            for (i, value) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                self.check(item, value, path)?;
                path.truncate(len);
            }
        }
        Ok(())
    }

    /// How a layer's value at `path` (keys from the document's root) meets the default's.
    pub fn merge_mode(&self, path: &[&str]) -> Merge {
        let mut node = &self.root;
        for key in path {
            let resolved = self.resolve(node);
            let next = resolved
                .get("properties")
                .and_then(|p| p.get(*key))
                .or_else(|| {
                    resolved
                        .get("additionalProperties")
                        .filter(|a| a.is_object())
                });
            match next {
                Some(n) => node = n,
                None => return Merge::Replace,
            }
        }
        let union = |n: &Value| n.get("x-merge").and_then(Value::as_str) == Some("union");
        if union(node) || union(self.resolve(node)) {
            Merge::Union
        } else {
            Merge::Replace
        }
    }

    /// Every `schema.table.column` path of `data.sqlguard` that holds patterns naming
    /// relations, columns or functions (for catalog warnings): `(path, what)`.
    pub fn catalog_lists() -> &'static [(&'static [&'static str], CatalogName)] {
        &[
            (&["sqlguard", "tables", "allow"], CatalogName::Relation),
            (&["sqlguard", "tables", "deny"], CatalogName::Relation),
            (
                &["sqlguard", "tables", "exposing_views"],
                CatalogName::Relation,
            ),
            (&["sqlguard", "columns", "deny"], CatalogName::Column),
            (&["sqlguard", "columns", "mask"], CatalogName::Column),
            (&["sqlguard", "functions", "allow"], CatalogName::Function),
            (&["sqlguard", "functions", "deny"], CatalogName::Function),
        ]
    }
}

/// What the entries of a data list name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogName {
    Relation,
    Column,
    Function,
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn article(t: &str) -> &'static str {
    match t {
        "object" => "an object",
        "array" => "an array",
        "string" => "a string",
        "boolean" => "true or false",
        "number" => "a number",
        "integer" => "a whole number",
        _ => "null",
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The known name nearest to `name`, when it is near enough to be a typo of it.
pub fn nearest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .map(|(_, k)| k)
}

fn unknown_key(path: &str, key: &str, known: &[&str]) -> String {
    let parent = &path[..path.len() - key.len() - 1];
    let hint = match nearest(key, known.iter().copied()) {
        Some(k) => format!("did you mean {parent}.{k}?"),
        None => format!("the keys of {parent} are {}", known.join(", ")),
    };
    format!(
        "{path} is not a key sqlguard knows ({hint}); a layer's own data goes under \
         data.sqlguard.ext.<layer> or outside data.sqlguard (policies/data.schema.json)"
    )
}
