//! A small JSON reader for libpg_query's parse trees.
//!
//! It builds a flat arena iteratively: any nesting depth costs heap, never stack, and
//! strings without escapes borrow from the input. It reads what libpg_query writes; any
//! other malformed text is an error, never a panic.

use std::borrow::Cow;

/// Index of a value in a [`Tree`].
pub type Id = u32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A number that fits an `i64` (every number of a parse tree but a few plan fields).
    Int(i64),
    /// Any other number, as written.
    Number(&'a str),
    String(Cow<'a, str>),
    /// Elements are `members[start..end]` (keys empty).
    Array {
        start: u32,
        end: u32,
    },
    /// Members are `members[start..end]`.
    Object {
        start: u32,
        end: u32,
    },
}

/// A parsed JSON document (or a parse tree read from libpg_query's events: [`super::raw`]).
/// Values are numbered in document order; where a container's members lie in `members`
/// depends on the reader (the JSON reader places them when the container closes, the events
/// reader when it opens), so two trees are equal when they hold the same document: the same
/// values in the same order, each container's members in the same order under the same keys.
#[derive(Debug, Default)]
pub struct Tree<'a> {
    pub(super) values: Vec<Value<'a>>,
    pub(super) members: Vec<(&'a str, Id)>,
    /// When traced: which constants' values were read ([`Tree::trace_constants`]).
    pub(super) trace: Option<ConstTrace>,
}

/// Which `A_Const` nodes' values a reader of the tree looked at: the decision cache's
/// shape key may leave out exactly the constants nobody read ([`super::shape`]).
#[derive(Debug, Default, PartialEq)]
pub struct ConstTrace {
    /// Per value id: 0, or 1 + the index of the constant whose body it is part of.
    owner: Vec<u32>,
    /// Each constant's location (its token's byte offset) and whether it was read.
    constants: Vec<(i64, std::cell::Cell<bool>)>,
}

impl ConstTrace {
    /// Each `A_Const`'s location, and whether its value (any part of its body) was read.
    pub fn constants(&self) -> impl Iterator<Item = (i64, bool)> + '_ {
        self.constants.iter().map(|(l, r)| (*l, r.get()))
    }
}

impl PartialEq for Tree<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.values.len() != other.values.len() || self.trace != other.trace {
            return false;
        }
        self.values
            .iter()
            .zip(&other.values)
            .all(|(a, b)| match (a, b) {
                (Value::Array { .. }, Value::Array { .. })
                | (Value::Object { .. }, Value::Object { .. }) => {
                    let (a, b) = (self.slots(a), other.slots(b));
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
                }
                (a, b) => a == b,
            })
    }
}

impl<'a> Tree<'a> {
    /// A container's members (none for a scalar).
    fn slots(&self, value: &Value<'a>) -> &[(&'a str, Id)] {
        match value {
            Value::Array { start, end } | Value::Object { start, end } => {
                &self.members[*start as usize..*end as usize]
            }
            _ => &[],
        }
    }

    pub fn root(&self) -> Id {
        0
    }

    pub fn value(&self, id: Id) -> &Value<'a> {
        if let Some(t) = &self.trace {
            if let Some(&o) = t.owner.get(id as usize) {
                if o != 0 {
                    t.constants[o as usize - 1].1.set(true);
                }
            }
        }
        &self.values[id as usize]
    }

    /// From now on, record which constants' values are read: every `{"A_Const": body}`'s
    /// body and everything under it (its value, its location, which fields it has).
    pub fn trace_constants(&mut self) {
        let mut trace = ConstTrace {
            owner: vec![0; self.values.len()],
            constants: Vec::new(),
        };
        // Containers in document order: the constants are numbered the same whichever reader
        // built the tree.
        let bodies = self.values.iter().flat_map(|v| self.slots(v));
        for (key, body) in bodies {
            if *key != "A_Const" {
                continue;
            }
            // Values are numbered in document order: a body's subtree is `body..=last`.
            let mut last = *body;
            while let Value::Object { start, end } | Value::Array { start, end } =
                self.values[last as usize]
            {
                if start == end {
                    break;
                }
                last = self.members[end as usize - 1].1;
            }
            let location = self
                .members_untraced(*body)
                .iter()
                .find(|(k, _)| *k == "location")
                .and_then(|(_, v)| match self.values[*v as usize] {
                    Value::Int(n) => Some(n),
                    _ => None,
                })
                // libpg_query leaves out a location of 0.
                .unwrap_or(0);
            trace
                .constants
                .push((location, std::cell::Cell::new(false)));
            let index = trace.constants.len() as u32;
            for o in &mut trace.owner[*body as usize..=last as usize] {
                *o = index;
            }
        }
        self.trace = Some(trace);
    }

    /// The trace, when [`trace_constants`](Self::trace_constants) started one.
    pub fn constant_trace(&self) -> Option<&ConstTrace> {
        self.trace.as_ref()
    }

    fn members_untraced(&self, id: Id) -> &[(&'a str, Id)] {
        self.slots(&self.values[id as usize])
    }

    /// Which kind of constant an `A_Const` body holds (`ival`, `fval`, `sval`, `boolval`,
    /// `bsval`, `isnull`), without recording it as read: the kind follows from the scanner's
    /// token (`ICONST`, `FCONST`, `SCONST`, `TRUE_P`, …), which every shape key holds; only
    /// the value does not (`analysis::shape`).
    pub fn constant_kind(&self, body: Id) -> Option<&str> {
        self.members_untraced(body)
            .iter()
            .map(|(k, _)| k.as_ref())
            .find(|k| *k != "location")
    }

    /// Members of an object (or elements of an array, with empty keys).
    pub fn members(&self, id: Id) -> &[(&'a str, Id)] {
        match self.value(id) {
            Value::Array { start, end } | Value::Object { start, end } => {
                &self.members[*start as usize..*end as usize]
            }
            _ => &[],
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, id: Id, key: &str) -> Option<Id> {
        match self.value(id) {
            Value::Object { .. } => self
                .members(id)
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v),
            _ => None,
        }
    }

    pub fn str(&self, id: Id) -> Option<&str> {
        match self.value(id) {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn get_str(&self, id: Id, key: &str) -> Option<&str> {
        self.get(id, key).and_then(|v| self.str(v))
    }

    pub fn get_bool(&self, id: Id, key: &str) -> bool {
        matches!(
            self.get(id, key).map(|v| self.value(v)),
            Some(Value::Bool(true))
        )
    }

    pub fn get_i64(&self, id: Id, key: &str) -> Option<i64> {
        match self.get(id, key).map(|v| self.value(v)) {
            Some(Value::Int(n)) => Some(*n),
            Some(Value::Number(n)) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn is_object(&self, id: Id) -> bool {
        matches!(self.value(id), Value::Object { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub what: &'static str,
}

pub(super) struct Frame<'a> {
    pub(super) id: Id,
    pub(super) object: bool,
    pub(super) scratch_start: usize,
    pub(super) key: Option<&'a str>,
}

/// Parses `text` into a [`Tree`].
pub fn parse(text: &str) -> Result<Tree<'_>, JsonError> {
    let mut tree = Tree {
        values: Vec::with_capacity(text.len() / 12 + 4),
        members: Vec::with_capacity(text.len() / 12 + 4),
        trace: None,
    };
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    let mut stack: Vec<Frame<'_>> = Vec::new();
    // Members of open containers, moved into `tree.members` contiguously when they close.
    let mut scratch: Vec<(&str, Id)> = Vec::new();
    let err = |offset, what| Err(JsonError { offset, what });

    loop {
        skip_ws(bytes, &mut pos);
        // In an object, read the key first.
        if let Some(frame) = stack.last_mut() {
            if frame.object && frame.key.is_none() {
                if bytes.get(pos) == Some(&b'}') {
                    pos += 1;
                    close(&mut tree, &mut stack, &mut scratch);
                    if !after_value(bytes, &mut pos, &mut stack)? {
                        break;
                    }
                    continue;
                }
                if bytes.get(pos) != Some(&b'"') {
                    return err(pos, "expected an object key");
                }
                // libpg_query's keys are field names: an escaped one is not its output.
                let Cow::Borrowed(key) = read_string(text, &mut pos)? else {
                    return err(pos, "an escaped object key");
                };
                skip_ws(bytes, &mut pos);
                if bytes.get(pos) != Some(&b':') {
                    return err(pos, "expected ':'");
                }
                pos += 1;
                frame.key = Some(key);
                skip_ws(bytes, &mut pos);
            } else if !frame.object && bytes.get(pos) == Some(&b']') {
                pos += 1;
                close(&mut tree, &mut stack, &mut scratch);
                if !after_value(bytes, &mut pos, &mut stack)? {
                    break;
                }
                continue;
            }
        }
        let id = tree.values.len() as Id;
        match bytes.get(pos) {
            Some(b'{') | Some(b'[') => {
                let object = bytes[pos] == b'{';
                pos += 1;
                tree.values.push(Value::Null);
                push_member(&mut stack, &mut scratch, id);
                stack.push(Frame {
                    id,
                    object,
                    scratch_start: scratch.len(),
                    key: None,
                });
                continue;
            }
            Some(b'"') => {
                let s = read_string(text, &mut pos)?;
                tree.values.push(Value::String(s));
            }
            Some(b't') if bytes[pos..].starts_with(b"true") => {
                pos += 4;
                tree.values.push(Value::Bool(true));
            }
            Some(b'f') if bytes[pos..].starts_with(b"false") => {
                pos += 5;
                tree.values.push(Value::Bool(false));
            }
            Some(b'n') if bytes[pos..].starts_with(b"null") => {
                pos += 4;
                tree.values.push(Value::Null);
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = pos;
                while pos < bytes.len()
                    && matches!(bytes[pos], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    pos += 1;
                }
                let number = &text[start..pos];
                tree.values.push(match number.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Number(number),
                });
            }
            _ => return err(pos, "expected a value"),
        }
        push_member(&mut stack, &mut scratch, id);
        if !after_value(bytes, &mut pos, &mut stack)? {
            break;
        }
    }
    skip_ws(bytes, &mut pos);
    if pos != bytes.len() {
        return err(pos, "trailing characters");
    }
    if tree.values.is_empty() {
        return err(0, "empty document");
    }
    Ok(tree)
}

pub(super) fn push_member<'a>(stack: &mut [Frame<'a>], scratch: &mut Vec<(&'a str, Id)>, id: Id) {
    if let Some(frame) = stack.last_mut() {
        let key = frame.key.take().unwrap_or("");
        scratch.push((key, id));
    }
}

pub(super) fn close<'a>(
    tree: &mut Tree<'a>,
    stack: &mut Vec<Frame<'a>>,
    scratch: &mut Vec<(&'a str, Id)>,
) {
    if let Some(frame) = stack.pop() {
        let start = tree.members.len() as u32;
        tree.members.extend(scratch.drain(frame.scratch_start..));
        let end = tree.members.len() as u32;
        tree.values[frame.id as usize] = if frame.object {
            Value::Object { start, end }
        } else {
            Value::Array { start, end }
        };
    }
}

/// After a complete value: consume a `,` if one follows. Returns false when the document's
/// root value is complete.
fn after_value(bytes: &[u8], pos: &mut usize, stack: &mut [Frame<'_>]) -> Result<bool, JsonError> {
    if stack.is_empty() {
        return Ok(false);
    }
    skip_ws(bytes, pos);
    match bytes.get(*pos) {
        Some(b',') => {
            *pos += 1;
            Ok(true)
        }
        Some(b'}') | Some(b']') => Ok(true),
        _ => Err(JsonError {
            offset: *pos,
            what: "expected ',' or the end of a container",
        }),
    }
}

fn skip_ws(bytes: &[u8], pos: &mut usize) {
    while *pos < bytes.len() && matches!(bytes[*pos], b' ' | b'\n' | b'\r' | b'\t') {
        *pos += 1;
    }
}

fn read_string<'a>(text: &'a str, pos: &mut usize) -> Result<Cow<'a, str>, JsonError> {
    let bytes = text.as_bytes();
    let start = *pos + 1;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                *pos = i + 1;
                return Ok(Cow::Borrowed(&text[start..i]));
            }
            b'\\' => return read_escaped(text, start, pos),
            _ => i += 1,
        }
    }
    Err(JsonError {
        offset: start,
        what: "unterminated string",
    })
}

fn read_escaped<'a>(
    text: &'a str,
    start: usize,
    pos: &mut usize,
) -> Result<Cow<'a, str>, JsonError> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = start;
    let bad = |offset| JsonError {
        offset,
        what: "bad escape in string",
    };
    while i < bytes.len() {
        let run = i;
        while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\\' {
            i += 1;
        }
        out.push_str(&text[run..i]);
        match bytes.get(i) {
            Some(b'"') => {
                *pos = i + 1;
                return Ok(Cow::Owned(out));
            }
            Some(b'\\') => {
                let c = *bytes.get(i + 1).ok_or(bad(i))?;
                i += 2;
                match c {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let hi = hex4(text, i).ok_or(bad(i))?;
                        i += 4;
                        let code = if (0xD800..0xDC00).contains(&hi)
                            && bytes.get(i) == Some(&b'\\')
                            && bytes.get(i + 1) == Some(&b'u')
                        {
                            let lo = hex4(text, i + 2).ok_or(bad(i))?;
                            i += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                        } else {
                            hi
                        };
                        out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                    }
                    _ => return Err(bad(i)),
                }
            }
            _ => break,
        }
    }
    Err(JsonError {
        offset: start,
        what: "unterminated string",
    })
}

fn hex4(text: &str, at: usize) -> Option<u32> {
    text.get(at..at + 4)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_documents() {
        let t = parse(r#"{"a":[1,{"b":"x\"y"},true,null],"c":{}}"#).unwrap();
        let a = t.get(t.root(), "a").unwrap();
        assert_eq!(t.members(a).len(), 4);
        let b = t.members(a)[1].1;
        assert_eq!(t.get_str(b, "b"), Some("x\"y"));
        assert!(t.members(t.get(t.root(), "c").unwrap()).is_empty());
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let depth = 1_000_000;
        let text = "[".repeat(depth) + &"]".repeat(depth);
        let t = parse(&text).unwrap();
        assert_eq!(t.members(t.root()).len(), 1);
    }

    #[test]
    fn unicode_escapes_decode() {
        let t = parse(r#"["\u00e9\ud83d\ude00"]"#).unwrap();
        let s = t.members(t.root())[0].1;
        assert_eq!(t.str(s), Some("é😀"));
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            "",
            "{",
            "[1,",
            r#"{"a" 1}"#,
            "[1 2]",
            "\"abc",
            "[1]x",
            r#"["\q"]"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
