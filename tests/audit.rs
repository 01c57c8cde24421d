//! The audit log: intent before execution, a keyed chain, a head anchor, torn-line recovery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlguard::audit::{verify, AuditLog};

use crate::mcp::query_database;
use crate::support::cluster::{Cluster, DB};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlguard-audit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A log of `n` records written with `key`.
fn written(path: &Path, key: Option<&[u8]>, n: usize) {
    let (log, notice) = AuditLog::open(path, key.map(<[u8]>::to_vec)).unwrap();
    assert_eq!(notice, None);
    for i in 0..n {
        log.append(&json!({"event": "decision", "n": i, "allow": i % 2 == 0}))
            .unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Re-links every line after an edit the way a forger without the key would (SHA-256).
fn rechain(lines: &mut [String]) {
    use sha2::Digest;
    let mut prev = sqlguard::audit::GENESIS.to_string();
    for line in lines.iter_mut() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["prev"] = Value::from(prev.clone());
        *line = v.to_string();
        prev = sha2::Sha256::digest(line.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    }
}

/// Each kind of tampering is found, with the line it starts at; an intact log verifies.
#[test]
fn tampering_is_detected_with_its_line() {
    let dir = scratch("tamper");
    let key: &[u8] = b"not-in-the-log";
    let log = dir.join("audit.jsonl");
    written(&log, Some(key), 5);
    assert_eq!(verify(&log, Some(key.to_vec())), Ok(5));
    // Reopening continues the chain.
    written(&log, Some(key), 1);
    assert_eq!(verify(&log, Some(key.to_vec())), Ok(6));
    let original = lines(&log);
    let write = |ls: &[String]| std::fs::write(&log, ls.join("\n") + "\n").unwrap();

    // (what was done, the edited lines, the words the failure must contain)
    let mut truncated = original.clone();
    truncated.truncate(4);
    let mut edited = original.clone();
    edited[2] = edited[2].replace("\"allow\":true", "\"allow\":false");
    let mut rechained = edited.clone();
    rechain(&mut rechained);
    let mut rechained_keyless: Vec<String> = rechained
        .iter()
        .map(|l| l.replace("hmac-sha256", "sha256"))
        .collect();
    rechain(&mut rechained_keyless);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "tail truncated",
            truncated,
            "line 5: the log ends after 4 records",
        ),
        (
            "middle record edited",
            edited,
            "line 4: the chain is broken",
        ),
        (
            "edited and re-chained without the key",
            rechained,
            "line 2: the chain is broken",
        ),
        (
            "re-chained as an unkeyed log",
            rechained_keyless,
            "line 1: not keyed",
        ),
    ];
    for (what, ls, words) in cases {
        write(&ls);
        let e = verify(&log, Some(key.to_vec())).unwrap_err();
        assert!(e.contains(words), "{what}: {e}");
    }
    write(&original);
    assert_eq!(verify(&log, Some(key.to_vec())), Ok(6));
    // The key is needed, and the anchor too.
    assert!(verify(&log, None).unwrap_err().contains("no key was given"));
    std::fs::remove_file(dir.join("audit.jsonl.head")).unwrap();
    assert!(verify(&log, Some(key.to_vec()))
        .unwrap_err()
        .contains("no head anchor"));

    // The CLI says the same, with exit 1, and reads the key from a variable.
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "audit",
            "verify",
            log.to_str().unwrap(),
            "--key-env",
            "SQLGUARD_TEST_AUDIT_KEY",
        ])
        .env("SQLGUARD_TEST_AUDIT_KEY", "not-in-the-log")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no head anchor"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A torn last line (a crash, a full disk) is moved aside on the next open, the chain goes on
/// from the last whole record with a `recovered` record, and `audit verify` passes again.
#[test]
fn a_torn_line_is_kept_aside_and_the_chain_recovers() {
    let dir = scratch("torn");
    let log = dir.join("audit.jsonl");
    written(&log, None, 3);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, b"{\"event\":\"intent\",\"query\":\"SELECT 1").unwrap();
    drop(f);
    assert!(verify(&log, None).unwrap_err().contains("line 4: torn"));

    // The next start of the server says so on stderr.
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!("audit_log = {:?}\n", log.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent",
        ])
        .env("SQLGUARD_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("torn line (35 bytes"), "{stderr}");
    // The three records, the recovery, and the server's start and stop.
    assert_eq!(verify(&log, None), Ok(6));
    let last: Value = serde_json::from_str(&lines(&log)[3]).unwrap();
    assert_eq!(last["event"], "recovered");
    let kept = PathBuf::from(last["kept_in"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(kept).unwrap(),
        "{\"event\":\"intent\",\"query\":\"SELECT 1"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kill -9` with 50 calls in flight: every query PostgreSQL saw (its own statement log) has an
/// intent record in the audit log, written before the query was sent. A refused 10 MB query is
/// stored as a prefix and a hash.
#[tokio::test]
async fn every_query_the_database_saw_is_in_the_log() {
    let cluster = Cluster::start("audit");
    cluster.psql(DB, "ALTER SYSTEM SET log_statement = 'all'");
    cluster.psql(DB, "SELECT pg_reload_conf()");
    let dir = scratch("kill");
    let log = dir.join("audit.jsonl");
    let settings = format!(
        "audit_log = {:?}\npool_size = 4\nmax_query_bytes = 20000000\n",
        log.display().to_string()
    );
    let config = crate::mcp::shop_config(&dir, &cluster, &settings);
    let (client, pid) = crate::mcp::serve_config(&config).await;
    let client = std::sync::Arc::new(client);

    let huge = format!(
        "SELECT 1 FROM users FOR UPDATE /* {} */",
        "x".repeat(10 << 20)
    );
    let (refused, _) = crate::mcp::query_shop(&client, &huge).await;
    assert!(refused);
    let mut calls = Vec::new();
    for i in 0..50 {
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let sql = format!("SELECT count(*) AS audit_mark_{i} FROM generate_series(1, 2000000)");
            let args = json!({"database": "teleport://clusters/acme/databases/shop", "query": sql});
            // Calls in flight at the kill end with a closed transport: that is the point.
            let _ = client
                .call_tool(
                    rmcp::model::CallToolRequestParams::new("teleport_postgres_query")
                        .with_arguments(args.as_object().cloned().unwrap()),
                )
                .await;
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    for c in calls {
        let _ = c.await;
    }

    // What PostgreSQL saw, from its own statement log.
    let seen = marks_the_database_ran(&cluster);
    assert!(
        !seen.is_empty(),
        "no query reached the database before the kill"
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    let recorded: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let intents = intended_marks(&recorded);
    let missing: Vec<&String> = seen.difference(&intents).collect();
    assert!(
        missing.is_empty(),
        "queries the database ran without an audit record: {missing:?}"
    );
    eprintln!(
        "kill -9 with 50 calls in flight: the database saw {}, the log holds {} intents",
        seen.len(),
        intents.len()
    );

    let long = recorded
        .iter()
        .find(|r| r["event"] == "decision" && r["query_bytes"].as_u64() > Some(10 << 20))
        .expect("the refused 10 MB query is logged");
    assert!(long.get("query").is_none() && long["query_prefix"].as_str().unwrap().len() <= 4096);
    assert!(long["query_hash"].as_str().unwrap().starts_with("sha256:"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `audit_mark_N` queries of the log's intents.
fn intended_marks(recorded: &[Value]) -> std::collections::BTreeSet<String> {
    recorded
        .iter()
        .filter(|r| r["event"] == "intent")
        .filter_map(|r| {
            r["query"]
                .as_str()?
                .split("AS ")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// The `audit_mark_N` queries the server's statement log shows were executed.
fn marks_the_database_ran(cluster: &Cluster) -> std::collections::BTreeSet<String> {
    let server_log = std::fs::read_to_string(cluster.local.dir.join("log")).unwrap();
    server_log
        .lines()
        .filter(|l| l.contains("execute") && l.contains("audit_mark_"))
        .filter_map(|l| {
            l.split("AS ")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// The audit trail answers a security team's questions: every call, resource read
/// and refusal is in the chain with a final `verdict` and its rules, the labels, client,
/// session and policy; start, reloads and stop are records; `audit query` and `audit summary`
/// answer from the log while checking its chain.
#[tokio::test]
async fn every_call_is_recorded_and_the_log_answers_questions() {
    let (dir, config, data, log) = trail_setup();
    a_session_of_calls(&config, &data).await;
    the_records_tell_the_session(&log);
    the_command_line_answers(&dir, &log);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A layer with a plan limit every table query exceeds, an audit log, a labelled database:
/// (directory, configuration, the layer's data file, the log).
fn trail_setup() -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use crate::mcp::shop_config;
    use crate::support::cluster::Cluster;
    let cluster = Cluster::shared();
    let dir = std::env::temp_dir().join(format!("sqlguard-trail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let layer = dir.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::write(layer.join(".manifest"), r#"{"revision": "team-7"}"#).unwrap();
    let data = layer.join("data.json");
    // Plans over a cost of 1 are refused: every query with a table is denied by its plan.
    let plan_data = r#"{"sqlguard": {"columns": {"deny": ["public.users.ssn"]},
        "plan": {"explain": true, "max_total_cost": 1}}}"#;
    std::fs::write(&data, plan_data).unwrap();
    let log = dir.join("audit.jsonl");
    let settings = format!(
        "policy = [{:?}]\naudit_log = {:?}\n",
        layer.display().to_string(),
        log.display().to_string()
    );
    let config = shop_config(&dir, cluster, &settings);
    // Labels: shop_config's database has none; add one.
    let text = std::fs::read_to_string(&config).unwrap() + "labels = { env = \"prod\" }\n";
    std::fs::write(&config, text).unwrap();
    (dir, config, data, log)
}

/// Calls of each verdict, a resource read, a refused and an accepted reload, over one session.
async fn a_session_of_calls(config: &std::path::Path, data: &std::path::Path) {
    use crate::mcp::query_database;
    use rmcp::ServiceExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SQLGUARD_LOG", "error");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let client = ().serve(transport).await.unwrap();
    let db = "teleport://clusters/acme/databases/shop";
    let (failed, text) = query_database(&client, db, "SELECT 1 AS one").await;
    assert!(!failed, "{text}");
    let (failed, text) = query_database(&client, db, "SELECT ssn FROM users").await;
    assert!(failed && text.contains("column_denied"), "{text}");
    let (failed, text) = query_database(&client, db, "SELECT * FROM orders").await;
    assert!(failed && text.contains("plan_cost"), "{text}");
    client
        .call_tool(rmcp::model::CallToolRequestParams::new(
            "teleport_list_databases",
        ))
        .await
        .unwrap();
    client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(db))
        .await
        .unwrap();
    // A reload refused, then one accepted: tools.deny closes the listing tool.
    std::fs::write(data, r#"{"sqlguard": {"colums": {}}}"#).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    std::fs::write(
        data,
        r#"{"sqlguard": {"tools": {"deny": ["teleport_list_databases"]}}}"#,
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = client
        .call_tool(rmcp::model::CallToolRequestParams::new(
            "teleport_list_databases",
        ))
        .await
        .unwrap();
    let said = serde_json::to_string(&r.content).unwrap();
    assert!(
        r.is_error == Some(true) && said.contains("The tool teleport_list_databases is denied"),
        "{said}"
    );
    let _ = client.cancel().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

/// The log holds start, reloads, each call with its session, client, bundle and labels, and
/// each outcome with its final verdict, then stop.
fn the_records_tell_the_session(log: &std::path::Path) {
    let db = "teleport://clusters/acme/databases/shop";
    let records: Vec<Value> = std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"start"), "{events:?}");
    assert_eq!(events.last(), Some(&"stop"), "{events:?}");
    let reloads: Vec<&Value> = records.iter().filter(|r| r["event"] == "reload").collect();
    assert_eq!(
        reloads
            .iter()
            .map(|r| r["accepted"].clone())
            .collect::<Vec<_>>(),
        vec![json!(false), json!(true)],
        "{reloads:?}"
    );
    assert!(reloads[0]["reason"]
        .as_str()
        .unwrap()
        .contains("did you mean data.sqlguard.columns?"));
    assert_ne!(reloads[0]["policy_digest"], reloads[1]["policy_digest"]);
    let session = records[0]["session_id"].as_str().unwrap();
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "decision" || r["event"] == "intent")
        .collect();
    assert_eq!(calls.len(), 6, "{calls:?}");
    for c in &calls {
        assert_eq!(c["session_id"], session, "{c}");
        assert!(
            c["client"]["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{c}"
        );
        assert_eq!(c["bundle_revision"], "sqlguard-0.1.0+team-7", "{c}");
        assert!(
            c["policy_digest"].as_str().is_some_and(|d| d.len() == 64),
            "{c}"
        );
        if c["database"] == db {
            assert_eq!(c["labels"]["env"], "prod", "{c}");
        }
    }
    let tools: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["tool"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tools,
        vec![
            ("teleport_postgres_query", "pending"),
            ("teleport_postgres_query", "denied"),
            ("teleport_postgres_query", "pending"),
            ("teleport_list_databases", "allowed"),
            ("resources/read", "allowed"),
            ("teleport_list_databases", "denied"),
        ]
    );
    let outcomes: Vec<(&str, Value)> = records
        .iter()
        .filter(|r| r["event"] == "outcome")
        .map(|r| (r["verdict"].as_str().unwrap(), r["rules"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("allowed", json!([])),
            ("denied_by_plan", json!(["plan_cost"]))
        ]
    );
}

/// `audit query` and `audit summary` answer from the log, checking its chain.
fn the_command_line_answers(dir: &std::path::Path, log: &std::path::Path) {
    // The questions, from the command line.
    let run = audit_cli;
    let path = log.to_str().unwrap();
    let rows = |out: &str| -> Vec<Value> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (code, out, err) = run(&["query", path, "--format", "jsonl"]);
    assert_eq!(code, 0, "{err}");
    let all = rows(&out);
    assert_eq!(all.len(), 6, "{out}");
    let (_, out, _) = run(&[
        "query",
        path,
        "--format",
        "jsonl",
        "--verdict",
        "denied_by_plan",
    ]);
    let by_plan = rows(&out);
    assert_eq!(by_plan.len(), 1, "{out}");
    assert_eq!(by_plan[0]["query"], "SELECT * FROM orders");
    assert_eq!(by_plan[0]["rules"], json!(["plan_cost"]));
    let (_, out, _) = run(&[
        "query",
        path,
        "--format",
        "jsonl",
        "--rule",
        "column_denied",
    ]);
    assert_eq!(rows(&out).len(), 1, "{out}");
    let (_, out, _) = run(&[
        "query",
        path,
        "--format",
        "jsonl",
        "--database",
        "shop",
        "--label",
        "env=prod",
        "--since",
        "1d",
    ]);
    assert_eq!(rows(&out).len(), 4, "{out}");
    let (_, out, _) = run(&["query", path, "--format", "jsonl", "--until", "2000-01-01"]);
    assert!(out.is_empty(), "{out}");
    let (code, out, _) = run(&["query", path, "--format", "csv", "--verdict", "allowed"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("time,decision_id,user") && out.lines().count() == 4,
        "{out}"
    );
    let (code, out, _) = run(&["query", path]);
    assert_eq!(code, 0);
    assert!(
        out.contains("denied_by_plan") && out.contains("SELECT * FROM orders"),
        "{out}"
    );
    let (code, out, _) = run(&["summary", path, "--format", "json"]);
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["calls"], 6);
    assert_eq!(summary["by_verdict"]["denied"], 2, "{summary}");
    assert_eq!(summary["by_rule"]["plan_cost"], 1, "{summary}");
    let (code, _, err) = run(&["query", path, "--verdict", "refused"]);
    assert_eq!(code, 2);
    assert!(err.contains("not one of allowed, denied"), "{err}");
    a_broken_chain_is_said(dir, log);
}

/// `sqlguard audit ARGS`: exit code, stdout, stderr.
fn audit_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A broken chain is said with its line, and the command fails; the rows before it come.
fn a_broken_chain_is_said(dir: &std::path::Path, log: &std::path::Path) {
    let run = audit_cli;
    let text = std::fs::read_to_string(log).unwrap();
    let tampered = dir.join("tampered.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    let edited = lines[3].replacen("\"verdict\":\"denied\"", "\"verdict\":\"allowed\"", 1);
    lines[3] = &edited;
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run(&["query", tampered.to_str().unwrap(), "--format", "jsonl"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("BROKEN: line 5"), "{err}");
}

/// Decision logs leave the machine: with the collector down for 30 s under 20 calls
/// a second, nothing is lost or slowed; when it comes up every record arrives once, in order,
/// over TLS; a spool left by a server killed with `kill -9` is shipped at the next start.
#[tokio::test]
async fn decision_logs_reach_a_collector_through_an_outage_and_a_kill() {
    use rmcp::ServiceExt;
    let ship = Shipping::new();
    // The collector is down: 30 s of 20 calls a second, none slowed by it.
    let client = ().serve(ship.serve()).await.unwrap();
    calls_during_an_outage(&client).await;
    assert!(!ship.received.exists(), "nothing can have arrived yet");
    let mut up = ship.collector();
    every_record_arrives_once_in_order(&ship);
    let _ = client.cancel().await;
    // Collector down again; calls; the server is killed; its spool ships at the next start.
    up.kill().unwrap();
    let _ = up.wait();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = ship.arrived(0).len();
    let transport = ship.serve();
    let pid = transport.id().unwrap();
    let client = ().serve(transport).await.unwrap();
    for i in 0..10 {
        let (failed, text) = query_database(&client, SHOP, &format!("SELECT {i} AS killed")).await;
        assert!(!failed, "{text}");
    }
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut up = ship.collector();
    let client = ().serve(ship.serve()).await.unwrap();
    let want = ship.expected();
    let got = ship.arrived(want.len());
    let killed: Vec<&Value> = got[before..]
        .iter()
        .filter(|e| {
            e["input"]["query"]
                .as_str()
                .is_some_and(|q| q.ends_with("AS killed"))
        })
        .collect();
    // The ten intents carry the query: ten, once each.
    assert_eq!(killed.len(), 10, "{killed:?}");
    let _ = client.cancel().await;
    up.kill().unwrap();
    let _ = up.wait();
    let _ = std::fs::remove_dir_all(&ship.dir);
}

const SHOP: &str = "teleport://clusters/acme/databases/shop";

/// A server shipping its audit log to a TLS collector that comes and goes.
struct Shipping {
    dir: PathBuf,
    port: u16,
    received: PathBuf,
    log: PathBuf,
    config: PathBuf,
}

impl Shipping {
    fn new() -> Shipping {
        use crate::mcp::shop_config;
        use crate::support::cluster::{free_port, issue_cert, new_ca};
        let cluster = Cluster::shared();
        let dir = std::env::temp_dir().join(format!("sqlguard-ship-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = new_ca("collector CA");
        let (key, cert) = issue_cert(&ca, &["localhost", "127.0.0.1"], None);
        for (name, text) in [("ca.pem", &ca.1), ("cert.pem", &cert), ("key.pem", &key)] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let port = free_port();
        let received = dir.join("received.jsonl");
        let log = dir.join("audit.jsonl");
        let settings = format!(
            "audit_log = {:?}\n[decision_log]\nurl = \"https://127.0.0.1:{port}/logs\"\nca = \"ca.pem\"\nlabels = {{ team = \"data\" }}\n",
            log.display().to_string()
        );
        let config = shop_config(&dir, cluster, &settings);
        Shipping {
            dir,
            port,
            received,
            log,
            config,
        }
    }

    /// The test collector, once it listens.
    fn collector(&self) -> std::process::Child {
        let mut child = std::process::Command::new("python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/collector.py"))
            .args([
                self.port.to_string().as_str(),
                self.received.to_str().unwrap(),
            ])
            .arg(self.dir.join("cert.pem"))
            .arg(self.dir.join("key.pem"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the test collector");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready.trim(), "ready");
        child
    }

    fn serve(&self) -> rmcp::transport::TokioChildProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
        cmd.args(["serve", "--config", self.config.to_str().unwrap()])
            .env("SQLGUARD_LOG", "error");
        rmcp::transport::TokioChildProcess::new(cmd).unwrap()
    }

    /// The audit log's records: (event, decision id).
    fn expected(&self) -> Vec<(String, String)> {
        lines(&self.log)
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["event"].as_str().unwrap().to_string(),
                    v["decision_id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// What the collector received, once it holds `want` events (or 30 s passed).
    fn arrived(&self, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<Value> = std::fs::read_to_string(&self.received)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if got.len() >= want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// 30 s of 20 calls a second (every fourth refused), none slowed by the collector's absence.
async fn calls_during_an_outage(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>) {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(30) {
        let sql = if n % 4 == 3 {
            "DELETE FROM users".to_string()
        } else {
            format!("SELECT {n} AS n")
        };
        let t = Instant::now();
        let (failed, text) = query_database(client, SHOP, &sql).await;
        // The first call also opens the connection and reads the catalog.
        if n > 0 {
            slowest = slowest.max(t.elapsed());
        }
        assert_eq!(failed, n % 4 == 3, "{text}");
        n += 1;
        let next = Duration::from_millis(50) * n;
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    assert!(n >= 500, "only {n} calls in 30 s");
    assert!(slowest < Duration::from_secs(1), "a call took {slowest:?}");
}

/// Every record of the audit log arrives once, in order, in OPA's decision-log shape.
fn every_record_arrives_once_in_order(ship: &Shipping) {
    let want = ship.expected();
    let got = ship.arrived(want.len());
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|e| {
            let id = if e["path"] == "sqlguard/lifecycle" {
                String::new()
            } else {
                e["decision_id"].as_str().unwrap().to_string()
            };
            (e["event"].as_str().unwrap().to_string(), id)
        })
        .collect();
    assert_eq!(seen, want, "{} of {} arrived", got.len(), want.len());
    let first_call = got.iter().find(|e| e["event"] == "intent").unwrap();
    assert_eq!(first_call["path"], "sqlguard/decision");
    assert_eq!(first_call["labels"]["app"], "sqlguard");
    assert_eq!(first_call["labels"]["team"], "data");
    assert_eq!(
        first_call["bundles"]["sqlguard"]["revision"],
        "sqlguard-0.1.0"
    );
    assert!(first_call["input"]["query"]
        .as_str()
        .unwrap()
        .starts_with("SELECT"));
    assert!(got.iter().any(|e| e["result"]["verdict"] == "denied"));
}
