//! `sqlguard serve --listen`: MCP over streamable HTTP, every request carrying a Teleport JWT,
//! driven by the official MCP Python SDK's HTTP client (`tests/e2e/http_client.py`, which also
//! serves the JWKS and signs the tokens as Teleport does) against the real cluster.

use std::path::PathBuf;
use std::process::Command;

use crate::support::cluster::{free_port, Cluster, WRITER, WRITER_PASSWORD};

const TEAM_DB: &str = "team";
const URI: &str = "teleport://clusters/test-cluster/databases/team";
const AUDIENCE: &str = "http://sqlguard.test:8080";
const ISSUER: &str = "test-cluster";

/// A configuration for `serve --listen` over the `team` database.
struct Team {
    dir: PathBuf,
    /// The scripts' first arguments: sqlguard, the configuration, the database, the JWKS and
    /// MCP ports, the audience and the issuer.
    args: Vec<String>,
}

impl Team {
    fn run(&self, python: &std::path::Path, script: &str, more: &[&str], log: &str) {
        let args: Vec<&str> = self
            .args
            .iter()
            .map(String::as_str)
            .chain(more.iter().copied())
            .collect();
        crate::mcp::run_e2e(python, script, &args, log);
    }
}

/// The `team` database (built once) and a configuration for `serve --listen` with `limits`.
fn team_setup(tag: &str, limits: &str) -> Team {
    let cluster = Cluster::shared();
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        cluster.psql("postgres", &format!("CREATE DATABASE {TEAM_DB} OWNER {WRITER}"));
        cluster.psql(
            TEAM_DB,
            &format!(
                "SET ROLE {WRITER}; CREATE SCHEMA hr; CREATE TABLE hr.salaries (name text, amount int);
                 INSERT INTO hr.salaries VALUES ('ana', 5000);"
            ),
        );
    });
    let dir = std::env::temp_dir().join(format!("sqlguard-http-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (jwks_port, mcp_port) = (free_port(), free_port());
    let audit = dir.join("audit.jsonl");
    let config = dir.join("sqlguard.toml");
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::write(
        &config,
        format!(
            "policy = [\"{root}/policies/examples/roles\"]\naudit_log = {audit:?}\n\n\
             [http]\njwks_url = \"http://127.0.0.1:{jwks_port}/jwks\"\naudience = \"{AUDIENCE}\"\nissuer = \"{ISSUER}\"\n\n\
             {limits}\n\
             [[database]]\nuri = \"{URI}?dbName={TEAM_DB}&dbUser={WRITER}\"\n\
             dsn = \"postgres://{WRITER}:{WRITER_PASSWORD}@127.0.0.1:{port}/{TEAM_DB}?sslmode=disable\"\n",
            audit = audit.display().to_string(),
            port = cluster.port,
        ),
    )
    .unwrap();
    let args = [
        env!("CARGO_BIN_EXE_sqlguard").to_string(),
        config.display().to_string(),
        URI.to_string(),
        jwks_port.to_string(),
        mcp_port.to_string(),
        AUDIENCE.to_string(),
        ISSUER.to_string(),
    ];
    Team {
        dir,
        args: args.to_vec(),
    }
}

#[test]
fn teleport_tokens_decide_who_calls_over_http() {
    let Some(python) = crate::mcp::python() else {
        return;
    };
    let team = team_setup(
        "auth",
        "[limits.per_user]\nconcurrent = 2\nper_minute = 40\n",
    );
    let dir = &team.dir;
    let audit = dir.join("audit.jsonl");
    team.run(&python, "http_client.py", &[], "warn");

    // Each refused token is in the audit log with its rule; each call names its caller.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for rule in [
        "jwt_missing",
        "jwt_malformed",
        "jwt_expired",
        "jwt_not_yet_valid",
        "jwt_wrong_audience",
        "jwt_wrong_issuer",
        "jwt_unknown_key",
        "jwt_bad_signature",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["tool"] == "http" && r["rules"][0] == rule),
            "no audit record of a {rule} refusal"
        );
    }
    let by = |user: &str| {
        records
            .iter()
            .filter(|r| r["identity"]["user"] == user && r["tool"] == "teleport_postgres_query")
            .map(|r| {
                (
                    r["verdict"].as_str().unwrap_or("").to_string(),
                    r["identity"]["source"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(
        by("alice")
            .iter()
            .any(|(v, s)| v == "pending" && s == "teleport"),
        "{:?}",
        by("alice")
    );
    assert!(
        by("bob")
            .iter()
            .any(|(v, s)| v == "denied" && s == "teleport"),
        "{:?}",
        by("bob")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A bounded load test on loopback: 64 sessions at once over HTTP (each its own user and
/// token) against one stdio session with 64 calls in flight, same run, same query; 0 errors.
/// `SQLGUARD_LOAD_CALLS` sets the calls (640 by default; docs/performance.md has the figures
/// of 20,000 and the command).
#[test]
fn load_on_loopback() {
    let Some(python) = crate::mcp::python() else {
        return;
    };
    let calls = std::env::var("SQLGUARD_LOAD_CALLS").unwrap_or_else(|_| "640".into());
    let team = team_setup("load", "");
    team.run(&python, "load.py", &["64", &calls], "error");
    let _ = std::fs::remove_dir_all(&team.dir);
}

/// `doctor` checks `[http]`: a JWKS it cannot fetch or would fetch without TLS, a missing
/// audience, and `insecure_no_auth` fail with a fix.
#[test]
fn doctor_checks_the_token_configuration() {
    let dir = std::env::temp_dir().join(format!("sqlguard-http-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    for (http, words) in [
        (
            format!("jwks_url = \"http://127.0.0.1:{port}/jwks\"\naudience = \"{AUDIENCE}\""),
            "could not be fetched",
        ),
        ("insecure_no_auth = true".to_string(), "unauthenticated"),
        (
            format!("jwks_url = \"http://teleport.example.com/.well-known/jwks.json\"\naudience = \"{AUDIENCE}\""),
            "must be https://",
        ),
        (
            format!("jwks_url = \"http://127.0.0.1:{port}/jwks\""),
            "needs audience",
        ),
    ] {
        let config = dir.join("doctor.toml");
        std::fs::write(
            &config,
            format!("[http]\n{http}\n\n[[database]]\nuri = \"{URI}?dbName=team&dbUser=u\"\ndsn = \"postgres://u@127.0.0.1:{port}/team\"\n"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args(["doctor", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && text.contains("✗ http tokens") && text.contains(words),
            "{http}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
