//! Catalog-aware analysis on the real cluster: a database with the extensions PostgreSQL's
//! contrib package ships, served over MCP with the default bundle. Extension functions and
//! operators are judged by what the database's own catalog says they are.

use std::time::{Duration, Instant};

use crate::mcp::serve_config;
use crate::support::cluster::{Cluster, WRITER, WRITER_PASSWORD};

const EXT_DB: &str = "ext";
const ANALYST: &str = "analyst";
const ANALYST_PASSWORD: &str = "analyst-secret";
const URI: &str = "teleport://clusters/acme/databases/ext";

/// The contrib extensions the acceptance names, a user SECURITY DEFINER function, a user
/// function, a user operator whose function is volatile, and a foreign table (postgres_fdw
/// back into this database). The agent logs in as `analyst`, who owns nothing.
fn ext_database(cluster: &Cluster) {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        cluster.psql(
            "postgres",
            &format!("CREATE ROLE {ANALYST} LOGIN PASSWORD '{ANALYST_PASSWORD}'"),
        );
        cluster.psql("postgres", &format!("CREATE DATABASE {EXT_DB}"));
        for ext in [
            "pg_trgm",
            "fuzzystrmatch",
            "hstore",
            "citext",
            "ltree",
            "cube",
            "earthdistance",
            "unaccent",
            "dblink",
            "postgres_fdw",
            "pgcrypto",
        ] {
            cluster.psql(EXT_DB, &format!("CREATE EXTENSION {ext}"));
        }
        cluster.psql(
            EXT_DB,
            r#"CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, email citext,
                   tags hstore, path ltree, lat float8, lon float8, salary numeric(10,2), nicknames text[]);
               INSERT INTO people VALUES
                   (1, 'jon', 'Jon@Example.org', 'city=>Oslo', 'top.science.physics', 59.91, 10.75, 1000.50, '{jj}'),
                   (2, 'joan', 'joan@example.org', 'city=>Bergen', 'top.arts', 60.39, 5.32, 2000, '{}'),
                   (3, 'maria', 'maria@example.org', '', 'top.science', 40.42, -3.70, 3000, '{}');
               CREATE FUNCTION peek() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT current_user::text $$;
               CREATE FUNCTION people_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM people $$;
               CREATE FUNCTION noisy_eq(int, int) RETURNS bool LANGUAGE sql VOLATILE AS $$ SELECT $1 = $2 $$;
               CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = noisy_eq);
               CREATE FUNCTION upper(int) RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT $1::text $$;
               CREATE TABLE vault (id int, owner text, secret text) PARTITION BY RANGE (id);
               CREATE TABLE vault_p1 PARTITION OF vault FOR VALUES FROM (0) TO (100);
               INSERT INTO vault VALUES (1, 'ann', 'hunter2');
               CREATE VIEW vault_owners AS SELECT id, owner FROM vault;
               CREATE VIEW vault_all AS SELECT id, secret FROM vault_p1;
               CREATE VIEW vault_all_again AS SELECT id FROM vault_all;
               CREATE VIEW stats_peek AS SELECT attname, most_common_vals::text AS v FROM pg_stats;"#,
        );
        cluster.psql(
            EXT_DB,
            &format!(
                "CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '{}', dbname '{EXT_DB}');
                 CREATE USER MAPPING FOR PUBLIC SERVER loopback OPTIONS (user '{WRITER}', password '{WRITER_PASSWORD}');
                 CREATE FOREIGN TABLE remote_people (id int, name text) SERVER loopback OPTIONS (table_name 'people');
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ANALYST};",
                cluster.port
            ),
        );
    });
}

/// The served `ext` database, the default bundle, and `data` merged over its data.
fn config(dir: &std::path::Path, cluster: &Cluster, data: &str) -> std::path::PathBuf {
    let data_file = dir.join("data.json");
    std::fs::write(&data_file, data).unwrap();
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "data = [{:?}]\n[[database]]\nuri = \"{URI}?dbName={EXT_DB}&dbUser={ANALYST}\"\ndsn = \"postgres://{ANALYST}:{ANALYST_PASSWORD}@127.0.0.1:{}/{EXT_DB}?sslmode=disable\"\n",
            data_file.to_str().unwrap(),
            cluster.port
        ),
    )
    .unwrap();
    config
}

/// The default list, plus pgcrypto (so that its volatile function is refused as volatile,
/// not as untrusted) and intarray (created while serving below).
/// The vault's `secret` column is denied.
const TRUSTED: &str = r#"{"sqlguard": {"functions": {"trusted_extensions": [
    "pg_trgm", "fuzzystrmatch", "unaccent", "citext", "hstore", "ltree", "cube", "earthdistance",
    "postgis", "vector", "pg_stat_statements", "pgcrypto", "intarray"]},
    "columns": {"deny": ["public.vault.secret"]}}}"#;

async fn query(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    sql: &str,
) -> (bool, String) {
    crate::mcp::query_database(client, URI, sql).await
}

/// Calls the trusted extensions answer: (SQL, words the answer holds).
const ALLOWED_EXTENSION_CALLS: &[(&str, &str)] = &[
    ("SELECT name, similarity(name, 'jon') AS s FROM people ORDER BY s DESC, name LIMIT 1", "\"name\":\"jon\""),
    ("SELECT name FROM people WHERE name % 'jon' ORDER BY name", "\"name\":\"jon\""),
    ("SELECT levenshtein(name, 'joan') AS d FROM people WHERE id = 1", "\"d\":1"),
    ("SELECT tags -> 'city' AS city FROM people WHERE tags ? 'city' ORDER BY id", "\"city\":\"Oslo\""),
    ("SELECT name FROM people WHERE path <@ 'top.science' ORDER BY id", "\"rowsCount\":2"),
    ("SELECT round(earth_distance(ll_to_earth(59.91, 10.75), ll_to_earth(60.39, 5.32))::numeric / 1000) AS km", "\"km\":\"305\""),
    ("SELECT name FROM people WHERE email = 'jon@example.org'", "\"name\":\"jon\""),
    ("SELECT unaccent('Hôtel') AS u", "\"u\":\"Hotel\""),
    ("SELECT encode(digest('x', 'sha256'), 'hex') AS h", "2d711642b726b04401627ca9fbac32f5"),
    ("SELECT pg_current_wal_insert_lsn() IS NOT NULL AS ok", "\"ok\":true"),
    ("SELECT owner FROM vault_p1", "\"owner\":\"ann\""),
    ("SELECT owner FROM vault_owners", "\"owner\":\"ann\""),
    // A text column can never be public.upper(int)'s argument: pg_catalog.upper runs.
    ("SELECT upper(name) FROM people ORDER BY id LIMIT 1", "\"upper\":\"JON\""),
    // A view over a view that only renames columns reads the base columns it uses: `id`.
    ("SELECT id FROM vault_all_again", "\"id\":1"),
];

/// Calls refused, with words the refusal holds.
const REFUSED_EXTENSION_CALLS: &[(&str, &[&str])] = &[
    (
        "SELECT dblink_exec('dbname=ext', 'DELETE FROM people')",
        &["function_risk", "dblink_exec", "external_session"],
    ),
    (
        "SELECT * FROM dblink('dbname=ext', 'SELECT 1') AS t(x int)",
        &["function_risk", "dblink", "external_session"],
    ),
    (
        "SELECT peek()",
        &[
            "function_security_definer",
            "public.peek",
            "SECURITY DEFINER",
        ],
    ),
    (
        "SELECT people_count()",
        &["function_user", "public.people_count", "language sql"],
    ),
    (
        "SELECT id FROM people WHERE id === 1",
        &["function_user", "operator === (function public.noisy_eq)"],
    ),
    (
        // public.upper(int) beside pg_catalog.upper(text): an integer column or an untyped
        // literal can reach the user's function, so it is judged.
        "SELECT upper(id) FROM people",
        &["function_user", "public.upper"],
    ),
    ("SELECT upper('x')", &["function_user", "public.upper"]),
    (
        "SELECT id FROM people WHERE id IN (SELECT 1) OR id === ANY (SELECT 2)",
        &["operator === (function public.noisy_eq)"],
    ),
    // The catalog's lineage: a partition's columns are its parent's, a view reads what
    // its definition reads (through other views too).
    (
        "SELECT secret FROM vault_p1",
        &["column_denied", "public.vault.secret"],
    ),
    (
        "SELECT * FROM vault_p1",
        &["column_denied", "public.vault.secret"],
    ),
    (
        "SELECT id FROM vault_all",
        &[
            "view_reads_denied_column",
            "view public.vault_all",
            "public.vault.secret",
        ],
    ),
    (
        "SELECT * FROM stats_peek",
        &["view_reads_denied", "pg_catalog.pg_stats"],
    ),
    (
        "SELECT * FROM remote_people",
        &["foreign_table", "public.remote_people", "server loopback"],
    ),
    (
        "SELECT gen_random_bytes(8)",
        &["function_volatile", "gen_random_bytes", "volatile"],
    ),
];

/// The acceptance table, over MCP: extension functions and operators are allowed by what
/// they are; dblink, a SECURITY DEFINER function, a user operator over a volatile function,
/// a foreign table and a volatile extension function are refused, each naming what it is.
/// Then an extension created while serving becomes callable once the catalog is read again.
#[tokio::test]
async fn extensions_are_judged_by_the_databases_own_catalog() {
    let cluster = Cluster::shared();
    ext_database(cluster);
    let dir = std::env::temp_dir().join(format!("sqlguard-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (client, _) = serve_config(&config(&dir, cluster, TRUSTED)).await;
    for (sql, expect) in ALLOWED_EXTENSION_CALLS {
        let (is_error, text) = query(&client, sql).await;
        assert!(!is_error && text.contains(expect), "{sql}: {text}");
    }
    for (sql, words) in REFUSED_EXTENSION_CALLS {
        let (is_error, text) = query(&client, sql).await;
        assert!(is_error, "{sql} ran: {text}");
        for w in *words {
            assert!(text.contains(w), "{sql}: {w:?} missing from {text}");
        }
    }
    an_extension_created_while_serving_is_known(&client, cluster).await;
    the_schema_resource_shows_types_extensions_and_functions(&client).await;
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An extension created while serving: unknown first, then (its name missing from the
/// snapshot, the last read older than 5 s) read again and allowed.
async fn an_extension_created_while_serving_is_known(client: &Client, cluster: &Cluster) {
    let icount = "SELECT icount('{1,2,3}'::int[]) AS n";
    let (is_error, text) = query(client, icount).await;
    assert!(
        is_error && text.contains("does not exist in this database's catalog"),
        "{text}"
    );
    cluster.psql(EXT_DB, "CREATE EXTENSION intarray");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (is_error, text) = query(client, icount).await;
        if !is_error {
            assert!(text.contains("\"n\":3"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "intarray never became known: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The schema resource: PostgreSQL's type names, the extensions, the callable functions.
async fn the_schema_resource_shows_types_extensions_and_functions(client: &Client) {
    let schema = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "sqlguard://clusters/acme/databases/ext/schema",
        ))
        .await
        .unwrap();
    let text = match &schema.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let people = v["relations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "people")
        .unwrap_or_else(|| panic!("{text}"));
    let type_of = |c: &str| {
        people["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == c)
            .map(|x| x["type"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(type_of("salary"), "numeric(10,2)");
    assert_eq!(type_of("nicknames"), "text[]");
    assert_eq!(type_of("tags"), "hstore");
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .iter()
            .map(|f| f["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let functions = names("functions");
    assert!(
        functions.contains(&"similarity".to_string()),
        "{functions:?}"
    );
    assert!(functions.contains(&"levenshtein".to_string()));
    for refused in ["dblink_exec", "peek", "people_count", "gen_random_bytes"] {
        assert!(
            !functions.contains(&refused.to_string()),
            "{refused} listed"
        );
    }
    let extensions = names("extensions");
    assert!(
        extensions.contains(&"pg_trgm".to_string()) && extensions.contains(&"intarray".to_string())
    );
    let remote = v["relations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "remote_people");
    assert!(!remote, "a foreign table the policy refuses is listed");
}

/// Offline: `catalog dump` writes the database's catalog, and `check --catalog` decides
/// against it without a connection, as the server would.
#[test]
fn a_dumped_catalog_decides_offline() {
    let cluster = Cluster::shared();
    ext_database(cluster);
    let dir = std::env::temp_dir().join(format!("sqlguard-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dsn = format!(
        "postgres://{ANALYST}:{ANALYST_PASSWORD}@127.0.0.1:{}/{EXT_DB}?sslmode=disable",
        cluster.port
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(["catalog", "dump", &dsn])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("ext.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = |sql: &str, catalog: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
        cmd.args(["check", "--format", "json"]);
        if catalog {
            cmd.args(["--catalog", file.to_str().unwrap()]);
        }
        let out = cmd.arg(sql).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    let sim = "SELECT similarity(name, 'jon') FROM people";
    assert_eq!(check(sim, true)["allow"], true);
    assert_eq!(check(sim, false)["allow"], false);
    let remote = check("SELECT * FROM remote_people", true);
    assert_eq!(remote["reasons"][0]["rule"], "foreign_table", "{remote}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A snapshot of a newer server (a fixture of PostgreSQL 17's catalog): its new built-ins are
/// known and judged as built-ins; without it they are unknown and denied.
#[test]
fn a_newer_servers_built_ins_are_known_from_its_snapshot() {
    use sqlguard::analysis::snapshot::Snapshot;
    use sqlguard::analysis::AnalysisOptions;
    use sqlguard::policy::{Bundle, Identity, Policy};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/catalog-pg17.json"
    ))
    .unwrap();
    let snapshot = std::sync::Arc::new(Snapshot::from_json(&text).unwrap());
    let policy = Policy::new(Bundle::embedded(&[]).unwrap()).unwrap();
    let identity = Identity::default();
    let decide = |sql: &str, snap: bool| {
        let opts = AnalysisOptions::default().with_snapshot(snap.then(|| snapshot.clone()));
        policy
            .check(sql, &opts, None, &identity, "teleport_postgres_query")
            .decision
    };
    for sql in [
        "SELECT any_value(x) FROM t",
        "SELECT pg_input_is_valid('42', 'integer')",
        "SELECT * FROM pg_stat_io",
        "SELECT count(*) FROM pg_wait_events",
    ] {
        let d = decide(sql, true);
        assert!(d.allow, "{sql}: {:?}", d.reasons);
    }
    let without = decide("SELECT any_value(x) FROM t", false);
    assert!(!without.allow && without.reasons[0].rule == "function_unknown");
    let volatile = decide("SELECT random_normal(0, 1)", true);
    assert_eq!(
        volatile.reasons[0].rule, "function_volatile",
        "{volatile:?}"
    );
}

/// `policy test --cases`: SQL fixtures naming a catalog snapshot are decided as the server
/// would decide them; a case whose expectation does not hold fails the run and says why.
#[test]
fn policy_test_cases_can_name_a_snapshot() {
    let root = env!("CARGO_MANIFEST_DIR");
    let run = |cases: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
            .args([
                "policy",
                "test",
                &format!("{root}/policies"),
                "--cases",
                cases,
            ])
            .output()
            .unwrap()
    };
    let good = run(&format!("{root}/tests/fixtures/catalog-cases.jsonl"));
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
    let dir = std::env::temp_dir().join(format!("sqlguard-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        format!("{root}/tests/fixtures/catalog-pg17.json"),
        dir.join("pg17.json"),
    )
    .unwrap();
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"name": "needs its catalog", "sql": "SELECT any_value(x) FROM t", "allow": true}
{"name": "with it", "sql": "SELECT any_value(x) FROM t", "catalog": "pg17.json", "allow": true}
"#,
    )
    .unwrap();
    let failed = run(bad.to_str().unwrap());
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success());
    assert!(
        out.contains("FAIL case needs its catalog") && out.contains("function_unknown"),
        "{out}"
    );
    assert!(!out.contains("FAIL case with it"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database whose catalog cannot be read (nothing listens): the call is still decided,
/// against PostgreSQL 15's built-ins only, and a query the policy allows reports the
/// connection error, not a catalog error.
#[tokio::test]
async fn without_a_reachable_catalog_the_static_catalog_decides() {
    let port = crate::support::cluster::free_port();
    let dir = std::env::temp_dir().join(format!("sqlguard-nocat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "connect_timeout_ms = 2000\n[[database]]\nuri = \"{URI}?dbName={EXT_DB}&dbUser={ANALYST}\"\ndsn = \"postgres://{ANALYST}:{ANALYST_PASSWORD}@127.0.0.1:{port}/{EXT_DB}?sslmode=disable\"\n"
        ),
    )
    .unwrap();
    let (client, _) = serve_config(&config).await;
    let (is_error, text) = query(&client, "SELECT similarity(name, 'jon') FROM people").await;
    assert!(is_error, "{text}");
    assert!(
        text.contains("function_unknown") && text.contains("is not a PostgreSQL built-in"),
        "{text}"
    );
    let (is_error, text) = query(&client, "SELECT 1").await;
    assert!(is_error && !text.contains("catalog"), "{text}");
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database `db` built once by `setup` (run as the superuser; `analyst` may then read every
/// table), served alone over MCP as `teleport://clusters/acme/databases/{db}` with the
/// default bundle. Returns the client, a scratch directory to remove, and the database's URI.
type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// `sql`, sent over MCP, is refused, and the refusal names every one of `words`.
async fn assert_refused(client: &Client, db_uri: &str, sql: &str, words: &[&str]) {
    let (is_error, text) = crate::mcp::query_database(client, db_uri, sql).await;
    assert!(is_error, "{sql} ran: {text}");
    for w in words {
        assert!(text.contains(w), "{sql}: {w:?} missing from {text}");
    }
}

/// `sql`, sent over MCP, runs, and its answer holds `expect`.
async fn assert_runs(client: &Client, db_uri: &str, sql: &str, expect: &str) {
    let (is_error, text) = crate::mcp::query_database(client, db_uri, sql).await;
    assert!(!is_error && text.contains(expect), "{sql}: {text}");
}

async fn serve_database(
    db: &str,
    built: &std::sync::OnceLock<()>,
    setup: &str,
) -> (Client, std::path::PathBuf, String) {
    let cluster = Cluster::shared();
    ext_database(cluster);
    built.get_or_init(|| {
        cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
        cluster.psql(db, setup);
        cluster.psql(
            db,
            &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ANALYST}"),
        );
    });
    let uri = format!("teleport://clusters/acme/databases/{db}");
    let dir = std::env::temp_dir().join(format!("sqlguard-{db}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "[[database]]\nuri = \"{uri}?dbName={db}&dbUser={ANALYST}\"\ndsn = \"postgres://{ANALYST}:{ANALYST_PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable\"\n",
            cluster.port
        ),
    )
    .unwrap();
    let (client, _) = serve_config(&config).await;
    (client, dir, uri)
}

/// Comparisons the agent never writes as an operator still run one, looked up by name as if
/// written: `x IN (SELECT …)`, `NOT IN`, `CASE x WHEN …`, `JOIN … USING`, `NATURAL JOIN` run
/// `=`. A database whose `=` (for `text` and `int`) is a user's volatile function: each of
/// them is refused as that operator, as `name = 1` is; comparisons without `=` still run.
#[tokio::test]
async fn implicit_comparisons_are_judged_as_the_operator_they_run() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let (client, dir, db_uri) = serve_database(
        "implicit_eq",
        &BUILT,
        "CREATE FUNCTION noisy_text_int_eq(text, int) RETURNS bool LANGUAGE sql VOLATILE
             AS $$ SELECT $1 = $2::text $$;
         CREATE OPERATOR = (LEFTARG = text, RIGHTARG = int, FUNCTION = noisy_text_int_eq);
         CREATE TABLE a (id int, name text);
         CREATE TABLE b (id int, name text);
         INSERT INTO a VALUES (1, 'x'), (2, 'y');
         INSERT INTO b VALUES (1, 'x');",
    )
    .await;
    let operator = "operator = (function public.noisy_text_int_eq)";
    for sql in [
        "SELECT id FROM a WHERE name = 'x'",
        "SELECT id FROM a WHERE name IN (SELECT name FROM b)",
        "SELECT id FROM a WHERE name NOT IN (SELECT name FROM b)",
        "SELECT id FROM a WHERE (SELECT name FROM b LIMIT 1) IN (SELECT name FROM b)",
        "SELECT CASE name WHEN 'x' THEN 1 ELSE 0 END AS c FROM a",
        "SELECT a.id FROM a JOIN b USING (id)",
        "SELECT * FROM a NATURAL JOIN b",
        "SELECT * FROM a LEFT JOIN b USING (name)",
    ] {
        assert_refused(&client, &db_uri, sql, &["function_user", operator]).await;
    }
    for (sql, expect) in [
        (
            "SELECT CASE WHEN id > 1 THEN 'big' ELSE 'small' END AS c FROM a ORDER BY id",
            "\"c\":\"small\"",
        ),
        ("SELECT a.id FROM a JOIN b ON a.id > b.id", "\"id\":2"),
        (
            "SELECT id FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.id > a.id - 1) ORDER BY id",
            "\"id\":1",
        ),
    ] {
        assert_runs(&client, &db_uri, sql, expect).await;
    }
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A conversion can run a user's function the query never names: a cast declared `WITH
/// FUNCTION`, or a domain's `CHECK` calling a function (up a chain of domains, and for arrays
/// of the domain). With the database's catalog each such cast is judged as its function.
#[tokio::test]
async fn casts_are_judged_as_the_functions_they_run() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let (client, dir, db_uri) = serve_database(
        "casts",
        &BUILT,
        "CREATE FUNCTION chk(int) RETURNS bool LANGUAGE plpgsql VOLATILE
             AS $$ BEGIN RETURN $1 > 0; END $$;
         CREATE DOMAIN positive AS int CHECK (chk(VALUE));
         CREATE DOMAIN small_positive AS positive CHECK (VALUE < 100);
         CREATE DOMAIN plain_positive AS int CHECK (VALUE > 0);
         CREATE TYPE mood AS ENUM ('sad', 'ok');
         CREATE FUNCTION to_mood(int) RETURNS mood LANGUAGE sql STABLE SECURITY DEFINER
             AS $$ SELECT 'ok'::mood $$;
         CREATE CAST (int AS mood) WITH FUNCTION to_mood(int);
         CREATE TABLE a (id int);
         INSERT INTO a VALUES (1), (2);",
    )
    .await;
    let denied: &[(&str, &[&str])] = &[
        (
            "SELECT 5::positive AS n",
            &[
                "function_user",
                "a cast to public.positive (function public.chk)",
                "plpgsql",
            ],
        ),
        (
            "SELECT CAST(id AS public.small_positive) AS n FROM a",
            &[
                "function_user",
                "a cast to public.small_positive (function public.chk)",
            ],
        ),
        (
            "SELECT ARRAY[5]::positive[] AS n",
            &["a cast to public.positive (function public.chk)"],
        ),
        (
            "SELECT x FROM (SELECT 1) s(x) WHERE x::positive IS NOT NULL",
            &["a cast to public.positive (function public.chk)"],
        ),
        (
            "SELECT id::mood AS m FROM a",
            &[
                "function_security_definer",
                "a cast to public.mood (function public.to_mood)",
                "SECURITY DEFINER",
            ],
        ),
    ];
    for (sql, words) in denied {
        assert_refused(&client, &db_uri, sql, words).await;
    }
    // A domain whose check calls only PostgreSQL's own functions, and built-in casts, run.
    for (sql, expect) in [
        ("SELECT 5::plain_positive AS n", "\"n\":5"),
        (
            "SELECT id::text AS t FROM a ORDER BY id LIMIT 1",
            "\"t\":\"1\"",
        ),
    ] {
        assert_runs(&client, &db_uri, sql, expect).await;
    }
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cast declared `AS IMPLICIT` runs without being written: `m = label` compares an enum
/// column with a text column by converting the enum with the cast's function (PostgreSQL
/// picks `text = text`). The analysis does not type every expression, so on a database
/// holding such a cast with a function not PostgreSQL's own, that function is judged in every
/// statement that may hold a value of the enum (a column of it read by name, `*` or a whole
/// row, the type named), and the refusal says which cast; other statements run.
#[tokio::test]
async fn implicit_casts_are_judged_where_their_type_may_meet_another() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let (client, dir, db_uri) = serve_database(
        "implicit_casts",
        &BUILT,
        "CREATE TYPE mood AS ENUM ('sad', 'ok');
         CREATE TABLE seen (v text);
         CREATE FUNCTION mood_to_text(mood) RETURNS text LANGUAGE plpgsql VOLATILE SECURITY DEFINER
             AS $$ BEGIN INSERT INTO seen VALUES ('called');
                   RETURN 'a mood'; END $$;
         CREATE CAST (mood AS text) WITH FUNCTION mood_to_text(mood) AS IMPLICIT;
         CREATE TABLE a (id int, m mood, label text);
         INSERT INTO a VALUES (1, 'ok', 'ok'), (2, 'sad', 'ok');",
    )
    .await;
    // PostgreSQL itself runs the cast's function here: it writes to `seen` once per row.
    let ran = Cluster::shared().psql(
        "implicit_casts",
        "BEGIN; SELECT 'matched ' || count(*) FROM a WHERE m = label; \
         SELECT 'calls ' || count(*) FROM seen; ROLLBACK;",
    );
    assert!(
        ran.contains("matched 0") && ran.contains("calls 2"),
        "the implicit cast did not run as expected: {ran}"
    );
    let cast = "a cast to text from mood, which PostgreSQL applies implicitly (function public.mood_to_text)";
    for sql in [
        "SELECT id FROM a WHERE m = label",
        "SELECT length(m) AS n FROM a",
        "SELECT * FROM a",
        "SELECT id FROM a WHERE 'ok'::mood IS NOT NULL",
    ] {
        assert_refused(&client, &db_uri, sql, &["function_security_definer", cast]).await;
    }
    assert_runs(
        &client,
        &db_uri,
        "SELECT id, label FROM a WHERE id = 1",
        "\"label\":\"ok\"",
    )
    .await;
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An enum with operators and a cast, user overloads of built-in functions, and tables of both.
const TYPED_OPERATORS_SCHEMA: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok');
         CREATE FUNCTION mood_lt(mood, mood) RETURNS bool LANGUAGE sql VOLATILE
             AS $$ SELECT $1::text < $2::text $$;
         CREATE OPERATOR < (LEFTARG = mood, RIGHTARG = mood, FUNCTION = mood_lt);
         CREATE FUNCTION mood_neg(mood) RETURNS mood LANGUAGE sql VOLATILE AS $$ SELECT $1 $$;
         CREATE OPERATOR - (RIGHTARG = mood, FUNCTION = mood_neg);
         CREATE TYPE level AS ENUM ('low', 'high');
         CREATE FUNCTION level_eq(level, level) RETURNS bool LANGUAGE sql VOLATILE
             AS $$ SELECT $1::text = $2::text $$;
         CREATE OPERATOR = (LEFTARG = level, RIGHTARG = level, FUNCTION = level_eq);
         CREATE FUNCTION int_level(int) RETURNS level LANGUAGE sql IMMUTABLE
             AS $$ SELECT CASE WHEN $1 > 0 THEN 'high' ELSE 'low' END::level $$;
         CREATE CAST (int AS level) WITH FUNCTION int_level(int) AS IMPLICIT;
         CREATE TABLE t (id int, m mood, l level);
         INSERT INTO t VALUES (1, 'sad', 'low'), (50, 'ok', 'high');
         CREATE VIEW v AS SELECT m AS id, id AS n FROM t;
         CREATE TABLE w (x mood);
         CREATE TABLE u (x int);
         INSERT INTO w VALUES ('sad');
         INSERT INTO u VALUES (1);
         CREATE FUNCTION public.abs(level) RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT 1 $$;
         CREATE FUNCTION public.length(text, text, text) RETURNS int LANGUAGE sql VOLATILE
             AS $$ SELECT 3 $$;
         CREATE FUNCTION public.upper(text, int DEFAULT 1) RETURNS text LANGUAGE sql VOLATILE
             AS $$ SELECT $1 $$;";

const LT: &str = "operator < (function public.mood_lt)";
const NEG: &str = "operator - (function public.mood_neg)";
const EQ: &str = "operator = (function public.level_eq)";

/// Calls a user's function or operator may run in: (SQL, what the refusal names).
const TYPED_REFUSED: &[(&str, &str)] = &[
    // Functions: an overload that may take the arguments counts.
    ("SELECT abs(5) AS a", "function public.abs"),
    ("SELECT abs(id) AS a FROM t", "function public.abs"),
    (
        "SELECT length('a', 'b', 'c') AS n",
        "function public.length",
    ),
    ("SELECT upper('x') AS u", "function public.upper"),
    // The operand's type is unknown: the enum's operator may run.
    ("SELECT id FROM t WHERE m < 'ok'", LT),
    ("SELECT id FROM t WHERE m < 'ok'::mood", LT),
    ("SELECT id FROM t WHERE m NOT BETWEEN 'sad' AND 'ok'", LT),
    ("SELECT id FROM t WHERE m NOT BETWEEN SYMMETRIC 1 AND 2", LT),
    ("SELECT -m AS n FROM t", NEG),
    // An integer reaches `level` by an implicit cast: its `=` may run.
    ("SELECT id FROM t WHERE l = 1", EQ),
    ("SELECT id FROM t WHERE id = 1", EQ),
    ("SELECT id FROM t WHERE l IS DISTINCT FROM 1", EQ),
    (
        "SELECT id FROM t WHERE m IN ('ok', 'sad') AND id < 3",
        "operator",
    ),
    (
        "SELECT id FROM t WHERE id IN (1, 2.5) AND m < ANY (ARRAY['ok'::mood])",
        LT,
    ),
    (
        "SELECT id FROM t WHERE m NOT IN (SELECT m FROM t WHERE id < 0)",
        "operator",
    ),
    // A column of the enum's type, however it is reached.
    ("SELECT id FROM t WHERE m < m", LT),
    (
        "SELECT x.id FROM (SELECT m AS id FROM t) x WHERE x.id < 'ok'",
        LT,
    ),
    (
        "WITH c AS (SELECT m AS id FROM t) SELECT id FROM c WHERE id < 'ok'",
        LT,
    ),
    ("SELECT n FROM v WHERE id < 'ok'", LT),
    ("SELECT a.m FROM t AS a(m, id) WHERE id < 'ok'", LT),
    (
        "SELECT id FROM t WHERE EXISTS (SELECT 1 FROM (SELECT m AS id FROM t) s WHERE id < 'ok')",
        LT,
    ),
    (
        "SELECT x FROM t, LATERAL (SELECT t.m AS x) s WHERE x < 'ok'",
        LT,
    ),
    (
        "SELECT id FROM t JOIN (SELECT l FROM t) s USING (l) WHERE l = 1",
        EQ,
    ),
    // Where PostgreSQL cannot see a FROM item, a column of that name is an outer one:
    // here `w.x`, of the enum's type, not `u.x`, an integer. An `ON` clause sees only its
    // join's items; a subquery in FROM (not LATERAL) nothing of its own level.
    (
        "SELECT 1 AS one FROM w WHERE EXISTS (SELECT 1 FROM u, t a JOIN t b ON x < 'ok')",
        LT,
    ),
    (
        "SELECT 1 AS one FROM w WHERE EXISTS (SELECT 1 FROM u, (SELECT 1 AS k WHERE x < 'ok') s)",
        LT,
    ),
];

/// Calls no user's function or operator can run in: (SQL, words the answer holds).
const TYPED_RUN: &[(&str, &str)] = &[
    ("SELECT id FROM t WHERE id < 42 ORDER BY id", "\"id\":1"),
    ("SELECT id FROM t WHERE id < 2.5", "\"id\":1"),
    (
        "SELECT id FROM t WHERE id NOT BETWEEN 2 AND 100",
        "\"id\":1",
    ),
    ("SELECT id FROM t WHERE id BETWEEN 0 AND 9", "\"id\":1"),
    (
        "SELECT id FROM t WHERE id::text < '5'::text AND (id < 10) = true",
        "\"id\":1",
    ),
    ("SELECT id - 1 AS n FROM t WHERE id < 40", "\"n\":0"),
    (
        // (`level`'s `=` takes integers; a boolean it cannot.)
        "SELECT id FROM t WHERE true IN (true, false) AND true NOT IN (SELECT id < 0 FROM t) \
         AND id < ANY (ARRAY[5]) AND id::text NOT LIKE 'x%' AND CASE true WHEN id < 3 THEN true END",
        "\"id\":1",
    ),
    // Functions: an overload that cannot take the arguments does not count (a
    // decimal has no cast to `level`; `length` here takes three arguments).
    ("SELECT abs(-5.5) AS a, length('abc') AS n", "\"n\":3"),
    ("SELECT max(id) AS m, abs(max(t.id)::numeric) AS a FROM t", "\"m\":50"),
    // Columns of built-in types: the catalog says what they are (an inner query's own
    // table first, as PostgreSQL resolves it).
    (
        "SELECT id FROM t WHERE id > (SELECT min(id) FROM t WHERE id < 40) ORDER BY id",
        "\"id\":50",
    ),
    (
        "SELECT 1 AS one FROM w WHERE EXISTS (SELECT 1 FROM u, LATERAL (SELECT 1 AS k WHERE x < 5) s)",
        "\"one\":1",
    ),
    ("SELECT a.id FROM t a JOIN t b ON a.id < b.id", "\"id\":1"),
    ("SELECT id FROM t WHERE id < id + 1 AND id::text < 'x'", "\"id\":1"),
    (
        "SELECT n FROM v WHERE n < 2 AND EXISTS (SELECT 1 FROM t WHERE t.id < v.n + 1)",
        "\"n\":1",
    ),
    (
        "SELECT id FROM t WHERE date '2020-01-01' < '2021-01-01'::date AND id < 3",
        "\"id\":1",
    ),
];

/// PostgreSQL picks an operator by its operands' types, and a function by its arguments'
/// number and types: an extension's or user's operator or function on its own type can run
/// only on an operand of that type or of a type with an implicit cast to it. A numeric or boolean constant, or a cast to a built-in type, fixes the
/// operand's type, so such an operator is not counted where it cannot run (no denial for
/// `id < 42` because an enum has a volatile `<`), and is where it can (`l = 1` when an
/// implicit cast turns integers into that type). `NOT BETWEEN` runs `<` and `>`.
#[tokio::test]
async fn operators_and_functions_are_counted_only_where_their_argument_types_allow() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let (client, dir, db_uri) =
        serve_database("typed_operators", &BUILT, TYPED_OPERATORS_SCHEMA).await;
    for (sql, operator) in TYPED_REFUSED {
        assert_refused(&client, &db_uri, sql, &["function_user", operator]).await;
    }
    for (sql, expect) in TYPED_RUN {
        assert_runs(&client, &db_uri, sql, expect).await;
    }
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}
