//! SQL → decision through the default bundle: never an allow when the analysis failed, and
//! an allow only for one read-only statement.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static POLICY: LazyLock<sqlguard::policy::Policy> = LazyLock::new(|| {
    sqlguard::policy::Policy::new(sqlguard::policy::Bundle::embedded(&[]).unwrap()).unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let identity = sqlguard::policy::Identity::default();
    let checked = POLICY.check(sql, &Default::default(), None, &identity, "teleport_postgres_query");
    if checked.decision.allow {
        let facts = checked.facts.expect("allowed although the analysis failed");
        assert_eq!(facts.statement_count, 1, "allowed several statements: {sql:?}");
        assert!(facts.statements[0].read_only, "allowed a statement that is not read-only: {sql:?}");
        assert!(facts.statements[0].unclassified.is_empty());
    }
});
