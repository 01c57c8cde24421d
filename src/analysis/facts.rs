//! The facts document: everything the analysis learned about one SQL text, in the shape the
//! policies read as `input.query`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What PostgreSQL's own grammar says one SQL text does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Length of the SQL text in bytes.
    pub sql_bytes: usize,
    /// How many statements the parser found (a text of only comments has none).
    pub statement_count: usize,
    /// `search_path` the unqualified names were resolved through.
    pub search_path: Vec<String>,
    /// Which catalog names were resolved against.
    #[serde(default)]
    pub catalog: CatalogUsed,
    pub statements: Vec<StatementFacts>,
}

impl Facts {
    /// True when the facts were resolved against a snapshot that lacks a function, operator
    /// or relation the query names (it may have been created since the snapshot was read).
    pub fn names_missing_from_catalog(&self) -> bool {
        self.catalog.source == CatalogSource::Snapshot
            && self.statements.iter().any(|s| {
                s.functions
                    .iter()
                    .any(|f| f.source == FunctionSource::Unknown)
                    || s.operators.iter().any(|o| o.function.is_none())
                    || s.relations
                        .iter()
                        .any(|r| !r.cte && r.kind.is_none() && r.access != Access::Create)
            })
    }
}

/// The catalog the analysis resolved names against: the served database's own (a snapshot)
/// or PostgreSQL 15's built-ins only (the CLI without `--catalog`, a database not reached).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogUsed {
    /// `snapshot` or `static`.
    pub source: CatalogSource,
    /// The snapshot's server (`server_version_num`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version_num: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogSource {
    #[default]
    Static,
    Snapshot,
}

/// The facts of one top-level statement, gathered from its whole tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementFacts {
    pub index: usize,
    /// Byte offset and length of the statement in the SQL text.
    pub location: usize,
    pub length: usize,
    /// PostgreSQL's parse node name (`SelectStmt`, `VariableSetStmt`, …).
    pub node: String,
    pub kind: StatementKind,
    /// Kinds of the statements nested anywhere inside (CTE bodies, `EXPLAIN`, `CREATE … AS`, …).
    pub nested_kinds: Vec<StatementKind>,
    /// True only when nothing in the tree writes, locks, creates, or changes the session.
    pub read_only: bool,
    /// Why the statement is not read-only: one entry per construct found.
    pub not_read_only: Vec<Construct>,
    pub relations: Vec<Relation>,
    pub functions: Vec<FunctionCall>,
    /// Operators that are not built into PostgreSQL (they call arbitrary functions).
    pub operators: Vec<Operator>,
    /// Columns named or reached through `*` / whole-row references.
    pub columns: Vec<ColumnRef>,
    pub settings: Vec<SettingAccess>,
    pub locking: Vec<Locking>,
    /// `SELECT … INTO` / `CREATE TABLE AS` targets.
    pub into: Vec<Relation>,
    pub explain: Option<Explain>,
    /// Transaction control details (`BEGIN`, `SET TRANSACTION`, …) when present.
    pub transaction: Option<Transaction>,
    /// Node types (or `Parent.field` places) the walker does not classify: the default
    /// policy denies on any of them.
    pub unclassified: Vec<String>,
    /// `$n` parameters referenced (the tools send none, so such a statement cannot run).
    pub parameters: Vec<i64>,
    /// The outermost query's `LIMIT` (`FETCH FIRST` too): absent without one, and for
    /// `LIMIT ALL` or `LIMIT NULL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<RowBound>,
    /// The outermost query's `OFFSET`, the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<RowBound>,
    /// Aggregate calls of the outermost query (`count`, `sum`, …; not those of its subqueries,
    /// CTEs or set-operation branches), by name; `aggregate` is whether there is one.
    #[serde(default)]
    pub aggregates: Vec<String>,
    #[serde(default)]
    pub aggregate: bool,
    /// The outermost query has `GROUP BY` (then an aggregate returns a row per group).
    #[serde(default)]
    pub group_by: bool,
    /// The outermost query is `SELECT DISTINCT` or `DISTINCT ON`.
    #[serde(default)]
    pub distinct: bool,
    /// The outermost query computes window functions (`OVER`, `WINDOW`).
    #[serde(default)]
    pub window: bool,
    /// The outermost query has `ORDER BY`.
    #[serde(default)]
    pub order_by: bool,
}

/// A `LIMIT` or `OFFSET`: a constant row count, or `"expression"` for anything else (a
/// parameter, arithmetic, a subquery, a string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RowBound {
    Count(i64),
    Expression(String),
}

/// The normalized kind of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Explain,
    Show,
    Set,
    Reset,
    Discard,
    Transaction,
    Copy,
    Ddl,
    Dcl,
    Prepare,
    Execute,
    Deallocate,
    Cursor,
    Notify,
    Listen,
    Lock,
    Maintenance,
    Do,
    Call,
    Load,
    Utility,
}

impl StatementKind {
    /// True for the kinds that change table data.
    pub fn is_dml(self) -> bool {
        matches!(
            self,
            Self::Insert | Self::Update | Self::Delete | Self::Merge
        )
    }
}

/// One construct that makes a statement other than read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Construct {
    /// A stable name policies match on (`data_modifying_cte`, `select_into`, `row_lock`, …).
    pub construct: String,
    /// What was found, for people.
    pub detail: String,
}

/// How a statement touches a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    Lock,
    Create,
}

/// A relation named anywhere in the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// Schema it resolves to (`None` only for a CTE reference).
    pub schema: Option<String>,
    pub name: String,
    /// Every schema the name could resolve to through `search_path`, most likely first.
    pub candidates: Vec<String>,
    /// Whether the schema was written in the query.
    pub qualified: bool,
    pub access: Access,
    /// The name resolved to a CTE of an enclosing `WITH`: no table is read by it.
    pub cte: bool,
    /// A relation of PostgreSQL's own catalogs (`pg_catalog`, `information_schema`).
    pub builtin: bool,
    /// `schema.name` for matching (`name` for a CTE).
    pub qualified_name: String,
    /// Columns this relation's rows are pinned to constants by the `WHERE` of the query level
    /// that reads it (`name = 'work_mem'`, `attname IN ('a', 'b')`). Recorded for PostgreSQL's
    /// own catalog relations only, so that a policy can tell a harmless read of a catalog view
    /// (`pg_settings WHERE name = 'work_mem'`) from one that can show protected values. Empty
    /// when the relation sits in a join, or when any other condition of that `WHERE` touches
    /// its columns (PostgreSQL does not promise to filter before evaluating it, so an error
    /// message could show a value of an unpinned row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<Pin>,
    /// From the catalog snapshot: `table`, `view`, `materialized_view`, `foreign_table`,
    /// `partitioned_table`, `sequence` (absent without a snapshot or when not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// From the catalog snapshot: `reltuples` (-1: never analyzed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_estimate: Option<i64>,
    /// A foreign table: reading it sends queries to another server (`foreign_server`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_server: Option<String>,
    /// From the catalog snapshot: the tables it inherits from or is a partition of
    /// (`schema.table`, transitively). Its rows are theirs, so their rules apply to it; its
    /// columns are listed under these names too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
    /// From the catalog snapshot, for a view: what its definition reads, through other views
    /// too (`schema.table` and `schema.table.column`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view_reads: Vec<String>,
    /// The tables of `view_reads` (`schema.table`), once each: what the table rules check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub view_tables: Vec<String>,
    /// From the catalog snapshot: the partitions and child tables (transitively) whose rows a
    /// read without `ONLY` reads too. Their rules apply to it; its columns are listed under
    /// these names too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descendants: Vec<String>,
    /// For a statistics view (`pg_catalog.pg_stats`) read with the database's catalog: what
    /// its rows, as the query pins them, sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_of: Option<Box<StatsOf>>,
}

/// What the rows of a statistics view (`pg_stats`) pinned to some relations and columns can
/// show, mapped to the relations and columns whose values they sample.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsOf {
    /// The relations whose rows are sampled (`schema.table`): their table rules apply.
    pub tables: Vec<String>,
    /// The columns whose values are sampled: `schema.table.column`, or `schema.table.*` when
    /// any of its columns may be (an index expression over the whole row, an unpinned
    /// `attname`).
    pub columns: Vec<String>,
    /// Rows that cannot be mapped: an unpinned `tablename`, or a name this catalog lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmapped: Vec<String>,
}

/// A column of a relation compared with constants only: its rows are those with these values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub column: String,
    /// The constants, as written (PostgreSQL compares them with the column's own type).
    pub values: Vec<String>,
}

/// A function call found anywhere (expressions, `FROM`, `FILTER`, windows, defaults, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub schema: Option<String>,
    pub name: String,
    /// `schema.name` when the schema is known, else `name`.
    pub qualified_name: String,
    pub qualified: bool,
    pub builtin: bool,
    pub volatility: Volatility,
    /// Risk categories; empty for an ordinary function.
    pub risks: Vec<String>,
    /// Where it was found: `call`, `from`, `tablesample`, `call_statement`, `operator`, `cast`.
    pub context: String,
    /// `builtin`, `extension`, `user` (from the catalog snapshot), or `unknown`.
    pub source: FunctionSource,
    /// Runs with its owner's privileges (from the catalog snapshot).
    pub security_definer: bool,
    /// The extension it belongs to (from the catalog snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Its language (`sql`, `plpgsql`, `c`, `internal`; from the catalog snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The operator it runs behind (`context` is then `operator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The type (`schema.name`) a conversion to which runs it: a cast's function or a
    /// domain's check (`context` is then `cast`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<String>,
    /// The view (`schema.name`) whose definition runs it: a read of a view runs what its
    /// definition calls (a materialized view holds what it returned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
}

/// Where a function comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionSource {
    /// Built into PostgreSQL.
    Builtin,
    /// Installed by `CREATE EXTENSION`.
    Extension,
    /// Created by a user of the database.
    User,
    /// Not in the catalog used (the static catalog knows built-ins only).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
    /// Not a built-in: PostgreSQL decides at run time.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub schema: Option<String>,
    pub name: String,
    pub builtin: bool,
    /// The function behind it (from the catalog snapshot; the worst case when the name could
    /// reach several operators): the policy judges the operator by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
}

/// A column a statement reads, with the relations it may belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRef {
    /// Column name; `*` for a star or a whole-row reference.
    pub name: String,
    /// `schema.table` of every relation the column may come from (more than one when an
    /// unqualified column is not attributable without the database's catalog). Shared, not
    /// copied: every column of a query level names the same few tables.
    pub relations: Vec<Arc<str>>,
    /// True when every column of the relations may be read: `*`, `t.*`, a whole-row
    /// reference, a `NATURAL` join, a column alias list.
    pub star: bool,
    /// How the query reaches the column: the policy's message tells the agent what to change.
    pub via: ColumnVia,
    /// Where the reference sits: only `projection` returns the column's values as they are
    /// (what a masked column allows); every other place compares or transforms them.
    #[serde(rename = "use", default)]
    pub use_: ColumnUse,
}

/// Where a column reference sits in its query. A subquery's or CTE's column is traced to the
/// columns it passes through: a reference to it is recorded as theirs, with its own place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnUse {
    /// The whole entry of a select list whose rows are the result or pass to it (the
    /// statement's query, a subquery in `FROM`, a CTE), as it is: `col`, `t.col AS x`, `*`.
    /// Not in a set operation's branch or a `DISTINCT` query, nor named by `ORDER BY` or
    /// `GROUP BY` by position or output name.
    Projection,
    /// Inside an expression of a select list: a function, operator, cast, `CASE`, `ROW`.
    Expression,
    Where,
    /// A join's `ON` condition.
    Join,
    OrderBy,
    GroupBy,
    Having,
    /// The select list or `DISTINCT ON` of a `SELECT DISTINCT`.
    Distinct,
    /// A window definition (`OVER`, `WINDOW`).
    Window,
    /// The select list of a `UNION`, `INTERSECT` or `EXCEPT` branch.
    SetOperation,
    /// The select list of a subquery in an expression (`IN`, `EXISTS`, `ANY`, scalar).
    Subquery,
    /// An argument of a function in `FROM`, a `TABLESAMPLE`, `VALUES`.
    From,
    Limit,
    /// Anywhere else (`RETURNING`, a statement other than a query).
    #[default]
    Other,
}

/// How a query reads a column. Only `named` and `star` are written by the agent as such; the
/// others are implicit references (threat model, "implicit references").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnVia {
    /// `col`, `t.col`, `s.t.col`.
    Named,
    /// `*`, `t.*`, `TABLE t`.
    Star,
    /// `SELECT t FROM t`, `row_to_json(t)`, `(t).col`.
    WholeRow,
    /// `JOIN … USING (col)`: the join compares the column of both sides.
    JoinUsing,
    /// `NATURAL JOIN`: compares every column the two sides share, unknown without the catalog.
    NaturalJoin,
    /// `FROM t AS a(x, y)` renames t's first columns: any of them may be read under a new name.
    ColumnAliases,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingAccess {
    /// Setting name, lower case; `None` when computed at run time (`set_config(x, …)`).
    pub name: Option<String>,
    /// `set`, `reset`, `show`, `read` (`current_setting`), `write` (`set_config`).
    pub action: String,
    /// `SET LOCAL` / `set_config(…, true)`.
    pub local: bool,
    /// Literal value when set, as written.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locking {
    /// `for_update`, `for_no_key_update`, `for_share`, `for_key_share`.
    pub strength: String,
    /// Tables named in `OF …` (empty: every table of the query level).
    pub of: Vec<String>,
    /// The SQL to remove, for messages (`FOR UPDATE`).
    pub clause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    pub analyze: bool,
    /// Every option, lower case, with its value as written (`true` when bare).
    pub options: Vec<(String, String)>,
    /// The facts of the explained statement.
    pub statement: Box<StatementFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// `begin`, `start`, `commit`, `rollback`, `savepoint`, `release`, `prepare`, …
    pub action: String,
    /// `Some(false)` for `READ WRITE`, `Some(true)` for `READ ONLY`.
    pub read_only: Option<bool>,
}
