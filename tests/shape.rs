//! The shape cache: a text answered from its tokens, without parsing,
//! gets exactly the facts (byte positions included) and the decision that the analysis and
//! the bundle give it. The reference is a policy without caches, analyzing every text.

use proptest::prelude::*;
use sqlguard::analysis::snapshot::{Function, OperatorDef, Snapshot};
use sqlguard::analysis::variants::Constants;
use sqlguard::analysis::{AnalysisOptions, FunctionSource, Volatility};
use sqlguard::policy::{Checked, DatabaseContext, Identity, Policy};

use crate::cache::{bundle, contexts};
use crate::support::corpus_statements;

const TOOL: &str = "teleport_postgres_query";

fn check(policy: &Policy, sql: &str, ctx: &(Identity, DatabaseContext)) -> Checked {
    check_with(policy, sql, ctx, &AnalysisOptions::default())
}

fn check_with(
    policy: &Policy,
    sql: &str,
    ctx: &(Identity, DatabaseContext),
    opts: &AnalysisOptions,
) -> Checked {
    policy.check(sql, opts, Some(&ctx.1), &ctx.0, TOOL)
}

/// A shape-cached answer for `sql` against the reference's; `Err` says how they differ.
fn agrees(
    got: &Checked,
    reference: &Policy,
    sql: &str,
    ctx: &(Identity, DatabaseContext),
    opts: &AnalysisOptions,
) -> Result<(), String> {
    let want = check_with(reference, sql, ctx, opts);
    if want.shape_cached {
        return Err("the reference has a shape cache".into());
    }
    match (&got.facts, &want.facts) {
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(a), Ok(b)) => {
            return Err(format!(
                "the facts differ for {sql:?}:\ncached {}\nanalysis {}",
                serde_json::to_string(a).unwrap(),
                serde_json::to_string(b).unwrap()
            ))
        }
        (a, b) => return Err(format!("cached {a:?}, analysis {b:?}: {sql:?}")),
    }
    if got.decision != want.decision {
        return Err(format!(
            "the decisions differ for {sql:?}: cached {:?}, bundle {:?}",
            got.decision, want.decision
        ));
    }
    Ok(())
}

#[test]
fn texts_answered_by_shape_over_the_corpora_are_analyzed_and_decided_exactly() {
    differential(&AnalysisOptions::default(), "the static catalog");
}

/// The same with a catalog whose operators shadow the built-in ones on types of their own,
/// one reachable from integers by an implicit cast: which of them the facts count depends on
/// the kinds of the constants beside them (integer, decimal, boolean, string), never on
/// their values.
#[test]
fn texts_answered_by_shape_with_a_catalog_are_analyzed_and_decided_exactly() {
    let opts = AnalysisOptions::default().with_snapshot(Some(typed_snapshot()));
    differential(&opts, "a catalog with typed operators");
}

fn typed_snapshot() -> std::sync::Arc<Snapshot> {
    let base =
        Snapshot::from_json(include_str!("fixtures/catalog-pg17.json")).expect("the fixture");
    let mut functions = base.functions.clone();
    let mut operators = base.operators.clone();
    let function = |name: &str| {
        Function::named(
            "public",
            name,
            Volatility::Volatile,
            false,
            FunctionSource::User,
        )
    };
    let operator = |name: &str,
                    left: Option<&str>,
                    accepts: Option<Vec<String>>,
                    function: &str| OperatorDef {
        schema: "public".into(),
        name: name.into(),
        left: left.map(str::to_string),
        right: Some("mood".into()),
        left_accepts: left.and(accepts.clone()),
        right_accepts: accepts,
        function_schema: "public".into(),
        function_name: function.into(),
        extension: None,
        source: FunctionSource::User,
    };
    functions.extend(["mood_op", "level_op", "mood_neg"].map(function));
    for name in [
        "=", "<", ">", "<=", ">=", "<>", "+", "-", "*", "/", "||", "~~",
    ] {
        operators.push(operator(name, Some("mood"), Some(vec![]), "mood_op"));
        operators.push(operator(
            name,
            Some("level"),
            Some(vec!["integer".into()]),
            "level_op",
        ));
    }
    operators.push(operator("-", None, Some(vec![]), "mood_neg"));
    std::sync::Arc::new(Snapshot::new(
        base.server.clone(),
        base.extensions.clone(),
        functions,
        operators,
        base.relations.clone(),
        base.casts.clone(),
    ))
}

fn differential(opts: &AnalysisOptions, label: &str) {
    let statements = corpus_statements();
    if statements.is_empty() {
        eprintln!(
            "!!!!! ../shared/corpus is absent: the shape cache differential with {label} is SKIPPED !!!!!"
        );
        return;
    }
    let policy = Policy::new(bundle()).unwrap();
    let reference = Policy::with_cache(bundle(), 0).unwrap();
    let contexts = contexts();
    let mut constants = Constants::new(14);
    let (mut calls, mut hits, mut differences) = (0usize, 0usize, Vec::new());
    for (i, sql) in statements.iter().enumerate() {
        let ctx = &contexts[i % contexts.len()];
        // The text as written (it may be of a shape seen earlier), then with fresh constants.
        let fresh = constants.refresh(sql);
        for text in std::iter::once(sql.as_str()).chain(fresh.as_deref()) {
            calls += 1;
            let got = check_with(&policy, text, ctx, opts);
            if !got.shape_cached {
                continue;
            }
            hits += 1;
            if let Err(e) = agrees(&got, &reference, text, ctx, opts) {
                differences.push(e);
            }
        }
    }
    let stats = policy.cache_stats().unwrap();
    eprintln!(
        "shape cache over the corpora with {label}: {calls} calls, {hits} answered by shape and checked against the analysis, {} differences; {} shapes held",
        differences.len(),
        stats.shapes
    );
    assert!(
        differences.is_empty(),
        "{} differences, the first ones:\n{}",
        differences.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    // Most statements sent again with fresh constants are answered by shape.
    assert!(
        hits * 3 > calls / 2,
        "only {hits} of {calls} calls were answered by shape"
    );
}

#[test]
fn a_constant_the_analysis_reads_is_part_of_the_key() {
    let policy = Policy::new(bundle()).unwrap();
    let reference = Policy::with_cache(bundle(), 0).unwrap();
    let ctx = &contexts()[0];
    // Pairs: the first decided and kept, the second differs only in a constant that matters.
    for (first, second) in [
        (
            "SELECT current_setting('search_path')",
            "SELECT current_setting('ssl_key_file')",
        ),
        (
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'",
            "SELECT setting FROM pg_settings WHERE name = 'ssl_key_file'",
        ),
        (
            "SELECT set_config('work_mem', '64MB', true)",
            "SELECT set_config('search_path', 'evil', true)",
        ),
        // Not an A_Const: the grammar picks float4 or float8 by the value.
        ("SELECT 1::float(10)", "SELECT 1::float(40)"),
        ("SELECT 1::float(10)", "SELECT 1::float(0)"),
        // A parameter's number is a token's value too.
        ("SELECT $1", "SELECT $2"),
    ] {
        check(&policy, first, ctx);
        assert!(check(&policy, first, ctx).shape_cached, "{first}");
        let got = check(&policy, second, ctx);
        assert!(!got.shape_cached, "{second} was answered as {first}");
        // And the analysis' own answer stands.
        let want = check(&reference, second, ctx);
        assert_eq!(got.decision, want.decision, "{second}");
        assert_eq!(format!("{:?}", got.facts), format!("{:?}", want.facts));
    }
    // The settings really are decided apart.
    let allowed = check(&policy, "SELECT current_setting('search_path')", ctx);
    let denied = check(&policy, "SELECT current_setting('ssl_key_file')", ctx);
    assert!(allowed.decision.allow && !denied.decision.allow);
}

#[test]
fn the_caller_and_the_database_are_part_of_the_key() {
    let policy = Policy::new(bundle()).unwrap();
    let contexts = contexts();
    let sql = "SELECT id, email FROM users WHERE id = 7";
    let fresh = "SELECT id, email FROM users WHERE id = 12345";
    let first = check(&policy, sql, &contexts[0]);
    assert!(check(&policy, fresh, &contexts[0]).shape_cached);
    for ctx in &contexts[1..] {
        let got = check(&policy, fresh, ctx);
        assert!(
            !got.shape_cached,
            "{:?} was answered with another caller's entry",
            ctx.0.roles
        );
    }
    // Another search_path resolves names elsewhere: not the same key.
    let other = AnalysisOptions::new(vec!["app".into(), "public".into()]);
    let got = policy.check(fresh, &other, Some(&contexts[0].1), &contexts[0].0, TOOL);
    assert!(!got.shape_cached);
    assert_eq!(got.facts.unwrap().search_path, ["app", "public"]);
    // A reload starts empty: a new policy has seen nothing.
    let reloaded = Policy::new(bundle()).unwrap();
    assert!(!check(&reloaded, fresh, &contexts[0]).shape_cached);
    assert!(first.facts.is_ok());
}

#[test]
fn positions_are_the_new_text_s_and_unscannable_texts_are_analyzed() {
    let policy = Policy::new(bundle()).unwrap();
    let reference = Policy::with_cache(bundle(), 0).unwrap();
    let ctx = &contexts()[0];
    check(&policy, "SELECT 1; SELECT 'a' FROM users;", ctx);
    for text in [
        "  SELECT 123456 ;\n\n/* c */ SELECT 'abcdefgh' FROM users ; -- end",
        "SELECT 2;SELECT '' FROM users;",
    ] {
        let got = check(&policy, text, ctx);
        assert!(got.shape_cached, "{text}");
        agrees(&got, &reference, text, ctx, &AnalysisOptions::default()).unwrap();
    }
    // A trailing `;` is a token: another shape.
    assert!(!check(&policy, "SELECT 1; SELECT 'a' FROM users", ctx).shape_cached);
    // Texts the scanner rejects go to the analysis, which says why.
    for bad in [
        "SELECT 'unterminated",
        "SELECT E'\\xff'",
        "SELECT 1 /* open",
    ] {
        check(&policy, bad, ctx);
        let got = check(&policy, bad, ctx);
        assert!(!got.shape_cached && !got.decision.allow, "{bad}");
        assert!(got.facts.is_err(), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Any corpus statement, sent three times with fresh constants: whatever is answered by
    /// shape is the analysis' own answer.
    #[test]
    fn fresh_constants_never_change_a_shape_cached_answer(pick in any::<prop::sample::Index>(), seed in any::<u64>()) {
        static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let statements = STATEMENTS.get_or_init(corpus_statements);
        prop_assume!(!statements.is_empty());
        let sql = &statements[pick.index(statements.len())];
        let policy = Policy::new(bundle()).unwrap();
        let reference = Policy::with_cache(bundle(), 0).unwrap();
        let ctx = &contexts()[(seed % 4) as usize];
        let mut constants = Constants::new(seed);
        check(&policy, sql, ctx);
        for _ in 0..3 {
            let Some(text) = constants.refresh(sql) else { break };
            let got = check(&policy, &text, ctx);
            if got.shape_cached {
                prop_assert!(agrees(&got, &reference, &text, ctx, &AnalysisOptions::default()).is_ok(), "{}", agrees(&got, &reference, &text, ctx, &AnalysisOptions::default()).unwrap_err());
            }
        }
    }
}
