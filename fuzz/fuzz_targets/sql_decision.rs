//! SQL → decision through the default bundle: never an allow when the analysis failed, an
//! allow only for one read-only statement, and the decision cache never changes a decision
//! (the cached policy sees the text and then the same text with fresh constants, and must
//! decide both as the uncached one does), and the compiled evaluator (the patched RVM) gives
//! the interpreter's decision value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlguard::policy::{Bundle, Evaluator, Identity, Policy, PolicyInput, DECISION_RULE};
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> =
    LazyLock::new(|| Policy::new(Bundle::embedded(&[]).unwrap()).unwrap());
static UNCACHED: LazyLock<Policy> =
    LazyLock::new(|| Policy::with_cache(Bundle::embedded(&[]).unwrap(), 0).unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let identity = Identity::default();
    let check = |p: &Policy, sql: &str| {
        p.check(
            sql,
            &Default::default(),
            None,
            &identity,
            "teleport_postgres_query",
        )
    };
    let checked = check(&POLICY, sql);
    if checked.decision.allow {
        let facts = checked
            .facts
            .as_ref()
            .expect("allowed although the analysis failed");
        assert_eq!(
            facts.statement_count, 1,
            "allowed several statements: {sql:?}"
        );
        assert!(
            facts.statements[0].read_only,
            "allowed a statement that is not read-only: {sql:?}"
        );
        assert!(facts.statements[0].unclassified.is_empty());
    }
    assert_eq!(
        checked.decision,
        check(&UNCACHED, sql).decision,
        "the cache changed the decision on {sql:?}"
    );
    if let Ok(facts) = &checked.facts {
        assert_eq!(POLICY.evaluator(), Evaluator::Compiled);
        let input = PolicyInput {
            query: Some(facts),
            database: None,
            identity: &identity,
            tool: "teleport_postgres_query",
            plan: None,
        };
        let compiled = POLICY.compiled(DECISION_RULE, &input).expect("compiled");
        let interpreted = POLICY.interpreted(DECISION_RULE, &input);
        match (&compiled, &interpreted) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the evaluators disagree on {sql:?}"),
            (Err(_), Err(_)) => {}
            _ => panic!("the evaluators disagree on {sql:?}: compiled {compiled:?}, interpreter {interpreted:?}"),
        }
    }
    let seed = data
        .iter()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
    if let Some(other) = sqlguard::analysis::variants::Constants::new(seed).refresh(sql) {
        assert_eq!(
            check(&POLICY, &other).decision,
            check(&UNCACHED, &other).decision,
            "the cache changed the decision on {other:?} (from {sql:?})"
        );
    }
});
