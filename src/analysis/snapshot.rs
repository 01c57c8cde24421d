//! A database's own catalog, as the analysis resolves names against it.
//!
//! The static catalog ([`super::catalog`]) knows PostgreSQL 15's built-ins and nothing else:
//! every other function is `unknown` and denied. A snapshot, read from the served database
//! (`execution::catalog`) or from a file written by `sqlguard catalog dump`, says what each
//! function, operator and relation of that database really is: its volatility, whether it
//! runs as its owner (`SECURITY DEFINER`), the extension it came with, the relation's kind
//! and size. Resolution fails closed: when a name could reach several objects (overloads
//! across the `search_path`, whose argument types the analysis cannot see), the facts are
//! the worst case of all of them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::facts::{FunctionSource, StatsOf, Volatility};

/// The snapshot file format's version (`sqlguard catalog dump`). Format 3 holds indexes (with
/// the columns they are built on) and each view's definition: an older file cannot say what a
/// statistics row of an index shows or what a view's definition runs, so it is refused.
pub const FORMAT: u32 = 3;

/// One database's catalog at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub server: Server,
    pub extensions: Vec<Extension>,
    pub functions: Vec<Function>,
    pub operators: Vec<OperatorDef>,
    pub relations: Vec<RelationDef>,
    /// Casts and domain checks that run a function not built into PostgreSQL.
    pub casts: Vec<CastDef>,
    #[serde(skip)]
    index: Index,
}

/// Where and when a snapshot was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// `server_version_num` (150004 for 15.4).
    pub version_num: u32,
    pub version: String,
    pub database: String,
    /// When it was read (RFC 3339).
    pub taken_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    pub version: String,
    pub schema: String,
}

/// A `pg_proc` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// The argument types as PostgreSQL writes them (`text, text`).
    pub arguments: String,
    /// `function`, `aggregate`, `window` or `procedure`.
    pub kind: String,
    pub volatility: Volatility,
    pub security_definer: bool,
    pub language: String,
    /// The extension it belongs to (`pg_depend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    pub source: FunctionSource,
    /// How many arguments it declares (`pronargs`), how many of them have defaults, and
    /// whether the last is `VARIADIC`. `None` in snapshots written before these fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nargs: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variadic: Option<bool>,
    /// For a function not built into PostgreSQL, per argument: the types an operand of a
    /// built-in type may have to reach it (as [`OperatorDef::left_accepts`]); `None` for an
    /// argument any operand may reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepts: Option<Vec<Option<Vec<String>>>>,
}

/// What the analysis knows of a call's arguments: their number and the types of those the
/// query fixes (see `resolve::Operands`).
#[derive(Debug, Clone, Copy)]
pub struct Arguments<'a> {
    pub types: &'a [Option<&'static [&'static str]>],
    /// Named arguments or an explicit `VARIADIC`: positions do not say which parameter an
    /// argument goes to.
    pub unpositional: bool,
}

impl Function {
    /// A function with these facts, in language `sql`, of no extension, whose arguments are
    /// not known (test catalogs).
    pub fn named(
        schema: &str,
        name: &str,
        volatility: Volatility,
        security_definer: bool,
        source: FunctionSource,
    ) -> Function {
        Function {
            schema: schema.into(),
            name: name.into(),
            arguments: String::new(),
            kind: "function".into(),
            volatility,
            security_definer,
            language: "sql".into(),
            extension: None,
            source,
            nargs: None,
            defaults: None,
            variadic: None,
            accepts: None,
        }
    }

    /// Could PostgreSQL pick this function for `args`? Fail closed: `true` unless the
    /// catalog rules it out (too many or too few arguments, or a known argument type with no
    /// implicit cast to a parameter of an extension's or user's own type).
    pub fn may_take(&self, args: &Arguments<'_>) -> bool {
        if args.unpositional {
            return true;
        }
        let (Some(nargs), Some(defaults), Some(variadic)) =
            (self.nargs, self.defaults, self.variadic)
        else {
            return true;
        };
        let (n, nargs) = (args.types.len(), usize::from(nargs));
        if variadic {
            // Its last parameter takes any number of arguments: only the others are fixed.
            let fixed = nargs.saturating_sub(1);
            return self.accepted(&args.types[..n.min(fixed)]);
        }
        if n > nargs || n + usize::from(defaults) < nargs {
            return false;
        }
        self.accepted(args.types)
    }

    fn accepted(&self, types: &[Option<&'static [&'static str]>]) -> bool {
        let Some(accepts) = &self.accepts else {
            return true;
        };
        types
            .iter()
            .zip(accepts)
            .all(|(known, accepts)| may_coerce(accepts.as_deref(), *known))
    }
}

/// For a view whose definition only renames the columns of its one table (`SELECT t.a, t.b AS
/// c FROM s.t`, what `pg_get_viewdef` writes for `SELECT * FROM t`): the base column
/// (`schema.table.column`) each of its columns is. `None` for any other definition (a
/// condition, a join, an expression, an ordering, …): which base columns feed which of its
/// columns is then not known.
fn column_map(definition: &str) -> Option<HashMap<String, String>> {
    use pg_query::NodeEnum;
    let parsed = pg_query::parse(definition, 0).ok()?;
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return None;
    };
    let Some(NodeEnum::SelectStmt(s)) = raw.stmt.as_ref()?.node.as_ref() else {
        return None;
    };
    let plain = s.op == pg_query::protobuf::SetOperation::SetopNone as i32
        && s.where_clause.is_none()
        && s.group_clause.is_empty()
        && s.having_clause.is_none()
        && s.window_clause.is_empty()
        && s.distinct_clause.is_empty()
        && s.values_lists.is_empty()
        && s.sort_clause.is_empty()
        && s.limit_count.is_none()
        && s.limit_offset.is_none()
        && s.locking_clause.is_empty()
        && s.with_clause.is_none()
        && s.into_clause.is_none();
    let [from] = s.from_clause.as_slice() else {
        return None;
    };
    let Some(NodeEnum::RangeVar(table)) = from.node.as_ref() else {
        return None;
    };
    if !plain || table.schemaname.is_empty() {
        return None;
    }
    let qualifier = table
        .alias
        .as_ref()
        .map_or(table.relname.as_str(), |a| a.aliasname.as_str());
    let mut map = HashMap::new();
    for t in &s.target_list {
        let Some(NodeEnum::ResTarget(target)) = t.node.as_ref() else {
            return None;
        };
        let Some(NodeEnum::ColumnRef(c)) = target.val.as_ref()?.node.as_ref() else {
            return None;
        };
        let names = c
            .fields
            .iter()
            .map(|f| match f.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect::<Option<Vec<&str>>>()?;
        let [q, column] = names.as_slice() else {
            return None;
        };
        if *q != qualifier || !target.indirection.is_empty() {
            return None;
        }
        let name = if target.name.is_empty() {
            column
        } else {
            target.name.as_str()
        };
        let base = format!("{}.{}.{column}", table.schemaname, table.relname);
        map.insert(name.to_string(), base);
    }
    Some(map)
}

/// Can an operand of one of the types `known` be an argument of a parameter that accepts
/// `accepts`? PostgreSQL considers an operator or function only when each argument can be
/// coerced implicitly (`can_coerce_type`); to an extension's or user's own base type, a
/// built-in type coerces only through an implicit `pg_cast` entry. `None` on either side:
/// it may.
pub(crate) fn may_coerce(accepts: Option<&[String]>, known: Option<&[&str]>) -> bool {
    match (accepts, known) {
        (Some(types), Some(known)) => known.iter().any(|t| types.iter().any(|a| a == t)),
        _ => true,
    }
}

/// A `pg_operator` row with the function behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorDef {
    pub schema: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right: Option<String>,
    /// When the left argument's type is a base, enum, range or multirange type: the types an
    /// operand of a built-in type may have for PostgreSQL to pick this operator, as
    /// `format_type` writes them. For an extension's or a user's own type, those with an
    /// implicit cast to it (`pg_cast`, `castcontext = 'i'`); for a built-in type of an
    /// operator not PostgreSQL's own (intarray's `integer[] + integer`), the type itself, those
    /// with an implicit cast to it and, for an array, arrays of those of its element. `None`:
    /// any operand may reach it (a domain, a pseudo-type, a snapshot without this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_accepts: Option<Vec<String>>,
    /// The same for the right argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_accepts: Option<Vec<String>>,
    pub function_schema: String,
    pub function_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    pub source: FunctionSource,
}

/// A `pg_class` row of a relation a query can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationDef {
    pub schema: String,
    pub name: String,
    /// `table`, `view`, `materialized_view`, `foreign_table`, `partitioned_table`,
    /// `sequence`, `composite_type`, `index`.
    pub kind: String,
    /// `reltuples` (-1 when never analyzed).
    pub rows_estimate: i64,
    pub bytes: i64,
    /// The foreign server of a foreign table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The tables it inherits from or is a partition of (`schema.table`, direct parents).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// For a view or materialized view: the relations (`schema.table`) and columns
    /// (`schema.table.column`) its definition reads (`pg_depend` of its rewrite rule); for an
    /// index, its table and the columns its keys, expressions and predicate use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// For a view or materialized view: its definition (`pg_get_viewdef`, every name outside
    /// `pg_catalog` schema-qualified), analyzed like a query wherever the view is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Its columns in order: name, and type as `format_type` writes it (`integer`, `citext`).
    /// `None` in snapshots written before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<(String, String)>>,
    /// Its `pg_class` OID and each column's attribute number (same order as `columns`): what
    /// a result's row description names a column by. Absent in dumped snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attnums: Option<Vec<i16>>,
}

/// A function that a cast to a type runs, not built into PostgreSQL: a `pg_cast` function
/// (`CREATE CAST … WITH FUNCTION`), or a function a domain's `CHECK` constraint calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastDef {
    /// The type cast to.
    pub type_schema: String,
    pub type_name: String,
    /// The type cast from (`None` for a domain check, which runs whatever the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub function_schema: String,
    pub function_name: String,
    /// `cast` or `domain_check`.
    pub via: String,
    /// For a cast: `implicit` (PostgreSQL applies it by itself wherever the two types meet),
    /// `assignment` (also when storing into a column) or `explicit` (only when written).
    /// Absent in files dumped before it was read: taken as `implicit` (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The type cast to, as `format_type` writes it (a cast's, absent for a domain check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the source type is PostgreSQL's own (absent: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_builtin: Option<bool>,
    /// Whether the target type is PostgreSQL's own (absent: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_builtin: Option<bool>,
}

impl CastDef {
    /// The types of this cast that are not PostgreSQL's own (`format_type` names): a value
    /// of one of them must be in a statement for the cast to run there. Empty when both are
    /// built in or the snapshot does not say (then it may run anywhere).
    pub fn own_types(&self) -> impl Iterator<Item = &str> {
        let source = (self.source_builtin == Some(false)).then_some(self.source.as_deref());
        let target = (self.target_builtin == Some(false)).then_some(self.target.as_deref());
        [source.flatten(), target.flatten()].into_iter().flatten()
    }

    /// The contexts PostgreSQL runs this cast in without the query naming its type.
    pub fn runs_unwritten(&self) -> Option<CastContext> {
        if self.via != "cast" {
            return None;
        }
        match self.context.as_deref() {
            Some("explicit") => None,
            Some("assignment") => Some(CastContext::Assignment),
            _ => Some(CastContext::Implicit),
        }
    }
}

/// Where PostgreSQL applies a cast by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastContext {
    /// Wherever a value of the source type meets the target type (an operator's or a
    /// function's argument, a comparison, `CASE`, `UNION` …).
    Implicit,
    /// When a value is stored into a column (`INSERT`, `UPDATE`, `MERGE`), and implicitly.
    Assignment,
}

/// Where a relation's rows come from, beyond itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Every table it inherits from or is a partition of, transitively (nearest first).
    pub ancestors: Vec<String>,
    /// For a view: what its definition reads, through other views too (`schema.table` and
    /// `schema.table.column`, sorted).
    pub view_reads: Vec<String>,
    /// The `schema.table` of every `view_reads` entry, once each (sorted): what a table rule
    /// looks at, without splitting names per call.
    pub view_tables: Vec<String>,
    /// Every partition and child table below it, transitively: a read of it without `ONLY`
    /// reads their rows too.
    pub descendants: Vec<String>,
}

/// Every partition and child table below `table`, transitively (nearest first).
fn descendants(table: &str, children: &HashMap<&str, Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut todo: Vec<&str> = children
        .get(table)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    while let Some(c) = todo.pop() {
        if out.iter().any(|o| o == c) || out.len() > 10_000 {
            continue;
        }
        out.push(c.to_string());
        todo.extend(children.get(c).into_iter().flatten().map(String::as_str));
    }
    out
}

/// The distinct `schema.table` of `schema.table[.column]` entries.
fn tables_of(entries: &[String]) -> Vec<String> {
    let mut tables: Vec<String> = entries
        .iter()
        .map(|e| match e.match_indices('.').nth(1) {
            Some((end, _)) => e[..end].to_string(),
            None => e.clone(),
        })
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// Positions by name, and each relation's lineage, built once per snapshot.
#[derive(Debug, Clone, Default)]
struct Index {
    functions: HashMap<Box<str>, Vec<u32>>,
    operators: HashMap<Box<str>, Vec<u32>>,
    relations: HashMap<Box<str>, Vec<u32>>,
    casts: HashMap<Box<str>, Vec<u32>>,
    /// The casts PostgreSQL may apply without the query naming their type.
    unwritten_casts: Vec<(u32, CastContext)>,
    /// Per relation (same positions as `relations`): its ancestors and what it reads as a view.
    lineage: Vec<Lineage>,
    /// Per relation: its definition's facts, analyzed at the first read of the view.
    pub(crate) view_facts: Vec<std::sync::OnceLock<ViewFacts>>,
    /// Relation positions by `pg_class` OID.
    oids: HashMap<u32, u32>,
}

/// A view definition's facts, or why it could not be analyzed.
pub(crate) type ViewFacts = Result<std::sync::Arc<super::facts::StatementFacts>, String>;

fn index_by<T>(items: &[T], name: impl Fn(&T) -> &str) -> HashMap<Box<str>, Vec<u32>> {
    let mut map: HashMap<Box<str>, Vec<u32>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        map.entry(name(item).into()).or_default().push(i as u32);
    }
    map
}

/// Does a name (in `schema` when it names one, else through `path`) reach an object of
/// `object_schema`?
fn reaches<S: AsRef<str>>(schema: Option<&str>, path: &[S], object_schema: &str) -> bool {
    match schema {
        Some(s) => object_schema == s,
        None => path.iter().any(|s| s.as_ref() == object_schema),
    }
}

/// The items of `index` named `name` that the name reaches (see [`reaches`]).
fn in_scope<'a, T, S: AsRef<str>>(
    index: &'a HashMap<Box<str>, Vec<u32>>,
    items: &'a [T],
    name: &str,
    schema: Option<&'a str>,
    path: &'a [S],
    schema_of: impl Fn(&T) -> &str + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    index
        .get(name)
        .into_iter()
        .flatten()
        .map(move |&i| &items[i as usize])
        .filter(move |item| reaches(schema, path, schema_of(item)))
}

/// What a function name resolves to: the worst case of every object it could reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'s> {
    /// The object the facts name: the most dangerous candidate.
    pub function: &'s Function,
    pub volatility: Volatility,
    pub security_definer: bool,
    pub source: FunctionSource,
}

pub(crate) fn volatility_rank(v: Volatility) -> u8 {
    match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::Volatile => 2,
        Volatility::Unknown => 3,
    }
}

pub(crate) fn source_rank(s: FunctionSource) -> u8 {
    match s {
        FunctionSource::Builtin => 0,
        FunctionSource::Extension => 1,
        FunctionSource::User => 2,
        FunctionSource::Unknown => 3,
    }
}

fn danger(f: &Function) -> (bool, u8, u8) {
    (
        f.security_definer,
        source_rank(f.source),
        volatility_rank(f.volatility),
    )
}

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "not a catalog snapshot ({0}): write one with `sqlguard catalog dump DATABASE > FILE`"
    )]
    Unreadable(String),
    #[error("catalog snapshot format {found} is not supported (this sqlguard reads format {FORMAT}): dump it again with this version")]
    Format { found: u32 },
}

impl Snapshot {
    /// A snapshot of these catalog rows (indexed for resolution).
    pub fn new(
        server: Server,
        extensions: Vec<Extension>,
        functions: Vec<Function>,
        operators: Vec<OperatorDef>,
        relations: Vec<RelationDef>,
        casts: Vec<CastDef>,
    ) -> Snapshot {
        Snapshot {
            format: FORMAT,
            server,
            extensions,
            functions,
            operators,
            relations,
            casts,
            index: Index::default(),
        }
        .indexed()
    }

    fn indexed(mut self) -> Snapshot {
        self.index = Index {
            functions: index_by(&self.functions, |f| &f.name),
            operators: index_by(&self.operators, |o| &o.name),
            relations: index_by(&self.relations, |r| &r.name),
            casts: index_by(&self.casts, |c| &c.type_name),
            unwritten_casts: (0u32..)
                .zip(&self.casts)
                .filter_map(|(i, c)| Some((i, c.runs_unwritten()?)))
                .collect(),
            lineage: Vec::new(),
            view_facts: Vec::new(),
            oids: (0u32..)
                .zip(&self.relations)
                .filter_map(|(i, r)| Some((r.oid?, i)))
                .collect(),
        };
        let children = self.children();
        let lineage = self
            .relations
            .iter()
            .map(|r| {
                let view_reads = self.view_reads(r, &children);
                Lineage {
                    ancestors: self.ancestors(r),
                    view_tables: tables_of(&view_reads),
                    view_reads,
                    descendants: descendants(&super::dotted(&r.schema, &r.name), &children),
                }
            })
            .collect();
        self.index.lineage = lineage;
        self.index.view_facts = (0..self.relations.len())
            .map(|_| std::sync::OnceLock::new())
            .collect();
        self
    }

    /// Reads a snapshot written by `sqlguard catalog dump`.
    pub fn from_json(text: &str) -> Result<Snapshot, SnapshotError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head =
            serde_json::from_str(text).map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
        if head.format != FORMAT {
            return Err(SnapshotError::Format { found: head.format });
        }
        let s: Snapshot =
            serde_json::from_str(text).map_err(|e| SnapshotError::Unreadable(e.to_string()))?;
        Ok(s.indexed())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    fn functions_named<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s Function> + 's {
        self.index
            .functions
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.functions[i as usize])
    }

    /// What a call of `name` (in `schema` when the call names one, else through `path`) can
    /// reach: `None` when no such function exists in those schemas.
    pub fn resolve_function<S: AsRef<str>>(
        &self,
        schema: Option<&str>,
        name: &str,
        path: &[S],
    ) -> Option<Resolved<'_>> {
        self.resolve_function_for(schema, name, path, None)
    }

    /// [`resolve_function`](Self::resolve_function) for a call with these arguments: the
    /// worst of the functions PostgreSQL could pick for them, or of all when it could pick
    /// none (it will then refuse the call).
    pub fn resolve_function_for<S: AsRef<str>>(
        &self,
        schema: Option<&str>,
        name: &str,
        path: &[S],
        args: Option<&Arguments<'_>>,
    ) -> Option<Resolved<'_>> {
        if let Some(args) = args {
            let takers = self
                .functions_named(name)
                .filter(|f| reaches(schema, path, &f.schema) && f.may_take(args));
            if let Some(r) = Self::worst_of(takers) {
                return Some(r);
            }
        }
        Self::worst_of(
            self.functions_named(name)
                .filter(|f| reaches(schema, path, &f.schema)),
        )
    }

    fn worst_of<'s>(functions: impl Iterator<Item = &'s Function>) -> Option<Resolved<'s>> {
        let mut worst: Option<Resolved<'_>> = None;
        for f in functions {
            worst = Some(match worst {
                None => Resolved {
                    function: f,
                    volatility: f.volatility,
                    security_definer: f.security_definer,
                    source: f.source,
                },
                Some(w) => Resolved {
                    function: if danger(f) > danger(w.function) {
                        f
                    } else {
                        w.function
                    },
                    volatility: if volatility_rank(f.volatility) > volatility_rank(w.volatility) {
                        f.volatility
                    } else {
                        w.volatility
                    },
                    security_definer: w.security_definer || f.security_definer,
                    source: if source_rank(f.source) > source_rank(w.source) {
                        f.source
                    } else {
                        w.source
                    },
                },
            });
        }
        worst
    }

    /// The operators `name` (in `schema`, else through `path`) can reach.
    pub fn operators<'a, S: AsRef<str>>(
        &'a self,
        schema: Option<&'a str>,
        name: &str,
        path: &'a [S],
    ) -> impl Iterator<Item = &'a OperatorDef> + 'a {
        in_scope(
            &self.index.operators,
            &self.operators,
            name,
            schema,
            path,
            |o| &o.schema,
        )
    }

    /// The casts and domain checks to the type `name` (in `schema`, else through `path`).
    pub fn casts_to<'a, S: AsRef<str>>(
        &'a self,
        schema: Option<&'a str>,
        name: &str,
        path: &'a [S],
    ) -> impl Iterator<Item = &'a CastDef> + 'a {
        in_scope(&self.index.casts, &self.casts, name, schema, path, |c| {
            &c.type_schema
        })
    }

    /// The casts with a function not PostgreSQL's own that PostgreSQL applies by itself
    /// (implicit and assignment casts), with where it applies each.
    pub fn unwritten_casts(&self) -> impl Iterator<Item = (&CastDef, CastContext)> + '_ {
        self.index
            .unwritten_casts
            .iter()
            .map(|&(i, context)| (&self.casts[i as usize], context))
    }

    /// The relation `schema.name`.
    pub fn relation(&self, schema: &str, name: &str) -> Option<&RelationDef> {
        self.relation_position(schema, name)
            .map(|i| &self.relations[i])
    }

    fn relation_position(&self, schema: &str, name: &str) -> Option<usize> {
        self.index
            .relations
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| i as usize)
            .find(|&i| self.relations[i].schema == schema)
    }

    /// The relation's ancestors and, for a view, what it reads: computed once, when the
    /// snapshot is indexed.
    /// The relation of `pg_class` OID `oid`.
    pub fn relation_by_oid(&self, oid: u32) -> Option<&RelationDef> {
        self.index
            .oids
            .get(&oid)
            .map(|&i| &self.relations[i as usize])
    }

    pub fn lineage(&self, schema: &str, name: &str) -> Option<&Lineage> {
        self.index
            .lineage
            .get(self.relation_position(schema, name)?)
    }

    /// The relation `schema.table` as a dependency entry names it.
    fn relation_named(&self, qualified: &str) -> Option<&RelationDef> {
        let (schema, name) = qualified.split_once('.')?;
        self.relation(schema, name)
    }

    /// Every table `r` inherits from or is a partition of, transitively (nearest first).
    fn ancestors(&self, r: &RelationDef) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut todo: Vec<&str> = r.parents.iter().map(String::as_str).collect();
        while let Some(p) = todo.pop() {
            if out.iter().any(|o| o == p) || out.len() > 1000 {
                continue;
            }
            out.push(p.to_string());
            if let Some(def) = self.relation_named(p) {
                todo.extend(def.parents.iter().map(String::as_str));
            }
        }
        out
    }

    /// Each relation's direct partitions and child tables (`schema.table` of the parent →
    /// `schema.table` of each child).
    fn children(&self) -> HashMap<&str, Vec<String>> {
        let mut map: HashMap<&str, Vec<String>> = HashMap::new();
        for r in &self.relations {
            for p in &r.parents {
                map.entry(p.as_str())
                    .or_default()
                    .push(super::dotted(&r.schema, &r.name));
            }
        }
        map
    }

    /// The position of `schema.name`, for [`Index::view_facts`].
    pub(crate) fn view_facts_cell(
        &self,
        schema: &str,
        name: &str,
    ) -> Option<(usize, &std::sync::OnceLock<ViewFacts>)> {
        let i = self.relation_position(schema, name)?;
        Some((i, self.index.view_facts.get(i)?))
    }

    /// What the rows of `pg_stats` with these pins can show. `schemas`, `tables`, `columns`:
    /// the constants `schemaname`, `tablename` and `attname` are pinned to (`None`: not
    /// pinned).
    pub fn stats_of(
        &self,
        schemas: Option<&[String]>,
        tables: Option<&[String]>,
        columns: Option<&[String]>,
    ) -> StatsOf {
        let mut out = StatsOf::default();
        let Some(tables) = tables else {
            out.unmapped
                .push("every relation (tablename is not pinned)".into());
            return out;
        };
        let each_column = |out: &mut StatsOf, table: &str| {
            out.tables.push(table.to_string());
            match columns {
                Some(cols) => out
                    .columns
                    .extend(cols.iter().map(|c| format!("{table}.{c}"))),
                None => out.columns.push(format!("{table}.*")),
            }
        };
        for t in tables {
            let found: Vec<usize> = self
                .index
                .relations
                .get(t.as_str())
                .into_iter()
                .flatten()
                .map(|&i| i as usize)
                .filter(|&i| schemas.is_none_or(|s| s.contains(&self.relations[i].schema)))
                .collect();
            // A pinned schema that holds no such relation shows nothing; a name missing
            // everywhere may be one created since the snapshot was read.
            if found.is_empty() {
                match schemas {
                    Some(s) => out
                        .unmapped
                        .extend(s.iter().map(|s| format!("{s}.{t} (not in the catalog)"))),
                    None => out.unmapped.push(format!("{t} (not in the catalog)")),
                }
                continue;
            }
            for i in found {
                let r = &self.relations[i];
                let lineage = &self.index.lineage[i];
                let own = super::dotted(&r.schema, &r.name);
                each_column(&mut out, &own);
                // Stats of a child are its parents' rows; a parent's (inherited) stats hold
                // its children's values.
                for a in lineage.ancestors.iter().chain(&lineage.descendants) {
                    each_column(&mut out, a);
                }
                // An index's expressions and a materialized view's columns are values of
                // what they are built on: which of those columns a row shows is not known.
                for table in &lineage.view_tables {
                    out.tables.push(table.clone());
                    let prefix_len = table.len() + 1;
                    let mut any = false;
                    for e in &lineage.view_reads {
                        if e.len() > prefix_len
                            && e.starts_with(table.as_str())
                            && e.as_bytes()[table.len()] == b'.'
                        {
                            out.columns.push(e.clone());
                            any = true;
                        }
                    }
                    if !any {
                        out.columns.push(format!("{table}.*"));
                    }
                }
            }
        }
        for v in [&mut out.tables, &mut out.columns, &mut out.unmapped] {
            v.sort();
            v.dedup();
        }
        out
    }

    /// What a view reads, through the views it reads too: `schema.table` and
    /// `schema.table.column` entries of the relations underneath (empty for a table).
    fn view_reads(&self, r: &RelationDef, children: &HashMap<&str, Vec<String>>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen_views: Vec<(&str, &str)> = Vec::new();
        let mut maps: HashMap<(&str, &str), Option<HashMap<String, String>>> = HashMap::new();
        let mut todo: Vec<String> = r.reads.clone();
        while let Some(entry) = todo.pop() {
            if out.contains(&entry) || out.len() > 10_000 {
                continue;
            }
            // An entry of another view (the view or one of its columns): what that view reads
            // is read too. A column of a view that only renames its table's columns is that
            // one base column; of any other view, every column the view reads.
            let mut parts = entry.splitn(3, '.');
            let table = match (parts.next(), parts.next()) {
                (Some(schema), Some(table)) => self.relation(schema, table),
                _ => None,
            };
            let column = parts.next().map(str::to_string);
            if let Some(def) = table.filter(|d| !d.reads.is_empty()) {
                let key = (def.schema.as_str(), def.name.as_str());
                let map = maps
                    .entry(key)
                    .or_insert_with(|| def.definition.as_deref().and_then(column_map));
                match (map.as_ref(), column) {
                    (Some(map), Some(column)) if map.contains_key(&column) => {
                        todo.push(map[&column].clone());
                    }
                    _ => {
                        if !seen_views.contains(&key) {
                            seen_views.push(key);
                            todo.extend(def.reads.iter().cloned());
                        }
                    }
                }
            }
            out.push(entry);
        }
        // A partition's or child table's columns are its parents' too.
        let mut inherited: Vec<String> = Vec::new();
        for entry in &out {
            let mut parts = entry.splitn(3, '.');
            let (Some(schema), Some(table)) = (parts.next(), parts.next()) else {
                continue;
            };
            let column = parts.next();
            if let Some(def) = self.relation(schema, table) {
                // A read of a parent (the catalog does not say whether with ONLY) reads its
                // partitions and children too.
                let below = descendants(&super::dotted(schema, table), children);
                for a in self.ancestors(def).into_iter().chain(below) {
                    inherited.push(match column {
                        Some(c) => format!("{a}.{c}"),
                        None => a,
                    });
                }
            }
        }
        out.extend(inherited);
        out.sort();
        out.dedup();
        out
    }

    /// `PostgreSQL 15.4 (…), 3 extensions, 3,120 functions, …` for logs and `doctor`.
    pub fn summary(&self) -> String {
        format!(
            "PostgreSQL {} ({}): {} extensions, {} functions, {} operators, {} relations, {} casts, read {}",
            self.server.version,
            self.server.database,
            self.extensions.len(),
            self.functions.len(),
            self.operators.len(),
            self.relations.len(),
            self.casts.len(),
            self.server.taken_at
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(
        schema: &str,
        name: &str,
        v: Volatility,
        secdef: bool,
        source: FunctionSource,
    ) -> Function {
        Function::named(schema, name, v, secdef, source)
    }

    fn server() -> Server {
        Server {
            version_num: 150000,
            version: "15.0".into(),
            database: "d".into(),
            taken_at: "t".into(),
        }
    }

    fn snap(functions: Vec<Function>) -> Snapshot {
        Snapshot::new(server(), vec![], functions, vec![], vec![], vec![])
    }

    #[test]
    fn an_overload_in_any_schema_of_the_path_makes_the_worst_case() {
        let s = snap(vec![
            f(
                "pg_catalog",
                "lower",
                Volatility::Immutable,
                false,
                FunctionSource::Builtin,
            ),
            f(
                "public",
                "lower",
                Volatility::Volatile,
                true,
                FunctionSource::User,
            ),
            f(
                "other",
                "lower",
                Volatility::Volatile,
                true,
                FunctionSource::User,
            ),
        ]);
        let path = ["pg_catalog", "public"];
        let r = s.resolve_function(None, "lower", &path).unwrap();
        assert_eq!(r.function.schema, "public");
        assert_eq!(r.volatility, Volatility::Volatile);
        assert!(r.security_definer);
        assert_eq!(r.source, FunctionSource::User);
        let only = s
            .resolve_function(Some("pg_catalog"), "lower", &path)
            .unwrap();
        assert_eq!(only.source, FunctionSource::Builtin);
        let not_on_path = s.resolve_function(None, "lower", &["pg_catalog"]);
        assert_eq!(not_on_path.unwrap().source, FunctionSource::Builtin);
        assert!(s.resolve_function(None, "upper", &path).is_none());
    }

    /// Arity rules out an overload (defaults and VARIADIC counted), a known argument type
    /// one of its own type; named arguments and old snapshots rule nothing out.
    #[test]
    fn a_function_is_ruled_out_only_by_what_its_arguments_prove() {
        let mut g = f(
            "public",
            "g",
            Volatility::Volatile,
            false,
            FunctionSource::User,
        );
        g.nargs = Some(3);
        g.defaults = Some(1);
        g.variadic = Some(false);
        g.accepts = Some(vec![Some(vec!["integer".into()]), None, Some(vec![])]);
        let int: Option<&'static [&'static str]> = Some(&["integer"]);
        let num: Option<&'static [&'static str]> = Some(&["bigint", "numeric"]);
        let takes = |f: &Function, types: &[Option<&'static [&'static str]>]| {
            f.may_take(&Arguments {
                types,
                unpositional: false,
            })
        };
        assert!(takes(&g, &[int, None]));
        assert!(takes(&g, &[None, None, None]));
        assert!(!takes(&g, &[int]), "too few");
        assert!(!takes(&g, &[int, None, None, None]), "too many");
        assert!(!takes(&g, &[num, None]), "no cast from a decimal");
        assert!(!takes(&g, &[int, None, int]), "no cast at all");
        assert!(g.may_take(&Arguments {
            types: &[num],
            unpositional: true
        }));
        g.variadic = Some(true);
        assert!(takes(&g, &[int, None, None, None, None]));
        assert!(!takes(&g, &[num, None, None, None]));
        let mut old = g.clone();
        old.nargs = None;
        assert!(takes(&old, &[num]));
    }

    fn rel(q: &str, parents: &[&str], reads: &[&str]) -> RelationDef {
        let (schema, name) = q.split_once('.').unwrap();
        RelationDef {
            schema: schema.into(),
            name: name.into(),
            kind: if reads.is_empty() { "table" } else { "view" }.into(),
            rows_estimate: 0,
            bytes: 0,
            server: None,
            parents: parents.iter().map(|p| p.to_string()).collect(),
            reads: reads.iter().map(|p| p.to_string()).collect(),
            definition: None,
            extension: None,
            columns: None,
            oid: None,
            attnums: None,
        }
    }

    #[test]
    fn lineage_follows_partitions_and_views_across_schemas() {
        let s = Snapshot::new(
            server(),
            vec![],
            vec![],
            vec![],
            vec![
                rel("public.vault", &[], &[]),
                rel("public.vault_p1", &["public.vault"], &[]),
                rel("public.vault_p1a", &["public.vault_p1"], &[]),
                // Two views of one name: each must be followed.
                rel("a.v", &[], &["public.vault_p1a.secret"]),
                rel("b.v", &[], &["a.v.id"]),
                rel("public.top", &[], &["b.v.id", "a.v"]),
            ],
            vec![],
        );
        let ancestors = &s.lineage("public", "vault_p1a").unwrap().ancestors;
        assert_eq!(ancestors, &["public.vault_p1", "public.vault"]);
        let top = s.lineage("public", "top").unwrap();
        assert_eq!(
            top.view_tables,
            [
                "a.v",
                "b.v",
                "public.vault",
                "public.vault_p1",
                "public.vault_p1a"
            ]
        );
        let reads = &top.view_reads;
        for needed in [
            "public.vault.secret",
            "public.vault_p1.secret",
            "a.v.id",
            "b.v.id",
        ] {
            assert!(
                reads.iter().any(|r| r == needed),
                "{needed} missing: {reads:?}"
            );
        }
    }

    #[test]
    fn the_file_format_round_trips_and_other_versions_are_refused() {
        let s = snap(vec![f(
            "public",
            "similarity",
            Volatility::Immutable,
            false,
            FunctionSource::Extension,
        )]);
        let back = Snapshot::from_json(&s.to_json()).unwrap();
        assert!(back
            .resolve_function(None, "similarity", &["public"])
            .is_some());
        let newer = s
            .to_json()
            .replace(&format!("\"format\": {FORMAT}"), "\"format\": 99");
        assert!(matches!(
            Snapshot::from_json(&newer),
            Err(SnapshotError::Format { found: 99 })
        ));
        // Format 1 did not list casts: it is refused, not read as "no casts".
        let older = s
            .to_json()
            .replace(&format!("\"format\": {FORMAT}"), "\"format\": 1");
        assert!(matches!(
            Snapshot::from_json(&older),
            Err(SnapshotError::Format { found: 1 })
        ));
        assert!(Snapshot::from_json("{}").is_err());
    }

    /// Casts PostgreSQL applies by itself are calls of every statement (an assignment cast,
    /// of every statement that writes); an explicit cast only where its type is written.
    /// A snapshot with casts to a user's type `mood` from built-in types in each context, and
    /// a user's type `level` with an implicit cast to text.
    fn snapshot_with_casts() -> Snapshot {
        let cast = |source: &str, function: &str, context: Option<&str>| CastDef {
            type_schema: "public".into(),
            type_name: "mood".into(),
            source: Some(source.into()),
            function_schema: "public".into(),
            function_name: function.into(),
            via: "cast".into(),
            context: context.map(Into::into),
            target: None,
            source_builtin: None,
            target_builtin: None,
        };
        let user = |name: &str| {
            Function::named(
                "public",
                name,
                Volatility::Volatile,
                true,
                FunctionSource::User,
            )
        };
        // A user's type to a built-in one: only where a value of the user's type may be.
        let level_to_text = CastDef {
            type_schema: "pg_catalog".into(),
            type_name: "text".into(),
            target: Some("text".into()),
            source_builtin: Some(false),
            target_builtin: Some(true),
            ..cast("level", "level_text", Some("implicit"))
        };
        let mut t = rel("public.t", &[], &[]);
        t.columns = Some(vec![
            ("id".into(), "integer".into()),
            ("ls".into(), "level[]".into()),
        ]);
        Snapshot::new(
            server(),
            vec![],
            vec![
                user("from_text"),
                user("from_int"),
                user("from_bool"),
                user("from_date"),
                user("level_text"),
            ],
            vec![],
            vec![t],
            vec![
                cast("text", "from_text", Some("implicit")),
                cast("integer", "from_int", Some("assignment")),
                cast("boolean", "from_bool", Some("explicit")),
                // Dumped before contexts were read: taken as implicit.
                cast("date", "from_date", None),
                level_to_text,
            ],
        )
    }

    /// The functions (and why) `sql` calls over [`snapshot_with_casts`].
    fn cast_calls(sql: &str) -> Vec<(String, String)> {
        let opts = crate::analysis::AnalysisOptions::default()
            .with_snapshot(Some(std::sync::Arc::new(snapshot_with_casts())));
        let facts = crate::analysis::analyze_with(sql, &opts).unwrap();
        facts.statements[0]
            .functions
            .iter()
            .map(|f| (f.name.clone(), f.cast.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn implicit_and_assignment_casts_are_calls_of_every_statement_they_can_run_in() {
        let calls = cast_calls;
        let read = calls("SELECT 1");
        assert_eq!(
            read,
            [
                (
                    "from_text".to_string(),
                    "public.mood from text, which PostgreSQL applies implicitly".to_string()
                ),
                (
                    "from_date".to_string(),
                    "public.mood from date, which PostgreSQL applies implicitly".to_string()
                ),
            ]
        );
        let write: Vec<String> = calls("INSERT INTO t (m) VALUES (1)")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(write, ["from_text", "from_int", "from_date"]);
        // The explicit cast where its type is written.
        assert!(calls("SELECT true::mood")
            .iter()
            .any(|(name, _)| name == "from_bool"));
        // The user's type's cast: where a column of it (an array of it here) is read, by
        // name or `*`, or the type is named; not elsewhere.
        let level = |sql: &str| calls(sql).iter().any(|(name, _)| name == "level_text");
        assert!(!level("SELECT id FROM t WHERE id = 1"));
        assert!(level("SELECT id FROM t WHERE ls[1] = 'x'"));
        assert!(level("SELECT * FROM t"));
        assert!(level("SELECT x FROM (SELECT ls AS x FROM t) s"));
        assert!(level("SELECT 'low'::level || 'x' AS v"));
        assert!(level("SELECT id FROM u JOIN t USING (id) WHERE ls IS NULL"));
    }

    /// A view's columns map to base columns only where its definition just renames one
    /// table's columns.
    #[test]
    fn only_plain_renaming_views_map_columns() {
        let map = column_map("SELECT t.a, t.b AS c FROM s.t").unwrap();
        assert_eq!(map["a"], "s.t.a");
        assert_eq!(map["c"], "s.t.b");
        assert!(!map.contains_key("b"));
        let aliased = column_map("SELECT x.a FROM s.t x").unwrap();
        assert_eq!(aliased["a"], "s.t.a");
        for other in [
            "SELECT t.a FROM s.t WHERE t.b = 1",
            "SELECT t.a FROM s.t ORDER BY t.b LIMIT 1",
            "SELECT t.a FROM s.t, s.u",
            "SELECT t.a || t.b AS a FROM s.t",
            "SELECT DISTINCT t.a FROM s.t",
            "SELECT t.a FROM t",
            "SELECT t.a FROM s.t UNION SELECT u.b FROM s.u",
            "SELECT u.a FROM s.t",
            "SELECT (t.c).f AS a FROM s.t",
            "not sql",
        ] {
            assert!(column_map(other).is_none(), "{other}");
        }
    }
}
