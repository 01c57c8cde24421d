//! PostgreSQL's grammar without the JSON round trip: libpg_query's raw parse tree, written by
//! `raw_tree.c` as typed events and read here into the same [`Tree`] the JSON reader builds.
//!
//! `raw_tree.c` is libpg_query's own JSON writer with its output macros replaced (the
//! generated per-node code is shared), so it writes every field the JSON writer writes, in
//! the same order. [`trusted`] checks that on a sample of statements before the analysis
//! uses this path (any difference, and the analysis stays on the JSON path); the corpus
//! test in `tests/raw_tree.rs` checks it on every statement of the corpora.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use super::json::{self, Id, Tree, Value};
use super::AnalysisError;

#[repr(C)]
struct PgQueryError {
    message: *mut c_char,
    funcname: *mut c_char,
    filename: *mut c_char,
    lineno: c_int,
    cursorpos: c_int,
    context: *mut c_char,
}

#[repr(C)]
struct SqlguardEvents {
    events: *mut u8,
    len: usize,
    error: *mut PgQueryError,
}

/// One token of PostgreSQL's scanner: its grammar symbol and its bytes `start..end`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: i32,
    pub start: i32,
    pub end: i32,
}

#[repr(C)]
struct SqlguardTokens {
    tokens: *mut Token,
    len: usize,
    error: *mut PgQueryError,
}

unsafe extern "C" {
    fn sqlguard_parse_events(input: *const c_char) -> SqlguardEvents;
    fn sqlguard_free_events(result: SqlguardEvents);
    fn sqlguard_scan(input: *const c_char) -> SqlguardTokens;
    fn sqlguard_free_tokens(result: SqlguardTokens);
    fn sqlguard_token_kinds(out: *mut i32);
}

/// The grammar symbols (gram.h's numbers) of the tokens the shape key treats apart.
#[derive(Debug, Clone, Copy)]
pub struct Kinds {
    pub sconst: i32,
    pub iconst: i32,
    pub fconst: i32,
    pub bconst: i32,
    pub xconst: i32,
    pub usconst: i32,
    pub uident: i32,
    pub ident: i32,
    pub param: i32,
    pub semicolon: i32,
}

/// [`Kinds`], read from the compiled grammar once.
pub fn kinds() -> &'static Kinds {
    static KINDS: OnceLock<Kinds> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut k = [0i32; 10];
        // SAFETY: sqlguard_token_kinds writes exactly 10 ints.
        unsafe { sqlguard_token_kinds(k.as_mut_ptr()) };
        Kinds {
            sconst: k[0],
            iconst: k[1],
            fconst: k[2],
            bconst: k[3],
            xconst: k[4],
            usconst: k[5],
            uident: k[6],
            ident: k[7],
            param: k[8],
            semicolon: k[9],
        }
    })
}

/// The tokens of one text, owned until dropped.
pub struct Tokens {
    result: SqlguardTokens,
}

// SAFETY: plain malloc'd memory owned by this value, freed with free().
unsafe impl Send for Tokens {}

impl Tokens {
    pub fn tokens(&self) -> &[Token] {
        if self.result.tokens.is_null() {
            return &[];
        }
        // SAFETY: `tokens` points to `len` tokens written by sqlguard_scan, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.result.tokens, self.result.len) }
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        let result = SqlguardTokens {
            tokens: self.result.tokens,
            len: self.result.len,
            error: self.result.error,
        };
        // SAFETY: `result` came from sqlguard_scan and is freed exactly once.
        unsafe { sqlguard_free_tokens(result) };
    }
}

/// The tokens of `sql` as the parser's scanner reads them (comments and whitespace are not
/// tokens); `None` when the scanner rejects the text (the parse reports why) or it holds a
/// NUL byte.
pub fn scan(sql: &str) -> Option<Tokens> {
    let input = CString::new(sql).ok()?;
    // SAFETY: `input` is a valid NUL-terminated string for the duration of the call.
    let result = unsafe { sqlguard_scan(input.as_ptr()) };
    let tokens = Tokens { result };
    if !tokens.result.error.is_null() {
        return None;
    }
    // Every token lies in the text, in order: anything else is not a scan to key on.
    let mut at = 0i32;
    for t in tokens.tokens() {
        if t.start < at || t.end < t.start || t.end as usize > sql.len() {
            return None;
        }
        at = t.end;
    }
    Some(tokens)
}

// Event tags: keep in step with raw_tree.c.
const OBJECT: u8 = 1;
const ARRAY: u8 = 2;
const END: u8 = 3;
const KEY: u8 = 4;
const STRING: u8 = 5;
const INT: u8 = 6;
const TRUE: u8 = 7;
const FALSE: u8 = 8;
const NULL: u8 = 9;
const NUMBER: u8 = 10;

/// The events of one parse, owned until dropped.
pub struct Events {
    result: SqlguardEvents,
}

// SAFETY: the events are plain malloc'd memory owned by this value, freed with free().
unsafe impl Send for Events {}

impl Events {
    pub fn bytes(&self) -> &[u8] {
        if self.result.events.is_null() {
            return &[];
        }
        // SAFETY: `events` points to `len` bytes written by sqlguard_parse_events, owned by
        // `self` until drop.
        unsafe { std::slice::from_raw_parts(self.result.events, self.result.len) }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let result = SqlguardEvents {
            events: self.result.events,
            len: self.result.len,
            error: self.result.error,
        };
        // SAFETY: `result` came from sqlguard_parse_events and is freed exactly once.
        unsafe { sqlguard_free_events(result) };
    }
}

/// Parses `sql` (as [`super::parser::parse`] does, with the same errors) into events.
pub fn parse(sql: &str) -> Result<Events, AnalysisError> {
    let input = CString::new(sql).map_err(|e| AnalysisError::NulByte {
        position: e.nul_position(),
    })?;
    // SAFETY: `input` is a valid NUL-terminated string for the duration of the call.
    let result = unsafe { sqlguard_parse_events(input.as_ptr()) };
    let events = Events { result };
    if !events.result.error.is_null() {
        // SAFETY: a non-null error points to a PgQueryError with a NUL-terminated message
        // (or a null one, when even the message could not be allocated).
        let (message, cursor) = unsafe {
            let e = &*events.result.error;
            let message = if e.message.is_null() {
                "out of memory".to_string()
            } else {
                CStr::from_ptr(e.message).to_string_lossy().into_owned()
            };
            (message, e.cursorpos)
        };
        return Err(super::parser::error(message, cursor));
    }
    Ok(events)
}

/// Why events could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub offset: usize,
    pub what: &'static str,
}

/// Reads `events` into a [`Tree`] equal to the one [`json::parse`] reads from the same tree's
/// JSON. Each object and array starts with its number of members, so their slots in the
/// arena are reserved when it opens and each value is written once, into its slot.
pub fn tree(events: &[u8]) -> Result<Tree<'_>, EventError> {
    let mut tree = Tree {
        values: Vec::with_capacity(events.len() / 8 + 4),
        members: Vec::with_capacity(events.len() / 8 + 4),
        trace: None,
    };
    // The open containers, innermost last: the next free slot, the end of the slots, and
    // whether it is an object (whose values each follow a key).
    let mut open: Vec<(u32, u32, bool)> = Vec::with_capacity(64);
    let mut key: Option<&str> = None;
    let mut pos = 0usize;
    let err = |offset, what| Err(EventError { offset, what });
    while pos < events.len() {
        let tag = events[pos];
        let at = pos;
        pos += 1;
        if tag == KEY {
            match open.last() {
                Some(&(_, _, true)) if key.is_none() => key = Some(field_name(events, &mut pos)?),
                _ => return err(at, "a key outside an object"),
            }
            continue;
        }
        if tag == END {
            match open.pop() {
                Some(_) if key.is_some() => return err(at, "a key without a value"),
                Some((next, end, _)) if next != end => {
                    return err(at, "a container with fewer values than its count")
                }
                Some(_) => {}
                None => return err(at, "an end outside a container"),
            }
            if open.is_empty() {
                break;
            }
            continue;
        }
        let id = tree.values.len() as Id;
        match open.last_mut() {
            Some((_, _, true)) if key.is_none() => return err(at, "a value without a key"),
            Some((next, end, _)) => {
                if next == end {
                    return err(at, "a container with more values than its count");
                }
                tree.members[*next as usize] = (key.take().unwrap_or(""), id);
                *next += 1;
            }
            None if !tree.values.is_empty() => return err(at, "a second root value"),
            None => {}
        }
        match tag {
            OBJECT | ARRAY => {
                let count = length(events, &mut pos)?;
                // Each value is at least one event byte: a larger count is not a tree's.
                if count > events.len() - pos {
                    return err(at, "a count beyond the events");
                }
                let start = tree.members.len();
                let end = start + count;
                if end > u32::MAX as usize {
                    return err(at, "too many values");
                }
                tree.members.resize(end, ("", 0));
                let (start, end) = (start as u32, end as u32);
                tree.values.push(if tag == OBJECT {
                    Value::Object { start, end }
                } else {
                    Value::Array { start, end }
                });
                open.push((start, end, tag == OBJECT));
                continue;
            }
            STRING => tree
                .values
                .push(Value::String(Cow::Borrowed(text(events, &mut pos)?))),
            NUMBER => tree.values.push(match text(events, &mut pos)? {
                n if n.parse::<i64>().is_ok() => Value::Int(n.parse().unwrap_or(0)),
                n => Value::Number(n),
            }),
            INT => {
                let Some(bytes) = events.get(pos..pos + 8) else {
                    return err(at, "a truncated integer");
                };
                pos += 8;
                let mut n = [0u8; 8];
                n.copy_from_slice(bytes);
                tree.values.push(Value::Int(i64::from_ne_bytes(n)));
            }
            TRUE => tree.values.push(Value::Bool(true)),
            FALSE => tree.values.push(Value::Bool(false)),
            NULL => tree.values.push(Value::Null),
            _ => return err(at, "an unknown event"),
        }
        if open.is_empty() {
            break;
        }
    }
    if !open.is_empty() {
        return err(events.len(), "an unclosed container");
    }
    if pos != events.len() {
        return err(pos, "events after the root value");
    }
    if tree.values.is_empty() {
        return err(0, "no events");
    }
    Ok(tree)
}

/// [`EventError::what`] for a text that is not UTF-8.
pub const NOT_UTF8: &str = "a text that is not UTF-8";

/// A u32 length at `pos`.
fn length(events: &[u8], pos: &mut usize) -> Result<usize, EventError> {
    let at = *pos;
    let bytes = events.get(at..at + 4).ok_or(EventError {
        offset: at,
        what: "a truncated length",
    })?;
    *pos = at + 4;
    Ok(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
}

/// A length-prefixed UTF-8 text at `pos`.
fn text<'a>(events: &'a [u8], pos: &mut usize) -> Result<&'a str, EventError> {
    let at = *pos;
    let len = length(events, pos)?;
    let bytes = events.get(at + 4..at + 4 + len).ok_or(EventError {
        offset: at,
        what: "a truncated text",
    })?;
    *pos = at + 4 + len;
    utf8(bytes).ok_or(EventError {
        offset: at,
        what: NOT_UTF8,
    })
}

/// A field name at `pos`: one length byte, then ASCII.
fn field_name<'a>(events: &'a [u8], pos: &mut usize) -> Result<&'a str, EventError> {
    let at = *pos;
    let bad = |what| EventError { offset: at, what };
    let len = *events.get(at).ok_or(bad("a truncated key"))? as usize;
    let bytes = events
        .get(at + 1..at + 1 + len)
        .ok_or(bad("a truncated key"))?;
    *pos = at + 1 + len;
    if !bytes.is_ascii() {
        return Err(bad("a key that is not ASCII"));
    }
    // SAFETY: ASCII is UTF-8.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// `bytes` as text: ASCII (nearly every string of a parse tree) checked inline, anything else
/// by the full UTF-8 check.
fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Statements whose trees cover the node kinds, fields and values the analysis reads; the
/// raw path is used only when it reads each of them exactly as the JSON path does.
pub const AGREEMENT_SQL: &[&str] = &[
    "",
    "SELECT 1",
    "SELECT -1, 0, 2147483647, -2147483648, 1.5, 1e400, 'x', E'a\\tb\\n\"<>', B'101', X'1F', true, false, NULL",
    "SELECT a.id, count(*) FILTER (WHERE b.x > 0) OVER (PARTITION BY a.k ORDER BY a.id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) \
     FROM public.accounts a LEFT JOIN LATERAL (SELECT * FROM b WHERE b.a = a.id LIMIT 3) b ON true \
     WHERE a.id IN (1, 2, 3) AND a.name ILIKE '%x%' GROUP BY ROLLUP (a.id) HAVING count(*) > 1 \
     ORDER BY 1 DESC NULLS LAST LIMIT 10 OFFSET 5 FOR UPDATE OF a SKIP LOCKED",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT * FROM t",
    "SELECT CASE WHEN x IS NULL THEN 'a'::text ELSE x::varchar(10) END, (ARRAY[1,2])[1:2], (r).f, \
     row(1, 2) IS DISTINCT FROM row(1, 3), x BETWEEN SYMMETRIC 1 AND 2, COALESCE(a, b), GREATEST(1, 2), \
     current_user, CURRENT_TIMESTAMP(3), xmlelement(name x, 'y'), json_object('a': 1), x COLLATE \"C\" FROM t",
    "SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(n, i), unnest($1::int[]), \
     xmltable('/a' PASSING x COLUMNS c int PATH 'b'), json_table('[]', '$[*]' COLUMNS (a int PATH '$.a')) jt",
    "INSERT INTO t (a, b) VALUES (1, DEFAULT) ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING *",
    "UPDATE t SET a = 1 FROM u WHERE t.id = u.id; DELETE FROM t USING u WHERE t.id = u.id",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = 1 WHEN NOT MATCHED THEN INSERT VALUES (1)",
    "CREATE TABLE t (id int PRIMARY KEY, a text NOT NULL DEFAULT 'x' CHECK (a <> ''), b numeric(10, 2)) PARTITION BY RANGE (id)",
    "CREATE FOREIGN TABLE f (a int) SERVER s OPTIONS (table_name 't')",
    "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT a $$",
    "DO $$ BEGIN RAISE NOTICE 'x'; END $$; COPY t TO STDOUT WITH (FORMAT csv); SET search_path = a, b; RESET ALL",
    "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT",
    "GRANT SELECT ON t TO r; ALTER TABLE t ADD COLUMN c int; DROP TABLE IF EXISTS t CASCADE; VACUUM (ANALYZE) t",
    "EXPLAIN (ANALYZE, FORMAT JSON) SELECT 1; PREPARE p(int) AS SELECT $1; EXECUTE p(1); FETCH FORWARD 5 FROM c",
    "SELECT pg_catalog.set_config('a', 'b', false), 'x' OPERATOR(pg_catalog.||) 'y', x <-> y, NOT a, a AND b OR c",
    "SELECT x FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1) WHERE EXISTS (SELECT 1) AND x = ANY (SELECT y FROM u)",
    "TABLE t; VALUES (1, 'a'), (2, 'b'); SELECT * FROM ONLY t NATURAL JOIN u CROSS JOIN v FULL JOIN w USING (id)",
];

/// Whether the raw path reads [`AGREEMENT_SQL`] exactly as the JSON path does (checked once
/// per process; on a difference the analysis uses the JSON path, and says so in the log).
pub fn trusted() -> bool {
    static TRUSTED: OnceLock<bool> = OnceLock::new();
    *TRUSTED.get_or_init(|| match disagreement(AGREEMENT_SQL) {
        None => true,
        Some(why) => {
            tracing::error!(
                "the raw parse tree disagrees with libpg_query's JSON ({why}): the analysis \
                 reads the JSON (slower, same decisions)"
            );
            false
        }
    })
}

/// The first statement of `texts` whose raw tree differs from its JSON tree, and how.
pub fn disagreement(texts: &[&str]) -> Option<String> {
    texts.iter().find_map(|sql| compare(sql).err())
}

/// Both paths on `sql`: equal trees, or the same kind of error.
pub fn compare(sql: &str) -> Result<(), String> {
    let from_json = super::parser::parse(sql);
    let from_events = parse(sql);
    match (from_json, from_events) {
        (Ok(parsed), Ok(events)) => {
            let a = json::parse(parsed.json()).map_err(|e| format!("{sql:?}: JSON: {e:?}"));
            let b = tree(events.bytes()).map_err(|e| format!("{sql:?}: events: {e:?}"));
            match (a, b) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Ok(_), Ok(_)) => Err(format!("{sql:?}: the trees differ")),
                (Err(_), Err(_)) => Ok(()),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            }
        }
        (Err(a), Err(b)) if a.to_string() == b.to_string() => Ok(()),
        (a, b) => Err(format!(
            "{sql:?}: JSON {:?}, events {:?}",
            a.err().map(|e| e.to_string()),
            b.err().map(|e| e.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agreement_sample_reads_as_the_json_does() {
        for sql in AGREEMENT_SQL {
            parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            compare(sql).unwrap();
        }
        assert!(trusted());
    }

    #[test]
    fn errors_are_the_json_paths() {
        for sql in ["SELEC 1", "SELECT (", "SELECT 'unterminated"] {
            compare(sql).unwrap();
            assert!(
                matches!(parse(sql), Err(AnalysisError::Syntax { .. })),
                "{sql}"
            );
        }
        assert!(matches!(
            parse("SELECT 1\0"),
            Err(AnalysisError::NulByte { position: 8 })
        ));
    }

    #[test]
    fn malformed_events_are_errors() {
        let int = |n: i64| {
            let mut v = vec![INT];
            v.extend(n.to_ne_bytes());
            v
        };
        let open = |tag: u8, count: u32| {
            let mut v = vec![tag];
            v.extend(count.to_ne_bytes());
            v
        };
        let key = |k: &[u8]| [&[KEY, k.len() as u8][..], k].concat();
        for bad in [
            vec![],
            vec![OBJECT],
            open(OBJECT, 0),
            vec![END],
            [open(OBJECT, 1), int(1)].concat(),
            [open(OBJECT, 1), vec![STRING, 5, 0, 0, 0, b'a']].concat(),
            [open(ARRAY, 0), key(b"a"), vec![END]].concat(),
            [open(OBJECT, 0), key(b"a"), vec![END]].concat(),
            [open(OBJECT, 1), vec![TRUE, END]].concat(),
            [open(ARRAY, 1), vec![42, END]].concat(),
            [open(ARRAY, 1), vec![STRING, 1, 0, 0, 0, 0xff, END]].concat(),
            [open(ARRAY, 1), int(1), vec![END, NULL]].concat(),
            // Counts that do not match the values, or that no events could hold.
            [open(ARRAY, 2), int(1), vec![END]].concat(),
            [open(ARRAY, 1), int(1), int(2), vec![END]].concat(),
            [open(ARRAY, u32::MAX), vec![END]].concat(),
            // A key that is not ASCII, or runs past the end.
            [open(OBJECT, 1), key(&[0xc3, 0xa9]), vec![NULL, END]].concat(),
            [open(OBJECT, 1), vec![KEY, 9, b'a']].concat(),
        ] {
            assert!(tree(&bad).is_err(), "{bad:?}");
        }
        let ok = [open(ARRAY, 3), int(-7), vec![NULL, FALSE, END]].concat();
        let t = tree(&ok).unwrap();
        assert_eq!(t.members(t.root()).len(), 3);
        assert_eq!(t.value(t.members(t.root())[0].1), &Value::Int(-7));
        // Non-ASCII UTF-8 text is read as text.
        let text = [open(ARRAY, 1), vec![STRING, 2, 0, 0, 0, 0xc3, 0xa9, END]].concat();
        let t = tree(&text).unwrap();
        assert_eq!(t.str(t.members(t.root())[0].1), Some("é"));
    }

    #[test]
    fn trees_are_equal_whatever_the_member_layout() {
        for sql in AGREEMENT_SQL {
            let parsed = super::super::parser::parse(sql).unwrap();
            let mut a = json::parse(parsed.json()).unwrap();
            let events = parse(sql).unwrap();
            let mut b = tree(events.bytes()).unwrap();
            assert_eq!(a, b, "{sql}");
            a.trace_constants();
            b.trace_constants();
            assert_eq!(a, b, "{sql}: the constants' trace");
        }
        // Different documents are not equal.
        let a = json::parse(r#"{"a":[1,{"b":2}],"c":3}"#).unwrap();
        for other in [
            r#"{"a":[1,{"b":2}],"c":4}"#,
            r#"{"a":[1,{"x":2}],"c":3}"#,
            r#"{"a":[{"b":2},1],"c":3}"#,
            r#"{"a":[1,{"b":2}]}"#,
        ] {
            assert_ne!(a, json::parse(other).unwrap(), "{other}");
        }
    }
}
