//! Shared test idioms.
#![allow(dead_code)]

pub mod cluster;
pub mod oracle;

use std::path::PathBuf;

use sqlguard::analysis::{Access, Facts};

/// `../shared/corpus` beside the checkout, when present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n!!!!! ../shared/corpus is absent: the corpus tests are SKIPPED (looked in {}) !!!!!\n",
            dir.display()
        );
        None
    }
}

/// Checks one expectation against the facts of a whole text. The language, one string each:
/// `kind:select`, `read_only`, `construct:NAME`, `read:S.T` (also `write:`, `lock:`,
/// `create:`), `cte:NAME`, `fn:S.NAME`, `risk:CATEGORY`, `setting:ACTION:NAME`,
/// `col:S.T.COLUMN`, `star:S.T`, `via:HOW:S.T`, `pin:S.T.COLUMN=V1|V2`, `unpinned:S.T`, `nested:KIND`, `unclassified`, `statements:N`,
/// `explain_analyze`, `op:NAME`, `param:N`, `lockclause:STRENGTH`, `into:S.T`,
/// `use:PLACE:S.T.COLUMN`;
/// a leading `!` negates.
pub fn holds(facts: &Facts, expectation: &str) -> bool {
    let (negate, e) = match expectation.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, expectation),
    };
    let (key, arg) = e.split_once(':').unwrap_or((e, ""));
    let result = statement_holds(facts, key, arg)
        .or_else(|| relation_holds(facts, key, arg))
        .or_else(|| call_holds(facts, key, arg))
        .or_else(|| column_holds(facts, key, arg))
        .unwrap_or_else(|| panic!("unknown expectation {key:?}"));
    result != negate
}

/// Expectations on the statements: kinds, constructs, counts, locks, parameters.
fn statement_holds(facts: &Facts, key: &str, arg: &str) -> Option<bool> {
    let stmts = &facts.statements;
    Some(match key {
        "kind" => stmts
            .iter()
            .any(|s| format!("{:?}", s.kind).to_lowercase() == arg),
        "read_only" => stmts.iter().all(|s| s.read_only),
        "construct" => stmts
            .iter()
            .any(|s| s.not_read_only.iter().any(|c| c.construct == arg)),
        "nested" => stmts.iter().any(|s| {
            s.nested_kinds
                .iter()
                .any(|k| format!("{k:?}").to_lowercase() == arg)
        }),
        "unclassified" => stmts.iter().any(|s| !s.unclassified.is_empty()),
        "statements" => facts.statement_count.to_string() == arg,
        "explain_analyze" => stmts
            .iter()
            .any(|s| s.explain.as_ref().is_some_and(|e| e.analyze)),
        "lockclause" => stmts
            .iter()
            .any(|s| s.locking.iter().any(|l| l.strength == arg)),
        _ => return None,
    })
}

/// Expectations on the relations: access, CTEs, pins, `INTO`.
fn relation_holds(facts: &Facts, key: &str, arg: &str) -> Option<bool> {
    let stmts = &facts.statements;
    let rel = |access: Access| {
        stmts.iter().any(|s| {
            s.relations
                .iter()
                .any(|r| r.access == access && !r.cte && r.qualified_name == arg)
        })
    };
    Some(match key {
        "read" => rel(Access::Read),
        "write" => rel(Access::Write),
        "lock" => rel(Access::Lock),
        "create" => rel(Access::Create),
        "cte" => stmts
            .iter()
            .any(|s| s.relations.iter().any(|r| r.cte && r.name == arg)),
        // `pin:S.T.COLUMN=V1|V2` — S.T's rows are pinned to those values of COLUMN.
        "pin" => {
            let (target, values) = arg.split_once('=').unwrap_or((arg, ""));
            let (table, column) = target.rsplit_once('.').unwrap_or(("", target));
            let values: Vec<&str> = values.split('|').collect();
            stmts.iter().any(|s| {
                s.relations.iter().any(|r| {
                    r.qualified_name == table
                        && r.pinned
                            .iter()
                            .any(|p| p.column == column && p.values == values)
                })
            })
        }
        // `unpinned:S.T` — S.T is read with no pins at all.
        "unpinned" => stmts.iter().any(|s| {
            s.relations
                .iter()
                .any(|r| r.qualified_name == arg && r.pinned.is_empty())
        }),
        "into" => stmts
            .iter()
            .any(|s| s.into.iter().any(|r| r.qualified_name == arg)),
        _ => return None,
    })
}

/// Expectations on calls: functions, risks, operators, settings.
fn call_holds(facts: &Facts, key: &str, arg: &str) -> Option<bool> {
    let stmts = &facts.statements;
    Some(match key {
        "fn" => stmts
            .iter()
            .any(|s| s.functions.iter().any(|f| f.qualified_name == arg)),
        "builtin_fn" => stmts.iter().any(|s| {
            s.functions
                .iter()
                .any(|f| f.qualified_name == arg && f.builtin)
        }),
        "risk" => stmts
            .iter()
            .any(|s| s.functions.iter().any(|f| f.risks.iter().any(|r| r == arg))),
        "setting" => {
            let (action, name) = arg.split_once(':').unwrap_or((arg, ""));
            stmts.iter().any(|s| {
                s.settings
                    .iter()
                    .any(|x| x.action == action && x.name.as_deref().unwrap_or("?") == name)
            })
        }
        "op" => stmts
            .iter()
            .any(|s| s.operators.iter().any(|o| o.name == arg)),
        "param" => stmts
            .iter()
            .any(|s| s.parameters.iter().any(|p| p.to_string() == arg)),
        _ => return None,
    })
}

/// Expectations on columns: named, reached by a way, `*`.
fn column_holds(facts: &Facts, key: &str, arg: &str) -> Option<bool> {
    let stmts = &facts.statements;
    Some(match key {
        "col" => {
            let (table, col) = arg.rsplit_once('.').unwrap_or(("", arg));
            stmts.iter().any(|s| {
                s.columns
                    .iter()
                    .any(|c| c.name == col && c.relations.iter().any(|r| **r == *table))
            })
        }
        // `via:HOW:S.T` — a column of S.T reached by HOW (`join_using`, `natural_join`, …).
        "via" => {
            let (via, table) = arg.split_once(':').unwrap_or((arg, ""));
            stmts.iter().any(|s| {
                s.columns.iter().any(|c| {
                    serde_json::to_value(c.via).unwrap() == via
                        && c.relations.iter().any(|r| **r == *table)
                })
            })
        }
        "star" => stmts.iter().any(|s| {
            s.columns
                .iter()
                .any(|c| c.star && c.relations.iter().any(|r| **r == *arg))
        }),
        // `use:PLACE:S.T.COLUMN` — a reference to the column sits at PLACE (`projection`,
        // `where`, `order_by`, …).
        "use" => {
            let (place, target) = arg.split_once(':').unwrap_or((arg, ""));
            let (table, col) = target.rsplit_once('.').unwrap_or(("", target));
            stmts.iter().any(|s| {
                s.columns.iter().any(|c| {
                    c.name == col
                        && c.relations.iter().any(|r| **r == *table)
                        && serde_json::to_value(c.use_).unwrap() == place
                })
            })
        }
        _ => return None,
    })
}

/// Blocks of a peer corpus file: `(expect allow?, source, sql)`.
pub fn peer_cases(text: &str) -> Vec<(bool, String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(bool, String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-- expect:") {
            if let Some(c) = current.take() {
                out.push(c);
            }
            current = Some((rest.trim() == "allow", String::new(), String::new()));
        } else if let Some(c) = current.as_mut() {
            if let Some(src) = line.strip_prefix("-- source:") {
                c.1 = src.trim().to_string();
            } else if line.starts_with("-- note:") {
                continue;
            } else {
                c.2.push_str(line);
                c.2.push('\n');
            }
        }
    }
    out.extend(current);
    for c in &mut out {
        c.2 = c.2.trim().to_string();
    }
    out
}

/// Every statement of the corpora: the peers' cases, TPC-H, PostgreSQL's regression SQL.
pub fn corpus_statements() -> Vec<String> {
    let Some(dir) = corpus_dir() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let read_dir = |sub: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    };
    for path in read_dir("peers") {
        let text = std::fs::read_to_string(&path).unwrap();
        out.extend(peer_cases(&text).into_iter().map(|c| c.2));
    }
    for sub in ["tpch", "pg_regress"] {
        for path in read_dir(sub) {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            match pg_query::split_with_scanner(&text) {
                Ok(stmts) => out.extend(stmts.into_iter().map(str::to_string)),
                Err(_) => out.push(text),
            }
        }
    }
    out
}
