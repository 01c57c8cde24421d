//! A small JSON reader for libpg_query's parse trees, and the arena both readers fill.
//!
//! The arena is flat: any nesting depth costs heap, never stack. Values are [`Node`]s in
//! document order and containers' members are [`Member`]s, laid out as `raw_tree.c` writes
//! them, so the raw parse tree is walked where C wrote it ([`super::raw`]); strings without
//! escapes borrow from the JSON text. The reader reads what libpg_query writes; any other
//! malformed text is an error, never a panic.

use std::borrow::Cow;
use std::marker::PhantomData;

/// Index of a value in a [`Tree`].
pub type Id = u32;

// Value tags: keep in step with raw_tree.c.
pub const OBJECT: u32 = 1;
pub const ARRAY: u32 = 2;
pub const STRING: u32 = 5;
pub const INT: u32 = 6;
pub const TRUE: u32 = 7;
pub const FALSE: u32 = 8;
pub const NULL: u32 = 9;
pub const NUMBER: u32 = 10;
/// A string the JSON reader unescaped: `len` bytes from the tree's own text at `val`.
const UNESCAPED: u32 = 11;

/// One value of the arena (`SgNode` in raw_tree.c).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub tag: u32,
    /// A container's number of members, or a text's number of bytes.
    pub len: u32,
    /// A container's first member, a text's first byte, or an integer's bits.
    pub val: u64,
}

/// One member of a container (`SgMember` in raw_tree.c): its key (a field name; empty in an
/// array) and its value's index. Only `raw_tree.c` (whose keys are its own string literals,
/// ASCII field names) and the JSON reader (slices of the text) make them, so every key is UTF-8
/// and lives for `'a`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub(super) key: *const u8,
    pub(super) key_len: u32,
    pub(super) id: Id,
    pub(super) life: PhantomData<&'a str>,
}

impl<'a> Member<'a> {
    fn new(key: &'a str, id: Id) -> Self {
        Member {
            key: key.as_ptr(),
            key_len: key.len() as u32,
            id,
            life: PhantomData,
        }
    }

    pub fn key(&self) -> &'a str {
        // SAFETY: every `Member` holds `key_len` bytes of UTF-8 that live for `'a`: the JSON
        // reader's `new` takes a `&'a str`, and raw_tree.c points at its own string literals
        // (field names: ASCII, static; `raw::read` checks they are not null, and debug builds
        // that they are ASCII).
        unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                self.key,
                self.key_len as usize,
            ))
        }
    }

    pub fn id(&self) -> Id {
        self.id
    }

    /// Whether the key is `key`: field names are short, so a byte loop after the length
    /// beats a call to memcmp.
    #[inline]
    fn key_is(&self, key: &str) -> bool {
        self.key_len as usize == key.len()
            && self.key().bytes().zip(key.bytes()).all(|(a, b)| a == b)
    }
}

/// A value, as read from its [`Node`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// A number that fits an `i64` (every number of a parse tree but a few plan fields).
    Int(i64),
    /// Any other number, as written.
    Number(&'a str),
    String(&'a str),
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

/// A parsed JSON document, or a raw parse tree ([`super::raw`]). Values are numbered in
/// document order; where a container's members lie in `members` depends on the writer, so
/// two trees are equal when they hold the same document: the same values in the same order,
/// each container's members in the same order under the same keys.
#[derive(Debug, Default)]
pub struct Tree<'a> {
    pub(super) nodes: Cow<'a, [Node]>,
    pub(super) members: Cow<'a, [Member<'a>]>,
    /// Where texts' bytes are: the JSON text, or the raw tree's strings. Every text's range is
    /// in bounds and UTF-8 (checked by whoever made the tree).
    pub(super) strings: &'a [u8],
    /// The strings the JSON reader unescaped.
    pub(super) unescaped: String,
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
        if self.nodes.len() != other.nodes.len() || self.trace != other.trace {
            return false;
        }
        (0..self.nodes.len() as Id).all(|id| match (self.decode(id), other.decode(id)) {
            (Value::Array { .. }, Value::Array { .. })
            | (Value::Object { .. }, Value::Object { .. }) => {
                let (a, b) = (self.members_untraced(id), other.members_untraced(id));
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.id == y.id && x.key() == y.key())
            }
            (a, b) => a == b,
        })
    }
}

impl<'a> Tree<'a> {
    /// The value `id`, without recording a constant as read.
    fn decode(&self, id: Id) -> Value<'_> {
        let node = &self.nodes[id as usize];
        fn text<'s>(bytes: &'s [u8], node: &Node) -> &'s str {
            let (start, len) = (node.val as usize, node.len as usize);
            // SAFETY: whoever made the tree checked every text's range and UTF-8.
            unsafe { std::str::from_utf8_unchecked(bytes.get_unchecked(start..start + len)) }
        }
        match node.tag {
            OBJECT => Value::Object {
                start: node.val as u32,
                end: node.val as u32 + node.len,
            },
            ARRAY => Value::Array {
                start: node.val as u32,
                end: node.val as u32 + node.len,
            },
            STRING => Value::String(text(self.strings, node)),
            UNESCAPED => Value::String(text(self.unescaped.as_bytes(), node)),
            NUMBER => {
                let n = text(self.strings, node);
                match n.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Number(n),
                }
            }
            INT => Value::Int(node.val as i64),
            TRUE => Value::Bool(true),
            FALSE => Value::Bool(false),
            _ => Value::Null,
        }
    }

    pub fn root(&self) -> Id {
        0
    }

    pub fn value(&self, id: Id) -> Value<'_> {
        self.read(id);
        self.decode(id)
    }

    /// Records that `id` was read, when it is part of a traced constant.
    #[inline]
    fn read(&self, id: Id) {
        if let Some(t) = &self.trace {
            if let Some(&o) = t.owner.get(id as usize) {
                if o != 0 {
                    t.constants[o as usize - 1].1.set(true);
                }
            }
        }
    }

    /// From now on, record which constants' values are read: every `{"A_Const": body}`'s
    /// body and everything under it (its value, its location, which fields it has).
    pub fn trace_constants(&mut self) {
        let mut trace = ConstTrace {
            owner: vec![0; self.nodes.len()],
            constants: Vec::new(),
        };
        // Containers in document order: the constants are numbered the same whichever reader
        // built the tree.
        for id in 0..self.nodes.len() as Id {
            for m in self.members_untraced(id) {
                if m.key() != "A_Const" {
                    continue;
                }
                let body = m.id;
                // Values are numbered in document order: a body's subtree is `body..=last`.
                let mut last = body;
                loop {
                    let below = self.members_untraced(last);
                    match below.last() {
                        Some(m) => last = m.id,
                        None => break,
                    }
                }
                let location = self
                    .members_untraced(body)
                    .iter()
                    .find(|m| m.key() == "location")
                    .and_then(|m| match self.decode(m.id) {
                        Value::Int(n) => Some(n),
                        _ => None,
                    })
                    // libpg_query leaves out a location of 0.
                    .unwrap_or(0);
                trace
                    .constants
                    .push((location, std::cell::Cell::new(false)));
                let index = trace.constants.len() as u32;
                for o in &mut trace.owner[body as usize..=last as usize] {
                    *o = index;
                }
            }
        }
        self.trace = Some(trace);
    }

    /// The trace, when [`trace_constants`](Self::trace_constants) started one.
    pub fn constant_trace(&self) -> Option<&ConstTrace> {
        self.trace.as_ref()
    }

    /// A container's members (none for a scalar), without recording a constant as read.
    fn members_untraced(&self, id: Id) -> &[Member<'a>] {
        let node = &self.nodes[id as usize];
        match node.tag {
            OBJECT | ARRAY => {
                let start = node.val as usize;
                &self.members[start..start + node.len as usize]
            }
            _ => &[],
        }
    }

    /// Which kind of constant an `A_Const` body holds (`ival`, `fval`, `sval`, `boolval`,
    /// `bsval`, `isnull`), without recording it as read: the kind follows from the scanner's
    /// token (`ICONST`, `FCONST`, `SCONST`, `TRUE_P`, …), which every shape key holds; only
    /// the value does not (`analysis::shape`).
    pub fn constant_kind(&self, body: Id) -> Option<&'a str> {
        self.members_untraced(body)
            .iter()
            .map(|m| m.key())
            .find(|k| *k != "location")
    }

    /// Members of an object (or elements of an array, with empty keys).
    pub fn members(&self, id: Id) -> &[Member<'a>] {
        self.read(id);
        self.members_untraced(id)
    }

    /// The ids of a container's members (or of an array's elements).
    pub fn ids(&self, id: Id) -> impl Iterator<Item = Id> + '_ {
        fn shorter<'s>(members: &'s [Member<'_>]) -> &'s [Member<'s>] {
            members
        }
        shorter(self.members(id)).iter().map(|m| m.id)
    }

    /// The member `key` of an object.
    pub fn get(&self, id: Id, key: &str) -> Option<Id> {
        self.read(id);
        if self.nodes[id as usize].tag != OBJECT {
            return None;
        }
        self.members_untraced(id)
            .iter()
            .find(|m| m.key_is(key))
            .map(|m| m.id)
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
            Some(Value::Int(n)) => Some(n),
            Some(Value::Number(n)) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn is_object(&self, id: Id) -> bool {
        self.read(id);
        self.nodes[id as usize].tag == OBJECT
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub what: &'static str,
}

struct Frame<'a> {
    id: Id,
    object: bool,
    scratch_start: usize,
    key: Option<&'a str>,
}

/// An object's key and its `:`. libpg_query's keys are field names: an escaped one is not
/// its output.
fn read_key<'a>(text: &'a str, pos: &mut usize) -> Result<&'a str, JsonError> {
    let bytes = text.as_bytes();
    let err = |offset, what| Err(JsonError { offset, what });
    if bytes.get(*pos) != Some(&b'"') {
        return err(*pos, "expected an object key");
    }
    let Cow::Borrowed(key) = read_string(text, pos)? else {
        return err(*pos, "an escaped object key");
    };
    skip_ws(bytes, pos);
    if bytes.get(*pos) != Some(&b':') {
        return err(*pos, "expected ':'");
    }
    *pos += 1;
    Ok(key)
}

/// A string, `true`, `false`, `null` or a number at `pos`.
fn scalar(text: &str, pos: &mut usize, unescaped: &mut String) -> Result<Node, JsonError> {
    let bytes = text.as_bytes();
    let node = |tag, len: usize, val: usize| Node {
        tag,
        len: len as u32,
        val: val as u64,
    };
    Ok(match bytes.get(*pos) {
        Some(b'"') => match read_string(text, pos)? {
            Cow::Borrowed(s) => {
                let at = s.as_ptr() as usize - text.as_ptr() as usize;
                node(STRING, s.len(), at)
            }
            Cow::Owned(s) => {
                let n = node(UNESCAPED, s.len(), unescaped.len());
                unescaped.push_str(&s);
                n
            }
        },
        Some(b't') if bytes[*pos..].starts_with(b"true") => {
            *pos += 4;
            node(TRUE, 0, 0)
        }
        Some(b'f') if bytes[*pos..].starts_with(b"false") => {
            *pos += 5;
            node(FALSE, 0, 0)
        }
        Some(b'n') if bytes[*pos..].starts_with(b"null") => {
            *pos += 4;
            node(NULL, 0, 0)
        }
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let start = *pos;
            while *pos < bytes.len()
                && matches!(bytes[*pos], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            {
                *pos += 1;
            }
            match text[start..*pos].parse::<i64>() {
                Ok(n) => Node {
                    tag: INT,
                    len: 0,
                    val: n as u64,
                },
                Err(_) => node(NUMBER, *pos - start, start),
            }
        }
        _ => {
            return Err(JsonError {
                offset: *pos,
                what: "expected a value",
            })
        }
    })
}

/// Parses `text` into a [`Tree`].
pub fn parse(text: &str) -> Result<Tree<'_>, JsonError> {
    let mut nodes: Vec<Node> = Vec::with_capacity(text.len() / 12 + 4);
    let mut members: Vec<Member<'_>> = Vec::with_capacity(text.len() / 12 + 4);
    let mut unescaped = String::new();
    let bytes = text.as_bytes();
    let mut pos = 0usize;
    let mut stack: Vec<Frame<'_>> = Vec::new();
    // Members of open containers, moved into `tree.members` contiguously when they close.
    let mut scratch: Vec<Member<'_>> = Vec::new();
    let err = |offset, what| Err(JsonError { offset, what });

    loop {
        skip_ws(bytes, &mut pos);
        // In an object, read the key first.
        if let Some(frame) = stack.last_mut() {
            if frame.object && frame.key.is_none() {
                if bytes.get(pos) == Some(&b'}') {
                    pos += 1;
                    close(&mut nodes, &mut members, &mut stack, &mut scratch);
                    if !after_value(bytes, &mut pos, &mut stack)? {
                        break;
                    }
                    continue;
                }
                frame.key = Some(read_key(text, &mut pos)?);
                skip_ws(bytes, &mut pos);
            } else if !frame.object && bytes.get(pos) == Some(&b']') {
                pos += 1;
                close(&mut nodes, &mut members, &mut stack, &mut scratch);
                if !after_value(bytes, &mut pos, &mut stack)? {
                    break;
                }
                continue;
            }
        }
        let id = nodes.len() as Id;
        let node = |tag, len: usize, val: usize| Node {
            tag,
            len: len as u32,
            val: val as u64,
        };
        match bytes.get(pos) {
            Some(b'{') | Some(b'[') => {
                let object = bytes[pos] == b'{';
                pos += 1;
                nodes.push(node(NULL, 0, 0));
                push_member(&mut stack, &mut scratch, id);
                stack.push(Frame {
                    id,
                    object,
                    scratch_start: scratch.len(),
                    key: None,
                });
                continue;
            }
            _ => nodes.push(scalar(text, &mut pos, &mut unescaped)?),
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
    if nodes.is_empty() {
        return err(0, "empty document");
    }
    if nodes.len() > u32::MAX as usize || text.len() > u32::MAX as usize {
        return err(0, "a document too large");
    }
    Ok(Tree {
        nodes: Cow::Owned(nodes),
        members: Cow::Owned(members),
        strings: bytes,
        unescaped,
        trace: None,
    })
}

fn push_member<'a>(stack: &mut [Frame<'a>], scratch: &mut Vec<Member<'a>>, id: Id) {
    if let Some(frame) = stack.last_mut() {
        let key = frame.key.take().unwrap_or("");
        scratch.push(Member::new(key, id));
    }
}

fn close<'a>(
    nodes: &mut [Node],
    members: &mut Vec<Member<'a>>,
    stack: &mut Vec<Frame<'a>>,
    scratch: &mut Vec<Member<'a>>,
) {
    if let Some(frame) = stack.pop() {
        let start = members.len();
        members.extend(scratch.drain(frame.scratch_start..));
        nodes[frame.id as usize] = Node {
            tag: if frame.object { OBJECT } else { ARRAY },
            len: (members.len() - start) as u32,
            val: start as u64,
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
        let b = t.members(a)[1].id();
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
        let s = t.members(t.root())[0].id();
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
