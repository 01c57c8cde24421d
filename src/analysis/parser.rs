//! PostgreSQL's own grammar, through libpg_query's JSON output.
//!
//! `pg_query::parse` decodes libpg_query's protobuf with prost's fixed recursion limit of 100,
//! which ordinary SQL (a 400-term `a || b || …`, 40 nested subqueries) exceeds
//! (threat model, class 15). The same C parser also writes JSON; that text is read here by
//! an iterative reader ([`super::json`]) that has no depth limit and cannot overflow a stack.
//! The C symbols are linked by the `pg_query` crate, which also owns the library's build.

use std::ffi::{c_char, c_int, CStr, CString};

use super::AnalysisError;

// Mirrors `pg_query.h` of the libpg_query bundled with pg_query 18.1.
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
struct PgQueryParseResult {
    parse_tree: *mut c_char,
    stderr_buffer: *mut c_char,
    error: *mut PgQueryError,
}

unsafe extern "C" {
    fn pg_query_parse_opts(input: *const c_char, parser_options: c_int) -> PgQueryParseResult;
    fn pg_query_free_parse_result(result: PgQueryParseResult);
}

// Keeps the `pg_query` crate (and so its bundled static library) linked.
use pg_query as _;

/// libpg_query's JSON parse tree, owned until dropped.
pub struct ParseTree {
    result: PgQueryParseResult,
}

// SAFETY: the result is plain heap memory owned by this value; libpg_query's per-thread
// memory contexts are not involved in freeing it (pg_query_free_parse_result uses free()).
unsafe impl Send for ParseTree {}

impl ParseTree {
    /// The JSON text of the tree.
    pub fn json(&self) -> &str {
        // SAFETY: parse_tree is a NUL-terminated string owned by `self.result` (checked
        // non-null in `parse`) and libpg_query writes it as UTF-8 JSON.
        let bytes = unsafe { CStr::from_ptr(self.result.parse_tree) }.to_bytes();
        std::str::from_utf8(bytes).unwrap_or("")
    }
}

impl Drop for ParseTree {
    fn drop(&mut self) {
        let result = PgQueryParseResult {
            parse_tree: self.result.parse_tree,
            stderr_buffer: self.result.stderr_buffer,
            error: self.result.error,
        };
        // SAFETY: `result` came from pg_query_parse_opts and is freed exactly once.
        unsafe { pg_query_free_parse_result(result) };
    }
}

/// The analysis error for libpg_query's error `message` at 1-based character `cursor`.
pub(super) fn error(message: String, cursor: c_int) -> AnalysisError {
    // PostgreSQL's own parser limits (bison's stack, max_stack_depth) end deep nesting
    // with an error rather than a crash (threat model, class 15).
    if message.contains("stack depth limit exceeded") || message.contains("memory exhausted") {
        return AnalysisError::ParserLimit { message };
    }
    AnalysisError::Syntax {
        message,
        // libpg_query reports a 1-based character position, 0 when unknown.
        position: usize::try_from(cursor).ok().filter(|p| *p > 0),
    }
}

/// Parses `sql` with PostgreSQL's grammar (standard_conforming_strings on, the value
/// sqlguard pins on every connection: threat model, class 14).
pub fn parse(sql: &str) -> Result<ParseTree, AnalysisError> {
    let input = CString::new(sql).map_err(|e| AnalysisError::NulByte {
        position: e.nul_position(),
    })?;
    // SAFETY: `input` is a valid NUL-terminated string for the duration of the call.
    let result = unsafe { pg_query_parse_opts(input.as_ptr(), 0) };
    if !result.error.is_null() {
        // SAFETY: a non-null error points to a PgQueryError with a NUL-terminated message.
        let (message, cursor) = unsafe {
            let e = &*result.error;
            (
                CStr::from_ptr(e.message).to_string_lossy().into_owned(),
                e.cursorpos,
            )
        };
        // SAFETY: freed once; nothing borrowed from it survives.
        unsafe { pg_query_free_parse_result(result) };
        return Err(error(message, cursor));
    }
    if result.parse_tree.is_null() {
        // SAFETY: as above.
        unsafe { pg_query_free_parse_result(result) };
        return Err(AnalysisError::Internal(
            "the parser returned no tree".into(),
        ));
    }
    Ok(ParseTree { result })
}
