//! The security team's command line, through the real executable.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn sqlguard(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exit_codes_and_formats() {
    let (code, out, _) = sqlguard(&["check", "SELECT 1"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOWED"));
    let (code, out, _) = sqlguard(&["check", "SELECT * FROM users FOR UPDATE"], None);
    assert_eq!(code, 1);
    assert!(out.contains("remove FOR UPDATE"), "{out}");
    let (code, out, _) = sqlguard(&["check", "--format", "json", "-"], Some("DELETE FROM t"));
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allow"], Value::Bool(false));
    assert!(v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["rule"] == "statement_kind"));
    let (code, _, err) = sqlguard(&["check", "--policy", "/nonexistent", "SELECT 1"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent"), "{err}");
    let (code, _, _) = sqlguard(&["check", "--bogus-flag"], None);
    assert_eq!(code, 2);
}

#[test]
fn check_with_data_and_identity() {
    let dir = std::env::temp_dir().join(format!("sqlguard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("tables.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"tables": {"allow": ["public.orders", "public.users"]}}}"#,
    )
    .unwrap();
    let d = data.to_str().unwrap();
    assert_eq!(
        sqlguard(
            &[
                "check",
                "--data",
                d,
                "SELECT * FROM orders JOIN users USING (id)"
            ],
            None
        )
        .0,
        0
    );
    let (code, out, _) = sqlguard(&["check", "--data", d, "SELECT * FROM payments"], None);
    assert_eq!(code, 1);
    assert!(out.contains("table_not_allowed"), "{out}");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples/prod");
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let (code, out, _) = sqlguard(
        &[
            "check",
            "--policy",
            policies,
            "--policy",
            examples,
            "--label",
            "env=prod",
            "SELECT * FROM users",
        ],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("prod_schema"));
    let (code, out, _) = sqlguard(
        &[
            "check",
            "--policy",
            policies,
            "--policy",
            examples,
            "--label",
            "env=prod",
            "--format",
            "json",
            "SELECT * FROM analytics.daily LIMIT 100",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["limits"]["max_rows"],
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jsonl_answers_every_line_in_order() {
    let input = "{\"sql\": \"SELECT 1\"}\nthis is not json\n{\"sql\": \"DELETE FROM t\"}\n{\"sql\": \"SELECT 2\", \"identity\": {\"user\": \"bob\", \"roles\": [\"dev\"]}}\n{\"nosql\": 1}\n";
    let (code, out, _) = sqlguard(&["check", "--jsonl"], Some(input));
    assert_eq!(code, 1);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let allows: Vec<bool> = lines
        .iter()
        .map(|l| l["allow"].as_bool().unwrap())
        .collect();
    assert_eq!(allows, [true, false, false, true, false]);
    assert_eq!(lines[1]["reasons"][0]["rule"], "bad_request");
    assert_eq!(lines[4]["reasons"][0]["rule"], "bad_request");
}

#[test]
fn analyze_prints_facts_and_policy_tools_work() {
    let (code, out, _) = sqlguard(
        &[
            "analyze",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        ],
        None,
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["statements"][0]["not_read_only"][0]["construct"],
        "data_modifying_cte"
    );
    let (code, _, err) = sqlguard(&["analyze", "SELEC 1"], None);
    assert_eq!(code, 1);
    assert!(err.contains("syntax error"), "{err}");

    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let (code, out, _) = sqlguard(&["policy", "test", policies], None);
    assert_eq!(code, 0);
    assert!(out.trim_end().ends_with("0 failed"), "{out}");
    let (_, out, _) = sqlguard(&["policy", "test", "--coverage", policies], None);
    assert!(out.contains("coverage:"), "{out}");
    let input = std::env::temp_dir().join(format!("sqlguard-input-{}.json", std::process::id()));
    std::fs::write(&input, r#"{"tool": "teleport_list_databases", "identity": {"user": "a", "roles": [], "traits": {}}}"#).unwrap();
    let (code, out, _) = sqlguard(
        &["policy", "eval", "--input", input.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["allow"],
        Value::Bool(true)
    );
    let _ = std::fs::remove_file(&input);
}

/// The README's first command: the demo tour runs on its own cluster, over real MCP, and shows
/// the column side channels refused.
#[test]
fn demo_tour_runs_and_refuses_the_side_channels() {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for words in [
        "USING (ssn) compares the denied column",
        "sample values of the protected column public.employees.ssn",
        "chain intact",
    ] {
        assert!(
            stdout.contains(words),
            "{words:?} missing from the tour:\n{stdout}"
        );
    }
}
