//! Utility statements: `ExplainStmt`, `VariableSetStmt` (`SET`, `RESET`), `TransactionStmt`
//! and `CopyStmt`.

use super::*;

impl<'t, 'a> Walker<'t, 'a> {
    pub(super) fn explain(&mut self, body: Id) {
        let mut options = Vec::new();
        let mut analyze = false;
        if let Some(list) = self.tree.get(body, "options") {
            for Member { id: el, .. } in self.tree.members(list) {
                let Some(("DefElem", d)) = wrapper(self.tree, *el) else {
                    continue;
                };
                let name = self.tree.get_str(d, "defname").unwrap_or("").to_lowercase();
                let value = self
                    .tree
                    .get(d, "arg")
                    .map(|a| self.def_value(a))
                    .unwrap_or_else(|| "true".into());
                if name == "analyze" {
                    // PostgreSQL's defGetBoolean: anything but an explicit false is true.
                    analyze = !matches!(
                        value.to_lowercase().as_str(),
                        "false" | "off" | "0" | "f" | "no" | "n"
                    );
                }
                options.push((name, value));
            }
        }
        let inner = self.tree.get(body, "query");
        let mut sub = Walker::new(self.tree, self.opts, self.facts.index);
        sub.depth = self.depth;
        let (inner_facts, deep) = match inner {
            Some(q) => sub.statement(q),
            None => (
                new_facts(self.facts.index, "", StatementKind::Utility),
                false,
            ),
        };
        self.too_deep |= deep;
        let f = &mut self.facts;
        f.nested_kinds.push(inner_facts.kind);
        f.nested_kinds
            .extend(inner_facts.nested_kinds.iter().copied());
        f.relations.extend(inner_facts.relations.iter().cloned());
        f.functions.extend(inner_facts.functions.iter().cloned());
        f.operators.extend(inner_facts.operators.iter().cloned());
        f.columns.extend(inner_facts.columns.iter().cloned());
        f.settings.extend(inner_facts.settings.iter().cloned());
        f.locking.extend(inner_facts.locking.iter().cloned());
        f.into.extend(inner_facts.into.iter().cloned());
        f.unclassified
            .extend(inner_facts.unclassified.iter().cloned());
        f.parameters.extend(inner_facts.parameters.iter().copied());
        if analyze && !inner_facts.read_only {
            self.construct(
                "explain_analyze_write",
                format!(
                    "EXPLAIN ANALYZE executes the {} statement",
                    statement_label(&inner_facts.node)
                ),
            );
            self.facts
                .not_read_only
                .extend(inner_facts.not_read_only.iter().cloned());
        }
        self.facts.explain = Some(Explain {
            analyze,
            options,
            statement: Box::new(inner_facts),
        });
        self.fields("ExplainStmt", body, READ, &["options", "query"]);
    }

    /// The value of a `DefElem` argument as written.
    pub(super) fn def_value(&self, id: Id) -> String {
        if let Some(s) = self.string_literal(id) {
            return s;
        }
        match wrapper(self.tree, id) {
            Some(("String", s)) => self.tree.get_str(s, "sval").unwrap_or("").to_string(),
            Some(("Boolean", b)) => self.tree.get_bool(b, "boolval").to_string(),
            Some(("Integer", i)) => self.tree.get_i64(i, "ival").unwrap_or(0).to_string(),
            Some(("Float", f)) => self.tree.get_str(f, "fval").unwrap_or("").to_string(),
            Some((ty, _)) => format!("<{ty}>"),
            None => String::new(),
        }
    }

    /// `SET TRANSACTION …` and `SET SESSION CHARACTERISTICS AS TRANSACTION …` (`DefElem`s):
    /// each characteristic is a setting; switching to READ WRITE is a construct.
    fn transaction_characteristics(
        &mut self,
        args: &[Id],
        action: &str,
        local: bool,
        session: bool,
    ) {
        let mut read_only = None;
        for a in args {
            if let Some(("DefElem", d)) = wrapper(self.tree, *a) {
                let opt = self.tree.get_str(d, "defname").unwrap_or("");
                let val = self.tree.get(d, "arg").map(|v| self.def_value(v));
                if opt == "transaction_read_only" {
                    read_only = val.as_deref().map(|v| v != "0" && v != "false");
                }
                let setting = if session {
                    format!("default_{opt}")
                } else {
                    opt.to_string()
                };
                self.facts.settings.push(SettingAccess {
                    name: Some(setting),
                    action: action.into(),
                    local,
                    value: val,
                });
            }
        }
        if read_only == Some(false) {
            self.construct(
                "read_write_transaction",
                "switches the transaction to READ WRITE",
            );
        }
    }

    pub(super) fn variable_set(&mut self, body: Id) {
        let kind = self.tree.get_str(body, "kind").unwrap_or("");
        let name = self.tree.get_str(body, "name").map(str::to_lowercase);
        let local = self.tree.get_bool(body, "is_local");
        let (action, stmt_kind) = match kind {
            "VAR_RESET" | "VAR_RESET_ALL" => ("reset", StatementKind::Reset),
            _ => ("set", StatementKind::Set),
        };
        if self.facts.node == "VariableSetStmt" {
            self.facts.kind = stmt_kind;
        }
        let args: Vec<Id> = self
            .tree
            .get(body, "args")
            .map(|a| self.tree.members(a).iter().map(Member::id).collect())
            .unwrap_or_default();
        match name.as_deref() {
            // SET TRANSACTION / SET SESSION CHARACTERISTICS AS TRANSACTION carry DefElems.
            Some("transaction") | Some("session characteristics") => {
                let session = name.as_deref() == Some("session characteristics");
                self.transaction_characteristics(&args, action, local, session);
            }
            _ => {
                let value = if args.is_empty() {
                    None
                } else {
                    Some(
                        args.iter()
                            .map(|a| self.def_value(*a))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                };
                let target = match kind {
                    "VAR_RESET_ALL" => Some("all".to_string()),
                    _ => name.clone(),
                };
                if matches!(
                    target.as_deref(),
                    Some("role") | Some("session_authorization")
                ) {
                    self.construct(
                        "identity_switch",
                        format!("SET {}", target.as_deref().unwrap_or("")),
                    );
                }
                self.facts.settings.push(SettingAccess {
                    name: target,
                    action: action.into(),
                    local,
                    value,
                });
            }
        }
        self.fields("VariableSetStmt", body, READ, &["args"]);
    }

    pub(super) fn transaction(&mut self, body: Id) {
        let action = match self.tree.get_str(body, "kind").unwrap_or("") {
            "TRANS_STMT_BEGIN" => "begin",
            "TRANS_STMT_START" => "start",
            "TRANS_STMT_COMMIT" => "commit",
            "TRANS_STMT_ROLLBACK" => "rollback",
            "TRANS_STMT_SAVEPOINT" => "savepoint",
            "TRANS_STMT_RELEASE" => "release",
            "TRANS_STMT_ROLLBACK_TO" => "rollback_to",
            "TRANS_STMT_PREPARE" => "prepare",
            "TRANS_STMT_COMMIT_PREPARED" => "commit_prepared",
            "TRANS_STMT_ROLLBACK_PREPARED" => "rollback_prepared",
            _ => "unknown",
        };
        let mut read_only = None;
        if let Some(opts) = self.tree.get(body, "options") {
            for Member { id: el, .. } in self.tree.members(opts) {
                if let Some(("DefElem", d)) = wrapper(self.tree, *el) {
                    if self.tree.get_str(d, "defname") == Some("transaction_read_only") {
                        let v = self.tree.get(d, "arg").map(|a| self.def_value(a));
                        read_only = v.as_deref().map(|v| v != "0" && v != "false");
                    }
                }
            }
        }
        if read_only == Some(false) {
            self.construct("read_write_transaction", "starts a READ WRITE transaction");
        }
        self.facts.transaction = Some(Transaction {
            action: action.into(),
            read_only,
        });
        self.fields("TransactionStmt", body, READ, &["options"]);
    }

    pub(super) fn copy(&mut self, body: Id) {
        let from = self.tree.get_bool(body, "is_from");
        let program = self.tree.get_bool(body, "is_program");
        let file = self.tree.get_str(body, "filename").map(str::to_string);
        if let Some(rel) = self.tree.get(body, "relation") {
            self.levels.push(Vec::new());
            self.range_var(rel, if from { Access::Write } else { Access::Read });
            self.levels.pop();
        }
        let target = match (program, &file) {
            (true, Some(f)) => format!("PROGRAM '{f}'"),
            (false, Some(f)) => format!("server file '{f}'"),
            _ => if from { "STDIN" } else { "STDOUT" }.to_string(),
        };
        self.construct(
            "copy",
            format!("COPY {} {target}", if from { "FROM" } else { "TO" }),
        );
        self.fields("CopyStmt", body, READ, &["relation"]);
    }
}
