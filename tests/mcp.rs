//! The MCP server end to end, driven by a client that is not this project's code: the
//! official MCP Python SDK (installed by scripts/test into .venv).

use std::path::PathBuf;
use std::process::Command;

use crate::support::cluster::{Cluster, DB};

pub fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var("SQLGUARD_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_default(),
        root.join(".venv/bin/python"),
    ];
    for p in candidates {
        if p.as_os_str().is_empty() || !p.exists() {
            continue;
        }
        let ok = Command::new(&p)
            .args(["-c", "import mcp, jwt, cryptography"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p);
        }
    }
    let msg = "the MCP Python SDK is not installed with cryptography (.venv/bin/python -c 'import mcp, jwt, cryptography' fails): run scripts/test, which installs it";
    if std::env::var("SQLGUARD_REQUIRE_E2E").is_ok() {
        panic!("{msg}");
    }
    eprintln!("\n!!!!! MCP end-to-end test SKIPPED: {msg} !!!!!\n");
    None
}

/// Runs the Python end-to-end script `tests/e2e/SCRIPT` with `args` (stderr logs at `log`) and
/// returns its output, once it passed.
pub fn run_e2e(python: &std::path::Path, script: &str, args: &[&str], log: &str) -> String {
    let out = Command::new(python)
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/e2e")
                .join(script),
        )
        .args(args)
        .env("SQLGUARD_LOG", log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn python_sdk_client_end_to_end() {
    let Some(python) = python() else { return };
    let cluster = Cluster::shared();
    let dir = std::env::temp_dir().join(format!("sqlguard-mcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("overrides.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"columns": {"deny": ["public.users.ssn"]}}}"#,
    )
    .unwrap();
    let audit = dir.join("audit.jsonl");
    let uri = "teleport://clusters/local/databases/shop?dbName=shop&dbUser=writer";
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "policy = [{policies:?}]\ndata = [{data:?}]\naudit_log = {audit:?}\n\n[[database]]\nuri = {uri:?}\ndsn = {dsn:?}\nlabels = {{ env = \"dev\" }}\ndescription = \"Sample shop\"\n",
            policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies").display().to_string(),
            data = data.display().to_string(),
            audit = audit.display().to_string(),
            dsn = cluster.dsn("?sslmode=disable"),
        ),
    )
    .unwrap();
    let before = cluster.psql(DB, "SELECT count(*) || '/' || (SELECT last_value FROM counter) || '/' || count(to_regclass('copy_of_users')) FROM users");

    crate::mcp::run_e2e(
        &python,
        "mcp_client.py",
        &[
            env!("CARGO_BIN_EXE_sqlguard"),
            config.to_str().unwrap(),
            "teleport://clusters/local/databases/shop",
            data.to_str().unwrap(),
        ],
        "warn",
    );

    // Nothing changed, as a second connection sees it.
    let after = cluster.psql(DB, "SELECT count(*) || '/' || (SELECT last_value FROM counter) || '/' || count(to_regclass('copy_of_users')) FROM users");
    assert_eq!(before, after);

    // The audit log holds every call, its chain verifies, and an edited line is caught.
    let verify = |path: &PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args(["audit", "verify", path.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = verify(&audit);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        text.lines().count() > 40,
        "{} audit lines",
        text.lines().count()
    );
    assert!(text.contains("\"allow\":false") && text.contains("\"allow\":true"));
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(
        &tampered,
        text.replacen("\"allow\":false", "\"allow\":true", 1),
    )
    .unwrap();
    let bad = verify(&tampered);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad configuration stops start-up with what to fix; an expired or absent Teleport
/// session does not: the tools say which tsh command to run.
#[tokio::test]
async fn startup_errors_and_missing_teleport_sessions() {
    let dir = std::env::temp_dir().join(format!("sqlguard-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[database]]\nuri = \"teleport://clusters/a/databases/b\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["serve", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dbName parameter is required") && stderr.contains("expected teleport://"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "serve",
            "teleport://clusters/a/databases/x?dbName=x&dbUser=u",
            "teleport://clusters/b/databases/y?dbName=y&dbUser=u",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("two clusters"));

    use rmcp::model::CallToolRequestParams;
    use rmcp::ServiceExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args([
        "serve",
        "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent",
    ])
    .env("TELEPORT_HOME", dir.join("no-tsh-here"))
    .env("PATH", "/usr/bin:/bin")
    .env("SQLGUARD_LOG", "error");
    let client = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let (is_error, text) = query_shop(&client, "SELECT 1").await;
    assert!(is_error);
    assert!(text.contains("tsh"), "{text}");
    // The server keeps serving after the error.
    let r = client
        .call_tool(CallToolRequestParams::new("teleport_list_databases"))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true));
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tools the policy denies are not listed and are refused on call.
#[tokio::test]
async fn denied_tools_are_hidden_and_refused() {
    use rmcp::ServiceExt;
    let dir = std::env::temp_dir().join(format!("sqlguard-tools-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("tools.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"tools": {"deny": ["^teleport_postgres_.*$"]}}}"#,
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args([
        "serve",
        "--data",
        data.to_str().unwrap(),
        "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent",
    ])
    .env("SQLGUARD_LOG", "error");
    let client = ().serve(rmcp::transport::TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(tools, ["teleport_list_databases"]);
    let (is_error, text) = query_shop(&client, "SELECT 1").await;
    assert!(is_error);
    assert!(text.contains("tool_denied"), "{text}");
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Calls teleport_postgres_query on the `shop` database: `(isError, text)`.
pub async fn query_shop(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    sql: &str,
) -> (bool, String) {
    query_database(client, "teleport://clusters/acme/databases/shop", sql).await
}

/// One `teleport_postgres_query` call on `database`: whether it is an error, and its text.
pub async fn query_database(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    database: &str,
    sql: &str,
) -> (bool, String) {
    let args = serde_json::json!({"database": database, "query": sql});
    let r = client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("teleport_postgres_query")
                .with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    let text = r
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    (r.is_error == Some(true), text)
}

/// `columns.deny` and `settings.sensitive` hold over MCP on a real, analyzed table: the join
/// oracles and every value-bearing statistics read are refused naming the column, the
/// settings views are refused for sensitive settings, and reads that cannot show them return
/// rows (threat model, "implicit references" and "side channels").
#[tokio::test]
async fn column_and_setting_side_channels_are_refused() {
    let cluster = Cluster::shared();
    // Autovacuum would analyze the table too; do it now so the statistics hold real values.
    cluster.psql(DB, "ANALYZE users");
    let leaked = cluster.psql(
        DB,
        "SELECT histogram_bounds IS NOT NULL FROM pg_stats WHERE tablename = 'users' AND attname = 'ssn'",
    );
    assert_eq!(
        leaked.trim(),
        "t",
        "pg_stats holds no sample of users.ssn: the test proves nothing"
    );

    let dir = std::env::temp_dir().join(format!("sqlguard-sidech-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("columns.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"columns": {"deny": ["public.users.ssn"]}}}"#,
    )
    .unwrap();
    let settings = format!("data = [{:?}]\n", data.display().to_string());
    let (client, _) = serve_config(&shop_config(&dir, cluster, &settings)).await;

    // (SQL, the words the refusal must contain; "" = allowed and returns rows)
    let cases: &[(&str, &str)] = &[
        ("SELECT id FROM users NATURAL JOIN (SELECT '000000001' AS ssn) s", "public.users.ssn"),
        ("SELECT id FROM users JOIN (SELECT '000000001' AS ssn) s USING (ssn)", "public.users.ssn"),
        ("SELECT u.id FROM users JOIN (SELECT '000000001' AS ssn) s USING (ssn) AS u", "public.users.ssn"),
        ("SELECT c FROM users u(a, b, c, d)", "public.users.ssn"),
        ("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'users' AND attname = 'ssn'", "public.users.ssn"),
        ("SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'users'", "public.users.ssn"),
        ("SELECT most_common_elems::text, elem_count_histogram::text FROM pg_stats", "cannot be mapped"),
        ("SELECT * FROM pg_stats WHERE schemaname = 'public'", "cannot be mapped"),
        ("SELECT query FROM pg_stat_activity", "public.users.ssn"),
        ("SELECT setting FROM pg_settings WHERE name = 'data_directory'", "data_directory"),
        ("SELECT * FROM pg_settings", "WHERE name ="),
        ("SELECT * FROM pg_show_all_settings()", "pg_show_all_settings"),
        ("SELECT setconfig FROM pg_db_role_setting", "ALTER ROLE"),
        ("SELECT id, u2.email FROM users JOIN users u2 USING (id) ORDER BY id LIMIT 1", ""),
        ("SELECT count(*) AS n FROM users", ""),
        ("SELECT id, name, email FROM users ORDER BY id LIMIT 2", ""),
        ("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'users' AND attname = 'email'", ""),
        ("SELECT attname, null_frac FROM pg_stats WHERE tablename = 'users'", ""),
        ("SELECT setting FROM pg_settings WHERE name = 'work_mem'", ""),
    ];
    let mut failures = Vec::new();
    for (sql, words) in cases {
        let (is_error, text) = query_shop(&client, sql).await;
        let ok = if words.is_empty() {
            !is_error && text.contains("\"data\":[{")
        } else {
            is_error && text.contains(words) && text.contains("denied")
        };
        if !ok {
            failures.push(format!("{sql}\n  expected {words:?}, got {text}"));
        }
    }
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Peak and current resident memory of process `pid`, in KiB (VmHWM, VmRSS).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// One 500 MB value and four concurrent 200 MB values: the server's memory stays within 64 MB
/// of its idle size (rows past the byte budget are skipped on the wire), and each result says
/// which row and column were left out.
#[tokio::test]
async fn huge_values_do_not_grow_the_servers_memory() {
    let cluster = Cluster::shared();
    let dir = std::env::temp_dir().join(format!("sqlguard-huge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (client, pid) = serve_config(&shop_config(&dir, cluster, "pool_size = 4\n")).await;
    let (e, _) = query_shop(&client, "SELECT 1").await;
    assert!(!e);
    let (_, idle) = memory_kib(pid);

    let (e, text) = query_shop(&client, "SELECT 1 AS n, repeat('x', 500000000) AS big").await;
    assert!(
        !e && text.contains("column \\\"big\\\" holds 500000000"),
        "{}",
        &text[..text.len().min(500)]
    );
    let (a, b) = (
        "SELECT repeat('y', 200000000) AS v",
        "SELECT 'a' AS s UNION ALL SELECT repeat('z', 200000000)",
    );
    let four = tokio::join!(
        query_shop(&client, a),
        query_shop(&client, b),
        query_shop(&client, a),
        query_shop(&client, b)
    );
    for (e, text) in [four.0, four.1, four.2, four.3] {
        assert!(
            !e && text.contains("was not returned"),
            "{}",
            &text[..text.len().min(500)]
        );
    }
    let (peak, _) = memory_kib(pid);
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("server memory: idle {idle} KiB, peak {peak} KiB");
    assert!(peak < idle + 64 * 1024, "peak {peak} KiB, idle {idle} KiB");
}

/// Malformed lines and the JSON-RPC error each gets: (line, code, id).
fn malformed_lines() -> Vec<(Vec<u8>, i64, serde_json::Value)> {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let long = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":99,\"method\":\"ping\",\"pad\":\"{}\"}}",
        "x".repeat(17 << 20)
    );
    vec![
        (b"{not json".to_vec(), -32700, serde_json::Value::Null),
        (
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}".to_vec(),
            -32700,
            serde_json::Value::Null,
        ),
        (deep.into_bytes(), -32700, serde_json::Value::Null),
        (br#"{"id":2,"method":"ping"}"#.to_vec(), -32600, 2.into()),
        (
            br#"{"jsonrpc":"1.0","id":"three","method":"ping"}"#.to_vec(),
            -32600,
            "three".into(),
        ),
        (
            br#"[{"jsonrpc":"2.0","id":4,"method":"ping"}]"#.to_vec(),
            -32600,
            serde_json::Value::Null,
        ),
        (
            br#""just a string""#.to_vec(),
            -32600,
            serde_json::Value::Null,
        ),
        (
            br#"{"jsonrpc":"2.0","id":5,"method":7}"#.to_vec(),
            -32600,
            5.into(),
        ),
        (br#"{"jsonrpc":"2.0","id":6}"#.to_vec(), -32600, 6.into()),
        (
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#.to_vec(),
            -32602,
            7.into(),
        ),
        (
            br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":[1]}"#.to_vec(),
            -32602,
            8.into(),
        ),
        (long.into_bytes(), -32600, serde_json::Value::Null),
    ]
}

/// A server over raw stdio, killed after 60 s in case it leaves a line unanswered.
fn raw_server() -> std::process::Child {
    let child = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "serve",
            "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent",
        ])
        .env("SQLGUARD_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    child
}

/// Malformed stdin lines each get the JSON-RPC error the spec names (with the request's id
/// when it has one), and the server keeps serving: a good call afterwards succeeds.
#[test]
fn malformed_json_rpc_lines_are_answered() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = raw_server();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut answer = || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    };
    let mut failures = Vec::new();
    for (line, code, id) in &malformed_lines() {
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let a = answer();
        if a["error"]["code"] != *code || a["id"] != *id || a["jsonrpc"] != "2.0" {
            let shown = String::from_utf8_lossy(&line[..line.len().min(60)]).to_string();
            failures.push(format!("{shown:?}: expected {code} id {id}, got {a}"));
        }
    }
    // The session goes on: initialize, then a method rmcp does not know, then a tool call.
    let init = r#"{"jsonrpc":"2.0","id":10,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    writeln!(stdin, "{init}").unwrap();
    let a = answer();
    assert_eq!(a["id"], 10, "{a}");
    assert_eq!(a["result"]["serverInfo"]["name"], "sqlguard", "{a}");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":11,"method":"no/such/method"}}"#
    )
    .unwrap();
    let a = answer();
    assert_eq!(
        (a["id"].clone(), a["error"]["code"].clone()),
        (11.into(), (-32601).into()),
        "{a}"
    );
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{{"name":"teleport_list_databases","arguments":{{}}}}}}"#).unwrap();
    let a = answer();
    assert_eq!(a["id"], 12, "{a}");
    assert!(a["result"]["content"].is_array(), "{a}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A reload runs the new bundle on ordinary queries first: one that errors is refused, said
/// on stderr, and the old policy keeps deciding.
#[tokio::test]
async fn a_reload_that_would_fail_every_call_is_refused() {
    use rmcp::ServiceExt;
    use tokio::io::AsyncReadExt;
    let cluster = Cluster::shared();
    let dir = std::env::temp_dir().join(format!("sqlguard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data.json");
    std::fs::write(&data, r#"{"sqlguard": {"tables": {"deny": []}}}"#).unwrap();
    let settings = format!(
        "policy = [{:?}]\ndata = [{:?}]\n",
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .display()
            .to_string(),
        data.display().to_string(),
    );
    let config = shop_config(&dir, cluster, &settings);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SQLGUARD_LOG", "warn");
    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.unwrap();
    let (e, _) = query_shop(&client, "SELECT count(*) FROM users").await;
    assert!(!e);
    // A glob that cannot compile: every call naming a table would be a policy error.
    std::fs::write(&data, r#"{"sqlguard": {"tables": {"deny": ["a*b*["]}}}"#).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (e, text) = query_shop(&client, "SELECT count(*) FROM users").await;
    assert!(!e, "the old policy should still decide: {text}");
    let _ = client.cancel().await;
    let mut log = String::new();
    let _ = stderr.unwrap().read_to_string(&mut log).await;
    assert!(
        log.contains("POLICY RELOAD REJECTED") && log.contains("fails to evaluate"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `dir/sqlguard.toml`: the TOML `settings`, then the `shop` database of `cluster` as
/// `teleport://clusters/acme/databases/shop`.
pub fn shop_config(dir: &std::path::Path, cluster: &Cluster, settings: &str) -> PathBuf {
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "{settings}\n[[database]]\nuri = \"teleport://clusters/acme/databases/shop?dbName=shop&dbUser=writer\"\ndsn = {:?}\n",
            cluster.dsn("?sslmode=disable")
        ),
    )
    .unwrap();
    config
}

/// `sqlguard serve --config CONFIG` behind a real MCP client (rmcp over stdio): the client and
/// the server's pid.
pub async fn serve_config(
    config: &std::path::Path,
) -> (rmcp::service::RunningService<rmcp::RoleClient, ()>, u32) {
    use rmcp::ServiceExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SQLGUARD_LOG", "error");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let pid = transport.id().unwrap();
    (().serve(transport).await.unwrap(), pid)
}

/// `SQLGUARD_CONFIG` names the configuration when `--config` cannot be passed (MCP Inspector
/// takes that flag itself).
#[test]
fn the_configuration_can_come_from_the_environment() {
    let dir = std::env::temp_dir().join(format!("sqlguard-envcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[database]]\nuri = \"teleport://clusters/a/databases/b\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .arg("serve")
        .env("SQLGUARD_CONFIG", &bad)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // The file was read: its error is the one reported.
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dbName parameter is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
