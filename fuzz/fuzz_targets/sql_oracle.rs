//! sqlparser (`PostgreSqlDialect`) as an independent oracle: whatever it reads as more than
//! one plain read (data-modifying, DDL, transaction control, `SET`, `COPY`, `CALL`, `GRANT`,
//! `SELECT INTO`, a locking read, several statements) must be denied by sqlguard's default
//! bundle, unless listed with its reason in `tests/conformance/sqlparser_misreadings.tsv`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlguard::policy::{Bundle, Identity, Policy};
use std::sync::LazyLock;

#[path = "../../tests/support/oracle.rs"]
mod oracle;

static POLICY: LazyLock<Policy> =
    LazyLock::new(|| Policy::new(Bundle::embedded(&[]).unwrap()).unwrap());

static MISREADINGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    include_str!("../../tests/conformance/sqlparser_misreadings.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t').map(|(k, _)| k.to_string()))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let oracle::Oracle::MustDeny(what) = oracle::classify(sql) else {
        return;
    };
    let d = POLICY
        .check(
            sql,
            &Default::default(),
            None,
            &Identity::default(),
            "teleport_postgres_query",
        )
        .decision;
    if d.allow {
        let key = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            MISREADINGS.contains(&key),
            "sqlparser reads {sql:?} as {what}, and sqlguard allows it"
        );
    }
});
