//! SQL → facts: the raw parse tree reads exactly as libpg_query's JSON (same tree, same facts,
//! same error), no panic, deterministic, no name the text does not hold, and the policy input
//! built straight from the facts equals the one the JSON route gives. The same with a catalog
//! snapshot (the PostgreSQL 17 fixture): names resolved against it, never a panic, and every
//! name it resolves is in the text too.
#![no_main]
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sqlguard::analysis::snapshot::Snapshot;
use sqlguard::analysis::AnalysisOptions;

static WITH_CATALOG: LazyLock<AnalysisOptions> = LazyLock::new(|| {
    let snapshot = Snapshot::from_json(include_str!("../../tests/fixtures/catalog-pg17.json"))
        .expect("the fixture snapshot loads");
    AnalysisOptions::default().with_snapshot(Some(Arc::new(snapshot)))
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    sqlguard::analysis::raw::compare(sql).unwrap();
    let first = sqlguard::analysis::analyze(sql);
    let opts = AnalysisOptions::default();
    match (&first, sqlguard::analysis::analyze_json_with(sql, &opts)) {
        (Ok(raw), Ok(json)) => assert!(*raw == json, "raw and JSON facts differ: {sql:?}"),
        (Err(raw), Err(json)) => assert_eq!(raw.code(), json.code(), "{sql:?}"),
        (raw, json) => panic!("raw {raw:?}, JSON {json:?}: {sql:?}"),
    }
    assert_eq!(first, sqlguard::analysis::analyze(sql), "analysis is not deterministic");
    if let Ok(facts) = first {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
        let direct = sqlguard::policy::to_value(&facts).unwrap();
        let via_json = regorus::Value::from(serde_json::to_value(&facts).unwrap());
        assert!(direct == via_json, "the policy input differs from the facts' JSON: {sql:?}");
    }
    let with = sqlguard::analysis::analyze_with(sql, &WITH_CATALOG);
    assert_eq!(with, sqlguard::analysis::analyze_with(sql, &WITH_CATALOG));
    if let Ok(facts) = with {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
    }
});
