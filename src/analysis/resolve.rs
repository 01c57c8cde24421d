//! Names → catalog facts, against a database's [`Snapshot`]: what a function call or an
//! operator can reach through the `search_path`, as the worst case of every candidate.
//!
//! Unqualified names (nearly all of them) resolve the same way for every query on one
//! snapshot and path, so [`Resolutions`] resolves each once, when the snapshot is taken into
//! use; a query's analysis then costs one hash lookup per name.

use std::collections::HashMap;

use super::facts::{FunctionCall, FunctionSource, Operator, Volatility};
use super::risk;
use super::snapshot::{source_rank, volatility_rank, Snapshot};

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
    let qualified = schema.is_some();
    let Some(r) = snap.resolve_function(schema.as_deref(), &name, path) else {
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
        Some(s) => format!("{s}.{name}"),
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
    /// Some operator of an extension or a user: the worst one, with its function.
    Other(Box<Operator>),
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
    let mut worst: Option<(FunctionCall, &str)> = None;
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
        if worst
            .as_ref()
            .is_none_or(|(w, _)| danger(&call) > danger(w))
        {
            worst = Some((call, op.schema.as_str()));
        }
    }
    match (any, worst) {
        (false, _) => OperatorResolution::Missing,
        (true, None) => OperatorResolution::Builtin,
        (true, Some((call, op_schema))) => OperatorResolution::Other(Box::new(Operator {
            schema: Some(op_schema.to_string()),
            name: name.to_string(),
            builtin: false,
            function: Some(call),
        })),
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
