//! Guarded execution against a real PostgreSQL cluster (see `support::cluster`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlguard::execution::{
    Database, DirectDialer, Dsn, ExecError, QueryResult, RunLimits, SessionSettings,
};

use crate::support::cluster::{Cluster, DB};

const LIMITS: RunLimits = RunLimits {
    max_rows: 1000,
    max_result_bytes: 1 << 20,
    statement_timeout_ms: 10_000,
};

fn database(cluster: &Cluster, params: &str, pool: usize) -> Database {
    let dsn = Dsn::parse(&cluster.dsn(params)).unwrap();
    Database::new(
        DirectDialer::new(dsn).unwrap().endpoint(),
        SessionSettings::default(),
        pool,
    )
}

fn shared() -> Database {
    database(Cluster::shared(), "?sslmode=disable", 4)
}

fn rows(r: &QueryResult) -> &Vec<serde_json::Map<String, Value>> {
    r.rows.as_ref().expect("rows")
}

fn pg_code(e: &ExecError) -> &str {
    e.pg().map(|p| p.code.as_str()).unwrap_or("")
}

/// With the policy bypassed, PostgreSQL itself refuses every write and a second statement.
#[tokio::test]
async fn the_transaction_refuses_writes_without_the_guard() {
    let cluster = Cluster::shared();
    let db = shared();
    let before = cluster.psql(
        DB,
        "SELECT count(*) || '/' || (SELECT last_value FROM counter) FROM users",
    );

    let e = db
        .execute("COMMIT; DROP TABLE users", LIMITS)
        .await
        .unwrap_err();
    assert_eq!(pg_code(&e), "42601", "{e}");
    assert!(
        e.to_string()
            .contains("cannot insert multiple commands into a prepared statement"),
        "{e}"
    );

    for sql in [
        "DELETE FROM users",
        "INSERT INTO users (name) VALUES ('x')",
        "UPDATE users SET name = 'x'",
        "SELECT nextval('counter')",
        "SELECT * FROM users FOR UPDATE",
        "CREATE TABLE t (a int)",
        "SELECT * INTO copy_of_users FROM users",
    ] {
        let e = db.execute(sql, LIMITS).await.unwrap_err();
        assert_eq!(pg_code(&e), "25006", "{sql}: {e}");
        assert!(
            e.to_string().contains("read-only transaction"),
            "{sql}: {e}"
        );
    }
    // Changing the transaction mode is refused too, or undone by the ROLLBACK.
    let e = db.execute("SET TRANSACTION READ WRITE", LIMITS).await;
    assert!(e.is_err() || db.execute("DELETE FROM users", LIMITS).await.is_err());

    let after = cluster.psql(
        DB,
        "SELECT count(*) || '/' || (SELECT last_value FROM counter) FROM users",
    );
    assert_eq!(before, after, "a second connection sees a change");
}

#[tokio::test]
async fn a_slow_query_is_cancelled_and_the_pool_recovers() {
    let db = shared();
    let start = Instant::now();
    let limits = RunLimits {
        statement_timeout_ms: 200,
        ..LIMITS
    };
    let e = db.execute("SELECT pg_sleep(10)", limits).await.unwrap_err();
    assert!(matches!(e, ExecError::Timeout { limit_ms: 200 }), "{e}");
    assert!(e.to_string().contains("statement_timeout_ms"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let r = db.execute("SELECT 1 AS one", LIMITS).await.unwrap();
    assert_eq!(rows(&r)[0]["one"], json!(1));
}

#[tokio::test]
async fn large_results_are_capped_in_bounded_time() {
    let db = shared();
    let start = Instant::now();
    let r = db
        .execute(
            "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 500000) g",
            LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(rows(&r).len(), 1000);
    assert!(r.truncated);
    assert_eq!(r.truncated_by, Some("max_rows"));
    // The server stopped at the row limit: only about 1,000 rows crossed the wire.
    assert!(r.bytes < 200_000, "{} bytes read", r.bytes);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    let limits = RunLimits {
        max_result_bytes: 10_000,
        ..LIMITS
    };
    let r = db
        .execute(
            "SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 500000) g",
            limits,
        )
        .await
        .unwrap();
    assert!(r.truncated);
    assert_eq!(r.truncated_by, Some("max_result_bytes"));
    assert!(serde_json::to_string(&r.rows).unwrap().len() < 20_000);

    let r = db.execute("SELECT 1 WHERE false", LIMITS).await.unwrap();
    assert_eq!(rows(&r).len(), 0);
    assert!(!r.truncated);
    let exact = RunLimits {
        max_rows: 3,
        ..LIMITS
    };
    let r = db
        .execute("SELECT * FROM generate_series(1, 3)", exact)
        .await
        .unwrap();
    assert!(!r.truncated, "exactly max_rows rows is not truncated");
}

#[tokio::test]
async fn every_type_renders_faithfully() {
    let db = shared();
    let r = db.execute("SELECT * FROM all_types", LIMITS).await.unwrap();
    let row = &rows(&r)[0];
    let expect = json!({
        "i2": -32768, "i4": 2147483647, "i8": 9223372036854775807i64, "f4": 1.5, "f8": 2.25,
        "f8_nan": "NaN", "f8_inf": "-Infinity",
        "num": "12345678901234567890.123456789",
        "big_num": "10000000000000000000000000000000000000000",
        "b": true, "t": "héllo \"world\"", "vc": "v", "ch": "ab ",
        "js": {"a": [1, 2]}, "jsb": {"k": {"n": null}},
        "i4_arr": [1, null, 3], "t_arr": ["a b", "c\"d", null], "nested": [[1, 2], [3, 4]],
        "d": "2024-02-29", "ts": "2024-01-02T03:04:05.123456", "tstz": "2024-01-02T01:04:05+00:00",
        "tm": "13:14:15", "iv": "P1Y2M3DT4H5M6S", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "ip": "192.168.0.1/24", "cidr_": "10.0.0.0/8", "mac": "08:00:2b:01:02:03",
        "by": "\\xdeadbeef", "mood_": "happy", "pos": 7, "pr": "(1,x)", "hs": "\"a\"=>\"1\"",
        "nul": null, "tsv": "'cat' 'fat'", "pt": "(1,2)"
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(row.get(k), Some(v), "column {k}");
    }
    assert_eq!(row.len(), expect.as_object().unwrap().len());
}

#[tokio::test]
async fn duplicate_column_names_stay_distinguishable() {
    let r = shared()
        .execute("SELECT 1 AS a, 2 AS a, 3 AS a_2, 4", LIMITS)
        .await
        .unwrap();
    assert_eq!(r.columns, ["a", "a_2", "a_2_2", "?column?"]);
    assert_eq!(rows(&r)[0]["a_2"], json!(2));
}

#[tokio::test]
async fn errors_keep_sqlstate_message_and_position() {
    let db = shared();
    let e = db
        .execute("SELECT * FROM no_such_table", LIMITS)
        .await
        .unwrap_err();
    let pg = e.pg().unwrap();
    assert_eq!(pg.code, "42P01");
    assert_eq!(pg.message, "relation \"no_such_table\" does not exist");
    assert_eq!(pg.position, Some(15));
    let e = db.execute("SELECT 1/0", LIMITS).await.unwrap_err();
    assert_eq!(pg_code(&e), "22012");
    let e = db
        .execute("SELECT nme FROM users", LIMITS)
        .await
        .unwrap_err();
    assert!(
        e.pg().unwrap().hint.is_some() || e.pg().unwrap().message.contains("nme"),
        "{e}"
    );
    // The session is clean afterwards.
    assert!(db.execute("SELECT 1", LIMITS).await.is_ok());
}

#[tokio::test]
async fn statements_without_rows_have_null_data() {
    let r = shared().execute("SHOW search_path", LIMITS).await.unwrap();
    assert_eq!(rows(&r)[0]["search_path"], json!("pg_catalog, public"));
    let r = shared().execute("", LIMITS).await.unwrap();
    assert!(r.rows.is_none());
    let j = sqlguard::execution::result_json(&r);
    assert_eq!(j["data"], Value::Null);
    assert_eq!(j["rowsCount"], json!(0));
}

#[tokio::test]
async fn sessions_are_pinned() {
    let r = shared()
        .execute(
            "SELECT current_setting('default_transaction_read_only') AS ro, current_setting('standard_conforming_strings') AS scs, current_setting('application_name') AS app, current_setting('transaction_read_only') AS txro, current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('idle_in_transaction_session_timeout') AS it",
            RunLimits { statement_timeout_ms: 4321, ..LIMITS },
        )
        .await
        .unwrap();
    let row = &rows(&r)[0];
    assert_eq!(row["ro"], json!("on"));
    assert_eq!(row["txro"], json!("on"));
    assert_eq!(row["scs"], json!("on"));
    assert_eq!(row["app"], json!("sqlguard"));
    assert_eq!(row["st"], json!("4321ms"));
    assert_eq!(row["lt"], json!("5s"));
    assert_eq!(row["it"], json!("1min"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_queries_share_a_pool_of_four() {
    let db = shared();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.execute(&format!("SELECT {i} AS i, pg_sleep(0.01)"), LIMITS)
                .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap().unwrap();
        assert_eq!(rows(&r)[0]["i"], json!(i));
    }
    let (open, _) = db.status();
    assert!(open <= 4, "{open} connections");
}

#[tokio::test]
async fn queries_work_again_after_a_server_restart() {
    let cluster = Cluster::start("restart");
    let db = database(&cluster, "?sslmode=disable", 2);
    db.execute("SELECT 1", LIMITS).await.unwrap();
    cluster.restart();
    // The pooled session died with the server: the next call succeeds on a new session, or
    // fails with a clear error; the one after succeeds.
    match db.execute("SELECT 1", LIMITS).await {
        Ok(_) => {}
        Err(e) => assert!(matches!(e, ExecError::ConnectionLost(_)), "{e}"),
    }
    db.execute("SELECT 2", LIMITS).await.unwrap();
}

#[tokio::test]
async fn tls_modes() {
    let cluster = Cluster::shared();
    let ca = cluster.ca_file.display();
    // The server certificate names `localhost` only.
    let full = format!("?sslmode=verify-full&sslrootcert={ca}");
    let by_name = Dsn::parse(&cluster.dsn(&full).replace("127.0.0.1", "localhost")).unwrap();
    let db = Database::new(
        DirectDialer::new(by_name).unwrap().endpoint(),
        SessionSettings::default(),
        1,
    );
    let r = db
        .execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            LIMITS,
        )
        .await
        .unwrap();
    assert_eq!(rows(&r)[0]["ssl"], json!(true));

    let wrong_name = database(cluster, &full, 1);
    let e = wrong_name.execute("SELECT 1", LIMITS).await.unwrap_err();
    assert!(
        matches!(e, ExecError::Connect { .. }) && e.to_string().contains("TLS handshake failed"),
        "{e}"
    );

    let ca_only = database(cluster, &format!("?sslmode=verify-ca&sslrootcert={ca}"), 1);
    ca_only.execute("SELECT 1", LIMITS).await.unwrap();

    let other_ca =
        std::env::temp_dir().join(format!("sqlguard-other-ca-{}.pem", std::process::id()));
    std::fs::write(&other_ca, crate::support::cluster::new_ca("another CA").1).unwrap();
    let untrusted = database(
        cluster,
        &format!("?sslmode=verify-ca&sslrootcert={}", other_ca.display()),
        1,
    );
    assert!(untrusted.execute("SELECT 1", LIMITS).await.is_err());

    database(cluster, "?sslmode=require", 1)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_clear_connect_error() {
    let cluster = Cluster::shared();
    let dsn = Dsn::parse(
        &cluster
            .dsn("?sslmode=disable")
            .replace("writer-secret", "nope"),
    )
    .unwrap();
    let db = Database::new(
        DirectDialer::new(dsn).unwrap().endpoint(),
        SessionSettings::default(),
        1,
    );
    let e = db.execute("SELECT 1", LIMITS).await.unwrap_err();
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
}
