//! `sqlguard config` on real files, through the real executable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const A: &str = "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent";
const A2: &str = "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=reader";
const B: &str = "teleport://clusters/acme/databases/crm?dbName=crm&dbUser=agent";

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlguard-cc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sqlguard_config(file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .env_remove("TELEPORT_HOME")
        .arg("config")
        .arg("--client-config")
        .arg(file)
        .args(extra)
        .output()
        .unwrap()
}

fn read(file: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

#[test]
fn merges_into_a_file_with_other_servers_keeping_order_and_style() {
    let dir = tmpdir("merge");
    let file = dir.join("claude_desktop_config.json");
    std::fs::write(
        &file,
        r#"{
  "globalShortcut": "Ctrl+Space",
  "mcpServers": {
    "files": {"command": "npx", "args": ["fs"]},
    "teleport-databases": {"command": "/usr/local/bin/tsh", "args": ["mcp", "db", "start", "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent"], "env": {"TELEPORT_HOME": "/home/me/.tsh"}}
  },
  "zzz": 1
}
"#,
    )
    .unwrap();
    let out = sqlguard_config(&file, &[B]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\n  "), "a pretty file stays pretty");
    let v = read(&file);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["globalShortcut", "mcpServers", "zzz"]);
    let servers: Vec<&String> = v["mcpServers"].as_object().unwrap().keys().collect();
    assert_eq!(servers, ["files", "teleport-databases"]);
    assert_eq!(
        v["mcpServers"]["files"],
        json!({"command": "npx", "args": ["fs"]})
    );
    let e = &v["mcpServers"]["teleport-databases"];
    assert!(e["command"].as_str().unwrap().ends_with("sqlguard"));
    assert_eq!(e["args"], json!(["serve", A, B]));
    assert_eq!(e["env"], json!({"TELEPORT_HOME": "/home/me/.tsh"}));

    // The same database again: replaced, not duplicated; --overwrite drops env.
    let out = sqlguard_config(&file, &["--overwrite", A2]);
    assert!(out.status.success());
    let e = read(&file)["mcpServers"]["teleport-databases"].clone();
    assert_eq!(e["args"], json!(["serve", A2, B]));
    assert!(e.get("env").is_none());
}

#[test]
fn compact_files_stay_compact_and_formats_are_honoured() {
    let dir = tmpdir("compact");
    let file = dir.join("mcp.json");
    std::fs::write(&file, r#"{"mcpServers":{"x":{"command":"y"}}}"#).unwrap();
    assert!(sqlguard_config(&file, &[A]).status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(sqlguard_config(&file, &["--json-format", "pretty", B])
        .status
        .success());
    assert!(std::fs::read_to_string(&file).unwrap().lines().count() > 5);
    assert!(sqlguard_config(&file, &["--json-format", "compact", B])
        .status
        .success());
    assert_eq!(
        std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .lines()
            .count(),
        1
    );
}

#[test]
fn vscode_files_use_the_servers_key() {
    let dir = tmpdir("vscode");
    let file = dir.join(".vscode/mcp.json");
    assert!(sqlguard_config(&file, &[A]).status.success());
    let v = read(&file);
    assert_eq!(v["servers"]["teleport-databases"]["type"], json!("stdio"));
    assert!(v.get("mcpServers").is_none());
}

#[test]
fn broken_json_is_left_untouched() {
    let dir = tmpdir("broken");
    let file = dir.join("mcp.json");
    let broken = "{\"mcpServers\": {\"x\": }\n";
    std::fs::write(&file, broken).unwrap();
    let out = sqlguard_config(&file, &[A]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not valid JSON") && err.contains("line 1"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
}

#[test]
fn an_unwritable_place_is_a_clear_error() {
    let dir = tmpdir("unwritable");
    let blocker = dir.join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let out = sqlguard_config(&blocker.join("mcp.json"), &[A]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_arguments_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["config", "teleport://clusters/a/databases/b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dbName"));
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "config",
            "--db-user",
            "u",
            "--db-name",
            "d",
            "--cluster",
            "acme",
            "shop",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("teleport://clusters/acme/databases/shop?dbName=d&dbUser=u"));
}

#[test]
fn concurrent_runs_never_leave_a_half_written_file() {
    let dir = tmpdir("concurrent");
    let file = dir.join("mcp.json");
    std::fs::write(&file, r#"{"mcpServers": {"other": {"command": "x"}}}"#).unwrap();
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_sqlguard"))
                .arg("config")
                .arg("--client-config")
                .arg(&file)
                .arg(format!(
                    "teleport://clusters/acme/databases/db{i}?dbName=d&dbUser=u"
                ))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let v = read(&file);
    let args = v["mcpServers"]["teleport-databases"]["args"]
        .as_array()
        .unwrap();
    assert_eq!(args.len(), 9, "every run's database is there: {args:?}");
    assert_eq!(v["mcpServers"]["other"], json!({"command": "x"}));
}

/// Like `tsh mcp db config`, the entry carries `TELEPORT_HOME` when it is set (a client with a
/// minimal environment would look in `~/.tsh`), and none when it is not.
#[test]
fn teleport_home_is_written_into_the_entry() {
    let uri = "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent";
    let run = |home: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlguard"));
        cmd.args(["config", uri]).env_remove("TELEPORT_HOME");
        if let Some(h) = home {
            cmd.env("TELEPORT_HOME", h);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["mcpServers"]["teleport-databases"]
            .clone()
    };
    assert_eq!(
        run(Some("/opt/tsh-home"))["env"],
        serde_json::json!({"TELEPORT_HOME": "/opt/tsh-home"})
    );
    assert!(run(None).get("env").is_none());
}
