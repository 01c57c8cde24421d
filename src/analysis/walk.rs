//! The complete walk of one statement's parse tree.
//!
//! Every field of every node is visited: nodes with a meaning for the guard (relations,
//! function calls, CTE scopes, locking, `INTO`, nested statements, settings) are handled by
//! name and then their remaining fields are walked like any container's. A node or an
//! unwrapped struct this walker does not know is recorded in `unclassified` and still walked.
//! Relying on `pg_query`'s helpers instead is how other guards were bypassed (threat model,
//! "known traps").

use std::sync::Arc;

use super::catalog::{catalog, is_system_schema};
use super::facts::*;
use super::json::{Id, Member, Tree, Value};
use super::node_schema::typed_field;
use super::resolve::{self, Operands};
use super::risk;
use super::snapshot::{Arguments, CastContext};
use super::statements::{is_container, kind_construct, statement_kind};
use super::AnalysisOptions;

/// The deepest node nesting the walker follows (the stack grows on the heap past the
/// thread's own, so this bounds work and memory, not a crash).
pub const MAX_DEPTH: usize = 20_000;

/// What a relation reached through a field is used for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Ctx {
    access: Access,
}

const READ: Ctx = Ctx {
    access: Access::Read,
};

/// A name visible to column references at one query level.
struct ScopeItem<'t> {
    /// Alias, or the relation name when there is none (empty for an item that only stands
    /// for columns of unknown names and types: a subquery, a function, a `USING` join).
    name: String,
    /// `schema.name` of the tables behind it: one for a table, every table of a join for a
    /// join alias, none for a CTE.
    relations: Vec<Arc<str>>,
    /// Its columns and their types, when the database's catalog knows them (a table or view
    /// named without column aliases); `None`: unknown.
    columns: Option<&'t [(String, String)]>,
}

impl ScopeItem<'_> {
    /// A FROM item whose columns the analysis does not know.
    fn opaque() -> Self {
        ScopeItem {
            name: String::new(),
            relations: Vec::new(),
            columns: None,
        }
    }
}

pub struct Walker<'t, 'a> {
    tree: &'t Tree<'a>,
    opts: &'t AnalysisOptions,
    pub facts: StatementFacts,
    /// CTE names visible, innermost scope last.
    ctes: Vec<Vec<String>>,
    /// FROM items per query level, innermost last.
    levels: Vec<Vec<ScopeItem<'t>>>,
    /// Where PostgreSQL hides part of a level from the expression being walked: (level,
    /// first visible item). An `ON` clause sees only its join's items; a subquery in `FROM`
    /// without `LATERAL` sees nothing of its own level (`usize::MAX`). Innermost last.
    hidden: Vec<(usize, usize)>,
    /// Types named in the statement, kept only when the snapshot holds casts PostgreSQL
    /// applies by itself (see `unwritten_casts`).
    named_types: Vec<String>,
    depth: usize,
    /// How many `SELECT`s enclose the node being walked: 1 is the statement's outermost query.
    selects: usize,
    pub too_deep: bool,
}

thread_local! {
    /// The views whose definitions are being analyzed on this thread (a view read by a view
    /// whose definition is being analyzed): a cycle is refused, never waited on.
    static IN_PROGRESS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The facts of view `schema.name`'s definition, analyzed once per snapshot.
fn view_facts(
    opts: &AnalysisOptions,
    snap: &super::snapshot::Snapshot,
    schema: &str,
    name: &str,
) -> Result<Arc<StatementFacts>, String> {
    let Some((i, cell)) = snap.view_facts_cell(schema, name) else {
        return Err("is not in the catalog".into());
    };
    if let Some(done) = cell.get() {
        return done.clone();
    }
    let cyclic = IN_PROGRESS.with(|p| {
        let p = p.borrow();
        p.contains(&i) || p.len() >= 32
    });
    if cyclic {
        return Err("reads itself through other views, or views nested over 32 deep".into());
    }
    IN_PROGRESS.with(|p| p.borrow_mut().push(i));
    let analyzed = match snap.relations[i].definition.as_deref() {
        None => Err("the catalog snapshot does not hold (read the catalog again)".into()),
        Some(sql) => match super::analyze_with(sql, opts) {
            Ok(mut facts) if facts.statements.len() == 1 => {
                Ok(Arc::new(facts.statements.remove(0)))
            }
            Ok(_) => Err("is not one statement".into()),
            Err(e) => Err(format!("cannot be analyzed ({e})")),
        },
    };
    IN_PROGRESS.with(|p| p.borrow_mut().retain(|&x| x != i));
    // Kept whatever the path: a view that reaches a cycle, or nests too deep from here, is
    // refused however it is read.
    cell.get_or_init(|| analyzed).clone()
}

/// Functions that convert values to the row type of their first argument.
const RECORD_BUILDERS: &[&str] = &[
    "json_populate_record",
    "json_populate_recordset",
    "jsonb_populate_record",
    "jsonb_populate_recordset",
    "jsonb_populate_record_valid",
    "populate_record",
];

fn new_facts(index: usize, node: &str, kind: StatementKind) -> StatementFacts {
    StatementFacts {
        index,
        location: 0,
        length: 0,
        node: node.to_string(),
        kind,
        nested_kinds: Vec::new(),
        read_only: true,
        not_read_only: Vec::new(),
        relations: Vec::new(),
        functions: Vec::new(),
        operators: Vec::new(),
        columns: Vec::new(),
        settings: Vec::new(),
        locking: Vec::new(),
        into: Vec::new(),
        explain: None,
        transaction: None,
        unclassified: Vec::new(),
        parameters: Vec::new(),
        limit: None,
        offset: None,
        aggregates: Vec::new(),
        aggregate: false,
        group_by: false,
        distinct: false,
        window: false,
        order_by: false,
    }
}

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

/// Is `{ "Type": {…} }` a generic node wrapper? Returns the type and the body.
fn wrapper<'t>(tree: &'t Tree<'_>, id: Id) -> Option<(&'t str, Id)> {
    if !tree.is_object(id) {
        return None;
    }
    match tree.members(id) {
        [m] if m
            .key()
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_uppercase) =>
        {
            Some((m.key(), m.id()))
        }
        _ => None,
    }
}

impl<'t, 'a> Walker<'t, 'a> {
    pub fn new(tree: &'t Tree<'a>, opts: &'t AnalysisOptions, index: usize) -> Self {
        Walker {
            tree,
            opts,
            facts: new_facts(index, "", StatementKind::Utility),
            ctes: Vec::new(),
            levels: Vec::new(),
            hidden: Vec::new(),
            named_types: Vec::new(),
            depth: 0,
            selects: 0,
            too_deep: false,
        }
    }

    /// Walks a top-level statement (`{"SelectStmt": {…}}`).
    pub fn statement(mut self, stmt: Id) -> (StatementFacts, bool) {
        match wrapper(self.tree, stmt) {
            Some((ty, body)) => {
                self.facts.node = ty.to_string();
                match statement_kind(ty) {
                    Some(kind) => self.facts.kind = kind,
                    None => self.facts.unclassified.push(ty.to_string()),
                }
                if let Some(c) = statement_kind(ty).and_then(kind_construct) {
                    self.construct(c, statement_label(ty));
                }
                self.node(ty, body, READ, true);
            }
            None => self.facts.unclassified.push("statement".into()),
        }
        self.catalog_objects();
        self.unwritten_casts();
        self.finish()
    }

    /// With the database's catalog, what the statement's relations bring along: the rows a
    /// statistics view can show, mapped to the relations and columns they sample, and each
    /// view's own definition, analyzed like a query (cached per view and snapshot), whose
    /// functions, operators, settings and constructs are the statement's own.
    fn catalog_objects(&mut self) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let mut views: Vec<(String, String)> = Vec::new();
        for r in &mut self.facts.relations {
            if r.cte || r.access == Access::Create {
                continue;
            }
            if r.builtin && r.stats_of.is_none() && r.qualified_name == "pg_catalog.pg_stats" {
                let pin = |column: &str| {
                    r.pinned
                        .iter()
                        .find(|p| p.column == column)
                        .map(|p| p.values.as_slice())
                };
                let stats = snap.stats_of(pin("schemaname"), pin("tablename"), pin("attname"));
                r.stats_of = Some(Box::new(stats));
            } else if !r.builtin && matches!(r.kind.as_deref(), Some("view" | "materialized_view"))
            {
                // PostgreSQL's own views (pg_settings, pg_stats, …) are judged by the
                // side-channel rules on what they show, not by the functions behind them.
                if let Some(schema) = &r.schema {
                    let key = (schema.clone(), r.name.clone());
                    if !views.contains(&key) {
                        views.push(key);
                    }
                }
            }
        }
        for (schema, name) in views {
            let qualified = super::dotted(&schema, &name);
            match view_facts(self.opts, snap, &schema, &name) {
                Ok(v) => {
                    let f = &mut self.facts;
                    f.functions.extend(v.functions.iter().map(|c| FunctionCall {
                        view: Some(c.view.clone().unwrap_or_else(|| qualified.clone())),
                        ..c.clone()
                    }));
                    f.operators.extend(v.operators.iter().map(|o| Operator {
                        function: o.function.as_ref().map(|c| FunctionCall {
                            view: Some(c.view.clone().unwrap_or_else(|| qualified.clone())),
                            ..c.clone()
                        }),
                        ..o.clone()
                    }));
                    f.settings.extend(v.settings.iter().cloned());
                    f.not_read_only.extend(v.not_read_only.iter().cloned());
                    f.locking.extend(v.locking.iter().cloned());
                    f.unclassified.extend(
                        v.unclassified
                            .iter()
                            .map(|u| format!("{u} (in the definition of view {qualified})")),
                    );
                }
                Err(why) => self
                    .facts
                    .unclassified
                    .push(format!("the definition of view {qualified}, which {why}")),
            }
        }
    }

    /// Casts PostgreSQL applies by itself (`CREATE CAST … AS IMPLICIT` or `AS ASSIGNMENT`
    /// with a function not its own) run wherever a value of one type meets the other: in an
    /// operator's or a function's argument, a comparison, `CASE`, `UNION`, storing into a
    /// column. The analysis does not type every expression, so such a cast is a call of every
    /// statement where a value of its extension's or user's type may be: one that names the
    /// type, reads a column of it (by name, `*` or a whole row; through arrays too), or calls
    /// a function or an operator that is not PostgreSQL's own (whose types are not known). A
    /// cast between two built-in types (only a superuser can make one) counts everywhere, and
    /// an assignment cast only in a statement that writes.
    fn unwritten_casts(&mut self) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let mut casts = snap.unwritten_casts().peekable();
        if casts.peek().is_none() {
            return;
        }
        let writes = self
            .facts
            .relations
            .iter()
            .any(|r| r.access == Access::Write);
        let calls_unknown_types = self.facts.functions.iter().any(|f| !f.builtin)
            || self
                .facts
                .operators
                .iter()
                .any(|o| o.function.as_ref().is_some_and(|f| !f.builtin));
        let path = self.opts.effective_path();
        let mut counted = Vec::new();
        for (cast, context) in casts {
            let applied = match context {
                CastContext::Implicit => "implicitly",
                CastContext::Assignment if writes => "when storing into a column",
                CastContext::Assignment => continue,
            };
            let mut own = cast.own_types().peekable();
            let may_meet = own.peek().is_none()
                || calls_unknown_types
                || own.any(|t| self.holds_value_of(snap, t));
            if !may_meet {
                continue;
            }
            let target = cast
                .target
                .clone()
                .unwrap_or_else(|| format!("{}.{}", cast.type_schema, cast.type_name));
            let source = cast.source.as_deref().unwrap_or("any type");
            counted.push(resolve::cast(
                snap,
                path,
                cast,
                format!("{target} from {source}, which PostgreSQL applies {applied}"),
            ));
        }
        self.facts.functions.extend(counted);
    }

    /// May the statement hold a value of type `ty` (a `format_type` name): it names the type,
    /// or reads a column of it (or of an array of it) by name, `*` or a whole row.
    fn holds_value_of(&self, snap: &super::snapshot::Snapshot, ty: &str) -> bool {
        if self.named_types.iter().any(|n| same_type(n, ty)) {
            return true;
        }
        self.facts.columns.iter().any(|c| {
            c.relations.iter().any(|r| {
                let Some((schema, name)) = r.split_once('.') else {
                    return false;
                };
                let Some(def) = snap.relation(schema, name) else {
                    return false;
                };
                // Columns not listed: any may be of that type.
                let Some(columns) = &def.columns else {
                    return true;
                };
                columns
                    .iter()
                    .any(|(n, t)| (c.star || *n == c.name) && same_type(t, ty))
            })
        })
    }

    fn finish(mut self) -> (StatementFacts, bool) {
        let f = &mut self.facts;
        f.read_only = f.not_read_only.is_empty();
        dedup(&mut f.relations);
        dedup(&mut f.functions);
        dedup(&mut f.operators);
        dedup(&mut f.columns);
        dedup(&mut f.settings);
        dedup(&mut f.nested_kinds);
        dedup(&mut f.unclassified);
        dedup(&mut f.not_read_only);
        dedup(&mut f.parameters);
        (self.facts, self.too_deep)
    }

    fn construct(&mut self, construct: &str, detail: impl Into<String>) {
        self.facts.not_read_only.push(Construct {
            construct: construct.to_string(),
            detail: detail.into(),
        });
    }

    // ---- generic walking -------------------------------------------------------------

    /// Walks the value of field `field` of a node of type `parent`.
    fn value(&mut self, parent: &str, field: &str, id: Id, ctx: Ctx) {
        let tree = self.tree;
        match tree.value(id) {
            Value::Array { .. } => {
                for Member { id: el, .. } in tree.members(id) {
                    self.value(parent, field, *el, ctx);
                }
            }
            // libpg_query writes a NIL list element (`DISTINCT` without `ON`) as `{}`.
            Value::Object { start, end } if start == end => {}
            Value::Object { .. } => {
                if let Some((ty, body)) = wrapper(tree, id) {
                    self.node(ty, body, ctx, false);
                } else if let Some(ty) = typed_field(parent, field) {
                    self.node(ty, id, ctx, false);
                } else {
                    self.facts.unclassified.push(format!("{parent}.{field}"));
                    self.fields(parent, id, ctx, &[]);
                }
            }
            _ => {}
        }
    }

    /// Walks every field of node `body` except those in `skip`.
    fn fields(&mut self, ty: &str, body: Id, ctx: Ctx, skip: &[&str]) {
        let tree = self.tree;
        for m in tree.members(body) {
            let key = m.key();
            if skip.contains(&key) {
                continue;
            }
            self.value(ty, key, m.id(), ctx);
        }
    }

    fn field(&mut self, ty: &str, body: Id, name: &str, ctx: Ctx) {
        if let Some(v) = self.tree.get(body, name) {
            self.value(ty, name, v, ctx);
        }
    }

    /// Dispatches on the node type. `top` is true for the top-level statement itself.
    fn node(&mut self, ty: &str, body: Id, ctx: Ctx, top: bool) {
        if self.depth >= MAX_DEPTH {
            self.too_deep = true;
            return;
        }
        self.depth += 1;
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.dispatch(ty, body, ctx, top));
        self.depth -= 1;
    }

    fn dispatch(&mut self, ty: &str, body: Id, ctx: Ctx, top: bool) {
        if !top {
            if let Some(kind) = statement_kind(ty) {
                self.facts.nested_kinds.push(kind);
                if kind != StatementKind::Select {
                    // Nested DML is handled where it can appear (WITH, EXPLAIN); any other
                    // statement nested anywhere counts as its kind.
                    if !kind.is_dml() && kind != StatementKind::Explain {
                        if let Some(c) = kind_construct(kind) {
                            self.construct(c, format!("nested {}", statement_label(ty)));
                        }
                    }
                }
            }
        }
        match ty {
            "SelectStmt" => self.select(body),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => self.dml(ty, body),
            "RangeVar" => self.range_var(body, ctx.access),
            "FuncCall" => self.func_call(body, "call"),
            "RangeTableSample" => self.table_sample(body, ctx),
            "A_Expr" => self.a_expr(body, ctx),
            // `x op ANY (SELECT …)` and `ORDER BY x USING op` name operators too; `x IN
            // (SELECT …)` runs `=` without naming it (PostgreSQL looks `=` up by name, as if
            // it were written).
            "SubLink" | "SortBy" => {
                let field = if ty == "SubLink" { "operName" } else { "useOp" };
                if let Some(list) = self.tree.get(body, field) {
                    let names = self.name_list(list);
                    let operands = self.compared(body, ty == "SubLink", "testexpr");
                    self.operator(&names, operands);
                } else if ty == "SubLink"
                    && self.tree.get_str(body, "subLinkType") == Some("ANY_SUBLINK")
                {
                    let operands = self.compared(body, true, "testexpr");
                    self.operator(&["=".to_string()], operands);
                }
                self.fields(ty, body, ctx, &[field]);
            }
            // `CASE x WHEN v …` compares with `=`, looked up by name for each `WHEN`.
            "CaseExpr" => {
                if self.tree.get(body, "arg").is_some() {
                    let operands = self.compared(body, true, "arg");
                    self.operator(&["=".to_string()], operands);
                }
                self.fields(ty, body, ctx, &[]);
            }
            "ColumnRef" => self.column_ref(body),
            "TypeName" => {
                self.type_name(body);
                self.fields(ty, body, ctx, &[]);
            }
            "JoinExpr" => self.join_expr(body, ctx),
            "ParamRef" => {
                if let Some(n) = self.tree.get_i64(body, "number") {
                    self.facts.parameters.push(n);
                }
            }
            // Constants are leaves: their values are strings and numbers, never code.
            "A_Const" => {}
            "ExplainStmt" => self.explain(body),
            "VariableSetStmt" => self.variable_set(body),
            "VariableShowStmt" => {
                let name = self.tree.get_str(body, "name").map(str::to_lowercase);
                self.facts.settings.push(SettingAccess {
                    name,
                    action: "show".into(),
                    local: false,
                    value: None,
                });
            }
            "TransactionStmt" => self.transaction(body),
            "CopyStmt" => self.copy(body),
            "LockStmt" => self.fields(
                ty,
                body,
                Ctx {
                    access: Access::Lock,
                },
                &[],
            ),
            "CreateStmt"
            | "ViewStmt"
            | "CreateTableAsStmt"
            | "CreateSeqStmt"
            | "CreateForeignTableStmt"
            | "CompositeTypeStmt"
            | "IntoClause" => {
                if ty == "IntoClause" {
                    self.select_into(body);
                } else {
                    self.fields(
                        ty,
                        body,
                        Ctx {
                            access: Access::Create,
                        },
                        &[],
                    );
                }
            }
            "CommonTableExpr" | "WithClause" | "LockingClause" => {
                // Only meaningful inside the statement that owns them (handled there); met
                // anywhere else they are still walked.
                self.fields(ty, body, ctx, &[]);
            }
            _ if statement_kind(ty).is_some() => {
                let access =
                    if matches!(ty, "DeclareCursorStmt" | "PrepareStmt" | "VariableShowStmt") {
                        Access::Read
                    } else {
                        Access::Write
                    };
                self.fields(ty, body, Ctx { access }, &[]);
            }
            // A subquery in FROM sees nothing of its own level, unless LATERAL.
            "RangeSubselect" if !self.tree.get_bool(body, "lateral") => {
                self.hidden
                    .push((self.levels.len().saturating_sub(1), usize::MAX));
                self.fields(ty, body, ctx, &[]);
                self.hidden.pop();
            }
            _ if is_container(ty) => self.fields(ty, body, ctx, &[]),
            _ => {
                self.facts.unclassified.push(ty.to_string());
                self.fields(ty, body, ctx, &[]);
            }
        }
    }

    // ---- query levels and CTE scope -----------------------------------------------------

    /// Pushes the CTE names of a `WITH` and walks their bodies with PostgreSQL's scoping:
    /// in a plain `WITH`, a CTE sees only the CTEs before it (so `WITH users AS (SELECT *
    /// FROM users)` reads the table: threat model, class 12); in `WITH RECURSIVE`, all.
    /// Returns whether a scope was pushed.
    fn with_clause(&mut self, owner: &str, body: Id) -> bool {
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
        for (name, cte) in &ctes {
            if let Some((qty, _)) = self
                .tree
                .get(*cte, "ctequery")
                .and_then(|q| wrapper(self.tree, q))
            {
                if let Some(kind) = statement_kind(qty) {
                    if kind.is_dml() {
                        self.construct(
                            "data_modifying_cte",
                            format!("{} in WITH query \"{name}\"", statement_label(qty)),
                        );
                    }
                }
            }
            self.fields("CommonTableExpr", *cte, READ, &[]);
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

    fn is_cte(&self, name: &str) -> bool {
        self.ctes
            .iter()
            .rev()
            .any(|scope| scope.iter().any(|n| n == name))
    }

    fn select(&mut self, body: Id) {
        self.selects += 1;
        if self.selects == 1 && self.facts.node == "SelectStmt" {
            self.query_shape(body);
        }
        let pushed = self.with_clause("SelectStmt", body);
        self.levels.push(Vec::new());
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
        self.fields(
            "SelectStmt",
            body,
            READ,
            &["withClause", "fromClause", "intoClause", "lockingClause"],
        );
        self.levels.pop();
        if pushed {
            self.ctes.pop();
        }
        self.selects -= 1;
    }

    /// `LIMIT`, `OFFSET`, `GROUP BY`, `DISTINCT`, `WINDOW` and `ORDER BY` of the statement's
    /// outermost query, for rules such as "a LIMIT of at most 1000, or an aggregate".
    fn query_shape(&mut self, body: Id) {
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
    fn row_bound(&self, id: Id) -> Option<RowBound> {
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
    fn aggregate_call(&mut self, body: Id) {
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

    /// Walks a `SELECT`'s `FROM` list. Returns the catalog relations listed in it directly
    /// (not inside a join, no column aliases): their visible name and their index in
    /// `facts.relations`, for [`Self::pin_catalog_relations`].
    fn walk_from_clause(&mut self, body: Id) -> Vec<(String, usize)> {
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
    fn pin_catalog_relations(&mut self, body: Id, items: &[(String, usize)]) {
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
    fn conjuncts(&self, id: Id, out: &mut Vec<Id>) {
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
    fn pin(&self, id: Id) -> Option<(Option<String>, Pin)> {
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
    fn column_name(&self, id: Id) -> Option<(Option<String>, String)> {
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
    fn column_qualifiers(&self, id: Id, out: &mut Vec<Option<String>>) {
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

    fn dml(&mut self, ty: &str, body: Id) {
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

    fn select_into(&mut self, into: Id) {
        if let Some(rel) = self.tree.get(into, "rel") {
            let before = self.facts.relations.len();
            self.range_var(rel, Access::Create);
            if let Some(r) = self.facts.relations.get(before).cloned() {
                self.facts.into.push(r);
            }
        }
        self.fields("IntoClause", into, READ, &["rel"]);
    }

    fn locking_clause(&mut self, lc: Id) {
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

    // ---- relations ---------------------------------------------------------------------

    fn range_var(&mut self, body: Id, access: Access) {
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
        // `FROM vault AS v(a, b)` reads vault's first columns under new names: without the
        // catalog it is unknown which, so it counts as reading them all.
        if t.get(body, "alias").is_some_and(|a| self.has_colnames(a)) {
            self.push_column("*", relations.clone(), ColumnVia::ColumnAliases);
        }
        if let Some(level) = self.levels.last_mut() {
            level.push(ScopeItem {
                name: alias.unwrap_or_else(|| name.clone()),
                relations,
                columns,
            });
        }
        self.facts.relations.push(rel);
        // Every other field (alias column lists, catalog name) is still walked.
        self.fields("RangeVar", body, READ, &["relname", "schemaname", "alias"]);
    }

    /// Resolves a relation name through `search_path` (threat model, class 11). A schema
    /// before `pg_catalog` could hold a same-named table, so every schema the name could
    /// resolve to is listed in `candidates`.
    fn resolve_relation(&self, schema: Option<String>, name: String, access: Access) -> Relation {
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
                let mut candidates = Vec::new();
                let mut builtin = false;
                for s in self.opts.effective_search_path() {
                    if is_system_schema(s) {
                        if system(s, &name) {
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
                // Creating resolves to the first schema of the path, not to pg_catalog.
                if access == Access::Create {
                    candidates.truncate(1);
                    builtin = false;
                }
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
            qualified_name: super::dotted(&schema, &name),
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

    fn table_sample(&mut self, body: Id, ctx: Ctx) {
        // The sampling method is a function (`bernoulli`, `system`, or an extension's).
        if let Some(method) = self.tree.get(body, "method") {
            let names = self.name_list(method);
            self.record_function(&names, "tablesample");
        }
        self.fields("RangeTableSample", body, ctx, &["method"]);
    }

    // ---- columns -------------------------------------------------------------------------

    fn column_ref(&mut self, body: Id) {
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
                self.push_column("*", rels, ColumnVia::Star);
            }
            [Some(name)] => {
                // An unqualified name is a column of any table in scope, or a whole-row
                // reference to a FROM item of that name (`SELECT u FROM users u`).
                let whole_row = self.lookup_alias(name);
                let rels = self.all_tables();
                self.push_column(name, rels, ColumnVia::Named);
                if let Some(rels) = whole_row {
                    self.push_column("*", rels, ColumnVia::WholeRow);
                }
            }
            [.., Some(qual), last] => {
                let rels = self.lookup_alias(qual).unwrap_or_else(|| {
                    // `schema.table.col` or an unknown qualifier: name the table directly.
                    let schema = parts.len().checked_sub(3).and_then(|i| parts[i]);
                    match schema {
                        Some(s) => vec![Arc::from(super::dotted(s, qual))],
                        None => Vec::new(),
                    }
                });
                match last {
                    Some(col) => self.push_column(col, rels, ColumnVia::Named),
                    None => self.push_column("*", rels, ColumnVia::Star),
                }
            }
            _ => {}
        }
        self.fields("ColumnRef", body, READ, &["fields"]);
    }

    fn push_column(&mut self, name: &str, relations: Vec<Arc<str>>, via: ColumnVia) {
        self.facts.columns.push(ColumnRef {
            name: name.to_string(),
            relations,
            star: name == "*",
            via,
        });
    }

    /// Tables of the innermost query level (for `*`).
    fn level_tables(&self) -> Vec<Arc<str>> {
        self.level_tables_from(0)
    }

    /// Tables of the innermost query level's FROM items `start..`.
    fn level_tables_from(&self, start: usize) -> Vec<Arc<str>> {
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
    fn all_tables(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .levels
            .iter()
            .flat_map(|l| l.iter().flat_map(|i| i.relations.iter().cloned()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The tables behind FROM item `name`, innermost level first; `Some(vec![])` for a
    /// subquery, function or CTE item.
    fn lookup_alias(&self, name: &str) -> Option<Vec<Arc<str>>> {
        for level in self.levels.iter().rev() {
            if let Some(item) = level.iter().rev().find(|i| i.name == name) {
                return Some(item.relations.clone());
            }
        }
        None
    }

    /// A FROM item that is not a table or a join (a subquery, a function, `XMLTABLE`,
    /// `JSON_TABLE`, or a kind this version does not know) stands in its level for columns
    /// of unknown names and types.
    fn mark_from_item(&mut self, item: Id) {
        let known = matches!(
            wrapper(self.tree, item),
            Some(("RangeVar" | "JoinExpr" | "RangeTableSample", _))
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
    fn column_type(&self, body: Id) -> Option<&'static [&'static str]> {
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
    fn has_colnames(&self, alias: Id) -> bool {
        self.tree
            .get(alias, "colnames")
            .is_some_and(|c| !self.tree.members(c).is_empty())
    }

    /// A join compares columns the agent may never name (threat model, "implicit
    /// references"): `JOIN … USING (secret)` and `NATURAL JOIN` are yes/no oracles on a
    /// column's values, row by row. Both sides' tables are recorded as read for those columns;
    /// a join alias (`AS j`, `USING (…) AS j`) names every table of the join.
    fn join_expr(&mut self, body: Id, ctx: Ctx) {
        let start = self.levels.last().map_or(0, Vec::len);
        for side in ["larg", "rarg"] {
            if let Some(item) = self.tree.get(body, side) {
                self.mark_from_item(item);
            }
        }
        // `USING` and `NATURAL` merge the joined columns into one of a common type.
        if self.tree.get_bool(body, "isNatural")
            || self
                .tree
                .get(body, "usingClause")
                .is_some_and(|u| !self.tree.members(u).is_empty())
        {
            if let Some(level) = self.levels.last_mut() {
                level.push(ScopeItem::opaque());
            }
        }
        self.field("JoinExpr", body, "larg", ctx);
        self.field("JoinExpr", body, "rarg", ctx);
        let tables = self.level_tables_from(start);
        if let Some(using) = self.tree.get(body, "usingClause") {
            for column in self.name_list(using) {
                self.push_column(&column, tables.clone(), ColumnVia::JoinUsing);
            }
        }
        if self.tree.get_bool(body, "isNatural") {
            // Which columns the sides share is in the catalog, not the query: every column
            // of the joined tables may be compared.
            self.push_column("*", tables.clone(), ColumnVia::NaturalJoin);
        }
        // Both compare the joined columns with `=`, looked up by name as if written.
        if self.tree.get_bool(body, "isNatural")
            || self
                .tree
                .get(body, "usingClause")
                .is_some_and(|u| !self.tree.members(u).is_empty())
        {
            self.operator(&["=".to_string()], Operands::INFIX);
        }
        // The `ON` clause sees only this join's items (and the levels around), and not the
        // join's own alias.
        self.hidden
            .push((self.levels.len().saturating_sub(1), start));
        self.fields("JoinExpr", body, ctx, &["larg", "rarg", "usingClause"]);
        self.hidden.pop();
        for field in ["alias", "join_using_alias"] {
            let Some(alias) = self.tree.get(body, field) else {
                continue;
            };
            if self.has_colnames(alias) {
                self.push_column("*", tables.clone(), ColumnVia::ColumnAliases);
            }
            if let (Some(name), Some(level)) = (
                self.tree.get_str(alias, "aliasname").map(str::to_string),
                self.levels.last_mut(),
            ) {
                level.push(ScopeItem {
                    name,
                    relations: tables.clone(),
                    columns: None,
                });
            }
        }
    }

    // ---- functions and operators -----------------------------------------------------

    fn name_list(&self, list: Id) -> Vec<String> {
        self.tree
            .members(list)
            .iter()
            .filter_map(|m| wrapper(self.tree, m.id()))
            .filter(|(ty, _)| *ty == "String")
            .filter_map(|(_, s)| self.tree.get_str(s, "sval").map(str::to_string))
            .collect()
    }

    fn func_call(&mut self, body: Id, context: &str) {
        let names = self
            .tree
            .get(body, "funcname")
            .map(|l| self.name_list(l))
            .unwrap_or_default();
        // Only a call of a settings function is looked at again (a copy: it reads the tree).
        let setting = match self.record_function_with(&names, context, Some(body)) {
            Some(c) => {
                let setting = matches!(c.name.as_str(), "current_setting" | "set_config");
                let setting = setting.then(|| c.clone());
                self.aggregate_call(body);
                setting
            }
            None => None,
        };
        if let Some(call) = setting {
            self.setting_function(&call, body);
        }
        if let Some(name) = names.last() {
            if RECORD_BUILDERS.contains(&name.as_str()) {
                self.record_builder(name, body);
            }
        }
        self.fields("FuncCall", body, READ, &["funcname"]);
    }

    /// `json_populate_record(base, …)` and its kin convert values to the row type of their
    /// first argument, which runs the `CHECK` of every domain inside it. Written as a cast
    /// (`NULL::t`), the type is named and [`Walker::type_name`] counts its checks; any other
    /// argument (a whole-row reference `w`, a column, a subquery) has a type the analysis does
    /// not know, so every domain check of the database counts.
    fn record_builder(&mut self, name: &str, body: Id) {
        let Some(snap) = self.opts.snapshot() else {
            return;
        };
        let first = self
            .tree
            .get(body, "args")
            .and_then(|l| self.tree.members(l).first().map(|m| m.id));
        if let Some(("TypeCast", _)) = first.and_then(|f| wrapper(self.tree, f)) {
            return;
        }
        let path = self.opts.effective_path();
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for cast in snap.casts.iter().filter(|c| c.via == "domain_check") {
            let key = (cast.function_schema.as_str(), cast.function_name.as_str());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let what = format!("the row type of {name}()'s first argument");
            self.facts
                .functions
                .push(resolve::cast(snap, path, cast, what));
        }
    }

    /// Records a call of `names` (`[schema.]name`) and returns it.
    fn record_function(&mut self, names: &[String], context: &str) -> Option<&FunctionCall> {
        self.record_function_with(names, context, None)
    }

    /// Records a call; `node`: its `FuncCall`, whose arguments can rule out overloads.
    fn record_function_with(
        &mut self,
        names: &[String],
        context: &str,
        node: Option<Id>,
    ) -> Option<&FunctionCall> {
        let (schema, name) = match names {
            [name] => (None, name.clone()),
            [.., schema, name] => (Some(schema.clone()), name.clone()),
            [] => return None,
        };
        let call = match self.opts.snapshot() {
            Some(snap) => {
                let path = self.opts.effective_path();
                // Unqualified names were resolved once per snapshot. Only when that is not
                // all PostgreSQL's own do the call's arguments matter: which overloads they
                // allow decides the facts.
                let untyped = match (&schema, self.opts.resolutions()) {
                    (None, Some(r)) => r.function(&name, context),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    resolve::function(snap, path, schema.clone(), name.clone(), context)
                });
                match node {
                    Some(node) if untyped.source != FunctionSource::Builtin => {
                        let (types, unpositional) = self.call_arguments(node);
                        let args = Arguments {
                            types: &types,
                            unpositional,
                        };
                        resolve::function_for(snap, path, schema, name, context, Some(&args))
                    }
                    _ => untyped,
                }
            }
            None => self.function_from_static(schema, name, context),
        };
        if call
            .risks
            .iter()
            .any(|r| WRITING_RISKS.contains(&r.as_str()))
        {
            self.construct(
                "side_effect_function",
                format!("{}() ({})", call.name, call.risks.join(", ")),
            );
        }
        self.facts.functions.push(call);
        self.facts.functions.last()
    }

    /// A `FuncCall`'s arguments: the type of each when the query fixes it, and whether they
    /// are not positional (named arguments, an explicit `VARIADIC`). `count(*)` has none.
    fn call_arguments(&self, body: Id) -> (Vec<Option<&'static [&'static str]>>, bool) {
        let t = self.tree;
        let mut unpositional = t.get_bool(body, "func_variadic");
        let mut types = Vec::new();
        if let Some(args) = t.get(body, "args") {
            for Member { id: arg, .. } in t.members(args) {
                if matches!(wrapper(t, *arg), Some(("NamedArgExpr", _))) {
                    unpositional = true;
                }
                types.push(self.operand_type(*arg));
            }
        }
        (types, unpositional)
    }

    /// A call resolved against PostgreSQL 15's built-ins only.
    fn function_from_static(
        &self,
        schema: Option<String>,
        name: String,
        context: &str,
    ) -> FunctionCall {
        let cat = catalog();
        let qualified = schema.is_some();
        let (schema, builtin) = match schema {
            Some(s) => {
                let b = cat.function(&s, &name);
                (Some(s), b)
            }
            None => {
                // Walk the path: a user schema met before the built-in's schema could hold a
                // function of the same name (threat model, class 11), so the call is not
                // known to be the built-in.
                let mut found = (None, None);
                for s in self.opts.effective_search_path() {
                    if is_system_schema(s) {
                        if let Some(b) = cat.function(s, &name) {
                            found = (Some(s.to_string()), Some(b));
                            break;
                        }
                    } else {
                        break;
                    }
                }
                found
            }
        };
        match (schema, builtin) {
            (Some(s), Some(b)) => FunctionCall {
                risks: risk::categories(Some(&s), &name),
                volatility: b.volatility,
                builtin: true,
                source: FunctionSource::Builtin,
                security_definer: false,
                extension: None,
                language: None,
                operator: None,
                cast: None,
                view: None,
                qualified_name: super::dotted(&s, &name),
                schema: Some(s),
                name,
                qualified,
                context: context.to_string(),
            },
            (schema, _) => resolve::unknown(schema, name, context),
        }
    }

    /// `current_setting('x')` reads a setting; `set_config('x', v, local)` changes one
    /// (threat model, classes 2 and 10).
    fn setting_function(&mut self, call: &FunctionCall, body: Id) {
        let is_catalog = call.schema.as_deref().is_none_or(|s| s == "pg_catalog");
        if !is_catalog {
            return;
        }
        let args: Vec<Id> = self
            .tree
            .get(body, "args")
            .map(|a| self.tree.members(a).iter().map(Member::id).collect())
            .unwrap_or_default();
        let literal = |i: usize| args.get(i).and_then(|a| self.string_literal(*a));
        match call.name.as_str() {
            "current_setting" => self.facts.settings.push(SettingAccess {
                name: literal(0).map(|s| s.to_lowercase()),
                action: "read".into(),
                local: false,
                value: None,
            }),
            "set_config" => {
                let local = literal(2).map(|s| s == "true" || s == "t");
                self.facts.settings.push(SettingAccess {
                    name: literal(0).map(|s| s.to_lowercase()),
                    action: "write".into(),
                    local: local.unwrap_or(false),
                    value: literal(1),
                })
            }
            _ => {}
        }
    }

    /// The text of a string constant (also through a cast such as `'x'::text`).
    fn string_literal(&self, id: Id) -> Option<String> {
        let (ty, body) = wrapper(self.tree, id)?;
        match ty {
            "A_Const" => {
                let t = self.tree;
                for key in ["sval", "fval", "ival", "boolval"] {
                    if let Some(inner) = t.get(body, key) {
                        return match t.get(inner, key).map(|v| t.value(v)) {
                            Some(Value::String(s)) => Some(s.to_string()),
                            Some(Value::Number(n)) => Some(n.to_string()),
                            Some(Value::Int(n)) => Some(n.to_string()),
                            Some(Value::Bool(b)) => Some(b.to_string()),
                            _ => Some(match key {
                                "ival" => "0".into(),
                                "boolval" => "false".into(),
                                _ => String::new(),
                            }),
                        };
                    }
                }
                None
            }
            "TypeCast" => self
                .tree
                .get(body, "arg")
                .and_then(|a| self.string_literal(a)),
            _ => None,
        }
    }

    fn a_expr(&mut self, body: Id, ctx: Ctx) {
        // Every kind names its operator (`IN` and `BETWEEN` the comparisons they use, `LIKE`
        // `~~`), except the boolean connectives, which are not operators.
        if let Some(list) = self.tree.get(body, "name") {
            let kind = self.tree.get_str(body, "kind").unwrap_or("");
            let lexpr = self.tree.get(body, "lexpr");
            let rexpr = self.tree.get(body, "rexpr");
            // Operand types matter only to pick among a snapshot's operators.
            let snapshot = self.opts.snapshot().is_some();
            let typed =
                |side: Option<Id>| side.filter(|_| snapshot).and_then(|e| self.operand_type(e));
            match kind {
                // The grammar names these `BETWEEN`; PostgreSQL runs `a >= x AND a <= y`
                // (NOT: `a < x OR a > y`); SYMMETRIC also with x and y swapped.
                "AEXPR_BETWEEN"
                | "AEXPR_NOT_BETWEEN"
                | "AEXPR_BETWEEN_SYM"
                | "AEXPR_NOT_BETWEEN_SYM" => {
                    let bounds: Vec<Id> = rexpr.map(|r| self.list_items(r)).unwrap_or_default();
                    let symmetric = kind.ends_with("_SYM");
                    let bound = |i: usize| {
                        if symmetric {
                            None
                        } else {
                            typed(bounds.get(i).copied())
                        }
                    };
                    let left = typed(lexpr);
                    let (low, high) = if kind.starts_with("AEXPR_NOT") {
                        ("<", ">")
                    } else {
                        (">=", "<=")
                    };
                    for (op, right) in [(low, bound(0)), (high, bound(1))] {
                        let operands = Operands {
                            prefix: false,
                            left,
                            right,
                        };
                        self.operator(&[op.to_string()], operands);
                    }
                }
                _ => {
                    let names = self.name_list(list);
                    // `a op b`, `- b`, `a IS DISTINCT FROM b`, `NULLIF(a, b)`: one operator
                    // on these two operands. The others (`IN`, `ANY`, `LIKE`, …) coerce
                    // their operands first, so their types are not known here.
                    let operands = match kind {
                        "AEXPR_OP" | "AEXPR_DISTINCT" | "AEXPR_NOT_DISTINCT" | "AEXPR_NULLIF"
                        | "AEXPR_LIKE" | "AEXPR_ILIKE" | "AEXPR_SIMILAR" => Operands {
                            prefix: lexpr.is_none(),
                            left: typed(lexpr),
                            right: typed(rexpr),
                        },
                        // `a IN (x, y)` compares values of the types of `a`, `x` and `y`
                        // (each pair, or all coerced to one of them): known when they are
                        // all the same.
                        "AEXPR_IN" => {
                            let items: Vec<Id> =
                                rexpr.map(|r| self.list_items(r)).unwrap_or_default();
                            let left = typed(lexpr);
                            let same =
                                left.is_some() && items.iter().all(|i| typed(Some(*i)) == left);
                            let known = if same { left } else { None };
                            Operands {
                                prefix: false,
                                left: known,
                                right: known,
                            }
                        }
                        // `a op ANY (array)`: `a` and the array's element type.
                        "AEXPR_OP_ANY" | "AEXPR_OP_ALL" => Operands {
                            prefix: false,
                            left: typed(lexpr),
                            right: None,
                        },
                        _ => Operands::INFIX,
                    };
                    self.operator(&names, operands);
                }
            }
        }
        self.fields("A_Expr", body, ctx, &["name"]);
    }

    /// The operands of a comparison PostgreSQL makes by name (`x IN (SELECT …)`,
    /// `x op ANY (SELECT …)`, `CASE x WHEN …`): the left one is `field`'s value, the right
    /// one's type is unknown. `typed`: whether the left one's type counts (not for a
    /// `SortBy`'s `USING`).
    fn compared(&self, body: Id, typed: bool, field: &str) -> Operands {
        let left = match (typed, self.opts.snapshot()) {
            (true, Some(_)) => self
                .tree
                .get(body, field)
                .and_then(|e| self.operand_type(e)),
            _ => None,
        };
        Operands {
            prefix: false,
            left,
            right: None,
        }
    }

    /// The elements of a `List` node (or of a plain array).
    fn list_items(&self, id: Id) -> Vec<Id> {
        let list = match wrapper(self.tree, id) {
            Some(("List", body)) => self.tree.get(body, "items"),
            _ => Some(id),
        };
        list.map(|l| self.tree.ids(l).collect()).unwrap_or_default()
    }

    /// The types an operand may have, when the query fixes them: a numeric or boolean
    /// constant, a cast to one of PostgreSQL's own types, a keyword such as `current_date`, or
    /// a column of such a type. Only the constant's kind is
    /// read, never its value (see [`Tree::constant_kind`]).
    fn operand_type(&self, id: Id) -> Option<&'static [&'static str]> {
        let (ty, body) = wrapper(self.tree, id)?;
        match ty {
            // `42` is an integer; `3000000000` a bigint and `1.5` a numeric: the scanner
            // makes both the same kind of token.
            "A_Const" => match self.tree.constant_kind(body)? {
                "ival" => Some(&["integer"]),
                "fval" => Some(&["bigint", "numeric"]),
                "boolval" => Some(&["boolean"]),
                _ => None,
            },
            "TypeCast" => self.builtin_type(self.tree.get(body, "typeName")?),
            "ColumnRef" => self.column_type(body),
            // `current_date`, `now`'s keywords and the like: keywords, never looked up by
            // name, so their type is fixed by the grammar.
            "SQLValueFunction" => match self.tree.get_str(body, "op")? {
                "SVFOP_CURRENT_DATE" => Some(&["date"]),
                "SVFOP_CURRENT_TIME" | "SVFOP_CURRENT_TIME_N" => Some(&["time with time zone"]),
                "SVFOP_CURRENT_TIMESTAMP" | "SVFOP_CURRENT_TIMESTAMP_N" => {
                    Some(&["timestamp with time zone"])
                }
                "SVFOP_LOCALTIME" | "SVFOP_LOCALTIME_N" => Some(&["time without time zone"]),
                "SVFOP_LOCALTIMESTAMP" | "SVFOP_LOCALTIMESTAMP_N" => {
                    Some(&["timestamp without time zone"])
                }
                _ => Some(&["name"]),
            },
            _ => None,
        }
    }

    /// A `TypeName` that certainly names one of PostgreSQL's own scalar types, as
    /// `format_type` writes it. Unqualified names count only when `pg_catalog` is searched
    /// first (a schema before it could hold a type of the same name; no guarded session can
    /// create a temporary one: every call is read-only and DDL is denied).
    fn builtin_type(&self, id: Id) -> Option<&'static [&'static str]> {
        let t = self.tree;
        let body = match wrapper(t, id) {
            Some(("TypeName", body)) => body,
            _ => id,
        };
        if t.get_bool(body, "setof")
            || t.get_bool(body, "pct_type")
            || t.get(body, "arrayBounds")
                .is_some_and(|a| !t.members(a).is_empty())
        {
            return None;
        }
        let mut names: [Option<&str>; 3] = [None, None, None];
        let mut count = 0;
        for Member { id: el, .. } in t.members(t.get(body, "names")?) {
            if let Some(("String", s)) = wrapper(t, *el) {
                names = [names[1], names[2], t.get_str(s, "sval")];
                count += 1;
            }
        }
        match (count, names[1], names[2]) {
            (1, _, Some(_)) if self.opts.first_schema() == "pg_catalog" => {}
            (2, Some("pg_catalog"), Some(_)) => {}
            _ => return None,
        }
        BUILTIN_TYPES
            .iter()
            .find(|(name, _)| Some(*name) == names[2])
            .map(|(_, written)| written.as_slice())
    }

    /// A type named anywhere (`x::t`, `CAST(x AS t)`, `t 'literal'`, a column definition
    /// list): with the database's catalog, the functions a conversion to it can run — a
    /// `CREATE CAST … WITH FUNCTION` cast to it, a domain's `CHECK` that calls a function —
    /// are calls like any other (context `cast`, `cast` naming the type). Which cast runs
    /// depends on the source type, which the analysis does not know: every one counts.
    fn type_name(&mut self, body: Id) {
        let (tree, opts) = (self.tree, self.opts);
        let Some(snap) = opts.snapshot() else {
            return;
        };
        let Some(list) = tree.get(body, "names") else {
            return;
        };
        // `[schema.]type`: the last two names, read in place (every type in every query
        // comes here).
        let mut names: [Option<&str>; 2] = [None, None];
        for Member { id: el, .. } in tree.members(list) {
            if let Some(("String", s)) = wrapper(tree, *el) {
                names = [names[1], tree.get_str(s, "sval")];
            }
        }
        let (schema, Some(name)) = (names[0], names[1]) else {
            return;
        };
        if snap.unwritten_casts().next().is_some() {
            self.named_types.push(name.to_string());
        }
        let path = opts.effective_path();
        for cast in snap.casts_to(schema, name, path) {
            let to = format!("{}.{}", cast.type_schema, cast.type_name);
            self.facts
                .functions
                .push(resolve::cast(snap, path, cast, to));
        }
    }

    /// Records an operator that is not certainly PostgreSQL's own: with the database's
    /// catalog, every one PostgreSQL could pick for these operands.
    fn operator(&mut self, names: &[String], operands: Operands) {
        let (schema, name) = match names {
            [n] => (None, n.clone()),
            [.., s, n] => (Some(s.clone()), n.clone()),
            [] => return,
        };
        let Some(snap) = self.opts.snapshot() else {
            let builtin = schema.as_deref().is_none_or(|s| s == "pg_catalog")
                && catalog().has_operator(&name);
            if !builtin {
                self.facts.operators.push(Operator {
                    schema,
                    name,
                    builtin,
                    function: None,
                });
            }
            return;
        };
        // Unqualified operators were resolved once per snapshot: a lookup, and a copy only
        // the first time a statement uses the operator.
        let resolved;
        let resolution = match (&schema, self.opts.resolutions()) {
            (None, Some(r)) => r.operator(&name),
            _ => {
                resolved =
                    resolve::operator(snap, self.opts.effective_path(), schema.as_deref(), &name);
                Some(&resolved)
            }
        };
        match resolution {
            Some(r @ resolve::OperatorResolution::Other(_)) => {
                for op in r.candidates(&operands) {
                    if !self.facts.operators.iter().any(|o| o == op) {
                        self.facts.operators.push(op.clone());
                    }
                }
            }
            Some(resolve::OperatorResolution::Builtin) => {}
            Some(resolve::OperatorResolution::Missing) | None => {
                self.facts.operators.push(Operator {
                    schema,
                    name,
                    builtin: false,
                    function: None,
                })
            }
        }
    }

    // ---- statements with their own facts -------------------------------------------

    fn explain(&mut self, body: Id) {
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
    fn def_value(&self, id: Id) -> String {
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

    fn variable_set(&mut self, body: Id) {
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
                let mut read_only = None;
                for a in &args {
                    if let Some(("DefElem", d)) = wrapper(self.tree, *a) {
                        let opt = self.tree.get_str(d, "defname").unwrap_or("");
                        let val = self.tree.get(d, "arg").map(|v| self.def_value(v));
                        let setting = match opt {
                            "transaction_read_only" => {
                                read_only = val.as_deref().map(|v| v != "0" && v != "false");
                                "transaction_read_only"
                            }
                            "transaction_isolation" => "transaction_isolation",
                            "transaction_deferrable" => "transaction_deferrable",
                            other => other,
                        };
                        let setting = if name.as_deref() == Some("session characteristics") {
                            format!("default_{setting}")
                        } else {
                            setting.to_string()
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

    fn transaction(&mut self, body: Id) {
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

    fn copy(&mut self, body: Id) {
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

/// Function risk categories that write or act outside the query, so the statement is not
/// read-only (reading server files or sleeping is denied by policy, not here).
/// The relation PostgreSQL resolves `rel` to in the database's catalog: the first of its
/// candidate schemas that holds one of that name.
fn found_relation<'s>(
    snap: &'s super::snapshot::Snapshot,
    rel: &Relation,
) -> Option<&'s super::snapshot::RelationDef> {
    rel.candidates
        .iter()
        .find_map(|s| snap.relation(s, &rel.name))
}

/// PostgreSQL's own scalar types a query often names in a cast (`x::int`, `date '…'`): the
/// name in the grammar's tree, and the type as `format_type` writes it (what a snapshot's
/// `left_accepts` lists). Each is one type: a cast to it makes an operand of exactly it.
const BUILTIN_TYPES: &[(&str, [&str; 1])] = &[
    ("int2", ["smallint"]),
    ("int4", ["integer"]),
    ("int8", ["bigint"]),
    ("float4", ["real"]),
    ("float8", ["double precision"]),
    ("numeric", ["numeric"]),
    ("bool", ["boolean"]),
    ("text", ["text"]),
    ("varchar", ["character varying"]),
    ("bpchar", ["character"]),
    ("name", ["name"]),
    ("date", ["date"]),
    ("time", ["time without time zone"]),
    ("timetz", ["time with time zone"]),
    ("timestamp", ["timestamp without time zone"]),
    ("timestamptz", ["timestamp with time zone"]),
    ("interval", ["interval"]),
    ("json", ["json"]),
    ("jsonb", ["jsonb"]),
    ("bytea", ["bytea"]),
    ("uuid", ["uuid"]),
    ("inet", ["inet"]),
    ("cidr", ["cidr"]),
    ("oid", ["oid"]),
];

const WRITING_RISKS: &[&str] = &[
    "dynamic_sql",
    "external_session",
    "large_objects",
    "backend_control",
    "advisory_locks",
    "sequences",
    "notify",
    "configuration",
    "statistics_reset",
    "replication_backup",
    "maintenance",
    "scheduler",
];

/// A statement node as SQL people write it (`DeleteStmt` → `DELETE`).
pub fn statement_label(node: &str) -> String {
    let base = node.strip_suffix("Stmt").unwrap_or(node);
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    match out.as_str() {
        "VARIABLE SET" => "SET".into(),
        "VARIABLE SHOW" => "SHOW".into(),
        _ => out,
    }
}

/// Do two type names (`format_type`'s, or as written) name the same type, or one an array
/// of the other? Compared without schema and quotes: a name shared by two schemas matches
/// both (more casts counted, never fewer).
fn same_type(a: &str, b: &str) -> bool {
    fn base(t: &str) -> &str {
        let mut t = t.trim();
        while let Some(inner) = t.strip_suffix("[]") {
            t = inner.trim_end();
        }
        let t = t.rsplit('.').next().unwrap_or(t);
        t.trim_matches('"')
    }
    base(a) == base(b)
}

fn dedup<T: PartialEq>(v: &mut Vec<T>) {
    let mut i = 0;
    while i < v.len() {
        if v[..i].contains(&v[i]) {
            v.remove(i);
        } else {
            i += 1;
        }
    }
}
