//! Leaks on a live catalog (threat model, class 22): on a database holding the objects real
//! schemas have (an expression index, materialized views, partitions, inheritance, views that
//! call functions, composite and range types over domains whose `CHECK` calls a function,
//! settings stored with `ALTER DATABASE … SET`), every way a protected value came out is
//! refused over MCP, and no call leaves session state behind.
//!
//! Each case carries its proof: the same SQL (or the SQL named in `proof`) run on raw
//! PostgreSQL as the same user shows the protected value, which the test checks before it
//! checks that sqlguard refuses the call without showing it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::mcp::{query_database, serve_config};
use crate::support::cluster::{Cluster, WRITER, WRITER_PASSWORD};

const DB: &str = "live";
const URI: &str = "teleport://clusters/acme/databases/live";

/// Built by the superuser: extensions, the settings stored in the catalog, statistics.
const AS_SUPERUSER: &[&str] = &[
    "CREATE EXTENSION IF NOT EXISTS hstore",
    "CREATE EXTENSION IF NOT EXISTS intarray",
    "ALTER DATABASE live SET app.api_key = 'sk-live-123'",
    "ALTER ROLE writer IN DATABASE live SET app.role_key = 'rk-live-456'",
];

/// Built by the user sqlguard connects as (who owns it, so privileges never stop a read).
const SCHEMA: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text, ssn text);
INSERT INTO customers SELECT g, 'name' || g, 'ssn-' || lpad(g::text, 6, '0') FROM generate_series(1, 60) g;
CREATE INDEX customers_ssn_lower ON customers (lower(ssn));
CREATE MATERIALIZED VIEW customer_ssns AS SELECT id, ssn FROM customers;
CREATE TABLE ledger (id int, account text) PARTITION BY RANGE (id);
CREATE TABLE ledger_open PARTITION OF ledger FOR VALUES FROM (0) TO (1000);
CREATE TABLE ledger_secret PARTITION OF ledger FOR VALUES FROM (1000) TO (2000);
INSERT INTO ledger SELECT g, 'open-' || g FROM generate_series(1, 50) g;
INSERT INTO ledger SELECT 1000 + g, 'secret-' || g FROM generate_series(1, 50) g;
CREATE TABLE notes (id int, body text);
CREATE TABLE private_notes (pin text) INHERITS (notes);
INSERT INTO notes SELECT g, 'public-' || g FROM generate_series(1, 50) g;
INSERT INTO private_notes SELECT g, 'private-' || g, 'pin-' || g FROM generate_series(1, 50) g;
CREATE SCHEMA app;
CREATE SCHEMA hr;
CREATE TABLE hr.salaries (who text, salary int);
INSERT INTO hr.salaries SELECT 'who' || g, 100000 + g FROM generate_series(1, 20) g;
CREATE VIEW app.salaries AS SELECT who, salary FROM hr.salaries;
CREATE MATERIALIZED VIEW app.salary_totals AS SELECT sum(salary) AS total FROM hr.salaries;
CREATE VIEW app.headcount AS SELECT count(*) AS n FROM hr.salaries;
CREATE VIEW app.people AS SELECT id, name FROM public.customers;
CREATE FUNCTION reveal(int) RETURNS text LANGUAGE sql STABLE AS $$ SELECT ssn FROM customers WHERE id = $1 $$;
CREATE VIEW customer_cards AS SELECT id, name, reveal(id) AS card FROM customers;
CREATE VIEW cards_again AS SELECT id, card FROM customer_cards;
CREATE MATERIALIZED VIEW card_cache AS SELECT id, reveal(id) AS card FROM customers;
CREATE VIEW xml_dump AS SELECT query_to_xml('SELECT ssn FROM public.customers', true, false, '') AS x;
CREATE VIEW locker AS SELECT pg_try_advisory_lock(77) AS got;
CREATE VIEW keyed AS SELECT current_setting('app.api_key') AS k;
CREATE VIEW names AS SELECT id, name FROM customers;
CREATE VIEW customer_all AS SELECT * FROM customers;
CREATE VIEW names_from_all AS SELECT id, name FROM customer_all;
CREATE VIEW ssn_from_all AS SELECT id, ssn AS code FROM customer_all;
CREATE VIEW filtered_all AS SELECT name FROM customer_all WHERE ssn LIKE 'ssn-00000%';
CREATE FUNCTION lock_check(text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4242); RETURN true; END $$;
CREATE DOMAIN checked_text AS text CHECK (lock_check(VALUE));
CREATE TYPE card AS (holder checked_text, n int);
CREATE DOMAIN card_d AS card;
CREATE FUNCTION lock_int(int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_lock(4343); RETURN true; END $$;
CREATE DOMAIN checked_int AS int CHECK (lock_int(VALUE));
CREATE TYPE checked_range AS RANGE (subtype = checked_int);
CREATE TABLE wallets (id int, c card);
INSERT INTO wallets VALUES (1, NULL);
CREATE TABLE tags (id int, ids int[]);
INSERT INTO tags VALUES (1, '{1,2,3}');
"#;

/// The database, built once per test binary.
fn live() -> &'static Cluster {
    static BUILT: OnceLock<()> = OnceLock::new();
    let cluster = Cluster::shared();
    BUILT.get_or_init(|| {
        cluster.psql("postgres", &format!("CREATE DATABASE {DB} OWNER {WRITER}"));
        for sql in AS_SUPERUSER {
            cluster.psql(DB, sql);
        }
        cluster.psql(DB, &format!("SET ROLE {WRITER}; {SCHEMA}"));
        // Every table's statistics, the catalog's included (pg_db_role_setting holds the
        // settings above).
        cluster.psql(DB, "ANALYZE");
    });
    cluster
}

/// `dir/sqlguard.toml` serving `live` as `URI`, with `data` merged over the bundle's data.
fn live_config(dir: &Path, cluster: &Cluster, data: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let data_file = dir.join("data.json");
    std::fs::write(&data_file, data).unwrap();
    let dsn = format!(
        "postgres://{WRITER}:{WRITER_PASSWORD}@127.0.0.1:{}/{DB}?sslmode=disable",
        cluster.port
    );
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "data = [{:?}]\n\n[[database]]\nuri = \"{URI}?dbName={DB}&dbUser={WRITER}\"\ndsn = {dsn:?}\n",
            data_file.display().to_string()
        ),
    )
    .unwrap();
    config
}

/// The policy of the suite: a denied column, denied child tables, an allow list by schema,
/// one view listed as a deliberate exposure.
const POLICY: &str = r#"{"sqlguard": {
  "columns": {"deny": ["public.customers.ssn", "public.private_notes.pin"]},
  "tables": {
    "deny": ["public.ledger_secret", "public.private_notes"],
    "allow": ["public.*", "app.*", "pg_catalog.*"],
    "exposing_views": ["app.headcount"]
  }
}}"#;

/// One test of this file calls at a time: a lock another test's call holds for the length of
/// its pipeline must not count against this one.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Advisory locks held in `live` by sqlguard's pooled sessions (the raw proofs' psql sessions,
/// which other tests run meanwhile, are not counted).
fn advisory_locks(cluster: &Cluster) -> String {
    cluster.psql(
        DB,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND d.datname = 'live' AND a.application_name = 'sqlguard'",
    )
}

/// What raw PostgreSQL answers `sql` as the served user: its output, or its error's text.
fn raw(cluster: &Cluster, sql: &str) -> String {
    match cluster.local.psql(DB, &format!("SET ROLE {WRITER}; {sql}")) {
        Ok(out) | Err(out) => out,
    }
}

/// Advisory locks the session holds at the end of a raw proof.
const HELD: &str =
    "SELECT 'held:' || string_agg(objid::text, ',') FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";

struct Case {
    /// What the agent sends.
    sql: &'static str,
    /// The raw proof: `""` runs `sql` itself.
    proof: &'static str,
    /// What the raw proof shows that must never come back over MCP.
    shows: &'static str,
    /// Words the refusal must hold; `""`: allowed, and its answer holds `shows`.
    refused: &'static str,
}

const fn case(
    sql: &'static str,
    proof: &'static str,
    shows: &'static str,
    refused: &'static str,
) -> Case {
    Case {
        sql,
        proof,
        shows,
        refused,
    }
}

/// Runs each case: proves it on raw PostgreSQL, calls it over MCP, checks the answer (an
/// allowed one shows what the proof shows) and that no session keeps an advisory lock. Every
/// failure is reported, not only the first.
async fn run_cases(config: &Path, cases: &[Case]) {
    check_cases(config, cases, true).await
}

/// [`run_cases`]; `answers_show`: whether an allowed case's answer must hold what its proof
/// shows (not where the proof shows state, such as a lock, rather than a value).
async fn check_cases(config: &Path, cases: &[Case], answers_show: bool) {
    let cluster = live();
    let _serial = SERIAL.lock().await;
    let (client, _) = serve_config(config).await;
    let mut failures = Vec::new();
    for c in cases {
        let proof = if c.proof.is_empty() { c.sql } else { c.proof };
        let raw_out = raw(cluster, proof);
        if !raw_out.contains(c.shows) {
            failures.push(format!(
                "{}: the raw proof does not show {:?}, so the case proves nothing: {raw_out}",
                c.sql, c.shows
            ));
        }
        let (is_error, text) = query_database(&client, URI, c.sql).await;
        if c.refused.is_empty() {
            if is_error || (answers_show && !text.contains(c.shows)) {
                failures.push(format!(
                    "{}: should be allowed and show {:?}: {text}",
                    c.sql, c.shows
                ));
            }
        } else {
            if !is_error || !text.contains(c.refused) {
                failures.push(format!(
                    "{}: should be refused naming {:?}: {text}",
                    c.sql, c.refused
                ));
            }
            if text.contains(c.shows) {
                failures.push(format!(
                    "{}: the refusal shows {:?}: {text}",
                    c.sql, c.shows
                ));
            }
        }
        let locks = advisory_locks(cluster);
        if locks != "0" {
            failures.push(format!(
                "{}: {locks} advisory locks held after the call",
                c.sql
            ));
            cluster.psql(
                DB,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sqlguard' AND datname = 'live'",
            );
        }
    }
    let _ = client.cancel().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sqlguard-live-{tag}-{}", std::process::id()))
}

/// Class 22.1: every statistics row is mapped to what it samples, and the rules of those
/// tables and columns apply; a row that cannot be mapped is refused.
#[tokio::test]
async fn statistics_under_other_names_are_mapped_to_what_they_sample() {
    let cluster = live();
    let cases = [
        // Raw: the expression index's histogram holds lower(ssn): ssn-000001, ….
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers_ssn_lower'", "", "ssn-0", "public.customers.ssn"),
        // Raw: the materialized view's statistics are samples of customers.ssn.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customer_ssns' AND attname = 'ssn'", "", "ssn-0", "public.customers.ssn"),
        // Raw: the denied partition's own statistics.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'ledger_secret' AND attname = 'account'", "", "secret-", "public.ledger_secret"),
        // Raw: the parent's inherited statistics sample its partitions, the denied one too.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'ledger' AND attname = 'account'", "", "secret-", "public.ledger_secret"),
        // Raw: the inheritance parent's statistics (inherited = true) sample the child's rows.
        case("SELECT inherited, histogram_bounds::text FROM pg_stats WHERE tablename = 'notes' AND attname = 'body'", "", "private-", "public.private_notes"),
        // Raw: the child's column that columns.deny protects.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'private_notes' AND attname = 'pin'", "", "pin-", "public.private_notes"),
        // Raw: a table outside tables.allow.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE schemaname = 'hr' AND tablename = 'salaries' AND attname = 'salary'", "", "1000", "hr.salaries"),
        // Raw: the catalog's own statistics hold ALTER DATABASE … SET values.
        case("SELECT most_common_elems::text, histogram_bounds::text FROM pg_stats WHERE tablename = 'pg_db_role_setting'", "", "sk-live-123", "pg_db_role_setting"),
        // Raw: an unpinned read shows them all.
        case("SELECT tablename, histogram_bounds::text FROM pg_stats WHERE schemaname = 'public'", "", "ssn-0", "cannot be mapped"),
        // Readable columns still are.
        case("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'name'", "", "name1", ""),
        case("SELECT attname, null_frac FROM pg_stats WHERE tablename = 'customers_ssn_lower'", "", "lower", ""),
    ];
    run_cases(&live_config(&dir("stats"), cluster, POLICY), &cases).await;
}

/// Class 22.2: a rule on a partition or child applies to every query that reaches it, its
/// errors and plans included; `ONLY` reaches none.
#[tokio::test]
async fn rules_on_children_hold_through_their_parents() {
    let cluster = live();
    let cases = [
        // Raw: the parent returns the denied partition's rows.
        case(
            "SELECT account FROM ledger ORDER BY id DESC LIMIT 3",
            "",
            "secret-",
            "public.ledger_secret",
        ),
        // Raw: the inheritance parent returns the denied child's rows.
        case(
            "SELECT body FROM notes WHERE body LIKE 'private%' LIMIT 3",
            "",
            "private-",
            "public.private_notes",
        ),
        // Raw: the error message quotes a child's value.
        case(
            "SELECT body::int FROM notes WHERE body LIKE 'private%'",
            "",
            "private-",
            "public.private_notes",
        ),
        // Raw: the plan's row counts say what the denied partition holds.
        case(
            "EXPLAIN ANALYZE SELECT * FROM ledger WHERE account = 'secret-7'",
            "",
            "actual time",
            "public.ledger_secret",
        ),
        case(
            "EXPLAIN SELECT * FROM notes",
            "",
            "on private_notes",
            "public.private_notes",
        ),
        // Raw: an aggregate over the parent counts the child's rows (an oracle on them).
        case(
            "SELECT count(*) FROM ledger WHERE account LIKE 'secret%'",
            "",
            "50",
            "public.ledger_secret",
        ),
        case(
            "SELECT max(account) FROM ledger",
            "",
            "secret-9",
            "public.ledger_secret",
        ),
        // ONLY and the allowed partition are readable.
        case(
            "SELECT body FROM ONLY notes ORDER BY id LIMIT 1",
            "",
            "public-1",
            "",
        ),
        case(
            "SELECT account FROM ledger_open ORDER BY id LIMIT 1",
            "",
            "open-1",
            "",
        ),
    ];
    run_cases(&live_config(&dir("children"), cluster, POLICY), &cases).await;
}

/// Class 22.3: tables.allow holds through views and materialized views, unless the view is
/// listed in tables.exposing_views.
#[tokio::test]
async fn the_allow_list_holds_through_views() {
    let cluster = live();
    let cases = [
        // Raw: a view in an allowed schema returns rows of hr.salaries.
        case(
            "SELECT * FROM app.salaries ORDER BY who LIMIT 2",
            "",
            "10000",
            "hr.salaries",
        ),
        // Raw: the materialized view holds a total of hr.salaries (100001 + … + 100020).
        case(
            "SELECT total FROM app.salary_totals",
            "",
            "2000210",
            "hr.salaries",
        ),
        case(
            "SELECT s.salary FROM app.salaries s WHERE s.who = 'who1'",
            "",
            "100001",
            "hr.salaries",
        ),
        case(
            "SELECT count(*) FROM app.salaries WHERE salary > 100010",
            "",
            "10",
            "hr.salaries",
        ),
        case(
            "SELECT (SELECT max(salary) FROM app.salaries) AS m",
            "",
            "100020",
            "hr.salaries",
        ),
        case(
            "WITH s AS (SELECT * FROM app.salaries) SELECT who FROM s WHERE salary = 100003",
            "",
            "who3",
            "hr.salaries",
        ),
        // A deliberate exposure, and a view over allowed tables.
        case("SELECT n FROM app.headcount", "", "20", ""),
        case(
            "SELECT name FROM app.people ORDER BY id LIMIT 1",
            "",
            "name1",
            "",
        ),
    ];
    run_cases(&live_config(&dir("allow"), cluster, POLICY), &cases).await;
}

/// Class 22.4: a view's definition is analyzed like a query: what it calls is the query's own.
#[tokio::test]
async fn view_definitions_are_analyzed() {
    let cluster = live();
    let cases = [
        // Raw: the view's function reads the denied column.
        case(
            "SELECT card FROM customer_cards WHERE id = 1",
            "",
            "ssn-000001",
            "public.customer_cards",
        ),
        // Raw: filtering on it is an oracle on the denied column.
        case(
            "SELECT name FROM customer_cards WHERE card = 'ssn-000001'",
            "",
            "name1",
            "public.customer_cards",
        ),
        // Raw: through a view over that view.
        case(
            "SELECT card FROM cards_again WHERE id = 2",
            "",
            "ssn-000002",
            "public.reveal",
        ),
        // Raw: a materialized view that holds what the function returned.
        case(
            "SELECT card FROM card_cache WHERE id = 3",
            "",
            "ssn-000003",
            "public.card_cache",
        ),
        // Raw: dynamic SQL in the definition.
        case("SELECT x FROM xml_dump", "", "ssn-000001", "query_to_xml"),
        // Raw: the definition takes a session-level advisory lock that outlives the call.
        case(
            "SELECT got FROM locker",
            two_statements("SELECT got FROM locker", HELD),
            "held:77",
            "pg_try_advisory_lock",
        ),
        // Raw: the definition reads a custom setting.
        case("SELECT k FROM keyed", "", "sk-live-123", "app.api_key"),
        // A view whose definition runs nothing but reads.
        case(
            "SELECT name FROM names ORDER BY id LIMIT 1",
            "",
            "name1",
            "",
        ),
    ];
    run_cases(&live_config(&dir("views"), cluster, POLICY), &cases).await;
}

/// `first; then` as one proof.
fn two_statements(first: &str, then: &str) -> &'static str {
    Box::leak(format!("{first}; {then}").into_boxed_str())
}

/// Class 22.5: a conversion runs the CHECK of every domain inside the type: composite fields,
/// range subtypes, array elements, domains over composites, and the record builders.
#[tokio::test]
async fn conversions_through_composite_and_range_types_count_their_checks() {
    let cluster = live();
    let proof = |sql: &str| two_statements(sql, HELD);
    let cases = [
        // Raw (each): the domain's CHECK ran and left its session-level lock.
        case(
            "SELECT '(x,1)'::card",
            proof("SELECT '(x,1)'::card"),
            "held:4242",
            "public.lock_check",
        ),
        case(
            "SELECT ROW('b', 2)::card_d",
            proof("SELECT ROW('b', 2)::card_d"),
            "held:4242",
            "public.lock_check",
        ),
        case(
            "SELECT ARRAY['(a,1)']::card[]",
            proof("SELECT ARRAY['(a,1)']::card[]"),
            "held:4242",
            "public.lock_check",
        ),
        case(
            "SELECT '[1,3)'::checked_range",
            proof("SELECT '[1,3)'::checked_range"),
            "held:4343",
            "public.lock_int",
        ),
        case(
            "SELECT '{[1,2)}'::checked_multirange",
            proof("SELECT '{[1,2)}'::checked_multirange"),
            "held:4343",
            "public.lock_int",
        ),
        case(
            r#"SELECT json_populate_record(NULL::wallets, '{"c": "(y,1)"}')"#,
            proof(r#"SELECT json_populate_record(NULL::wallets, '{"c": "(y,1)"}')"#),
            "held:4242",
            "public.lock_check",
        ),
        case(
            r#"SELECT json_populate_record(w, '{"c": "(y,1)"}') FROM wallets w"#,
            proof(r#"SELECT json_populate_record(w, '{"c": "(y,1)"}') FROM wallets w"#),
            "held:4242",
            "public.lock_check",
        ),
        case(
            r#"SELECT * FROM jsonb_to_record('{"c": "(z,1)"}') AS r(c card)"#,
            proof(r#"SELECT * FROM jsonb_to_record('{"c": "(z,1)"}') AS r(c card)"#),
            "held:4242",
            "public.lock_check",
        ),
        case(
            r#"SELECT populate_record(NULL::wallets, 'c=>"(h,1)"')"#,
            proof(r#"SELECT populate_record(NULL::wallets, 'c=>"(h,1)"')"#),
            "held:4242",
            "public.lock_check",
        ),
        // Reading a column of the type converts nothing.
        case("SELECT id FROM wallets", "", "1", ""),
    ];
    run_cases(&live_config(&dir("casts"), cluster, POLICY), &cases).await;
}

/// Class 22.6: the second wall. With the functions that take session-level advisory locks
/// allowed on purpose, no pooled session keeps a lock a call took, after success or error.
#[tokio::test]
async fn no_pooled_session_keeps_state_a_call_created() {
    let cluster = live();
    let policy = r#"{"sqlguard": {"functions": {
        "allow": ["public.lock_check", "public.lock_int", "pg_catalog.pg_advisory_lock",
                  "pg_catalog.pg_try_advisory_lock", "pg_catalog.pg_advisory_lock_shared"],
        "allow_risks": ["advisory_locks"]}}}"#;
    let held = |sql: &str| two_statements(&format!("BEGIN READ ONLY; {sql}; ROLLBACK"), HELD);
    let cases = [
        // Raw (each): the lock outlives the ROLLBACK of the transaction that took it.
        case(
            "SELECT pg_advisory_lock(11)",
            held("SELECT pg_advisory_lock(11)"),
            "held:11",
            "",
        ),
        case(
            "SELECT pg_try_advisory_lock(12)",
            held("SELECT pg_try_advisory_lock(12)"),
            "held:12",
            "",
        ),
        case(
            "SELECT pg_advisory_lock_shared(13)",
            held("SELECT pg_advisory_lock_shared(13)"),
            "held:13",
            "",
        ),
        case(
            "SELECT '(x,1)'::card AS c",
            held("SELECT '(x,1)'::card AS c"),
            "held:4242",
            "",
        ),
        case(
            "SELECT '[1,3)'::checked_range AS r",
            held("SELECT '[1,3)'::checked_range AS r"),
            "held:4343",
            "",
        ),
        // Raw: an error after the lock rolls the transaction back and keeps the lock.
        // (`id - id`, not `0`: a constant would fail while planning, before the lock.)
        case(
            "SELECT pg_advisory_lock(15), 1 / (id - id) FROM tags",
            held("SELECT pg_advisory_lock(15)"),
            "held:15",
            "division by zero",
        ),
    ];
    // The lock a proof shows is no part of an answer: allowed cases need only succeed.
    check_cases(&live_config(&dir("state"), cluster, policy), &cases, false).await;
}

/// Class 22.7: every built-in that shows other sessions' SQL is a side channel, and custom
/// settings are sensitive unless settings.readable names them.
#[tokio::test]
async fn backend_activity_and_custom_settings_are_protected() {
    let cluster = live();
    let cases = [
        // Raw: the backend's SQL text, with its literals.
        // (The proof runs as the superuser, who may see every backend's text: its own here.)
        case(
            "SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b",
            "RESET ROLE; SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b",
            "pg_stat_get_backend_idset",
            "pg_stat_get_backend_activity",
        ),
        // Raw (each): the value ALTER DATABASE … SET stored.
        case("SHOW app.api_key", "", "sk-live-123", "app.api_key"),
        case(
            "SELECT current_setting('app.api_key')",
            "",
            "sk-live-123",
            "app.api_key",
        ),
        case(
            "SELECT current_setting('app.api_key', true) AS k",
            "",
            "sk-live-123",
            "app.api_key",
        ),
        case(
            "SELECT pg_catalog.current_setting('APP.API_KEY')",
            "",
            "sk-live-123",
            "app.api_key",
        ),
        case("SHOW \"app.api_key\"", "", "sk-live-123", "app.api_key"),
        case(
            "SELECT upper(current_setting('app.api_key')) = 'SK-LIVE-123' AS guessed",
            "SELECT current_setting('app.api_key')",
            "sk-live-123",
            "app.api_key",
        ),
        // Raw: the role's own value (ALTER ROLE … IN DATABASE … SET).
        case(
            "SELECT current_setting('app.role_key', true) AS k",
            "SELECT setconfig::text FROM pg_db_role_setting",
            "rk-live-456",
            "app.role_key",
        ),
        // Built-in settings stay readable.
        case("SHOW work_mem", "", "MB", ""),
        case(
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'",
            "",
            "",
            "",
        ),
    ];
    run_cases(&live_config(&dir("activity"), cluster, POLICY), &cases).await;

    // A custom setting a team lists is readable.
    let readable = r#"{"sqlguard": {"settings": {"readable": ["app.api_*"]}}}"#;
    run_cases(
        &live_config(&dir("readable"), cluster, readable),
        &[case("SHOW app.api_key", "", "sk-live-123", "")],
    )
    .await;
}

/// The side-channel functions are checked against the catalog, not only a hand list: every
/// built-in function of the served PostgreSQL that returns other sessions' SQL text (a `query`
/// result column, or `…activity` returning text) is listed in the bundle's data.
#[test]
fn every_builtin_that_shows_backend_activity_is_listed() {
    let cluster = live();
    let found = cluster.psql(
        DB,
        "SELECT string_agg(DISTINCT 'pg_catalog.' || p.proname, ',') FROM pg_proc p \
         WHERE p.pronamespace = 'pg_catalog'::regnamespace \
           AND (p.proname LIKE '%activity%' AND p.prorettype = 'text'::regtype \
                OR EXISTS (SELECT 1 FROM unnest(p.proargnames, p.proargmodes) AS a(n, m) \
                           WHERE a.n = 'query' AND a.m IN ('o', 't', 'b')))",
    );
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/data.json"))
            .unwrap(),
    )
    .unwrap();
    let listed = &data["sqlguard"]["side_channels"]["functions"];
    let names: Vec<&str> = found.split(',').filter(|n| !n.is_empty()).collect();
    assert!(
        names.contains(&"pg_catalog.pg_stat_get_backend_activity"),
        "{found}"
    );
    for name in names {
        assert_eq!(
            listed[name].as_str(),
            Some("query_texts"),
            "{name} shows other sessions' SQL but side_channels.functions does not list it"
        );
    }
}

/// The false denials found by the same run: operands an extension's operator can never take,
/// and a view over a view that uses only readable columns of the inner one (while views that
/// rename or filter on its denied column stay refused).
#[tokio::test]
async fn operators_and_views_are_not_refused_for_what_cannot_happen() {
    let cluster = live();
    let cases = [
        case("SELECT 1 + 1 AS two", "", "2", ""),
        case("SELECT id + 100 AS n FROM tags", "", "101", ""),
        case(
            "SELECT current_date + 1 > current_date AS later",
            "",
            "t",
            "",
        ),
        case(
            "SELECT name FROM customers WHERE name LIKE 'name1%' ORDER BY id LIMIT 1",
            "",
            "name1",
            "",
        ),
        case("SELECT id FROM tags WHERE id - 1 = 0", "", "1", ""),
        // A view over a view that uses only the inner view's readable columns.
        case(
            "SELECT name FROM names_from_all ORDER BY id LIMIT 1",
            "",
            "name1",
            "",
        ),
        // Raw: the inner view's denied column, renamed by the outer view.
        case(
            "SELECT code FROM ssn_from_all WHERE id = 4",
            "",
            "ssn-000004",
            "public.customers.ssn",
        ),
        // Raw: the outer view filters on the inner view's denied column (an oracle on it).
        case(
            "SELECT name FROM filtered_all ORDER BY name LIMIT 1",
            "",
            "name1",
            "public.customers.ssn",
        ),
        case(
            "SELECT ssn FROM customer_all WHERE id = 5",
            "",
            "ssn-000005",
            "public.customers.ssn",
        ),
        // intarray's operators on an int[] are still judged as intarray's (not trusted).
        case("SELECT ids - 1 FROM tags", "", "{2,3}", "intarray"),
    ];
    run_cases(&live_config(&dir("operators"), cluster, POLICY), &cases).await;
}
