//! Asking the human over MCP elicitation on the real cluster, with the official MCP Python
//! SDK as the client (`tests/e2e/approval_client.py`): its elicitation callback approves,
//! declines, cancels, sleeps past the timeout or answers garbage, and a second client has no
//! elicitation capability. PostgreSQL's statement log shows that each approved query ran
//! exactly once and no other asked query ran at all; the audit log holds every answer.

use std::path::PathBuf;
use std::process::Command;

use crate::plan::logged;
use crate::support::cluster::{Cluster, WRITER};

const AGENT: &str = "approval_agent";
const AGENT_PASSWORD: &str = "approval-secret";
const APPROVALS_DB: &str = "approvals";
const URI: &str = "teleport://clusters/acme/databases/approvals";
const PLAN_URI: &str = "teleport://clusters/acme/databases/approvals_planned";

/// A database with an asked table (`payroll`), a view over it, a free table and a 20,000-row
/// table, and a role whose every statement PostgreSQL logs.
fn approvals_database(cluster: &Cluster) {
    let su = |db: &str, sql: &str| cluster.psql(db, sql);
    su(
        "postgres",
        &format!("CREATE ROLE {AGENT} LOGIN PASSWORD '{AGENT_PASSWORD}'"),
    );
    su(
        "postgres",
        &format!("ALTER ROLE {AGENT} SET log_statement = 'all'"),
    );
    su(
        "postgres",
        &format!("ALTER ROLE {AGENT} SET log_min_duration_statement = 0"),
    );
    su(
        "postgres",
        &format!("CREATE DATABASE {APPROVALS_DB} OWNER {WRITER}"),
    );
    su(
        APPROVALS_DB,
        &format!(
            "SET ROLE {WRITER};
             CREATE TABLE payroll (id int PRIMARY KEY, name text, amount int);
             INSERT INTO payroll VALUES (1, 'ana', 5000), (2, 'bo', 6100), (3, 'cy', 4700);
             CREATE VIEW pay_view AS SELECT name, amount FROM payroll;
             CREATE TABLE staff (id int PRIMARY KEY, name text);
             INSERT INTO staff VALUES (1, 'ana'), (2, 'bo');
             CREATE TABLE ledger (id int PRIMARY KEY, amount int);
             INSERT INTO ledger SELECT g, g % 100 FROM generate_series(1, 20000) g;
             ANALYZE;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {AGENT};"
        ),
    );
}

fn config(dir: &std::path::Path, cluster: &Cluster) -> PathBuf {
    let data = dir.join("asks.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {
            "tables": {"ask": ["public.payroll"]},
            "plan": {"explain": true, "labels": {"plan": "on"}, "ask_over_total_cost": 100, "deny_cartesian": true}
        }}"#,
    )
    .unwrap();
    let dsn = format!(
        "postgres://{AGENT}:{AGENT_PASSWORD}@127.0.0.1:{}/{APPROVALS_DB}?sslmode=disable",
        cluster.port
    );
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "data = [{data:?}]\naudit_log = {audit:?}\napproval_timeout_s = 2\n\n\
             [[database]]\nuri = \"{URI}?dbName={APPROVALS_DB}&dbUser={AGENT}\"\ndsn = \"{dsn}\"\n\n\
             [[database]]\nuri = \"{PLAN_URI}?dbName={APPROVALS_DB}&dbUser={AGENT}\"\ndsn = \"{dsn}\"\nlabels = {{ plan = \"on\" }}\n",
            data = data.display().to_string(),
            audit = dir.join("audit.jsonl").display().to_string(),
        ),
    )
    .unwrap();
    config
}

/// The audit records (as JSON) of every call whose query has `marker`.
fn audited(audit: &[serde_json::Value], marker: &str) -> Vec<serde_json::Value> {
    let ids: Vec<&str> = audit
        .iter()
        .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(marker)))
        .filter_map(|r| r["decision_id"].as_str())
        .collect();
    audit
        .iter()
        .filter(|r| {
            r["decision_id"]
                .as_str()
                .is_some_and(|id| ids.contains(&id))
        })
        .cloned()
        .collect()
}

#[test]
fn the_person_at_the_client_approves_each_asked_call() {
    let Some(python) = crate::mcp::python() else {
        return;
    };
    let cluster = Cluster::shared();
    approvals_database(cluster);
    let dir = std::env::temp_dir().join(format!("sqlguard-approval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, cluster);
    let tag = format!("ask{}", std::process::id());
    crate::mcp::run_e2e(
        &python,
        "approval_client.py",
        &[
            env!("CARGO_BIN_EXE_sqlguard"),
            config.to_str().unwrap(),
            URI,
            PLAN_URI,
            &tag,
        ],
        "warn",
    );

    each_approved_query_ran_once(cluster, &tag);
    every_answer_is_audited(&dir.join("audit.jsonl"), &tag);
    let _ = std::fs::remove_dir_all(&dir);
}

/// PostgreSQL ran each approved query once, and no refused one, not even planned ones.
fn each_approved_query_ran_once(cluster: &Cluster, tag: &str) {
    let ran = |marker: &str| logged(cluster, &format!("{tag}-{marker} ")).0;
    for approved in [
        "approve-1",
        "approve-c1-slow",
        "approve-plan",
        "free-1",
        "free-2",
    ] {
        assert_eq!(ran(approved), 1, "{approved} must run exactly once");
    }
    for refused in [
        "decline-1",
        "formdecline-1",
        "cancel-1",
        "late-1",
        "garbage-1",
        "empty-1",
        "decline-2",
        "decline-c2",
        "decline-view",
        "decline-plan",
        "deny-plan",
        "nocap-1",
    ] {
        assert_eq!(ran(refused), 0, "{refused} must never run");
    }
    // The plan asks came after PostgreSQL planned the query (explained, then not run).
    assert!(logged(cluster, &format!("{tag}-decline-plan ")).1 >= 1);
}

/// Each marker's (answer, step, final verdict) as the audit log must show it.
const EXPECTED_ANSWERS: &[(&str, &str, &str, &str)] = &[
    ("approve-1", "approved", "query", "allowed"),
    ("decline-1", "declined", "query", "unapproved"),
    ("formdecline-1", "declined", "query", "unapproved"),
    ("cancel-1", "cancelled", "query", "unapproved"),
    ("late-1", "timed_out", "query", "unapproved"),
    ("garbage-1", "malformed", "query", "unapproved"),
    ("empty-1", "malformed", "query", "unapproved"),
    ("nocap-1", "unsupported", "query", "unapproved"),
    ("approve-plan", "approved", "plan", "allowed"),
    ("decline-plan", "declined", "plan", "unapproved"),
    ("free-1", "", "", "allowed"),
    ("deny-plan", "", "", "denied_by_plan"),
];

/// The audit log holds each ask with its answer and wait, its chain verifies, and `audit
/// query` and `audit summary` answer "which asks were refused, and how".
fn every_answer_is_audited(audit_path: &std::path::Path, tag: &str) {
    let verify = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["audit", "verify", audit_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let audit: Vec<serde_json::Value> = std::fs::read_to_string(audit_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let answer_of = |marker: &str| -> (String, String, String) {
        let records = audited(&audit, &format!("{tag}-{marker} "));
        let last = records
            .last()
            .unwrap_or_else(|| panic!("no record of {marker}"));
        let answer = records
            .iter()
            .find_map(|r| r["approval"]["answer"].as_str())
            .unwrap_or("")
            .to_string();
        let step = records
            .iter()
            .find_map(|r| r["approval"]["step"].as_str())
            .unwrap_or("")
            .to_string();
        (
            answer,
            step,
            last["verdict"].as_str().unwrap_or("").to_string(),
        )
    };
    for (marker, answer, step, verdict) in EXPECTED_ANSWERS {
        assert_eq!(
            answer_of(marker),
            (answer.to_string(), step.to_string(), verdict.to_string()),
            "{marker}"
        );
    }
    let late = audited(&audit, &format!("{tag}-late-1 "));
    let waited = late
        .iter()
        .find_map(|r| r["approval"]["wait_ms"].as_u64())
        .unwrap();
    assert!(
        (1900..3500).contains(&waited),
        "timed out after {waited} ms"
    );
    the_audit_commands_answer_for_asks(audit_path);
}

/// `audit query` and `audit summary` answer "which asks were refused, and how".
fn the_audit_commands_answer_for_asks(audit_path: &std::path::Path) {
    let query = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["audit", "query", audit_path.to_str().unwrap()])
        .args(["--verdict", "unapproved", "--format", "jsonl"])
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&query.stdout);
    assert_eq!(rows.lines().count(), 11, "{rows}");
    assert!(rows.lines().all(|l| l.contains("\"approval\":")), "{rows}");
    let summary = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["audit", "summary", audit_path.to_str().unwrap()])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert!(
        summary.contains("by approval:") && summary.contains("timed_out"),
        "{summary}"
    );
}
