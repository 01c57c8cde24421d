//! Names → catalog facts, against a database's [`Snapshot`]: what a function call or an
//! operator can reach through the `search_path`, as the worst case of every candidate.
//!
//! Unqualified names (nearly all of them) resolve the same way for every query on one
//! snapshot and path, so [`Resolutions`] resolves each once, when the snapshot is taken into
//! use; a query's analysis then costs one hash lookup per name.

use std::collections::HashMap;

use super::facts::{FunctionCall, FunctionSource, Operator, Volatility};
use super::risk;
use super::snapshot::{may_coerce, source_rank, volatility_rank, Arguments, CastDef, Snapshot};

/// A call of `name` (in `schema` when the call names one, else through `path`) as the
/// snapshot sees it: the worst case of every function it can reach (PostgreSQL picks among
/// overloads by argument types, which the analysis does not know).
pub fn function(
    snap: &Snapshot,
    path: &[String],
    schema: Option<String>,
    name: String,
    context: &str,
) -> FunctionCall {
    function_for(snap, path, schema, name, context, None)
}

/// The function a conversion runs (a `pg_cast` function or a domain check), as a call with
/// context `cast`; `what` says which conversion (`cast` in the facts).
pub fn cast(snap: &Snapshot, path: &[String], def: &CastDef, what: String) -> FunctionCall {
    let mut call = function(
        snap,
        path,
        Some(def.function_schema.clone()),
        def.function_name.clone(),
        "cast",
    );
    call.cast = Some(what);
    call
}

/// [`function`] for a call with these arguments: the worst case of the functions
/// PostgreSQL could pick for them.
pub fn function_for(
    snap: &Snapshot,
    path: &[String],
    schema: Option<String>,
    name: String,
    context: &str,
    args: Option<&Arguments<'_>>,
) -> FunctionCall {
    let qualified = schema.is_some();
    let Some(r) = snap.resolve_function_for(schema.as_deref(), &name, path, args) else {
        // Not in the database: PostgreSQL will refuse the call; the policy denies it.
        return unknown(schema, name, context);
    };
    let f = r.function;
    FunctionCall {
        risks: risk::categories(Some(&f.schema), &name),
        volatility: r.volatility,
        builtin: r.source == FunctionSource::Builtin,
        source: r.source,
        security_definer: r.security_definer,
        extension: f.extension.clone(),
        language: Some(f.language.clone()),
        operator: None,
        cast: None,
        view: None,
        qualified_name: format!("{}.{name}", f.schema),
        schema: Some(f.schema.clone()),
        name,
        qualified,
        context: context.to_string(),
    }
}

/// A call of a function the catalog in use does not hold (`qualified` when `schema` is the
/// one the call named).
pub fn unknown(schema: Option<String>, name: String, context: &str) -> FunctionCall {
    let qualified_name = match &schema {
        Some(s) => super::dotted(s, &name),
        None => name.clone(),
    };
    FunctionCall {
        risks: risk::categories(schema.as_deref(), &name),
        volatility: Volatility::Unknown,
        builtin: false,
        source: FunctionSource::Unknown,
        security_definer: false,
        extension: None,
        language: None,
        operator: None,
        cast: None,
        view: None,
        qualified: schema.is_some(),
        schema,
        name,
        qualified_name,
        context: context.to_string(),
    }
}

/// What an operator name reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorResolution {
    /// Only PostgreSQL's own operators: nothing to judge.
    Builtin,
    /// No operator of that name: PostgreSQL will refuse it; the policy denies it.
    Missing,
    /// Some operators of an extension or a user, the most dangerous first (see
    /// [`OperatorResolution::candidates`]).
    Other(Box<[Candidate]>),
}

/// An extension's or a user's operator that a name reaches, with what it can be called on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its facts, with the function behind it.
    pub operator: Operator,
    /// A prefix operator (`- x`): it has no left argument.
    prefix: bool,
    /// The built-in types an operand may have for PostgreSQL to pick it (see
    /// [`super::snapshot::OperatorDef::left_accepts`]); `None`: any.
    left_accepts: Option<Box<[String]>>,
    right_accepts: Option<Box<[String]>>,
}

/// What the analysis knows of an operator's use: prefix or infix, and the type of an operand
/// when the query fixes it (a numeric or boolean constant, a cast to a built-in type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operands {
    pub prefix: bool,
    /// The types the operand may have, as `format_type` writes them (`integer`, `date`);
    /// `None`: unknown.
    pub left: Option<&'static [&'static str]>,
    pub right: Option<&'static [&'static str]>,
}

impl Operands {
    /// An infix use whose operand types are not known.
    pub const INFIX: Operands = Operands {
        prefix: false,
        left: None,
        right: None,
    };
}

impl Candidate {
    /// Could PostgreSQL pick this operator for `operands`?
    pub fn may_take(&self, operands: &Operands) -> bool {
        self.prefix == operands.prefix
            && may_coerce(self.left_accepts.as_deref(), operands.left)
            && may_coerce(self.right_accepts.as_deref(), operands.right)
    }
}

impl OperatorResolution {
    /// Every operator PostgreSQL could pick for `operands`, the most dangerous first; none
    /// when it can only pick one of its own (or none: then it refuses the query). Which one it
    /// picks among several depends on types the analysis does not know, so the worst case
    /// counts every candidate.
    pub fn candidates<'a>(&'a self, operands: &'a Operands) -> impl Iterator<Item = &'a Operator> {
        let candidates: &[Candidate] = match self {
            OperatorResolution::Other(c) => c,
            _ => &[],
        };
        candidates
            .iter()
            .filter(move |c| c.may_take(operands))
            .map(|c| &c.operator)
    }
}

/// How dangerous a function is, for picking the worst of several operators.
fn danger(f: &FunctionCall) -> (bool, bool, u8, u8) {
    (
        !f.risks.is_empty(),
        f.security_definer,
        source_rank(f.source),
        volatility_rank(f.volatility),
    )
}

/// The operators `name` (in `schema`, else through `path`) reaches.
pub fn operator(
    snap: &Snapshot,
    path: &[String],
    schema: Option<&str>,
    name: &str,
) -> OperatorResolution {
    let mut any = false;
    let mut candidates: Vec<Candidate> = Vec::new();
    for op in snap.operators(schema, name, path) {
        any = true;
        if op.source == FunctionSource::Builtin {
            continue;
        }
        let mut call = function(
            snap,
            path,
            Some(op.function_schema.clone()),
            op.function_name.clone(),
            "operator",
        );
        call.operator = Some(name.to_string());
        candidates.push(Candidate {
            operator: Operator {
                schema: Some(op.schema.clone()),
                name: name.to_string(),
                builtin: false,
                function: Some(call),
            },
            prefix: op.left.is_none(),
            left_accepts: op.left_accepts.clone().map(Vec::into_boxed_slice),
            right_accepts: op.right_accepts.clone().map(Vec::into_boxed_slice),
        });
    }
    // The most dangerous first (a stable sort: among equals, the catalog's order).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.operator.function.as_ref().map(danger)));
    match (any, candidates.is_empty()) {
        (false, _) => OperatorResolution::Missing,
        (true, true) => OperatorResolution::Builtin,
        (true, false) => OperatorResolution::Other(candidates.into_boxed_slice()),
    }
}

/// Every unqualified function and operator name of a snapshot, resolved through one path.
#[derive(Debug, Default)]
pub struct Resolutions {
    functions: HashMap<Box<str>, FunctionCall>,
    operators: HashMap<Box<str>, OperatorResolution>,
}

impl Resolutions {
    pub fn new(snap: &Snapshot, path: &[String]) -> Resolutions {
        let mut functions = HashMap::new();
        for f in &snap.functions {
            if !functions.contains_key(f.name.as_str()) {
                let call = function(snap, path, None, f.name.clone(), "");
                functions.insert(f.name.as_str().into(), call);
            }
        }
        let mut operators = HashMap::new();
        for o in &snap.operators {
            if !operators.contains_key(o.name.as_str()) {
                operators.insert(o.name.as_str().into(), operator(snap, path, None, &o.name));
            }
        }
        Resolutions {
            functions,
            operators,
        }
    }

    /// An unqualified call of `name`, if the snapshot has a function of that name anywhere.
    pub fn function(&self, name: &str, context: &str) -> Option<FunctionCall> {
        let mut call = self.functions.get(name)?.clone();
        call.context.push_str(context);
        Some(call)
    }

    /// An unqualified operator `name` (`None`: no operator of that name).
    pub fn operator(&self, name: &str) -> Option<&OperatorResolution> {
        self.operators.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::snapshot::{Function, OperatorDef, Server};

    fn function(name: &str, volatility: Volatility, source: FunctionSource) -> Function {
        Function::named("public", name, volatility, false, source)
    }

    fn operator(left: Option<&str>, accepts: Option<&[&str]>, function: &str) -> OperatorDef {
        let accepts = accepts.map(|a| a.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        OperatorDef {
            schema: "public".into(),
            name: "<".into(),
            left: left.map(str::to_string),
            right: Some("t".into()),
            left_accepts: left.and(accepts.clone()),
            right_accepts: accepts,
            function_schema: "public".into(),
            function_name: function.into(),
            extension: None,
            source: FunctionSource::User,
        }
    }

    /// Every operator PostgreSQL could pick for the operands, the most dangerous first;
    /// none when no candidate can take them.
    #[test]
    fn every_candidate_the_operands_allow_is_counted() {
        let snap = Snapshot::new(
            Server {
                version_num: 150000,
                version: "15.0".into(),
                database: "d".into(),
                taken_at: "t".into(),
            },
            vec![],
            vec![
                function("stable_lt", Volatility::Stable, FunctionSource::User),
                function("volatile_lt", Volatility::Volatile, FunctionSource::User),
                function("neg", Volatility::Volatile, FunctionSource::User),
                function("any_lt", Volatility::Immutable, FunctionSource::User),
            ],
            vec![
                operator(Some("mood"), Some(&["integer"]), "stable_lt"),
                operator(Some("level"), Some(&[]), "volatile_lt"),
                operator(None, Some(&[]), "neg"),
            ],
            vec![],
            vec![],
        );
        let path = ["pg_catalog".to_string(), "public".to_string()];
        let r = operator_resolution(&snap, &path);
        let names = |r: &OperatorResolution, operands: Operands| -> Vec<String> {
            r.candidates(&operands)
                .filter_map(|o| o.function.as_ref())
                .map(|f| f.name.clone())
                .collect()
        };
        let infix = |left: Option<&'static [&'static str]>,
                     right: Option<&'static [&'static str]>| Operands {
            prefix: false,
            left,
            right,
        };
        // Unknown operands: both infix ones, the volatile one first.
        assert_eq!(names(&r, infix(None, None)), ["volatile_lt", "stable_lt"]);
        // An integer reaches `mood` by an implicit cast, not `level`.
        assert_eq!(names(&r, infix(Some(&["integer"]), None)), ["stable_lt"]);
        assert_eq!(
            names(&r, infix(None, Some(&["bigint", "numeric", "integer"]))),
            ["stable_lt"]
        );
        assert!(names(&r, infix(Some(&["date"]), None)).is_empty());
        assert!(names(&r, infix(None, Some(&["boolean"]))).is_empty());
        // The prefix operator only where there is no left operand.
        let prefix = Operands {
            prefix: true,
            left: None,
            right: None,
        };
        assert_eq!(names(&r, prefix), ["neg"]);
        // A snapshot that does not say what a type accepts keeps every candidate.
        let mut old = snap.operators.clone();
        for o in &mut old {
            o.left_accepts = None;
            o.right_accepts = None;
        }
        let old = Snapshot::new(
            snap.server.clone(),
            vec![],
            snap.functions.clone(),
            old,
            vec![],
            vec![],
        );
        let r = operator_resolution(&old, &path);
        assert_eq!(
            names(&r, infix(Some(&["date"]), Some(&["boolean"]))),
            ["volatile_lt", "stable_lt"]
        );
    }

    fn operator_resolution(snap: &Snapshot, path: &[String]) -> OperatorResolution {
        super::operator(snap, path, None, "<")
    }
}
