//! SQL → facts: no panic, deterministic, no name the text does not hold, and the policy input
//! built straight from the facts equals the one the JSON route gives.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let first = sqlguard::analysis::analyze(sql);
    assert_eq!(first, sqlguard::analysis::analyze(sql), "analysis is not deterministic");
    if let Ok(facts) = first {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
        let direct = sqlguard::policy::to_value(&facts).unwrap();
        let via_json = regorus::Value::from(serde_json::to_value(&facts).unwrap());
        assert!(direct == via_json, "the policy input differs from the facts' JSON: {sql:?}");
    }
});
