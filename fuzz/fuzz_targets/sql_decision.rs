//! SQL → decision through the default bundle: never an allow when the analysis failed, an
//! allow only for one read-only statement, and the decision cache never changes a decision
//! (the cached policy sees the text and then the same text with fresh constants, and must
//! decide both as the uncached one does).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlguard::policy::{Bundle, Identity, Policy};
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(|| Policy::new(Bundle::embedded(&[]).unwrap()).unwrap());
static UNCACHED: LazyLock<Policy> =
    LazyLock::new(|| Policy::with_cache(Bundle::embedded(&[]).unwrap(), 0).unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let identity = Identity::default();
    let check = |p: &Policy, sql: &str| p.check(sql, &Default::default(), None, &identity, "teleport_postgres_query");
    let checked = check(&POLICY, sql);
    if checked.decision.allow {
        let facts = checked.facts.expect("allowed although the analysis failed");
        assert_eq!(facts.statement_count, 1, "allowed several statements: {sql:?}");
        assert!(facts.statements[0].read_only, "allowed a statement that is not read-only: {sql:?}");
        assert!(facts.statements[0].unclassified.is_empty());
    }
    assert_eq!(checked.decision, check(&UNCACHED, sql).decision, "the cache changed the decision on {sql:?}");
    let seed = data.iter().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
    if let Some(other) = sqlguard::analysis::variants::Constants::new(seed).refresh(sql) {
        assert_eq!(
            check(&POLICY, &other).decision,
            check(&UNCACHED, &other).decision,
            "the cache changed the decision on {other:?} (from {sql:?})"
        );
    }
});
