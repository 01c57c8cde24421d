//! Queries and the statements that change rows: `SelectStmt` (its `WITH`, `LIMIT`/`OFFSET`,
//! `GROUP BY`, `DISTINCT`, window and aggregate facts), `InsertStmt`, `UpdateStmt`,
//! `DeleteStmt`, `MergeStmt`, `SELECT … INTO` and `FOR UPDATE`/`FOR SHARE` (`LockingClause`).

use super::*;

/// PostgreSQL 15's built-in aggregates (`pg_proc.prokind = 'a'`; a test derives the list
/// from the cluster's catalog).
pub const BUILTIN_AGGREGATES: &[&str] = &[
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "cume_dist",
    "dense_rank",
    "every",
    "json_agg",
    "json_object_agg",
    "jsonb_agg",
    "jsonb_object_agg",
    "max",
    "min",
    "mode",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "range_agg",
    "range_intersect_agg",
    "rank",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "sum",
    "var_pop",
    "var_samp",
    "variance",
    "xmlagg",
];

impl<'t, 'a> Walker<'t, 'a> {
    /// Pushes the CTE names of a `WITH` and walks their bodies with PostgreSQL's scoping:
    /// in a plain `WITH`, a CTE sees only the CTEs before it (so `WITH users AS (SELECT *
    /// FROM users)` reads the table: threat model, class 12); in `WITH RECURSIVE`, all.
    /// Returns whether a scope was pushed.
    pub(super) fn with_clause(&mut self, owner: &str, body: Id) -> bool {
        let Some(with) = self.tree.get(body, "withClause") else {
            return false;
        };
        let recursive = self.tree.get_bool(with, "recursive");
        let ctes: Vec<(String, Id)> = self
            .tree
            .get(with, "ctes")
            .map(|list| {
                self.tree
                    .members(list)
                    .iter()
                    .filter_map(|m| wrapper(self.tree, m.id()))
                    .filter(|(ty, _)| *ty == "CommonTableExpr")
                    .map(|(_, cte)| {
                        (
                            self.tree.get_str(cte, "ctename").unwrap_or("").to_string(),
                            cte,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<String> = ctes.iter().map(|(n, _)| n.clone()).collect();
        self.ctes
            .push(if recursive { names.clone() } else { Vec::new() });
        let depth = self.ctes.len();
        for (name, cte) in &ctes {
            let query = self
                .tree
                .get(*cte, "ctequery")
                .and_then(|q| wrapper(self.tree, q));
            if let Some((qty, _)) = query {
                if let Some(kind) = statement_kind(qty) {
                    if kind.is_dml() {
                        self.construct(
                            "data_modifying_cte",
                            format!("{} in WITH query \"{name}\"", statement_label(qty)),
                        );
                    }
                }
            }
            // A CTE's query passes to the queries that read it.
            self.pending_output = query.filter(|(ty, _)| *ty == "SelectStmt").map(|(_, b)| b);
            self.passes = None;
            self.fields("CommonTableExpr", *cte, READ, &[]);
            if let Some(passes) = self.passes.take() {
                // `WITH c(a, b) AS (…)` renames its first columns.
                if self
                    .tree
                    .get(*cte, "aliascolnames")
                    .is_some_and(|c| !self.tree.members(c).is_empty())
                {
                    self.emit_passes(&passes, None, ColumnVia::ColumnAliases);
                }
                self.cte_passes.push((depth, name.clone(), passes));
            }
            if !recursive {
                if let Some(scope) = self.ctes.last_mut() {
                    scope.push(name.clone());
                }
            }
        }
        // Fields of the WITH clause other than its CTEs (none today) still get walked.
        self.fields("WithClause", with, READ, &["ctes"]);
        let _ = owner;
        true
    }

    pub(super) fn is_cte(&self, name: &str) -> bool {
        self.ctes
            .iter()
            .rev()
            .any(|scope| scope.iter().any(|n| n == name))
    }

    pub(super) fn select(&mut self, body: Id) {
        self.selects += 1;
        if self.selects == 1 && self.facts.node == "SelectStmt" {
            self.query_shape(body);
        }
        let output = self.pending_output == Some(body);
        if output {
            self.pending_output = None;
        }
        let around = self.use_;
        let pushed = self.with_clause("SelectStmt", body);
        self.levels.push(Vec::new());
        self.use_ = ColumnUse::From;
        let catalog_items = self.walk_from_clause(body);
        if !catalog_items.is_empty() {
            self.pin_catalog_relations(body, &catalog_items);
        }
        if let Some(into) = self.tree.get(body, "intoClause") {
            self.construct("select_into", "SELECT … INTO creates a table");
            self.select_into(into);
        }
        if let Some(locks) = self.tree.get(body, "lockingClause") {
            for i in 0..self.tree.members(locks).len() {
                let el = self.tree.members(locks)[i].id();
                match wrapper(self.tree, el) {
                    Some(("LockingClause", lc)) => self.locking_clause(lc),
                    _ => self.value("SelectStmt", "lockingClause", el, READ),
                }
            }
        }
        // Where this query's select list sends its values.
        let list = if !output {
            if around == ColumnUse::SetOperation {
                ColumnUse::SetOperation
            } else {
                ColumnUse::Subquery
            }
        } else if self.tree.get(body, "distinctClause").is_some() {
            ColumnUse::Distinct
        } else {
            ColumnUse::Projection
        };
        let mut passes = Vec::new();
        for m in self.tree.members(body) {
            let (key, id) = (m.key(), m.id());
            self.use_ = match key {
                "withClause" | "fromClause" | "intoClause" | "lockingClause" => continue,
                "targetList" => {
                    self.target_list(body, id, list, &mut passes);
                    continue;
                }
                "whereClause" => ColumnUse::Where,
                "groupClause" => ColumnUse::GroupBy,
                "havingClause" => ColumnUse::Having,
                "sortClause" => ColumnUse::OrderBy,
                "windowClause" => ColumnUse::Window,
                "distinctClause" => ColumnUse::Distinct,
                "limitCount" | "limitOffset" => ColumnUse::Limit,
                "valuesLists" => ColumnUse::From,
                "larg" | "rarg" => ColumnUse::SetOperation,
                _ => ColumnUse::Other,
            };
            self.value("SelectStmt", key, id, READ);
        }
        self.use_ = around;
        self.levels.pop();
        if pushed {
            self.ctes.pop();
            let depth = self.ctes.len();
            self.cte_passes.retain(|(d, _, _)| *d < depth);
        }
        if output {
            self.passes = Some(Arc::from(passes));
        }
        self.selects -= 1;
    }

    /// A select list. Where it passes to the result (`list` is `Projection`), an entry that is
    /// a bare column reference returns the column as it is, unless `ORDER BY` or `GROUP BY`
    /// names the entry by its position or output name (they then compare its values); what
    /// such entries pass through is added to `passes`.
    fn target_list(&mut self, body: Id, list_id: Id, list: ColumnUse, passes: &mut Vec<Pass>) {
        let t = self.tree;
        let projection = list == ColumnUse::Projection;
        let (positions, names) = if projection {
            self.sort_and_group_refs(body)
        } else {
            (Vec::new(), Vec::new())
        };
        // Only a subquery's or CTE's select list passes to a query that reads it.
        let wants_passes = projection && self.selects > 1;
        let entries = t.members(list_id);
        let has_star = !positions.is_empty() && entries.iter().any(|m| self.is_star_target(m.id()));
        let in_expressions = if projection {
            ColumnUse::Expression
        } else {
            list
        };
        for (k, m) in entries.iter().enumerate() {
            let el = m.id();
            let Some(("ResTarget", rt)) = wrapper(t, el) else {
                self.use_ = in_expressions;
                self.value("SelectStmt", "targetList", el, READ);
                continue;
            };
            let column = t
                .get(rt, "val")
                .and_then(|v| wrapper(t, v))
                .filter(|(ty, _)| *ty == "ColumnRef");
            let out = if wants_passes || !names.is_empty() {
                t.get_str(rt, "name")
                    .map(str::to_string)
                    .or_else(|| column.and_then(|(_, c)| self.name_list(t.get(c, "fields")?).pop()))
            } else {
                None
            };
            let named_by_sort = has_star
                || positions.contains(&(k as i64 + 1))
                || out.as_ref().is_some_and(|o| names.contains(o));
            let bare = projection && column.is_some() && !named_by_sort;
            for f in t.members(rt) {
                if f.key() != "val" {
                    self.use_ = in_expressions;
                    self.value("ResTarget", f.key(), f.id(), READ);
                    continue;
                }
                self.use_ = match (bare, named_by_sort && projection) {
                    (true, _) => ColumnUse::Projection,
                    (false, true) => ColumnUse::OrderBy,
                    (false, false) => in_expressions,
                };
                if bare && wants_passes {
                    let star = self.is_star_target(el);
                    self.collecting = Some((if star { None } else { out.clone() }, Vec::new()));
                }
                self.value("ResTarget", "val", f.id(), READ);
                if let Some((_, p)) = self.collecting.take() {
                    passes.extend(p);
                }
            }
        }
    }

    /// Is select-list entry `el` a `*` or `t.*`?
    fn is_star_target(&self, el: Id) -> bool {
        let t = self.tree;
        wrapper(t, el)
            .filter(|(ty, _)| *ty == "ResTarget")
            .and_then(|(_, rt)| wrapper(t, t.get(rt, "val")?))
            .filter(|(ty, _)| *ty == "ColumnRef")
            .and_then(|(_, c)| t.get(c, "fields"))
            .is_some_and(|f| {
                t.members(f)
                    .last()
                    .is_some_and(|m| matches!(wrapper(t, m.id()), Some(("A_Star", _))))
            })
    }

    /// The select-list entries `ORDER BY` and `GROUP BY` (and grouping sets) name by
    /// position (`ORDER BY 2`) or by a bare name, which may be an output name (`ORDER BY e`).
    fn sort_and_group_refs(&self, body: Id) -> (Vec<i64>, Vec<String>) {
        let t = self.tree;
        let mut positions = Vec::new();
        let mut names = Vec::new();
        let mut stack: Vec<Id> = Vec::new();
        for key in ["sortClause", "groupClause", "distinctClause"] {
            if let Some(l) = t.get(body, key) {
                stack.extend(t.members(l).iter().map(Member::id));
            }
        }
        while let Some(id) = stack.pop() {
            match wrapper(t, id) {
                Some(("SortBy", sb)) => stack.extend(t.get(sb, "node")),
                Some(("GroupingSet", gs)) => {
                    if let Some(c) = t.get(gs, "content") {
                        stack.extend(t.members(c).iter().map(Member::id));
                    }
                }
                Some(("RowExpr", r)) => {
                    if let Some(a) = t.get(r, "args") {
                        stack.extend(t.members(a).iter().map(Member::id));
                    }
                }
                Some(("A_Const", c)) => {
                    if let Some(n) = t.get(c, "ival").and_then(|i| t.get_i64(i, "ival")) {
                        positions.push(n);
                    } else if t.get(c, "ival").is_some() {
                        positions.push(0);
                    }
                }
                Some(("ColumnRef", _)) => {
                    if let Some((None, n)) = self.column_name(id) {
                        names.push(n);
                    }
                }
                _ => {}
            }
        }
        (positions, names)
    }

    /// `LIMIT`, `OFFSET`, `GROUP BY`, `DISTINCT`, `WINDOW` and `ORDER BY` of the statement's
    /// outermost query, for rules such as "a LIMIT of at most 1000, or an aggregate".
    pub(super) fn query_shape(&mut self, body: Id) {
        let t = self.tree;
        let present = |key: &str| t.get(body, key).is_some_and(|l| !t.members(l).is_empty());
        self.facts.limit = t.get(body, "limitCount").and_then(|c| self.row_bound(c));
        self.facts.offset = t.get(body, "limitOffset").and_then(|c| self.row_bound(c));
        self.facts.group_by = present("groupClause");
        self.facts.distinct = t.get(body, "distinctClause").is_some();
        self.facts.window = present("windowClause");
        self.facts.order_by = present("sortClause");
    }

    /// A `LIMIT`/`OFFSET` value: a whole-number constant, `None` for `ALL`/`NULL`, or an
    /// expression.
    pub(super) fn row_bound(&self, id: Id) -> Option<RowBound> {
        let t = self.tree;
        match wrapper(t, id) {
            Some(("A_Const", body)) if t.get_bool(body, "isnull") => None,
            Some(("A_Const", body)) if t.get(body, "ival").is_some() => self
                .string_literal(id)
                .and_then(|v| v.parse().ok())
                .map(RowBound::Count)
                .or(Some(RowBound::Expression("expression".into()))),
            _ => Some(RowBound::Expression("expression".into())),
        }
    }

    /// Marks the call just recorded (the last of `facts.functions`) when it is an aggregate or
    /// window call of the outermost query.
    pub(super) fn aggregate_call(&mut self, body: Id) {
        if self.selects != 1 || self.facts.node != "SelectStmt" {
            return;
        }
        if self.tree.get(body, "over").is_some() {
            self.facts.window = true;
            return;
        }
        let Some(call) = self.facts.functions.last() else {
            return;
        };
        let aggregate = if call.builtin {
            BUILTIN_AGGREGATES.contains(&call.name.as_str())
        } else {
            self.opts.snapshot().is_some_and(|snap| {
                snap.functions.iter().any(|f| {
                    f.kind == "aggregate"
                        && f.name == call.name
                        && call.schema.as_ref().is_none_or(|s| *s == f.schema)
                })
            })
        };
        if aggregate {
            self.facts.aggregate = true;
            if !self.facts.aggregates.contains(&call.name) {
                let name = call.name.clone();
                self.facts.aggregates.push(name);
            }
        }
    }

    pub(super) fn dml(&mut self, ty: &str, body: Id) {
        let pushed = self.with_clause(ty, body);
        self.levels.push(Vec::new());
        if let Some(rel) = self.tree.get(body, "relation") {
            self.range_var(rel, Access::Write);
        }
        // MERGE's source, UPDATE … FROM and DELETE … USING are read.
        for f in ["sourceRelation", "fromClause", "usingClause"] {
            if let Some(items) = self.tree.get(body, f) {
                if matches!(self.tree.value(items), Value::Array { .. }) {
                    for i in 0..self.tree.members(items).len() {
                        self.mark_from_item(self.tree.members(items)[i].id());
                    }
                } else {
                    self.mark_from_item(items);
                }
            }
            self.field(ty, body, f, READ);
        }
        if let Some(oc) = self.tree.get(body, "onConflictClause") {
            if self.tree.get_str(oc, "action") == Some("ONCONFLICT_UPDATE") {
                self.construct("data_modifying_statement", "INSERT … ON CONFLICT DO UPDATE");
            }
        }
        self.fields(
            ty,
            body,
            READ,
            &[
                "withClause",
                "relation",
                "sourceRelation",
                "fromClause",
                "usingClause",
            ],
        );
        self.levels.pop();
        if pushed {
            self.ctes.pop();
        }
    }

    pub(super) fn select_into(&mut self, into: Id) {
        if let Some(rel) = self.tree.get(into, "rel") {
            let before = self.facts.relations.len();
            self.range_var(rel, Access::Create);
            if let Some(r) = self.facts.relations.get(before).cloned() {
                self.facts.into.push(r);
            }
        }
        self.fields("IntoClause", into, READ, &["rel"]);
    }

    pub(super) fn locking_clause(&mut self, lc: Id) {
        let strength = match self.tree.get_str(lc, "strength") {
            Some("LCS_FORKEYSHARE") => ("for_key_share", "FOR KEY SHARE"),
            Some("LCS_FORSHARE") => ("for_share", "FOR SHARE"),
            Some("LCS_FORNOKEYUPDATE") => ("for_no_key_update", "FOR NO KEY UPDATE"),
            Some("LCS_FORUPDATE") => ("for_update", "FOR UPDATE"),
            _ => ("unknown", "the locking clause"),
        };
        let mut of = Vec::new();
        if let Some(rels) = self.tree.get(lc, "lockedRels") {
            for Member { id: el, .. } in self.tree.members(rels) {
                let body = wrapper(self.tree, *el).map(|(_, b)| b).unwrap_or(*el);
                if let Some(n) = self.tree.get_str(body, "relname") {
                    of.push(n.to_string());
                }
            }
        }
        // The locked tables: those named in OF (by alias), else every table of this level.
        let level = self.levels.last();
        let locked: Vec<Arc<str>> = level
            .map(|items| {
                items
                    .iter()
                    .filter(|it| of.is_empty() || of.contains(&it.name))
                    .flat_map(|it| it.relations.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        for q in locked {
            if let Some(r) = self
                .facts
                .relations
                .iter()
                .find(|r| *r.qualified_name == *q)
                .cloned()
            {
                self.facts.relations.push(Relation {
                    access: Access::Lock,
                    ..r
                });
            }
        }
        self.construct("row_lock", format!("{} locks rows", strength.1));
        self.facts.locking.push(Locking {
            strength: strength.0.to_string(),
            of,
            clause: strength.1.to_string(),
        });
        self.fields(
            "LockingClause",
            lc,
            Ctx {
                access: Access::Lock,
            },
            &["lockedRels"],
        );
    }
}
