//! FROM items and the names they bring into scope: `RangeVar`, `JoinExpr`, `RangeSubselect`,
//! `RangeFunction`, `RangeTableSample`; relations resolved against the catalog, and
//! `ColumnRef`s (named, `*`, whole-row) attributed to the relations of their query level.

use super::expressions::BUILTIN_TYPES;
use super::*;

/// The relation PostgreSQL resolves `rel` to in the database's catalog: the first of its
/// candidate schemas that holds one of that name.
pub(super) fn found_relation<'s>(
    snap: &'s crate::analysis::snapshot::Snapshot,
    rel: &Relation,
) -> Option<&'s crate::analysis::snapshot::RelationDef> {
    rel.candidates
        .iter()
        .find_map(|s| snap.relation(s, &rel.name))
}

/// The tables behind a FROM item, and what it passes through (a subquery or CTE).
pub(super) type ItemColumns = (Vec<Arc<str>>, Option<Arc<[Pass]>>);

impl<'t, 'a> Walker<'t, 'a> {
    /// Walks a `SELECT`'s `FROM` list. Returns the catalog relations listed in it directly
    /// (not inside a join, no column aliases): their visible name and their index in
    /// `facts.relations`, for [`Self::pin_catalog_relations`].
    pub(super) fn walk_from_clause(&mut self, body: Id) -> Vec<(String, usize)> {
        let mut direct = Vec::new();
        let Some(from) = self.tree.get(body, "fromClause") else {
            return direct;
        };
        if !matches!(self.tree.value(from), Value::Array { .. }) {
            self.mark_from_item(from);
            self.value("SelectStmt", "fromClause", from, READ);
            return direct;
        }
        for i in 0..self.tree.members(from).len() {
            let el = self.tree.members(from)[i].id();
            self.mark_from_item(el);
            let index = self.facts.relations.len();
            self.value("SelectStmt", "fromClause", el, READ);
            let Some(("RangeVar", rv)) = wrapper(self.tree, el) else {
                continue;
            };
            let alias = self.tree.get(rv, "alias");
            if alias.is_some_and(|a| self.has_colnames(a)) {
                continue;
            }
            if let Some(r) = self.facts.relations.get(index) {
                if r.builtin && !r.cte {
                    let name = alias
                        .and_then(|a| self.tree.get_str(a, "aliasname"))
                        .unwrap_or(&r.name)
                        .to_string();
                    direct.push((name, index));
                }
            }
        }
        direct
    }

    /// Records the columns that the `WHERE` of a query level pins to constants for each
    /// catalog relation of its `FROM` list (see [`Relation::pinned`]). A relation gets no
    /// pins when another condition of that `WHERE` may touch its columns: PostgreSQL does not
    /// promise to evaluate the pinning condition first, so `WHERE name = 'work_mem' AND
    /// setting::int > 0` can fail with another setting's value in its error message.
    pub(super) fn pin_catalog_relations(&mut self, body: Id, items: &[(String, usize)]) {
        let Some(filter) = self.tree.get(body, "whereClause") else {
            return;
        };
        let mut conjuncts = Vec::new();
        self.conjuncts(filter, &mut conjuncts);
        let mut pins: Vec<(Option<String>, Pin)> = Vec::new();
        // Qualifiers of the columns other conditions name (`None`: unqualified, any table).
        let mut touched: Vec<Option<String>> = Vec::new();
        for c in conjuncts {
            match self.pin(c) {
                Some(pin) => pins.push(pin),
                None => self.column_qualifiers(c, &mut touched),
            }
        }
        let applies =
            |qualifier: &Option<String>, name: &str| qualifier.as_deref().is_none_or(|q| q == name);
        for (name, index) in items {
            if touched.iter().any(|q| applies(q, name)) {
                continue;
            }
            self.facts.relations[*index].pinned = pins
                .iter()
                .filter(|(q, _)| applies(q, name))
                .map(|(_, p)| p.clone())
                .collect();
        }
    }

    /// The operands of a condition's top-level `AND`s.
    pub(super) fn conjuncts(&self, id: Id, out: &mut Vec<Id>) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            match wrapper(self.tree, id) {
                Some(("BoolExpr", b)) if self.tree.get_str(b, "boolop") == Some("AND_EXPR") => {
                    if let Some(args) = self.tree.get(b, "args") {
                        stack.extend(self.tree.members(args).iter().rev().map(Member::id));
                    }
                }
                _ => out.push(id),
            }
        }
    }

    /// `col = 'x'`, `'x' = t.col`, `col IN ('x', 'y')`: the column's qualifier and the pin.
    pub(super) fn pin(&self, id: Id) -> Option<(Option<String>, Pin)> {
        let (ty, e) = wrapper(self.tree, id)?;
        if ty != "A_Expr" || self.name_list(self.tree.get(e, "name")?) != ["="] {
            return None;
        }
        let (l, r) = (self.tree.get(e, "lexpr")?, self.tree.get(e, "rexpr")?);
        let (column, values) = match self.tree.get_str(e, "kind")? {
            "AEXPR_OP" => match (self.column_name(l), self.column_name(r)) {
                (Some(c), None) => (c, vec![self.string_literal(r)?]),
                (None, Some(c)) => (c, vec![self.string_literal(l)?]),
                _ => return None,
            },
            "AEXPR_IN" => {
                let (_, list) = wrapper(self.tree, r).filter(|(t, _)| *t == "List")?;
                let items = self.tree.get(list, "items")?;
                let values = self
                    .tree
                    .members(items)
                    .iter()
                    .map(|m| self.string_literal(m.id()))
                    .collect::<Option<Vec<_>>>()?;
                (self.column_name(l)?, values)
            }
            _ => return None,
        };
        let (qualifier, column) = column;
        Some((qualifier, Pin { column, values }))
    }

    /// A `ColumnRef` naming a column: `(qualifier, column)`.
    pub(super) fn column_name(&self, id: Id) -> Option<(Option<String>, String)> {
        let (ty, c) = wrapper(self.tree, id)?;
        if ty != "ColumnRef" {
            return None;
        }
        let parts = self.name_list(self.tree.get(c, "fields")?);
        if parts.len() != self.tree.members(self.tree.get(c, "fields")?).len() {
            return None; // `t.*`
        }
        match parts.as_slice() {
            [column] => Some((None, column.clone())),
            [.., qualifier, column] => Some((Some(qualifier.clone()), column.clone())),
            [] => None,
        }
    }

    /// Qualifiers of every column reference inside `id` (`None` for an unqualified one).
    pub(super) fn column_qualifiers(&self, id: Id, out: &mut Vec<Option<String>>) {
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            for m in self.tree.members(id) {
                let v = &m.id;
                if m.key() == "ColumnRef" {
                    let fields = self.tree.get(*v, "fields");
                    let parts = fields.map(|f| self.name_list(f)).unwrap_or_default();
                    let n = fields.map_or(0, |f| self.tree.members(f).len());
                    // `t.col` and `t.*` name t; `col` and `*` any table.
                    out.push(match n {
                        0 | 1 => None,
                        _ => parts.get(n - 2).cloned(),
                    });
                } else {
                    stack.push(*v);
                }
            }
        }
    }

    pub(super) fn range_var(&mut self, body: Id, access: Access) {
        let t = self.tree;
        let name = t.get_str(body, "relname").unwrap_or("").to_string();
        let schema = t.get_str(body, "schemaname").map(str::to_string);
        let alias = t
            .get(body, "alias")
            .and_then(|a| t.get_str(a, "aliasname"))
            .map(str::to_string);
        let rel = if schema.is_none() && access != Access::Write && self.is_cte(&name) {
            Relation {
                schema: None,
                candidates: Vec::new(),
                qualified: false,
                access,
                cte: true,
                builtin: false,
                qualified_name: name.clone(),
                name: name.clone(),
                pinned: Vec::new(),
                kind: None,
                rows_estimate: None,
                foreign: false,
                foreign_server: None,
                ancestors: Vec::new(),
                view_reads: Vec::new(),
                view_tables: Vec::new(),
                descendants: Vec::new(),
                stats_of: None,
            }
        } else {
            let mut rel = self.resolve_relation(schema, name.clone(), access);
            // `ONLY t` reads none of t's partitions and children.
            if !t.get_bool(body, "inh") {
                rel.descendants.clear();
            }
            rel
        };
        // Its columns' types, unless column aliases rename them.
        let opts: &'t AnalysisOptions = self.opts;
        let columns = match (&rel.cte, opts.snapshot()) {
            (false, Some(snap)) if !t.get(body, "alias").is_some_and(|a| self.has_colnames(a)) => {
                found_relation(snap, &rel).and_then(|r| r.columns.as_deref())
            }
            _ => None,
        };
        // A partition's or child table's columns are its parents' columns too, and a parent's
        // are those of the partitions and children it reads.
        let relations: Vec<Arc<str>> = (!rel.cte)
            .then_some(rel.qualified_name.as_str())
            .into_iter()
            .chain(rel.ancestors.iter().map(String::as_str))
            .chain(rel.descendants.iter().map(String::as_str))
            .map(Arc::from)
            .collect();
        // A CTE's columns are those its query passes through.
        let passes = if rel.cte {
            self.cte_passes_of(&name)
        } else {
            None
        };
        // `FROM vault AS v(a, b)` reads vault's first columns under new names: without the
        // catalog it is unknown which, so it counts as reading them all.
        if t.get(body, "alias").is_some_and(|a| self.has_colnames(a)) {
            self.push_column("*", relations.clone(), ColumnVia::ColumnAliases);
            if let Some(p) = &passes {
                self.emit_passes(p, None, ColumnVia::ColumnAliases);
            }
        }
        if let Some(level) = self.levels.last_mut() {
            level.push(ScopeItem {
                name: alias.unwrap_or_else(|| name.clone()),
                relations,
                columns,
                passes,
            });
        }
        self.facts.relations.push(rel);
        // Every other field (alias column lists, catalog name) is still walked.
        self.fields("RangeVar", body, READ, &["relname", "schemaname", "alias"]);
    }

    /// The schemas an unqualified relation name may resolve to, through the pinned
    /// `search_path` (a system schema that holds it ends the list), and whether it is a
    /// system relation. Creating resolves to the path's first schema.
    fn candidate_schemas(
        &self,
        name: &str,
        access: Access,
        system: impl Fn(&str, &str) -> bool,
    ) -> (Vec<String>, bool) {
        let mut candidates = Vec::new();
        let mut builtin = false;
        for s in self.opts.effective_search_path() {
            if is_system_schema(s) {
                if system(s, name) {
                    candidates.push(s.to_string());
                    builtin = true;
                    break;
                }
            } else {
                candidates.push(s.to_string());
            }
        }
        if candidates.is_empty() {
            candidates.push(self.opts.first_schema().to_string());
        }
        if access == Access::Create {
            candidates.truncate(1);
            builtin = false;
        }
        (candidates, builtin)
    }

    /// Resolves a relation name through `search_path` (threat model, class 11). A schema
    /// before `pg_catalog` could hold a same-named table, so every schema the name could
    /// resolve to is listed in `candidates`.
    pub(super) fn resolve_relation(
        &self,
        schema: Option<String>,
        name: String,
        access: Access,
    ) -> Relation {
        let cat = catalog();
        let snapshot = self.opts.snapshot();
        // A system relation: built into PostgreSQL 15, or in a system schema of the served
        // database (a newer server's views).
        let system = |s: &str, name: &str| {
            cat.has_relation(s, name)
                || snapshot
                    .is_some_and(|snap| is_system_schema(s) && snap.relation(s, name).is_some())
        };
        let (schema, candidates, builtin, qualified) = match schema {
            Some(s) => {
                let builtin = system(&s, &name);
                (s.clone(), vec![s], builtin, true)
            }
            None => {
                let (candidates, builtin) = self.candidate_schemas(&name, access, system);
                (candidates[0].clone(), candidates, builtin, false)
            }
        };
        // What the database holds under the name: the first candidate that exists. A
        // foreign table anywhere among the candidates counts (fail closed).
        let found = snapshot.and_then(|snap| {
            let mut hits = candidates.iter().filter_map(|s| snap.relation(s, &name));
            let first = hits.next()?;
            Some(match hits.find(|r| r.server.is_some()) {
                Some(foreign) if first.server.is_none() => (first, Some(foreign)),
                _ => (first, None),
            })
        });
        let (kind, rows_estimate, foreign_server) = match found {
            Some((r, other)) => (
                Some(r.kind.clone()),
                Some(r.rows_estimate),
                r.server
                    .clone()
                    .or_else(|| other.and_then(|o| o.server.clone())),
            ),
            None => (None, None, None),
        };
        let lineage = match (snapshot, found) {
            (Some(snap), Some((r, _))) => snap.lineage(&r.schema, &r.name).cloned(),
            _ => None,
        }
        .unwrap_or_default();
        Relation {
            qualified_name: crate::analysis::dotted(&schema, &name),
            schema: Some(schema),
            name,
            candidates,
            qualified,
            access,
            cte: false,
            builtin,
            pinned: Vec::new(),
            kind,
            rows_estimate,
            foreign: foreign_server.is_some(),
            foreign_server,
            ancestors: lineage.ancestors,
            view_reads: lineage.view_reads,
            view_tables: lineage.view_tables,
            descendants: lineage.descendants,
            stats_of: None,
        }
    }

    pub(super) fn table_sample(&mut self, body: Id, ctx: Ctx) {
        // The sampling method is a function (`bernoulli`, `system`, or an extension's).
        if let Some(method) = self.tree.get(body, "method") {
            let names = self.name_list(method);
            self.record_function(&names, "tablesample");
        }
        self.fields("RangeTableSample", body, ctx, &["method"]);
    }

    pub(super) fn column_ref(&mut self, body: Id) {
        let Some(fields) = self.tree.get(body, "fields") else {
            return;
        };
        let tree = self.tree;
        let mut parts: Vec<Option<&str>> = Vec::new(); // None = `*`
        for Member { id: el, .. } in tree.members(fields) {
            match wrapper(tree, *el) {
                Some(("String", s)) => parts.push(tree.get_str(s, "sval")),
                Some(("A_Star", _)) => parts.push(None),
                _ => parts.push(None),
            }
        }
        match parts.as_slice() {
            [None] => {
                let rels = self.level_tables();
                self.emit("*", rels, ColumnVia::Star);
                for passes in self.level_passes(true) {
                    self.emit_passes(&passes, None, ColumnVia::Star);
                }
            }
            [Some(name)] => {
                // An unqualified name is a column of any table in scope, or a whole-row
                // reference to a FROM item of that name (`SELECT u FROM users u`).
                let whole_row = self.lookup_item(name);
                let rels = self.all_tables();
                self.emit(name, rels, ColumnVia::Named);
                for passes in self.level_passes(false) {
                    self.emit_passes(&passes, Some(name), ColumnVia::Named);
                }
                if let Some((rels, passes)) = whole_row {
                    self.push_column("*", rels, ColumnVia::WholeRow);
                    if let Some(p) = passes {
                        self.emit_passes(&p, None, ColumnVia::WholeRow);
                    }
                }
            }
            [.., Some(qual), last] => {
                let (rels, passes) = self.lookup_item(qual).unwrap_or_else(|| {
                    // `schema.table.col` or an unknown qualifier: name the table directly.
                    let schema = parts.len().checked_sub(3).and_then(|i| parts[i]);
                    match schema {
                        Some(s) => (vec![Arc::from(crate::analysis::dotted(s, qual))], None),
                        None => (Vec::new(), None),
                    }
                });
                match last {
                    Some(col) => self.emit(col, rels, ColumnVia::Named),
                    None => self.emit("*", rels, ColumnVia::Star),
                }
                if let Some(p) = passes {
                    let via = if last.is_some() {
                        ColumnVia::Named
                    } else {
                        ColumnVia::Star
                    };
                    self.emit_passes(&p, *last, via);
                }
            }
            _ => {}
        }
        self.fields("ColumnRef", body, READ, &["fields"]);
    }

    pub(super) fn push_column(&mut self, name: &str, relations: Vec<Arc<str>>, via: ColumnVia) {
        self.facts.columns.push(ColumnRef {
            name: name.to_string(),
            relations,
            star: name == "*",
            via,
            use_: self.use_,
        });
    }

    /// [`Self::push_column`] for a reference written in the query; in a bare entry of a
    /// select list that passes to the result, also what it passes (`*`: every column).
    fn emit(&mut self, name: &str, relations: Vec<Arc<str>>, via: ColumnVia) {
        if let Some((out, passes)) = self.collecting.as_mut() {
            if !relations.is_empty() {
                passes.push(Pass {
                    out: if name == "*" { None } else { out.clone() },
                    name: name.to_string(),
                    relations: relations.clone(),
                });
            }
        }
        self.push_column(name, relations, via);
    }

    /// Records a reference to the columns a subquery or CTE passes through: to its column
    /// `name`, or to all of them (`None`: `*`, a whole row, `NATURAL`, column aliases).
    pub(super) fn emit_passes(&mut self, passes: &[Pass], name: Option<&str>, via: ColumnVia) {
        for p in passes {
            let column = match (name, &p.out) {
                (None, _) => p.name.as_str(),
                // Through `*`, a column keeps its name.
                (Some(n), None) => n,
                (Some(n), Some(out)) if out == n => p.name.as_str(),
                (Some(_), Some(_)) => continue,
            };
            if let Some((out, collected)) = self.collecting.as_mut() {
                if matches!(via, ColumnVia::Named | ColumnVia::Star) {
                    collected.push(match name {
                        None => p.clone(),
                        Some(_) => Pass {
                            out: out.clone(),
                            name: column.to_string(),
                            relations: p.relations.clone(),
                        },
                    });
                }
            }
            self.push_column(column, p.relations.clone(), via);
        }
    }

    /// What the subqueries and CTEs in scope pass through: of the innermost level (`own`,
    /// for `*`), or of every level (an unqualified name may be an outer reference).
    fn level_passes(&self, own: bool) -> Vec<Arc<[Pass]>> {
        let levels = if own {
            self.levels.len().saturating_sub(1)
        } else {
            0
        };
        self.levels
            .iter()
            .skip(levels)
            .flat_map(|l| l.iter().filter_map(|i| i.passes.clone()))
            .collect()
    }

    /// What CTE `name` in scope passes through.
    pub(super) fn cte_passes_of(&self, name: &str) -> Option<Arc<[Pass]>> {
        self.cte_passes
            .iter()
            .rev()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, p)| p.clone())
    }

    /// A subquery in `FROM`: its query passes to this level, which sees its columns under its
    /// alias. It sees nothing of its own level, unless `LATERAL`.
    pub(super) fn range_subselect(&mut self, body: Id, ctx: Ctx) {
        let lateral = self.tree.get_bool(body, "lateral");
        if !lateral {
            self.hidden
                .push((self.levels.len().saturating_sub(1), usize::MAX));
        }
        self.pending_output = self
            .tree
            .get(body, "subquery")
            .and_then(|q| wrapper(self.tree, q))
            .filter(|(ty, _)| *ty == "SelectStmt")
            .map(|(_, b)| b);
        self.passes = None;
        self.fields("RangeSubselect", body, ctx, &["alias"]);
        let passes = self.passes.take();
        if !lateral {
            self.hidden.pop();
        }
        let alias = self.tree.get(body, "alias");
        if let (Some(a), Some(p)) = (alias, &passes) {
            if self.has_colnames(a) {
                self.emit_passes(p, None, ColumnVia::ColumnAliases);
            }
        }
        self.field("RangeSubselect", body, "alias", ctx);
        let name = alias
            .and_then(|a| self.tree.get_str(a, "aliasname"))
            .unwrap_or("")
            .to_string();
        if let Some(level) = self.levels.last_mut() {
            level.push(ScopeItem {
                name,
                relations: Vec::new(),
                columns: None,
                passes,
            });
        }
    }

    /// Tables of the innermost query level (for `*`).
    pub(super) fn level_tables(&self) -> Vec<Arc<str>> {
        self.level_tables_from(0)
    }

    /// Tables of the innermost query level's FROM items `start..`.
    pub(super) fn level_tables_from(&self, start: usize) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .levels
            .last()
            .map(|l| {
                l.iter()
                    .skip(start)
                    .flat_map(|i| i.relations.iter().cloned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }

    /// Tables of every enclosing level: an unqualified column may be an outer reference.
    pub(super) fn all_tables(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .levels
            .iter()
            .flat_map(|l| l.iter().flat_map(|i| i.relations.iter().cloned()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The tables behind FROM item `name`, innermost level first (`vec![]` for a subquery,
    /// function or CTE item), and what it passes through (a subquery or CTE).
    pub(super) fn lookup_item(&self, name: &str) -> Option<ItemColumns> {
        for level in self.levels.iter().rev() {
            if let Some(item) = level.iter().rev().find(|i| i.name == name) {
                return Some((item.relations.clone(), item.passes.clone()));
            }
        }
        None
    }

    /// A FROM item that is not a table or a join (a subquery, a function, `XMLTABLE`,
    /// `JSON_TABLE`, or a kind this version does not know) stands in its level for columns
    /// of unknown names and types.
    pub(super) fn mark_from_item(&mut self, item: Id) {
        // A subquery pushes its own item once walked (with what it passes through).
        let known = matches!(
            wrapper(self.tree, item),
            Some((
                "RangeVar" | "JoinExpr" | "RangeTableSample" | "RangeSubselect",
                _
            ))
        );
        if !known {
            if let Some(level) = self.levels.last_mut() {
                level.push(ScopeItem::opaque());
            }
        }
    }

    /// The type of a column reference, when the database's catalog fixes it to one of
    /// PostgreSQL's own scalar types. Resolved as PostgreSQL resolves it: level by level from
    /// the innermost, among the FROM items visible there; at the first level where some item
    /// may provide it, exactly one must, with known columns (an unqualified name), or exactly
    /// one item must have the qualifier's name (a qualified one). Anything else is unknown.
    pub(super) fn column_type(&self, body: Id) -> Option<&'static [&'static str]> {
        let t = self.tree;
        let mut parts: [Option<&str>; 2] = [None, None];
        let mut count = 0;
        for Member { id: el, .. } in t.members(t.get(body, "fields")?) {
            match wrapper(t, *el) {
                Some(("String", s)) => parts = [parts[1], Some(t.get_str(s, "sval")?)],
                _ => return None,
            }
            count += 1;
        }
        let (qualifier, column) = match (count, parts) {
            (1, [_, Some(column)]) => (None, column),
            (2, [Some(qualifier), Some(column)]) => (Some(qualifier), column),
            _ => return None,
        };
        // As PostgreSQL searches: the innermost level first, only what it can see there.
        let mut written = None;
        for (index, level) in self.levels.iter().enumerate().rev() {
            let first = self
                .hidden
                .iter()
                .rev()
                .find(|(l, _)| *l == index)
                .map_or(0, |(_, first)| *first);
            let visible = level.get(first..).unwrap_or(&[]);
            let mut providers = visible.iter().filter(|i| match qualifier {
                Some(q) => i.name == q,
                // An item of unknown columns may have this one.
                None => i.columns.is_none_or(|c| c.iter().any(|(n, _)| n == column)),
            });
            let Some(item) = providers.next() else {
                continue;
            };
            if providers.next().is_some() {
                return None;
            }
            written = Some(&item.columns?.iter().find(|(n, _)| n == column)?.1);
            break;
        }
        let written = written?;
        BUILTIN_TYPES
            .iter()
            .find(|(_, w)| w[0] == written.as_str())
            .map(|(_, w)| w.as_slice())
    }

    /// Does an `Alias` node rename columns (`AS a(x, y)`)?
    pub(super) fn has_colnames(&self, alias: Id) -> bool {
        self.tree
            .get(alias, "colnames")
            .is_some_and(|c| !self.tree.members(c).is_empty())
    }

    /// A join compares columns the agent may never name (threat model, "implicit
    /// references"): `JOIN … USING (secret)` and `NATURAL JOIN` are yes/no oracles on a
    /// column's values, row by row. Both sides' tables are recorded as read for those columns;
    /// a join alias (`AS j`, `USING (…) AS j`) names every table of the join.
    pub(super) fn join_expr(&mut self, body: Id, ctx: Ctx) {
        let start = self.levels.last().map_or(0, Vec::len);
        for side in ["larg", "rarg"] {
            if let Some(item) = self.tree.get(body, side) {
                self.mark_from_item(item);
            }
        }
        // `USING` and `NATURAL` merge the joined columns into one of a common type.
        if self.merges_columns(body) {
            if let Some(level) = self.levels.last_mut() {
                level.push(ScopeItem::opaque());
            }
        }
        self.field("JoinExpr", body, "larg", ctx);
        self.field("JoinExpr", body, "rarg", ctx);
        let tables = self.level_tables_from(start);
        let passes = self.passes_from(start);
        self.join_comparisons(body, &tables, passes.as_deref());
        // The `ON` clause sees only this join's items (and the levels around), and not the
        // join's own alias.
        self.hidden
            .push((self.levels.len().saturating_sub(1), start));
        let around = std::mem::replace(&mut self.use_, ColumnUse::Join);
        self.fields("JoinExpr", body, ctx, &["larg", "rarg", "usingClause"]);
        self.use_ = around;
        self.hidden.pop();
        self.join_aliases(body, &tables, passes);
    }

    /// `NATURAL` or a non-empty `USING`.
    fn merges_columns(&self, body: Id) -> bool {
        self.tree.get_bool(body, "isNatural")
            || self
                .tree
                .get(body, "usingClause")
                .is_some_and(|u| !self.tree.members(u).is_empty())
    }

    /// What the subqueries and CTEs among the innermost level's items `start..` pass through.
    fn passes_from(&self, start: usize) -> Option<Arc<[Pass]>> {
        let level = self
            .levels
            .last()
            .map_or(&[][..], |l| &l[start.min(l.len())..]);
        let all: Vec<Pass> = level
            .iter()
            .filter_map(|i| i.passes.as_deref())
            .flatten()
            .cloned()
            .collect();
        (!all.is_empty()).then(|| Arc::from(all))
    }

    /// The columns `USING` and `NATURAL` compare, and the `=` both run (looked up by name, as
    /// if written).
    fn join_comparisons(&mut self, body: Id, tables: &[Arc<str>], passes: Option<&[Pass]>) {
        if let Some(using) = self.tree.get(body, "usingClause") {
            for column in self.name_list(using) {
                self.push_column(&column, tables.to_vec(), ColumnVia::JoinUsing);
                if let Some(p) = passes {
                    self.emit_passes(p, Some(&column), ColumnVia::JoinUsing);
                }
            }
        }
        if self.tree.get_bool(body, "isNatural") {
            // Which columns the sides share is in the catalog, not the query: every column
            // of the joined tables may be compared.
            self.push_column("*", tables.to_vec(), ColumnVia::NaturalJoin);
            if let Some(p) = passes {
                self.emit_passes(p, None, ColumnVia::NaturalJoin);
            }
        }
        if self.merges_columns(body) {
            self.operator(&["=".to_string()], Operands::INFIX);
        }
    }

    /// A join's aliases: each names every table of the join (and what its subqueries pass).
    fn join_aliases(&mut self, body: Id, tables: &[Arc<str>], passes: Option<Arc<[Pass]>>) {
        for field in ["alias", "join_using_alias"] {
            let Some(alias) = self.tree.get(body, field) else {
                continue;
            };
            if self.has_colnames(alias) {
                self.push_column("*", tables.to_vec(), ColumnVia::ColumnAliases);
                if let Some(p) = &passes {
                    self.emit_passes(p, None, ColumnVia::ColumnAliases);
                }
            }
            if let (Some(name), Some(level)) = (
                self.tree.get_str(alias, "aliasname").map(str::to_string),
                self.levels.last_mut(),
            ) {
                level.push(ScopeItem {
                    name,
                    relations: tables.to_vec(),
                    columns: None,
                    passes: passes.clone(),
                });
            }
        }
    }
}
