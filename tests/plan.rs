//! Plan-aware policy on the real cluster: with `policies/examples/prod`, a query is explained
//! in its READ ONLY transaction and judged by PostgreSQL's plan before it runs.

use std::time::{Duration, Instant};

use crate::mcp::serve_config;
use crate::support::cluster::{Cluster, WRITER};

const PLANNER: &str = "planner";
const PLANNER_PASSWORD: &str = "planner-secret";
const PLANS_DB: &str = "plans";
const URI: &str = "teleport://clusters/acme/databases/plans";

/// A database with a two-million-row table (indexed on `id` and `created_at`, not on
/// `kind`) and a role that logs every statement it runs, so the server log shows what
/// executed. Built once per test process.
fn plans_database(cluster: &Cluster) {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {PLANNER} LOGIN PASSWORD '{PLANNER_PASSWORD}'"),
        );
        cluster.psql(
            "postgres",
            &format!("ALTER ROLE {PLANNER} SET log_statement = 'all'"),
        );
        // Also each protocol step with its statement's text: a Parse is logged only so.
        cluster.psql(
            "postgres",
            &format!("ALTER ROLE {PLANNER} SET log_min_duration_statement = 0"),
        );
        // Above the prod example's 16 MB: the pin must lower it.
        cluster.psql(
            "postgres",
            &format!("ALTER ROLE {PLANNER} SET work_mem = '64MB'"),
        );
        // PostgreSQL 15: a non-superuser may be allowed to set temp_file_limit.
        cluster.psql(
            "postgres",
            &format!("GRANT SET ON PARAMETER temp_file_limit TO {PLANNER}"),
        );
        cluster.psql(
            "postgres",
            &format!("CREATE DATABASE {PLANS_DB} OWNER {WRITER}"),
        );
        cluster.psql(
            PLANS_DB,
            &format!(
                "SET ROLE {WRITER};
                 CREATE SCHEMA analytics;
                 CREATE TABLE analytics.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, kind int NOT NULL, payload text NOT NULL);
                 INSERT INTO analytics.events SELECT g, timestamptz '2026-01-01' + g * interval '1 second', g % 97, md5(g::text) FROM generate_series(1, 2000000) g;
                 CREATE INDEX ON analytics.events (created_at);
                 CREATE TABLE analytics.kinds (id int PRIMARY KEY, name text);
                 INSERT INTO analytics.kinds SELECT g, 'kind ' || g FROM generate_series(0, 96) g;
                 ANALYZE analytics.events; ANALYZE analytics.kinds;
                 GRANT USAGE ON SCHEMA analytics TO {PLANNER};
                 GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {PLANNER};"
            ),
        );
    });
}

fn config(dir: &std::path::Path, cluster: &Cluster, policies: &[&str]) -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let policy: Vec<String> = policies.iter().map(|p| format!("{root}/{p}")).collect();
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "policy = {policy:?}\n[[database]]\nuri = \"{URI}?dbName={PLANS_DB}&dbUser={PLANNER}\"\ndsn = \"postgres://{PLANNER}:{PLANNER_PASSWORD}@127.0.0.1:{}/{PLANS_DB}?sslmode=disable\"\nlabels = {{ env = \"prod\" }}\n",
            cluster.port
        ),
    )
    .unwrap();
    config
}

async fn query(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    sql: &str,
) -> (bool, String) {
    crate::mcp::query_database(client, URI, sql).await
}

/// The server log's lines that show `marker` being executed, and being prepared to be
/// explained. `log_statement = 'all'` logs each Execute as `execute <name>: SQL` (the
/// statement's own text, whatever its name); the plan step parses the statement as
/// `sqlguard_planned` and explains that (`EXPLAIN … EXECUTE sqlguard_planned`), and
/// `log_min_duration_statement = 0` logs the Parse with its text.
pub fn logged(cluster: &Cluster, marker: &str) -> (usize, usize) {
    let log = std::fs::read_to_string(cluster.local.dir.join("log")).unwrap_or_default();
    let lines = || log.lines().filter(move |l| l.contains(marker));
    let executed = lines()
        .filter(|l| !l.contains("duration:"))
        .filter(|l| {
            l.contains("execute <unnamed>: /*") || l.contains("execute sqlguard_planned: /*")
        })
        .count();
    let explained = lines()
        .filter(|l| l.contains("duration:") && l.contains("parse sqlguard_planned: /*"))
        .count();
    (executed, explained)
}

/// (marker, SQL after the marker, words the refusal must contain; "" = runs)
const PROD_CASES: &[(&str, &str, &[&str])] = &[
    (
        "unindexed",
        "SELECT count(*) AS n FROM analytics.events WHERE kind = 7",
        &[
            "plan_seq_scan",
            "analytics.events (≈2 M rows) would be read sequentially",
            "filter on an indexed column: created_at, id",
        ],
    ),
    (
        "cartesian",
        "SELECT a.id, b.id FROM analytics.events a, analytics.events b WHERE a.kind = 1 AND b.kind = 2 LIMIT 1000",
        &[
            "plan_cartesian",
            "every row of analytics.events with every row of analytics.events",
            "add one (JOIN … ON",
        ],
    ),
    (
        // A LIMIT the prod example accepts, and a deep OFFSET only the plan shows the
        // cost of.
        "fullsort",
        "SELECT id, payload FROM analytics.events ORDER BY payload LIMIT 1000 OFFSET 1000000",
        &["plan_cost", "over this database's limit of 100 k"],
    ),
    (
        "indexed",
        "SELECT e.id, k.name FROM analytics.events e JOIN analytics.kinds k ON k.id = e.kind WHERE e.id = 4242 LIMIT 100",
        &[],
    ),
];

/// The acceptance table: with the prod example, the unindexed scan, the cartesian join and
/// the full sort are refused by their plan, with reasons, within a second and without
/// running; the indexed lookup runs. With the default bundle (no plan step), all four run.
#[tokio::test]
async fn the_prod_example_refuses_what_would_take_production_down() {
    let cluster = Cluster::shared();
    plans_database(cluster);
    let dir = std::env::temp_dir().join(format!("sqlguard-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = std::process::id();
    let mut failures = Vec::new();
    let (client, _) = serve_config(&config(
        &dir,
        cluster,
        &["policies", "policies/examples/prod"],
    ))
    .await;
    failures.extend(prod_refusals(&client, run).await);
    failures.extend(prod_session_holds(&client).await);
    let _ = client.cancel().await;
    // What the server ran: every case was explained; only the allowed one executed.
    // (The log is written asynchronously by the server; give it a moment.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (marker, _, words) in PROD_CASES {
        let marker = format!("plan-{marker}-{run}");
        let (executed, explained) = logged(cluster, &marker);
        let want = usize::from(words.is_empty());
        if explained != 1 || executed != want {
            failures.push(format!(
                "{marker}: the server log shows {explained} EXPLAIN and {executed} executions (expected 1 and {want})"
            ));
        }
    }
    failures.extend(the_default_bundle_runs_them_all(cluster, &dir, run).await);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// Each case is refused by its plan rule in under a second, or runs: what went wrong.
async fn prod_refusals(client: &Client, run: u32) -> Vec<String> {
    let mut failures = Vec::new();
    // The first call opens the connection and reads the catalog: not what is timed below.
    let (is_error, text) = query(client, "SELECT 1 AS warm LIMIT 1").await;
    assert!(!is_error, "{text}");
    for (marker, sql, words) in PROD_CASES {
        let marker = format!("plan-{marker}-{run}");
        let started = Instant::now();
        let (is_error, text) = query(client, &format!("/* {marker} */ {sql}")).await;
        let took = started.elapsed();
        if words.is_empty() {
            if is_error || !text.contains("\"rowsCount\":1") {
                failures.push(format!("{marker}: expected one row, got {text}"));
            }
        } else {
            if !is_error
                || !words.iter().all(|w| text.contains(w))
                || !text.contains("Nothing was run")
            {
                failures.push(format!("{marker}: expected {words:?}, got {text}"));
            }
            if took > Duration::from_secs(1) {
                failures.push(format!("{marker}: the refusal took {took:?}"));
            }
        }
    }
    failures
}

/// The memory pins hold; a statement PostgreSQL cannot plan fails as it would have run and
/// the session serves the next call; EXPLAIN ANALYZE is refused.
async fn prod_session_holds(client: &Client) -> Vec<String> {
    let mut failures = Vec::new();
    // The memory pins hold: work_mem lowered from the role's 64 MB to the limit, and
    // temp_file_limit (granted above) set where the session had none.
    let (is_error, text) = query(
        client,
        "SELECT current_setting('work_mem') AS w, current_setting('temp_file_limit') AS t LIMIT 1",
    )
    .await;
    if is_error || !text.contains(r#""w":"16MB""#) || !text.contains(r#""t":"1GB""#) {
        failures.push(format!("memory pins: got {text}"));
    }
    // A statement PostgreSQL cannot plan fails as it would have run, and the session (its
    // transaction rolled back) serves the next call.
    let (is_error, text) = query(client, "SELECT * FROM analytics.missing LIMIT 1").await;
    if !is_error || !text.contains("does not exist") {
        failures.push(format!("an unplannable statement: got {text}"));
    }
    let (is_error, text) = query(
        client,
        "SELECT id FROM analytics.events WHERE id = 1 LIMIT 1",
    )
    .await;
    if is_error || !text.contains("\"rowsCount\":1") {
        failures.push(format!("after an unplannable statement: got {text}"));
    }
    // EXPLAIN ANALYZE would run a query the plan step never judged.
    let (is_error, text) = query(
        client,
        "EXPLAIN ANALYZE SELECT count(*) FROM analytics.events WHERE kind = 7",
    )
    .await;
    if !is_error || !text.contains("plan_explain_analyze") {
        failures.push(format!("EXPLAIN ANALYZE: got {text}"));
    }
    failures
}

/// The default bundle has no plan step: all four run, and none is explained.
async fn the_default_bundle_runs_them_all(
    cluster: &Cluster,
    dir: &std::path::Path,
    run: u32,
) -> Vec<String> {
    let mut failures = Vec::new();
    let (client, _) = serve_config(&config(dir, cluster, &["policies"])).await;
    for (marker, sql, _) in PROD_CASES {
        let marker = format!("plan-default-{marker}-{run}");
        let (is_error, text) = query(&client, &format!("/* {marker} */ {sql}")).await;
        if is_error || !text.contains("\"data\":[{") {
            failures.push(format!(
                "default bundle, {marker}: expected rows, got {text}"
            ));
        }
    }
    let _ = client.cancel().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (marker, _, _) in PROD_CASES {
        let marker = format!("plan-default-{marker}-{run}");
        if logged(cluster, &marker) != (1, 0) {
            failures.push(format!(
                "default bundle, {marker}: expected one execution and no EXPLAIN, the log shows {:?}",
                logged(cluster, &marker)
            ));
        }
    }
    failures
}

/// `sqlguard check --explain DSN` shows the plan facts the policy saw and decides with them,
/// without running the query.
#[test]
fn check_explain_shows_the_plan_the_policy_saw() {
    let cluster = Cluster::shared();
    plans_database(cluster);
    let root = env!("CARGO_MANIFEST_DIR");
    let dsn = format!(
        "postgres://{PLANNER}:{PLANNER_PASSWORD}@127.0.0.1:{}/{PLANS_DB}?sslmode=disable",
        cluster.port
    );
    let marker = format!("plan-cli-{}", std::process::id());
    let check = |sql: &str, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args(["check", "--policy", &format!("{root}/policies")])
            .args(["--policy", &format!("{root}/policies/examples/prod")])
            .args(["--explain", &dsn])
            .args(extra)
            .arg(sql)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let sql = format!("/* {marker} */ SELECT count(*) FROM analytics.events WHERE kind = 3");
    let (code, out, err) = check(&sql, &["--label", "env=prod"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("DENIED") && out.contains("[plan_seq_scan]"),
        "{out}"
    );
    assert!(
        out.contains("Seq Scan on analytics.events") && out.contains("[seq_scan]"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("relation analytics.events: ≈")
                && l.ends_with("rows, indexed columns: created_at, id")),
        "{out}"
    );

    // Not a prod database: the policy does not ask for the plan, and says so; JSON carries
    // the facts.
    let (code, out, err) = check(&sql, &["--format", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.contains("does not ask for plans"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let scans = v["plan"]["nodes"].as_array().unwrap().iter();
    let scan = scans
        .filter(|n| n["type"] == "Seq Scan")
        .map(|n| {
            (
                &n["relation"],
                n["seq_scan"].as_bool(),
                n["relation_rows"].as_f64(),
            )
        })
        .next();
    assert_eq!(
        scan,
        Some((
            &serde_json::json!("analytics.events"),
            Some(true),
            Some(2e6)
        )),
        "{out}"
    );

    // Neither run executed the query.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(logged(cluster, &marker), (0, 2));
}
