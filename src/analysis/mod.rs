//! SQL text → [`Facts`]: what PostgreSQL's own grammar says the text does.
//!
//! The text is parsed by libpg_query (PostgreSQL's parser), its raw tree read without any
//! depth limit ([`raw`]; libpg_query's JSON text is the reference path, [`analyze_json_with`]),
//! and every statement's whole tree is walked ([`walk`]). Anything that
//! cannot be parsed, walked completely or classified is an error or an `unclassified` entry,
//! which the policy denies: analysis fails closed.

mod catalog;
mod error;
pub mod facts;
mod json;
mod node_schema;
mod parser;
pub mod plan;
pub mod raw;
mod resolve;
pub mod risk;
pub mod shape;
pub mod snapshot;
mod statements;
pub mod variants;
mod walk;

pub use catalog::{catalog, is_system_schema, Catalog};
pub use error::AnalysisError;
pub use facts::*;
pub use walk::{BUILTIN_AGGREGATES, MAX_DEPTH};

/// How to analyze: the connection's `search_path` and the input limits.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    search_path: Vec<String>,
    /// `search_path` as PostgreSQL searches it: `pg_catalog` first unless placed explicitly.
    effective: Vec<String>,
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// The database's own catalog, when known: names resolve against it.
    snapshot: Option<std::sync::Arc<snapshot::Snapshot>>,
    /// Its unqualified names, resolved once through this path.
    resolutions: Option<std::sync::Arc<resolve::Resolutions>>,
}

/// The default `search_path` pinned on every connection.
pub const DEFAULT_SEARCH_PATH: [&str; 2] = ["pg_catalog", "public"];
/// The default limit on the SQL text's size.
pub const DEFAULT_MAX_SQL_BYTES: usize = 1024 * 1024;

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self::new(DEFAULT_SEARCH_PATH.iter().map(|s| s.to_string()).collect())
    }
}

impl AnalysisOptions {
    pub fn new(search_path: Vec<String>) -> Self {
        let search_path: Vec<String> = search_path
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let mut effective = search_path.clone();
        if !effective.iter().any(|s| s == "pg_catalog") {
            effective.insert(0, "pg_catalog".into());
        }
        AnalysisOptions {
            search_path,
            effective,
            max_sql_bytes: DEFAULT_MAX_SQL_BYTES,
            snapshot: None,
            resolutions: None,
        }
    }

    /// The same options, resolving names against `snapshot` (`None`: the static catalog).
    pub fn with_snapshot(mut self, snapshot: Option<std::sync::Arc<snapshot::Snapshot>>) -> Self {
        self.resolutions = snapshot
            .as_deref()
            .map(|s| std::sync::Arc::new(resolve::Resolutions::new(s, &self.effective)));
        self.snapshot = snapshot;
        self
    }

    pub(crate) fn resolutions(&self) -> Option<&resolve::Resolutions> {
        self.resolutions.as_deref()
    }

    pub fn snapshot(&self) -> Option<&snapshot::Snapshot> {
        self.snapshot.as_deref()
    }

    /// The snapshot itself: two options resolve alike when they hold the same one.
    pub fn shared_snapshot(&self) -> Option<&std::sync::Arc<snapshot::Snapshot>> {
        self.snapshot.as_ref()
    }

    pub fn search_path(&self) -> &[String] {
        &self.search_path
    }

    pub(crate) fn effective_search_path(&self) -> impl Iterator<Item = &str> + '_ {
        self.effective.iter().map(String::as_str)
    }

    pub(crate) fn effective_path(&self) -> &[String] {
        &self.effective
    }

    pub(crate) fn first_schema(&self) -> &str {
        &self.effective[0]
    }
}

/// Analyzes `sql` with the default options.
pub fn analyze(sql: &str) -> Result<Facts, AnalysisError> {
    analyze_with(sql, &AnalysisOptions::default())
}

/// Analyzes `sql`: parse, then walk every statement's whole tree.
pub fn analyze_with(sql: &str, opts: &AnalysisOptions) -> Result<Facts, AnalysisError> {
    analyze_tree(sql, opts, |tree| facts_of(sql, tree, opts))
}

/// [`analyze_with`], and which constants (by location) the facts depend on: every `A_Const`
/// of the tree, and whether the analysis read its value. The facts of a text with other
/// values in the constants nobody read are these facts (but for byte positions): the
/// decision cache's shape key rests on that ([`shape`]).
pub fn analyze_traced(
    sql: &str,
    opts: &AnalysisOptions,
) -> Result<(Facts, Vec<(i64, bool)>), AnalysisError> {
    analyze_tree(sql, opts, |tree| {
        tree.trace_constants();
        let facts = facts_of(sql, tree, opts)?;
        let read = tree
            .constant_trace()
            .map(|t| t.constants().collect())
            .unwrap_or_default();
        Ok((facts, read))
    })
}

/// `schema.name`, without the formatting machinery (a few hundred instructions a call on the
/// analysis' path).
pub(crate) fn dotted(schema: &str, name: &str) -> String {
    let mut s = String::with_capacity(schema.len() + 1 + name.len());
    s.push_str(schema);
    s.push('.');
    s.push_str(name);
    s
}

/// Parses `sql` and hands its tree to `then`.
fn analyze_tree<T>(
    sql: &str,
    opts: &AnalysisOptions,
    then: impl FnOnce(&mut json::Tree<'_>) -> Result<T, AnalysisError>,
) -> Result<T, AnalysisError> {
    if !raw::trusted() {
        return analyze_json_tree(sql, opts, then);
    }
    check_size(sql, opts)?;
    let parsed = raw::parse(sql)?;
    let mut tree = raw::tree(&parsed).map_err(|e| match e.what {
        raw::NOT_UTF8 => AnalysisError::NotUtf8,
        what => AnalysisError::Internal(format!(
            "unreadable parse tree at value {}: {what}",
            e.index
        )),
    })?;
    then(&mut tree)
}

/// [`analyze_with`] through libpg_query's JSON text: the reference the raw tree is held to.
pub fn analyze_json_with(sql: &str, opts: &AnalysisOptions) -> Result<Facts, AnalysisError> {
    analyze_json_tree(sql, opts, |tree| facts_of(sql, tree, opts))
}

fn analyze_json_tree<T>(
    sql: &str,
    opts: &AnalysisOptions,
    then: impl FnOnce(&mut json::Tree<'_>) -> Result<T, AnalysisError>,
) -> Result<T, AnalysisError> {
    check_size(sql, opts)?;
    let parsed = parser::parse(sql)?;
    if parsed.json().is_empty() {
        return Err(AnalysisError::NotUtf8);
    }
    let mut tree = json::parse(parsed.json()).map_err(|e| {
        AnalysisError::Internal(format!(
            "unreadable parse tree at byte {}: {}",
            e.offset, e.what
        ))
    })?;
    then(&mut tree)
}

fn check_size(sql: &str, opts: &AnalysisOptions) -> Result<(), AnalysisError> {
    if sql.len() > opts.max_sql_bytes {
        return Err(AnalysisError::TooLarge {
            bytes: sql.len(),
            limit: opts.max_sql_bytes,
        });
    }
    Ok(())
}

/// The facts of a parsed text.
fn facts_of(
    sql: &str,
    tree: &json::Tree<'_>,
    opts: &AnalysisOptions,
) -> Result<Facts, AnalysisError> {
    let stmts = tree.get(tree.root(), "stmts");
    let raw: Vec<json::Id> = stmts
        .map(|s| tree.members(s).iter().map(json::Member::id).collect())
        .unwrap_or_default();
    let mut statements = Vec::with_capacity(raw.len());
    for (index, raw_stmt) in raw.into_iter().enumerate() {
        let location = tree.get_i64(raw_stmt, "stmt_location").unwrap_or(0).max(0) as usize;
        let length = match tree.get_i64(raw_stmt, "stmt_len").unwrap_or(0) {
            // 0 means "to the end of the text".
            0 => sql.len().saturating_sub(location),
            n => n.max(0) as usize,
        };
        let Some(stmt) = tree.get(raw_stmt, "stmt") else {
            return Err(AnalysisError::Internal(format!(
                "statement {index} has no tree"
            )));
        };
        let (mut facts, too_deep) = walk::Walker::new(tree, opts, index).statement(stmt);
        if too_deep {
            return Err(AnalysisError::TooDeep { limit: MAX_DEPTH });
        }
        facts.location = location;
        facts.length = length;
        statements.push(facts);
    }
    Ok(Facts {
        sql_bytes: sql.len(),
        statement_count: statements.len(),
        search_path: opts.search_path.clone(),
        catalog: match opts.snapshot() {
            Some(s) => CatalogUsed {
                source: CatalogSource::Snapshot,
                server_version_num: Some(s.server.version_num),
            },
            None => CatalogUsed::default(),
        },
        statements,
    })
}

/// An oracle for fuzzing and property tests: every relation and function the analysis
/// reports is named in the text, as the parser decoded it. The exceptions are calls the
/// grammar writes itself (`TRIM` → `pg_catalog.btrim`, `AT TIME ZONE` → `pg_catalog.timezone`:
/// schema-qualified pg_catalog calls) and texts whose names are escaped (`U&"…"`, `""`).
pub fn check_names_in_text(sql: &str, facts: &Facts) -> Result<(), String> {
    let lower = sql.to_lowercase();
    if lower.contains("u&") || lower.contains("\"\"") {
        return Ok(());
    }
    for s in &facts.statements {
        for r in &s.relations {
            if !lower.contains(&r.name.to_lowercase()) {
                return Err(format!("relation {:?} is not in the text {sql:?}", r.name));
            }
        }
        for f in &s.functions {
            let grammar_written = f.qualified && f.schema.as_deref() == Some("pg_catalog");
            if !grammar_written && !lower.contains(&f.name.to_lowercase()) {
                return Err(format!("function {:?} is not in the text {sql:?}", f.name));
            }
        }
    }
    Ok(())
}
