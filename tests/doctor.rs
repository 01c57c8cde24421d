//! `sqlguard doctor` against the throwaway cluster: all green, and each failure with its fix.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::cluster::{free_port, Cluster};

fn write_config(dir: &Path, dsn: &str, policy: &Path) -> PathBuf {
    let file = dir.join("sqlguard.toml");
    std::fs::write(
        &file,
        format!("policy = [{:?}]\n\n[[database]]\nuri = \"teleport://clusters/local/databases/shop?dbName=shop&dbUser=writer\"\ndsn = {dsn:?}\n", policy.display().to_string()),
    )
    .unwrap();
    file
}

pub fn doctor(config: &Path, env: &[(&str, &str)]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "doctor",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), v)
}

pub fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlguard-doctor-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn all_green_on_a_working_setup() {
    let cluster = Cluster::shared();
    let dir = tmp("green");
    let (ok, v) = doctor(
        &write_config(&dir, &cluster.dsn("?sslmode=disable"), &policies()),
        &[],
    );
    assert!(ok, "{v:#}");
    for name in [
        "configuration",
        "databases",
        "analysis",
        "policy",
        "teleport session",
        "database shop",
        "mcp server",
    ] {
        assert_eq!(check(&v, name)["ok"], Value::Bool(true), "{name}: {v:#}");
    }
    assert!(check(&v, "policy")["detail"]
        .as_str()
        .unwrap()
        .contains("policy tests pass"));
    assert!(check(&v, "analysis")["detail"]
        .as_str()
        .unwrap()
        .contains("raw parse tree"));
}

#[test]
fn each_failure_names_its_fix() {
    let cluster = Cluster::shared();
    let dir = tmp("red");

    let wrong_password = cluster
        .dsn("?sslmode=disable")
        .replace("writer-secret", "wrong");
    let (ok, v) = doctor(&write_config(&dir, &wrong_password, &policies()), &[]);
    assert!(!ok);
    let c = check(&v, "database shop");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{c}"
    );
    assert!(c["fix"].as_str().unwrap().contains("password"), "{c}");

    let stopped = format!(
        "postgres://writer:x@127.0.0.1:{}/shop?sslmode=disable",
        free_port()
    );
    let (ok, v) = doctor(&write_config(&dir, &stopped, &policies()), &[]);
    assert!(!ok);
    assert!(
        check(&v, "database shop")["fix"]
            .as_str()
            .unwrap()
            .contains("start the database server"),
        "{v:#}"
    );

    let broken = dir.join("broken-policy");
    std::fs::create_dir_all(&broken).unwrap();
    for e in std::fs::read_dir(policies()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, broken.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        broken.join("tables.rego"),
        "package sqlguard\n\nimport rego.v1\n\ndeny contains x if {\n",
    )
    .unwrap();
    let (ok, v) = doctor(
        &write_config(&dir, &cluster.dsn("?sslmode=disable"), &broken),
        &[],
    );
    assert!(!ok);
    let c = check(&v, "policy");
    assert_eq!(c["ok"], Value::Bool(false));
    assert!(c["detail"].as_str().unwrap().contains("tables.rego"), "{c}");

    an_expired_teleport_session_is_named(&dir);
}

/// A Teleport database whose session expired: the fix is the `tsh login` to run; the MCP
/// server still starts.
fn an_expired_teleport_session_is_named(dir: &std::path::Path) {
    let home = dir.join("tsh");
    std::fs::create_dir_all(home.join("keys/proxy.example.com")).unwrap();
    std::fs::write(home.join("current-profile"), "proxy.example.com\n").unwrap();
    std::fs::write(
        home.join("proxy.example.com.yaml"),
        "web_proxy_addr: proxy.example.com:443\nuser: alice\n",
    )
    .unwrap();
    let ca = crate::support::cluster::new_ca("user CA");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    let (_, cert) = crate::support::cluster::sign(&ca, params, None);
    std::fs::write(home.join("keys/proxy.example.com/alice.crt"), cert).unwrap();
    let config = dir.join("teleport.toml");
    std::fs::write(&config, "[[database]]\nuri = \"teleport://clusters/proxy.example.com/databases/shop?dbName=shop&dbUser=agent\"\nmode = \"native\"\n").unwrap();
    let (ok, v) = doctor(&config, &[("TELEPORT_HOME", home.to_str().unwrap())]);
    assert!(!ok);
    let c = check(&v, "teleport session");
    assert_eq!(c["ok"], Value::Bool(false), "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("tsh login --proxy=proxy.example.com:443 --user=alice"),
        "{c}"
    );
    // The MCP server still starts with an expired session.
    assert_eq!(check(&v, "mcp server")["ok"], Value::Bool(true), "{v:#}");
}
