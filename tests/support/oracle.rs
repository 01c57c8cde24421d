//! sqlparser (`PostgreSqlDialect`) as an independent oracle of what a text does. It is not
//! PostgreSQL's grammar and it knows nothing of functions, so it only speaks in one
//! direction: a text it reads as anything but one plain read — data-modifying, DDL,
//! transaction control, `SET`, `COPY`, `CALL`, `GRANT`, a locking read, `SELECT INTO`,
//! several statements, or `EXPLAIN` of any of those (but a plain `EXPLAIN` of a locking read,
//! which runs nothing) — must be denied by sqlguard. Shared by
//! `tests/oracle.rs` and the fuzz target `fuzz/fuzz_targets/sqlparser_oracle.rs`.

use std::ops::ControlFlow;

use sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// What sqlparser says a text is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oracle {
    /// sqlparser does not read it (it says nothing then).
    Unparsed,
    /// One plain read, as far as sqlparser can tell.
    Read,
    /// Something sqlguard must deny, and what.
    MustDeny(String),
}

/// The variant name of a statement (`Insert`, `CreateTable`, …).
fn name(s: &Statement) -> String {
    let debug = format!("{s:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

/// Finds, anywhere in a read, what makes it more than one: a nested statement (`WITH d AS
/// (DELETE …)`), a locking clause, `SELECT … INTO`.
struct Writes(Option<String>);

impl Visitor for Writes {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(lock) = q.locks.first() {
            self.0 = Some(format!("locking read (FOR {:?})", lock.lock_type));
            return ControlFlow::Break(());
        }
        if let SetExpr::Select(select) = q.body.as_ref() {
            if select.into.is_some() {
                self.0 = Some("SELECT INTO".into());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<()> {
        if !matches!(s, Statement::Query(_)) {
            self.0 = Some(format!("nested {}", name(s)));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

fn statement(s: &Statement) -> Oracle {
    match s {
        Statement::Query(q) => {
            let mut w = Writes(None);
            let _ = q.visit(&mut w);
            match w.0 {
                Some(what) => Oracle::MustDeny(what),
                None => Oracle::Read,
            }
        }
        Statement::Explain {
            analyze,
            statement: inner,
            options,
            ..
        } => {
            let analyze_option = options.iter().flatten().any(|o| {
                o.name.value.eq_ignore_ascii_case("analyze")
                    && !o.arg.as_ref().is_some_and(|a| {
                        matches!(a.to_string().to_lowercase().as_str(), "false" | "off" | "0")
                    })
            });
            match statement(inner) {
                // `EXPLAIN ANALYZE` runs the statement: it is what the statement is.
                Oracle::MustDeny(what) if *analyze || analyze_option => {
                    Oracle::MustDeny(format!("EXPLAIN ANALYZE of {what}"))
                }
                // Plain `EXPLAIN` runs nothing and takes no row locks; a write or DDL under
                // it is still refused by sqlguard's default policy, so it stays a change.
                Oracle::MustDeny(what) if !what.starts_with("locking read") => {
                    Oracle::MustDeny(format!("EXPLAIN of {what}"))
                }
                Oracle::MustDeny(_) => Oracle::Read,
                other => other,
            }
        }
        // Metadata reads of other dialects (`EXPLAIN tbl`, `SHOW TABLES`, …): sqlparser reads
        // `EXPLAIN SELECT ` (PostgreSQL: explain an empty select list) as `EXPLAIN` of a table
        // named `SELECT`. Reads either way.
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => Oracle::Read,
        other => Oracle::MustDeny(name(other)),
    }
}

/// sqlparser's reading of `sql`.
pub fn classify(sql: &str) -> Oracle {
    // sqlparser recurses per nesting level: keep deep inputs off its stack.
    let Ok(statements) = stacker::maybe_grow(256 * 1024, 16 * 1024 * 1024, || {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
    }) else {
        return Oracle::Unparsed;
    };
    match statements.as_slice() {
        [] => Oracle::Unparsed,
        [one] => statement(one),
        more => Oracle::MustDeny(format!("{} statements", more.len())),
    }
}
