//! PostgreSQL's grammar without the JSON round trip: libpg_query's raw parse tree, written by
//! `raw_tree.c` straight into an arena of values and members, and read here (its structure
//! checked) into the same [`Tree`] the JSON reader builds.
//!
//! `raw_tree.c` is libpg_query's own JSON writer with its output macros replaced (the
//! generated per-node code is shared), so it writes every field the JSON writer writes, in
//! the same order. [`trusted`] checks that on a sample of statements before the analysis
//! uses this path (any difference, and the analysis stays on the JSON path); the corpus
//! test in `tests/raw_tree.rs` checks it on every statement of the corpora.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::OnceLock;

use super::json::{
    self, Member, Node, Tree, ARRAY, FALSE, INT, NULL, NUMBER, OBJECT, STRING, TRUE,
};
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
struct SqlguardTree {
    nodes: *mut Node,
    n_nodes: usize,
    members: *mut Member<'static>,
    n_members: usize,
    strings: *mut u8,
    strings_len: usize,
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
    fn sqlguard_parse_tree(input: *const c_char) -> SqlguardTree;
    fn sqlguard_free_tree(result: SqlguardTree);
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

/// The arena of one parse, owned until dropped.
pub struct RawTree {
    result: SqlguardTree,
}

// SAFETY: plain malloc'd memory owned by this value, freed with free(); the keys point to
// string literals (static storage).
unsafe impl Send for RawTree {}

/// `len` elements at `data`, or none when C wrote none.
///
/// SAFETY: a non-null `data` points to `len` initialised elements that outlive `'a`.
unsafe fn slice<'a, T>(data: *const T, len: usize) -> &'a [T] {
    if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's.
        unsafe { std::slice::from_raw_parts(data, len) }
    }
}

impl RawTree {
    pub fn nodes(&self) -> &[Node] {
        // SAFETY: written by sqlguard_parse_tree, owned by `self` until drop.
        unsafe { slice(self.result.nodes, self.result.n_nodes) }
    }

    pub fn members(&self) -> &[Member<'_>] {
        // SAFETY: as `nodes`.
        unsafe { slice(self.result.members, self.result.n_members) }
    }

    pub fn strings(&self) -> &[u8] {
        // SAFETY: as `nodes`.
        unsafe { slice(self.result.strings, self.result.strings_len) }
    }
}

impl Drop for RawTree {
    fn drop(&mut self) {
        let result = SqlguardTree { ..self.result };
        // SAFETY: `result` came from sqlguard_parse_tree and is freed exactly once.
        unsafe { sqlguard_free_tree(result) };
    }
}

/// Parses `sql` (as [`super::parser::parse`] does, with the same errors) into an arena.
pub fn parse(sql: &str) -> Result<RawTree, AnalysisError> {
    let input = CString::new(sql).map_err(|e| AnalysisError::NulByte {
        position: e.nul_position(),
    })?;
    // SAFETY: `input` is a valid NUL-terminated string for the duration of the call.
    let result = unsafe { sqlguard_parse_tree(input.as_ptr()) };
    let raw = RawTree { result };
    if !raw.result.error.is_null() {
        // SAFETY: a non-null error points to a PgQueryError with a NUL-terminated message
        // (or a null one, when even the message could not be allocated).
        let (message, cursor) = unsafe {
            let e = &*raw.result.error;
            let message = if e.message.is_null() {
                "out of memory".to_string()
            } else {
                CStr::from_ptr(e.message).to_string_lossy().into_owned()
            };
            (message, e.cursorpos)
        };
        return Err(super::parser::error(message, cursor));
    }
    Ok(raw)
}

/// Why an arena could not be read: the value (or member) index, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawError {
    pub index: usize,
    pub what: &'static str,
}

/// The tree `raw` holds, equal to the one [`json::parse`] reads from the same tree's JSON
/// (checked, then walked where C wrote it).
pub fn tree(raw: &RawTree) -> Result<Tree<'_>, RawError> {
    read(raw.nodes(), raw.members(), raw.strings())
}

/// The arena as a [`Tree`], after checking it is one: every value but the first is a member
/// of exactly one container, the values are in document order (a container's members follow
/// it, each after the last value under the one before), objects' members have keys and
/// arrays' none, texts lie in `strings` and are UTF-8, tags are known. Anything else is an
/// error, never a panic or a wrong tree. (Keys are raw_tree.c's own string literals, trusted
/// as their pointers are.)
fn read<'a>(
    nodes: &'a [Node],
    members: &'a [Member<'a>],
    strings: &'a [u8],
) -> Result<Tree<'a>, RawError> {
    let err = |index, what| Err(RawError { index, what });
    let n = nodes.len();
    if n == 0 {
        return err(0, "no values");
    }
    if members.len() != n - 1 || n > u32::MAX as usize {
        return err(
            members.len(),
            "members that are not each value but the first once",
        );
    }
    // From the last value back: `last[i]` is the last value under `i`. A container's first
    // member is the value after it, and each next member the value after the last one under
    // the member before it. With the count above, the arena is one tree holding every value
    // once, so each member is checked here exactly once.
    let mut last = vec![0u32; n];
    for (i, node) in nodes.iter().enumerate().rev() {
        let mut next = i as u32 + 1;
        match node.tag {
            OBJECT | ARRAY => {
                let object = node.tag == OBJECT;
                let slots = usize::try_from(node.val)
                    .ok()
                    .and_then(|start| members.get(start..start.checked_add(node.len as usize)?));
                let Some(slots) = slots else {
                    return err(i, "a container's members beyond the members");
                };
                for m in slots {
                    // `next < n`: `last` holds it, and no member points past the values.
                    let misplaced = m.id != next || next as usize >= n;
                    if misplaced | m.key.is_null() | ((m.key_len == 0) == object) {
                        return err(i, member_error(m, next, n, object));
                    }
                    // A key is trusted as its pointer is: a string literal of raw_tree.c, a
                    // field name (ASCII). The agreement check holds the keys equal to the
                    // JSON text's.
                    debug_assert!(
                        // SAFETY: as `Member::key`.
                        unsafe { std::slice::from_raw_parts(m.key, m.key_len as usize) }.is_ascii()
                    );
                    next = last[next as usize] + 1;
                }
            }
            STRING | NUMBER => {
                let text = usize::try_from(node.val)
                    .ok()
                    .and_then(|start| strings.get(start..start.checked_add(node.len as usize)?));
                let Some(bytes) = text else {
                    return err(i, "a text beyond the strings");
                };
                if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
                    return err(i, NOT_UTF8);
                }
            }
            INT | TRUE | FALSE | NULL => {}
            _ => return err(i, "an unknown value"),
        }
        last[i] = next - 1;
    }
    if last[0] as usize != n - 1 {
        return err(0, "values outside the root");
    }
    Ok(Tree {
        nodes: Cow::Borrowed(nodes),
        members: Cow::Borrowed(members),
        strings,
        unescaped: String::new(),
        trace: None,
    })
}

/// What is wrong with member `m` where `next` was due, in a container of `object`s.
fn member_error(m: &Member<'_>, next: u32, n: usize, object: bool) -> &'static str {
    if m.id != next || next as usize >= n {
        "values out of document order"
    } else if m.key.is_null() {
        "a member without a key"
    } else if object {
        "an object member without a key"
    } else {
        "an array element with a key"
    }
}

/// [`RawError::what`] for a text that is not UTF-8.
pub const NOT_UTF8: &str = "a text that is not UTF-8";

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
    let from_raw = parse(sql);
    match (from_json, from_raw) {
        (Ok(parsed), Ok(raw)) => {
            let a = json::parse(parsed.json()).map_err(|e| format!("{sql:?}: JSON: {e:?}"));
            let b = tree(&raw).map_err(|e| format!("{sql:?}: raw tree: {e:?}"));
            match (a, b) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Ok(_), Ok(_)) => Err(format!("{sql:?}: the trees differ")),
                (Err(_), Err(_)) => Ok(()),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
            }
        }
        (Err(a), Err(b)) if a.to_string() == b.to_string() => Ok(()),
        (a, b) => Err(format!(
            "{sql:?}: JSON {:?}, raw tree {:?}",
            a.err().map(|e| e.to_string()),
            b.err().map(|e| e.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::json::Value;

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

    fn node(tag: u32, len: u32, val: u64) -> Node {
        Node { tag, len, val }
    }

    fn member(key: &'static str, id: u32) -> Member<'static> {
        Member {
            key: key.as_ptr(),
            key_len: key.len() as u32,
            id,
            life: std::marker::PhantomData,
        }
    }

    fn check<'a>(
        nodes: &'a [Node],
        members: &'a [Member<'a>],
        strings: &'a [u8],
    ) -> Result<Tree<'a>, RawError> {
        read(nodes, members, strings)
    }

    /// (case, values, members, strings, the error)
    type Case = (
        &'static str,
        Vec<Node>,
        Vec<Member<'static>>,
        &'static [u8],
        &'static str,
    );

    fn array(len: u32) -> Node {
        node(ARRAY, len, 0)
    }

    fn object(len: u32) -> Node {
        node(OBJECT, len, 0)
    }

    const INT_VALUE: u64 = 7;

    fn assert_malformed(cases: Vec<Case>) {
        for (case, nodes, members, strings, what) in cases {
            let got = check(&nodes, &members, strings).err();
            assert_eq!(got.map(|e| e.what), Some(what), "{case}");
        }
    }

    /// Tags, containers and their member counts.
    #[test]
    fn malformed_arenas_are_errors_containers_and_counts() {
        let int = node(INT, 0, INT_VALUE);
        let null = node(NULL, 0, 0);
        let _ = (&int, &null);
        assert_malformed(vec![
            ("no values", vec![], vec![], &b""[..], "no values"),
            (
                "an unknown tag",
                vec![node(42, 0, 0)],
                vec![],
                &b""[..],
                "an unknown value",
            ),
            (
                "a member too many",
                vec![array(0)],
                vec![member("", 0)],
                &b""[..],
                "members that are not each value but the first once",
            ),
            (
                "a value in no container",
                vec![array(0), int],
                vec![],
                &b""[..],
                "members that are not each value but the first once",
            ),
            (
                "members beyond the members",
                vec![array(2), int],
                vec![member("", 1)],
                &b""[..],
                "a container's members beyond the members",
            ),
            (
                "a count that overflows",
                vec![node(ARRAY, u32::MAX, u64::MAX), int],
                vec![member("", 1)],
                &b""[..],
                "a container's members beyond the members",
            ),
        ]);
    }

    /// Member keys and string texts.
    #[test]
    fn malformed_arenas_are_errors_keys_and_texts() {
        let int = node(INT, 0, INT_VALUE);
        let null = node(NULL, 0, 0);
        let _ = (&int, &null);
        assert_malformed(vec![
            (
                "an object member without a key",
                vec![object(1), int],
                vec![member("", 1)],
                &b""[..],
                "an object member without a key",
            ),
            (
                "an array element with a key",
                vec![array(1), int],
                vec![member("a", 1)],
                &b""[..],
                "an array element with a key",
            ),
            (
                "a text beyond the strings",
                vec![array(1), node(STRING, 5, 0)],
                vec![member("", 1)],
                &b"a"[..],
                "a text beyond the strings",
            ),
            (
                "a text whose offset overflows",
                vec![array(1), node(STRING, 1, u64::MAX)],
                vec![member("", 1)],
                &b"a"[..],
                "a text beyond the strings",
            ),
            (
                "a text that is not UTF-8",
                vec![array(1), node(STRING, 1, 0)],
                vec![member("", 1)],
                &b"\xff"[..],
                NOT_UTF8,
            ),
        ]);
    }

    /// Values in document order, each in one container.
    #[test]
    fn malformed_arenas_are_errors_document_order() {
        let int = node(INT, 0, INT_VALUE);
        let null = node(NULL, 0, 0);
        let _ = (&int, &null);
        assert_malformed(vec![
            (
                "elements out of order",
                vec![array(2), int, null],
                vec![member("", 2), member("", 1)],
                &b""[..],
                "values out of document order",
            ),
            (
                "a member that is its container",
                vec![array(1), int],
                vec![member("", 0)],
                &b""[..],
                "values out of document order",
            ),
            (
                "a member past the last value",
                vec![array(0), node(ARRAY, 1, 0)],
                vec![member("", 2)],
                &b""[..],
                "values out of document order",
            ),
            (
                "a value in two containers",
                vec![array(2), node(ARRAY, 1, 0), int],
                vec![member("", 1), member("", 2)],
                &b""[..],
                "values out of document order",
            ),
            (
                "a scalar root with a value after it",
                vec![int, int],
                vec![member("", 1)],
                &b""[..],
                "values outside the root",
            ),
        ]);
    }

    #[test]
    fn a_member_without_a_key_is_an_error() {
        let null_key = Member {
            key: std::ptr::null(),
            key_len: 0,
            id: 1,
            life: std::marker::PhantomData,
        };
        let int = node(INT, 0, INT_VALUE);
        let e = check(&[array(1), int], &[null_key], b"").err().unwrap();
        assert_eq!(e.what, "a member without a key");
    }

    #[test]
    fn well_formed_arenas_are_read() {
        // [-7, null, false, {"a": "é", "b": [1e400, 12]}]
        let nodes = [
            node(ARRAY, 4, 4),
            node(INT, 0, -7i64 as u64),
            node(NULL, 0, 0),
            node(FALSE, 0, 0),
            node(OBJECT, 2, 2),
            node(STRING, 2, 0),
            node(ARRAY, 2, 0),
            node(NUMBER, 5, 2),
            node(NUMBER, 2, 7),
        ];
        let members = [
            member("", 7),
            member("", 8),
            member("a", 5),
            member("b", 6),
            member("", 1),
            member("", 2),
            member("", 3),
            member("", 4),
        ];
        let t = check(&nodes, &members, "\u{e9}1e40012".as_bytes()).unwrap();
        let root = t.members(t.root());
        assert_eq!(root.len(), 4);
        assert_eq!(t.value(root[0].id()), Value::Int(-7));
        assert_eq!(t.value(root[1].id()), Value::Null);
        assert_eq!(t.value(root[2].id()), Value::Bool(false));
        assert_eq!(t.get_str(root[3].id(), "a"), Some("\u{e9}"));
        let b = t.members(t.get(root[3].id(), "b").unwrap());
        assert_eq!(t.value(b[0].id()), Value::Number("1e400"));
        assert_eq!(t.value(b[1].id()), Value::Int(12));
        let json = json::parse(r#"[-7, null, false, {"a": "\u00e9", "b": [1e400, 12]}]"#).unwrap();
        assert_eq!(t, json);
    }

    #[test]
    fn trees_are_equal_whatever_the_member_layout() {
        for sql in AGREEMENT_SQL {
            let parsed = super::super::parser::parse(sql).unwrap();
            let mut a = json::parse(parsed.json()).unwrap();
            let raw = parse(sql).unwrap();
            let mut b = tree(&raw).unwrap();
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
