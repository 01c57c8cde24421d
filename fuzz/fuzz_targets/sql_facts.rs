//! SQL → facts: no panic, deterministic, and no name the text does not hold.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let first = sqlguard::analysis::analyze(sql);
    assert_eq!(first, sqlguard::analysis::analyze(sql), "analysis is not deterministic");
    if let Ok(facts) = first {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
    }
});
