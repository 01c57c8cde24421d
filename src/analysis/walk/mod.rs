//! The complete walk of one statement's parse tree.
//!
//! Every field of every node is visited: nodes with a meaning for the guard (relations,
//! function calls, CTE scopes, locking, `INTO`, nested statements, settings) are handled by
//! name and then their remaining fields are walked like any container's. A node or an
//! unwrapped struct this walker does not know is recorded in `unclassified` and still walked.
//! Relying on `pg_query`'s helpers instead is how other guards were bypassed (threat model,
//! "known traps").
//!
//! This file holds the walker and the generic traversal (every field of every node, and the
//! dispatch by node type); each family of nodes has its own file: `queries` (`SELECT` and the
//! statements that change rows), `from_items` (FROM items, relations, column references),
//! `expressions` (calls, operators, casts, constants), `utility` (`EXPLAIN`, `SET`,
//! transactions, `COPY`) and `implicit` (what the database runs on its own: view definitions,
//! statistics rows, implicit casts).

use std::sync::Arc;

mod expressions;
mod from_items;
mod implicit;
mod queries;
mod utility;

pub use queries::BUILTIN_AGGREGATES;

use super::catalog::{catalog, is_system_schema};
use super::facts::*;
use super::json::{Id, Member, Tree, Value};
use super::node_schema::typed_field;
use super::resolve::{self, Operands};

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
    /// For a subquery or a CTE: the columns of tables its select list passes through as they
    /// are, so that a reference to one of its columns is recorded as theirs.
    passes: Option<Arc<[Pass]>>,
}

impl ScopeItem<'_> {
    /// A FROM item whose columns the analysis does not know.
    fn opaque() -> Self {
        ScopeItem {
            name: String::new(),
            relations: Vec::new(),
            columns: None,
            passes: None,
        }
    }
}

/// A column of tables that a subquery's or CTE's select list returns as it is: `SELECT
/// email AS e` passes `email` as `e`, `SELECT *` every column under its own name.
#[derive(Debug, Clone, PartialEq)]
struct Pass {
    /// The name it has in the subquery's result; `None` for a `*`: every column of
    /// `relations` under its own name.
    out: Option<String>,
    /// The column it is (`*` with `out: None`).
    name: String,
    relations: Vec<Arc<str>>,
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
    /// Where the column references being walked sit (see [`ColumnUse`]).
    use_: ColumnUse,
    /// The `SelectStmt` (its body) about to be walked whose rows are the result or pass to
    /// it: the statement's query, a subquery in `FROM`, a CTE's query.
    pending_output: Option<Id>,
    /// What the last such query's select list passes through as it is.
    passes: Option<Arc<[Pass]>>,
    /// While a bare column reference of such a select list is walked: its output name and
    /// what it passes.
    collecting: Option<(Option<String>, Vec<Pass>)>,
    /// What each CTE in scope passes: (CTE scope depth, name, passes).
    cte_passes: Vec<(usize, String, Arc<[Pass]>)>,
}

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
            use_: ColumnUse::Other,
            pending_output: None,
            passes: None,
            collecting: None,
            cte_passes: Vec::new(),
        }
    }

    /// Walks a top-level statement (`{"SelectStmt": {…}}`).
    pub fn statement(mut self, stmt: Id) -> (StatementFacts, bool) {
        match wrapper(self.tree, stmt) {
            Some((ty, body)) => {
                self.facts.node = ty.to_string();
                if ty == "SelectStmt" {
                    self.pending_output = Some(body);
                }
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
            "SubLink" | "SortBy" => self.sublink_or_sort(ty, body, ctx),
            "CaseExpr" => self.case_expr(body, ctx),
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
            "VariableShowStmt" => self.variable_show(body),
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
            "IntoClause" => self.select_into(body),
            "CreateStmt"
            | "ViewStmt"
            | "CreateTableAsStmt"
            | "CreateSeqStmt"
            | "CreateForeignTableStmt"
            | "CompositeTypeStmt" => self.fields(
                ty,
                body,
                Ctx {
                    access: Access::Create,
                },
                &[],
            ),
            "CommonTableExpr" | "WithClause" | "LockingClause" => {
                // Only meaningful inside the statement that owns them (handled there); met
                // anywhere else they are still walked.
                self.fields(ty, body, ctx, &[]);
            }
            _ if statement_kind(ty).is_some() => self.other_statement(ty, body),
            "RangeSubselect" => self.range_subselect(body, ctx),
            "WindowDef" => self.window_def(body, ctx),
            _ if is_container(ty) => self.fields(ty, body, ctx, &[]),
            _ => {
                self.facts.unclassified.push(ty.to_string());
                self.fields(ty, body, ctx, &[]);
            }
        }
    }

    /// `x op ANY (SELECT …)` and `ORDER BY x USING op` name operators too; `x IN (SELECT …)`
    /// runs `=` without naming it (PostgreSQL looks `=` up by name, as if it were written).
    fn sublink_or_sort(&mut self, ty: &str, body: Id, ctx: Ctx) {
        let field = if ty == "SubLink" { "operName" } else { "useOp" };
        if let Some(list) = self.tree.get(body, field) {
            let names = self.name_list(list);
            let operands = self.compared(body, ty == "SubLink", "testexpr");
            self.operator(&names, operands);
        } else if ty == "SubLink" && self.tree.get_str(body, "subLinkType") == Some("ANY_SUBLINK") {
            let operands = self.compared(body, true, "testexpr");
            self.operator(&["=".to_string()], operands);
        }
        self.fields(ty, body, ctx, &[field]);
    }

    /// `CASE x WHEN v …` compares with `=`, looked up by name for each `WHEN`.
    fn case_expr(&mut self, body: Id, ctx: Ctx) {
        if self.tree.get(body, "arg").is_some() {
            let operands = self.compared(body, true, "arg");
            self.operator(&["=".to_string()], operands);
        }
        self.fields("CaseExpr", body, ctx, &[]);
    }

    /// `OVER (PARTITION BY … ORDER BY …)` and `WINDOW w AS (…)`: what they name is compared.
    fn window_def(&mut self, body: Id, ctx: Ctx) {
        let around = std::mem::replace(&mut self.use_, ColumnUse::Window);
        self.fields("WindowDef", body, ctx, &[]);
        self.use_ = around;
    }

    fn variable_show(&mut self, body: Id) {
        let name = self.tree.get_str(body, "name").map(str::to_lowercase);
        self.facts.settings.push(SettingAccess {
            name,
            action: "show".into(),
            local: false,
            value: None,
        });
    }

    /// Any other statement: what it names is read (a cursor's or a prepared statement's
    /// query) or written.
    fn other_statement(&mut self, ty: &str, body: Id) {
        let access = if matches!(ty, "DeclareCursorStmt" | "PrepareStmt" | "VariableShowStmt") {
            Access::Read
        } else {
            Access::Write
        };
        self.fields(ty, body, Ctx { access }, &[]);
    }

    // ---- query levels and CTE scope -----------------------------------------------------

    // ---- relations ---------------------------------------------------------------------

    // ---- columns -------------------------------------------------------------------------

    // ---- functions and operators -----------------------------------------------------

    // ---- statements with their own facts -------------------------------------------
}

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
