//! The audit log: intent before execution, a keyed chain, a head anchor, torn-line recovery.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sqlguard::audit::{verify, AuditLog};

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
    assert_eq!(verify(&log, None), Ok(4));
    let last: Value = serde_json::from_str(lines(&log).last().unwrap()).unwrap();
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
    let server_log = std::fs::read_to_string(cluster.local.dir.join("log")).unwrap();
    let seen: std::collections::BTreeSet<String> = server_log
        .lines()
        .filter(|l| l.contains("execute") && l.contains("audit_mark_"))
        .filter_map(|l| {
            l.split("AS ")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    assert!(
        !seen.is_empty(),
        "no query reached the database before the kill"
    );
    let audit = std::fs::read_to_string(&log).unwrap();
    let recorded: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let intents: std::collections::BTreeSet<String> = recorded
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
        .collect();
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
