//! sqlparser as an independent oracle over the corpora: every text it reads as more than one
//! plain read must be denied by sqlguard's default bundle. A disagreement is a finding; the
//! known misreadings of sqlparser are listed, with reasons, in
//! `tests/conformance/sqlparser_misreadings.tsv`, and an unlisted one fails the test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sqlguard::policy::{Bundle, Policy};

use crate::policy::decide;
use crate::support::corpus_statements;
use crate::support::oracle::{classify, Oracle};

/// `first line of the SQL, whitespace folded` → why sqlguard rightly allows it.
fn misreadings() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance/sqlparser_misreadings.tsv");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, why)| (k.to_string(), why.to_string()))
        .collect()
}

pub fn key(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn what_sqlparser_reads_as_a_change_sqlguard_denies() {
    let statements = corpus_statements();
    if statements.is_empty() {
        return;
    }
    let policy = Policy::new(Bundle::embedded(&[]).unwrap()).unwrap();
    let known = misreadings();
    let mut used = std::collections::BTreeSet::new();
    let (mut parsed, mut must_deny, mut denied) = (0, 0, 0);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut findings = Vec::new();
    for sql in &statements {
        let verdict = classify(sql);
        let what = match verdict {
            Oracle::Unparsed => continue,
            Oracle::Read => {
                parsed += 1;
                continue;
            }
            Oracle::MustDeny(what) => what,
        };
        parsed += 1;
        must_deny += 1;
        *kinds
            .entry(what.split_whitespace().next().unwrap_or("").to_string())
            .or_default() += 1;
        let d = decide(&policy, sql);
        if !d.allow {
            denied += 1;
            continue;
        }
        let k = key(sql);
        if known.contains_key(&k) {
            used.insert(k);
        } else {
            findings.push(format!("{k}\t(sqlparser: {what}; sqlguard allows)"));
        }
    }
    eprintln!(
        "sqlparser oracle: {} corpus texts, {parsed} parsed by sqlparser, {must_deny} read as changes, {denied} of them denied by sqlguard, {} known misreadings",
        statements.len(),
        used.len()
    );
    eprintln!("  by sqlparser's kind: {kinds:?}");
    let stale: Vec<_> = known.keys().filter(|k| !used.contains(*k)).collect();
    assert!(
        findings.is_empty(),
        "{} texts sqlparser reads as changes are allowed by sqlguard (a finding, or a misreading to list in tests/conformance/sqlparser_misreadings.tsv with its reason):\n{}",
        findings.len(),
        findings.join("\n")
    );
    assert!(stale.is_empty(), "misreadings no longer seen: {stale:?}");
    assert!(must_deny > 10_000, "{must_deny}");
}

/// The oracle's finding: a plain `EXPLAIN` of a read that is not read-only was allowed,
/// although the statement itself is not (`SELECT … INTO` from PostgreSQL's own regression
/// SQL). Now denied, with the construct named; `EXPLAIN` of a plain read stays allowed.
#[test]
fn explain_of_a_read_that_is_not_read_only_is_denied() {
    let policy = Policy::new(Bundle::embedded(&[]).unwrap()).unwrap();
    for (sql, says) in [
        ("explain (costs off) select length(stringu1) into parallel_write from tenk1 group by length(stringu1)", "SELECT … INTO creates a table"),
        ("EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE in WITH query \"d\""),
        ("EXPLAIN SELECT * FROM t FOR UPDATE", "FOR UPDATE locks rows"),
    ] {
        assert!(matches!(classify(sql), Oracle::MustDeny(_)) || sql.contains("FOR UPDATE"), "{sql}");
        let d = decide(&policy, sql);
        assert!(!d.allow, "{sql}");
        let r = d.reasons.iter().find(|r| r.rule == "explain_target").expect(sql);
        assert!(r.message.contains(says), "{}", r.message);
    }
    assert!(decide(&policy, "EXPLAIN SELECT * FROM t WHERE a = 1").allow);
}
