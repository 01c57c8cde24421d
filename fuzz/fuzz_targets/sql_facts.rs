//! SQL → facts: the raw parse tree reads exactly as libpg_query's JSON (same tree, same facts,
//! same error), no panic, deterministic, no name the text does not hold, and the policy input
//! built straight from the facts equals the one the JSON route gives. The same with a catalog
//! snapshot (the PostgreSQL 17 fixture): names resolved against it, never a panic, and every
//! name it resolves is in the text too.
#![no_main]
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sqlguard::analysis::shape::Shape;
use sqlguard::analysis::snapshot::Snapshot;
use sqlguard::analysis::variants::Constants;
use sqlguard::analysis::{analyze, analyze_traced, AnalysisOptions};

static WITH_CATALOG: LazyLock<AnalysisOptions> = LazyLock::new(|| {
    let snapshot = Snapshot::from_json(include_str!("../../tests/fixtures/catalog-pg17.json"))
        .expect("the fixture snapshot loads");
    AnalysisOptions::default().with_snapshot(Some(Arc::new(snapshot)))
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    sqlguard::analysis::raw::compare(sql).unwrap();
    let first = sqlguard::analysis::analyze(sql);
    let opts = AnalysisOptions::default();
    match (&first, sqlguard::analysis::analyze_json_with(sql, &opts)) {
        (Ok(raw), Ok(json)) => assert!(*raw == json, "raw and JSON facts differ: {sql:?}"),
        (Err(raw), Err(json)) => assert_eq!(raw.code(), json.code(), "{sql:?}"),
        (raw, json) => panic!("raw {raw:?}, JSON {json:?}: {sql:?}"),
    }
    assert_eq!(
        first,
        sqlguard::analysis::analyze(sql),
        "analysis is not deterministic"
    );
    if let Ok(facts) = &first {
        shape_holds(sql, facts, data.len() as u64);
    }
    if let Ok(facts) = first {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
        let direct = sqlguard::policy::to_value(&facts).unwrap();
        let via_json = regorus::Value::from(serde_json::to_value(&facts).unwrap());
        assert!(
            direct == via_json,
            "the policy input differs from the facts' JSON: {sql:?}"
        );
    }
    let with = sqlguard::analysis::analyze_with(sql, &WITH_CATALOG);
    assert_eq!(with, sqlguard::analysis::analyze_with(sql, &WITH_CATALOG));
    if let Ok(facts) = with {
        sqlguard::analysis::check_names_in_text(sql, &facts).unwrap();
    }
});

/// The shape cache's promise: another text with the same shape key and the same kept
/// constants has these facts, at its own positions.
fn shape_holds(sql: &str, facts: &sqlguard::analysis::Facts, seed: u64) {
    let Some(shape) = Shape::scan(sql) else {
        return;
    };
    let (traced, constants) = analyze_traced(sql, &AnalysisOptions::default()).unwrap();
    assert!(traced == *facts, "tracing changed the facts: {sql:?}");
    let Some(template) = shape.template(facts, &constants) else {
        return;
    };
    let Some(other) = Constants::new(seed).refresh(sql) else {
        return;
    };
    let Some(reshaped) = Shape::scan(&other) else {
        return;
    };
    let key = |s: &Shape<'_>| {
        let mut k = Vec::new();
        s.key(&mut k);
        s.values(&template, &mut k);
        k
    };
    if key(&shape) != key(&reshaped) {
        return;
    }
    let mut placed = facts.clone();
    reshaped.place(&template, &mut placed);
    assert_eq!(
        analyze(&other).ok(),
        Some(placed),
        "{sql:?} and {other:?} share a key"
    );
}
