//! The compiled evaluator (regorus' RVM, patched in `vendor/regorus`) decides exactly as the
//! interpreter, and fails closed where the RVM as shipped fails open.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlguard::analysis::analyze;
use sqlguard::policy::{
    Bundle, DatabaseContext, Evaluator, Identity, Policy, PolicyInput, DECISION_RULE,
    PLAN_DECISION_RULE,
};

use crate::cache::{bundle, contexts, input};
use crate::support::corpus_statements;

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The default bundle plus one extra module and one data file, in a scratch directory.
fn bundle_with(name: &str, module: Option<&str>, data: Option<&str>) -> Bundle {
    let dir = std::env::temp_dir().join(format!("sqlguard-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut dirs = vec![policies_dir()];
    if let Some(text) = module {
        let extra = dir.join("extra");
        std::fs::create_dir_all(&extra).unwrap();
        std::fs::write(extra.join("extra.rego"), text).unwrap();
        dirs.push(extra);
    }
    let mut files = Vec::new();
    if let Some(json) = data {
        let file = dir.join("data.json");
        std::fs::write(&file, json).unwrap();
        files.push(file);
    }
    let bundle = Bundle::load(&dirs, &files).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bundle
}

fn call<'a>(facts: &'a sqlguard::analysis::Facts, identity: &'a Identity) -> PolicyInput<'a> {
    PolicyInput {
        query: Some(facts),
        database: None,
        identity,
        tool: "teleport_postgres_query",
        plan: None,
    }
}

/// The failure cases: each an error in the policy or its data, which must deny
/// the call (`policy_error`) under both evaluators — or, for the last, a deny rule the RVM as
/// shipped skipped. Each row: name, extra module, data, SQL, the reason that must deny.
type FailureCase<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a str, &'a str);

const FAILURES: &[FailureCase] = &[
    (
        "an invalid glob in a deny list",
        None,
        Some(r#"{"sqlguard": {"tables": {"deny": ["a*b*["]}}}"#),
        "SELECT * FROM users",
        "policy_error",
    ),
    (
        "an invalid regular expression in the tool list",
        None,
        Some(r#"{"sqlguard": {"tools": {"allow": ["^teleport_(postgres$"]}}}"#),
        "SELECT 1",
        "policy_error",
    ),
    (
        "a division by zero",
        Some(
            "package sqlguard\nimport rego.v1\n\
             deny contains reason(\"ratio\", -1, \"too many\") if { input.tool; 100 / data.sqlguard.ext.t.divisor > 1 }\n",
        ),
        Some(r#"{"sqlguard": {"ext": {"t": {"divisor": 0}}}}"#),
        "SELECT 1",
        "policy_error",
    ),
    (
        "to_number of a name",
        Some(
            "package sqlguard\nimport rego.v1\n\
             deny contains reason(\"n\", -1, \"n\") if to_number(input.tool) > 5\n",
        ),
        None,
        "SELECT 1",
        "policy_error",
    ),
    (
        "conflicting values of a complete rule",
        Some(
            "package sqlguard\nimport rego.v1\n\
             extra_limit := 1 if input.tool\n\
             extra_limit := 2 if input.tool\n\
             deny contains reason(\"limit\", -1, \"limit\") if extra_limit > 5\n",
        ),
        None,
        "SELECT 1",
        "policy_error",
    ),
    (
        "an error inside the decision rule",
        Some(
            "package sqlguard\nimport rego.v1\n\
             deny contains {\"rule\": \"odd\", \"statement\": \"first\", \"message\": \"m\"} if input.tool\n",
        ),
        None,
        "SELECT 1",
        "policy_error",
    ),
    (
        "a union of comprehensions whose first loop runs zero times",
        Some(
            "package sqlguard\nimport rego.v1\n\
             union_hits := {x | some x in object.get(input, \"absent\", []); x in data.sqlguard.ext.t.p} | \
             {y | some y in [input.tool]; y in data.sqlguard.ext.t.q}\n\
             deny contains reason(\"union\", -1, \"denied by a union of comprehensions\") if count(union_hits) > 0\n",
        ),
        Some(r#"{"sqlguard": {"ext": {"t": {"p": ["z"], "q": ["teleport_postgres_query"]}}}}"#),
        "SELECT 1",
        "union",
    ),
];

/// Every failure case denies under the compiled evaluator (which the bundle must get: it agrees
/// with the interpreter at load), with the reason the interpreter gives; the compiled value
/// itself is an error, not a value that could allow.
#[test]
fn every_failure_case_denies_under_both_evaluators() {
    let identity = Identity::default();
    let mut failures = Vec::new();
    for (name, module, data, sql, rule) in FAILURES {
        let facts = analyze(sql).unwrap();
        for evaluator in [Evaluator::Compiled, Evaluator::Interpreter] {
            let mut bundle = bundle_with("failure", *module, *data);
            bundle.evaluator = evaluator;
            let policy = Policy::with_cache(bundle, 0).unwrap();
            if policy.evaluator() != evaluator {
                failures.push(format!("{name}: the {evaluator:?} evaluator was not used"));
                continue;
            }
            let d = policy.decide(&call(&facts, &identity));
            if d.allow || d.reasons.first().map(|r| r.rule.as_str()) != Some(*rule) {
                failures.push(format!("{name} ({evaluator:?}): {d:?}"));
            }
            if *rule == "policy_error" && evaluator == Evaluator::Compiled {
                match policy.compiled(DECISION_RULE, &call(&facts, &identity)) {
                    Some(Err(_)) => {}
                    other => failures.push(format!(
                        "{name}: the compiled bundle did not fail: {other:?}"
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A rule that runs past the bundle's time limit denies the call under the compiled evaluator
/// too (`policy_error`), soon after the limit.
#[test]
fn a_policy_past_its_time_limit_denies() {
    let module = "package sqlguard\nimport rego.v1\n\
                  deny contains reason(\"slow\", -1, \"slow\") if {\n\
                  input.database.name == \"slow\"\n\
                  some i in numbers.range(1, 3000)\n\
                  some j in numbers.range(1, 3000)\n\
                  i * j < 0\n}\n";
    let mut bundle = bundle_with("slow", Some(module), None);
    bundle.eval_time_limit = Duration::from_millis(50);
    let policy = Policy::with_cache(bundle, 0).unwrap();
    assert_eq!(policy.evaluator(), Evaluator::Compiled);
    let identity = Identity::default();
    let facts = analyze("SELECT 1").unwrap();
    let slow = DatabaseContext {
        name: "slow".into(),
        ..Default::default()
    };
    let started = Instant::now();
    let d = policy.decide(&PolicyInput {
        database: Some(&slow),
        ..call(&facts, &identity)
    });
    let took = started.elapsed();
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.reasons[0].rule, "policy_error", "{d:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let input = PolicyInput {
        database: Some(&slow),
        ..call(&facts, &identity)
    };
    let e = policy.compiled(DECISION_RULE, &input).unwrap().unwrap_err();
    assert!(e.contains("time limit"), "{e}");
    // Elsewhere the rule does not run and the call is decided as usual.
    assert!(policy.decide(&call(&facts, &identity)).allow);
}

/// The compiled evaluator keeps its VMs between calls and loads a program into one only when it
/// last ran the other (decision, plan decision): every call still starts from a clean state. On
/// one thread the same VM serves each call in turn: ordinary decisions, a call whose rule fails
/// (division by zero) and plan decisions, interleaved, each equal to the interpreter's.
#[test]
fn a_reused_vm_decides_each_call_from_a_clean_state() {
    let module = "package sqlguard\nimport rego.v1\n\
                  deny contains reason(\"ratio\", -1, \"r\") if {\n\
                  input.database.name == \"zero\"\n\
                  100 / data.sqlguard.ext.t.divisor > 1\n}\n";
    let policy = Policy::with_cache(
        bundle_with(
            "reuse",
            Some(module),
            Some(r#"{"sqlguard": {"ext": {"t": {"divisor": 0}}}}"#),
        ),
        0,
    )
    .unwrap();
    assert_eq!(policy.evaluator(), Evaluator::Compiled);
    let identity = Identity::default();
    let zero = DatabaseContext {
        name: "zero".into(),
        ..Default::default()
    };
    let plans = sqlguard::policy::agreement_plans();
    for round in 0..3 {
        for (n, sql) in sqlguard::policy::AGREEMENT_SQL.iter().enumerate() {
            let facts = analyze(sql).unwrap();
            let input = call(&facts, &identity);
            let want = policy.interpreted(DECISION_RULE, &input).unwrap();
            let got = policy.compiled(DECISION_RULE, &input).unwrap().unwrap();
            assert_eq!(want, got, "round {round}: {sql}");
            let failing = PolicyInput {
                database: Some(&zero),
                ..input.clone()
            };
            let e = policy.compiled(DECISION_RULE, &failing).unwrap();
            assert!(
                e.is_err(),
                "round {round}: {sql} with a failing rule: {e:?}"
            );
            let (name, plan) = &plans[n % plans.len()];
            let planned = PolicyInput {
                query: None,
                plan: Some(plan),
                ..input
            };
            let want = policy.interpreted(PLAN_DECISION_RULE, &planned).unwrap();
            let got = policy
                .compiled(PLAN_DECISION_RULE, &planned)
                .unwrap()
                .unwrap();
            assert_eq!(want, got, "round {round}: {name}");
        }
    }
}

/// A bundle the compiled evaluator decides differently from the interpreter at load is
/// evaluated by the interpreter: a comparison across types is ordered by the interpreter (as
/// OPA does) and an error for the RVM.
#[test]
fn a_bundle_that_disagrees_at_load_is_interpreted() {
    let module = "package sqlguard\nimport rego.v1\n\
                  deny contains reason(\"cmp\", -1, \"compared\") if input.tool < 5\n";
    let policy = Policy::with_cache(bundle_with("disagree", Some(module), None), 0).unwrap();
    assert_eq!(policy.evaluator(), Evaluator::Interpreter);
    let why = policy.interpreted_because().unwrap();
    assert!(why.contains("differently from the interpreter"), "{why}");
    let identity = Identity::default();
    let facts = analyze("SELECT 1").unwrap();
    assert!(policy.decide(&call(&facts, &identity)).allow);
    // The default bundle compiles and agrees.
    let policy = Policy::new(bundle_with("agree", None, None)).unwrap();
    assert_eq!(policy.evaluator(), Evaluator::Compiled);
}

/// Every corpus statement, under one of four contexts in turn (the roles and prod examples make
/// identity and database matter), and the columns example over the whole corpus: the compiled
/// bundle's decision value (allow, every reason, limits, explain) equals the interpreter's.
#[test]
fn the_compiled_bundle_decides_as_the_interpreter_over_the_corpora() {
    let statements = corpus_statements();
    if statements.is_empty() {
        return;
    }
    let p = policies_dir();
    let columns = Bundle::load(&[p.clone(), p.join("examples/columns")], &[]).unwrap();
    let contexts = contexts();
    let mut wrong = Vec::new();
    for (label, bundle, rotate) in [("roles+prod", bundle(), true), ("columns", columns, false)] {
        let policy = Policy::with_cache(bundle, 0).unwrap();
        assert_eq!(policy.evaluator(), Evaluator::Compiled, "{label}");
        let started = Instant::now();
        let (mut calls, mut allowed, mut errors) = (0u64, 0u64, 0u64);
        let (mut compiled_time, mut interpreted_time) = (0u128, 0u128);
        for (n, sql) in statements.iter().enumerate() {
            let Ok(facts) = analyze(sql) else { continue };
            let ctx = &contexts[if rotate { n % contexts.len() } else { 0 }];
            let input = input(&facts, ctx);
            let t = Instant::now();
            let want = policy.interpreted(DECISION_RULE, &input);
            interpreted_time += t.elapsed().as_nanos();
            let t = Instant::now();
            let got = policy.compiled(DECISION_RULE, &input).unwrap();
            compiled_time += t.elapsed().as_nanos();
            calls += 1;
            match (&want, &got) {
                (Ok(a), Ok(b)) if a == b => {
                    allowed += u64::from(a["allow"] == regorus::Value::from(true));
                }
                (Err(_), Err(_)) => errors += 1,
                _ => wrong.push(format!(
                    "[{label}] {sql}\n  interpreter {:?}\n  compiled    {:?}",
                    want.map(|v| v.to_json_str().unwrap()),
                    got.map(|v| v.to_json_str().unwrap())
                )),
            }
        }
        eprintln!(
            "evaluator differential [{label}]: {calls} calls ({allowed} allowed, {errors} errors in both), \
             interpreter {} µs/call, compiled {} µs/call, {} s",
            interpreted_time / u128::from(calls.max(1)) / 1000,
            compiled_time / u128::from(calls.max(1)) / 1000,
            started.elapsed().as_secs()
        );
        assert!(
            allowed > 1000 && allowed < calls,
            "[{label}] {allowed} of {calls}"
        );
    }
    assert!(
        wrong.is_empty(),
        "{} different decisions:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
}

/// The plan decision too, on the load-time plans (an index scan, a large sequential scan, a
/// cartesian join, a spilling sort) under every context. (`tests/plan.rs` decides real plans
/// from PostgreSQL through the compiled evaluator, which is the default.)
#[test]
fn the_compiled_plan_decision_agrees_with_the_interpreter() {
    let policy = Policy::with_cache(bundle(), 0).unwrap();
    assert_eq!(policy.evaluator(), Evaluator::Compiled);
    let plans = sqlguard::policy::agreement_plans();
    assert!(plans.len() >= 4);
    for ctx in contexts() {
        for (name, plan) in &plans {
            let input = PolicyInput {
                query: None,
                database: Some(&ctx.1),
                identity: &ctx.0,
                tool: "teleport_postgres_query",
                plan: Some(plan),
            };
            let want = policy.interpreted(PLAN_DECISION_RULE, &input).unwrap();
            let got = policy
                .compiled(PLAN_DECISION_RULE, &input)
                .unwrap()
                .unwrap();
            assert_eq!(want, got, "{name} under {ctx:?}");
        }
    }
}

/// The speed patch writes out `Ord for regorus::Value` (strings told apart by their first byte
/// before `memcmp`). `PartialOrd` is still derived, so the two agreeing on every pair proves the
/// written order is the derived one: variants in declaration order, then their contents.
#[test]
fn the_patched_value_order_is_the_derived_order() {
    use regorus::Value;
    let json = [
        "null",
        "false",
        "true",
        "-1",
        "0",
        "1.5",
        "1e300",
        r#""""#,
        r#""a""#,
        r#""ab""#,
        r#""b""#,
        r#""é""#,
        r#""z""#,
        "[]",
        "[1]",
        r#"["a", 1]"#,
        "{}",
        r#"{"a": 1}"#,
        r#"{"a": 1, "b": [2]}"#,
        r#"{"b": 1}"#,
    ];
    let mut values: Vec<Value> = json
        .iter()
        .map(|j| Value::from_json_str(j).unwrap())
        .collect();
    let mut set = Value::new_set();
    set.as_set_mut().unwrap().insert(Value::from("a"));
    values.extend([Value::new_set(), set, Value::Undefined]);
    for a in &values {
        for b in &values {
            assert_eq!(Some(a.cmp(b)), a.partial_cmp(b), "{a:?} {b:?}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, .. Default::default() })]

    /// Strings, the patched case, order as `str` does, prefixes and non-ASCII included.
    #[test]
    fn patched_strings_order_as_str(a in "[ab\u{e9}\u{0}-\u{7f}]{0,6}", b in "[ab\u{e9}\u{0}-\u{7f}]{0,6}") {
        let (x, y) = (regorus::Value::from(a.as_str()), regorus::Value::from(b.as_str()));
        proptest::prop_assert_eq!(x.cmp(&y), a.as_str().cmp(b.as_str()));
        proptest::prop_assert_eq!(Some(x.cmp(&y)), x.partial_cmp(&y));
    }
}
