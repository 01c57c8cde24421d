//! Guarded execution against a real PostgreSQL cluster (see `support::cluster`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlguard::execution::{
    Database, DirectDialer, Dsn, ExecError, PoolOptions, QueryResult, RunLimits, SessionSettings,
};

use crate::support::cluster::{Cluster, DB};

const LIMITS: RunLimits = RunLimits {
    max_rows: 1000,
    max_result_bytes: 1 << 20,
    statement_timeout_ms: 10_000,
    work_mem_kb: None,
    temp_file_limit_kb: None,
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

/// The time limit is the session's, set only when a call's limit differs from the last one's;
/// a statement that changes it (or any setting) for the session changes it for nobody: its
/// transaction is rolled back. A failed statement ends its transaction too (the ROLLBACK that
/// was queued behind it is skipped by the server and sent again), so the next call runs.
#[tokio::test]
async fn the_time_limit_is_pinned_per_call_and_no_statement_keeps_a_change_to_it() {
    let db = database(Cluster::shared(), "?sslmode=disable", 1);
    let limit = |ms| RunLimits {
        statement_timeout_ms: ms,
        ..LIMITS
    };
    let show = |ms| {
        let db = db.clone();
        async move {
            let r = db
                .execute(
                    "SELECT current_setting('statement_timeout') AS st, current_setting('search_path') AS sp",
                    limit(ms),
                )
                .await
                .unwrap();
            (rows(&r)[0]["st"].clone(), rows(&r)[0]["sp"].clone())
        }
    };
    assert_eq!(show(4321).await.0, json!("4321ms"));
    // A statement sets both for its session; the next call on the same connection sees neither.
    let r = db
        .execute(
            "SELECT set_config('statement_timeout', '0', false) AS st, set_config('search_path', 'evil', false) AS sp",
            limit(4321),
        )
        .await
        .unwrap();
    assert_eq!(rows(&r)[0]["st"], json!("0"));
    assert_eq!(
        show(4321).await,
        (json!("4321ms"), json!("pg_catalog, public"))
    );
    // Another limit is set; going back sets the first again.
    assert_eq!(show(10_000).await.0, json!("10s"));
    assert_eq!(show(4321).await.0, json!("4321ms"));
    // The limit holds: a statement over it is cancelled by the server.
    let e = db
        .execute("SELECT pg_sleep(2)", limit(200))
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::Timeout { limit_ms: 200 }), "{e:?}");
    // After a failed statement (the timeout, an error) the same connection runs the next call,
    // outside any transaction, under its own limit.
    let e = db.execute("SELECT 1/0", LIMITS).await.unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    assert_eq!(show(4321).await.0, json!("4321ms"));
    let (open, _) = db.status();
    assert_eq!(open, 1, "the one connection was kept through the errors");
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

/// Runs `n` concurrent `SELECT i` calls; returns the errors.
async fn concurrent_calls(db: &Database, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            db.execute(&format!("SELECT {i} AS i, pg_sleep(0.05)"), LIMITS)
                .await
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            errors.push(e.to_string());
        }
    }
    errors
}

/// sqlguard's own sessions on `cluster`, seen from a superuser session.
fn guard_backends(cluster: &Cluster) -> usize {
    cluster
        .psql(
            DB,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sqlguard'",
        )
        .trim()
        .parse()
        .unwrap()
}

/// A restart (`pg_ctl restart -m fast`) under a warm pool of 8, and an administrator ending
/// every idle pooled backend: no call fails afterwards (dead sessions are replaced before a
/// query is sent on them).
#[tokio::test]
async fn restarts_and_killed_idle_sessions_fail_no_call() {
    let cluster = Cluster::start("restart");
    let db = database(&cluster, "?sslmode=disable", 8);
    assert_eq!(concurrent_calls(&db, 8).await, Vec::<String>::new());
    assert_eq!(db.status().0, 8, "the pool is warm");

    cluster.restart();
    assert_eq!(
        concurrent_calls(&db, 8).await,
        Vec::<String>::new(),
        "after a restart"
    );
    assert_eq!(concurrent_calls(&db, 16).await, Vec::<String>::new());

    let killed = cluster.psql(
        DB,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'sqlguard'",
    );
    assert_eq!(killed.trim(), "8");
    // pg_terminate_backend signals; the backends send their FATAL error as they exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard_backends(&cluster) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        concurrent_calls(&db, 8).await,
        Vec::<String>::new(),
        "after pg_terminate_backend"
    );
}

/// Starts `sql` (which must contain `marker`) in the background, waits until PostgreSQL runs
/// it, and returns the call and the backend's pid.
async fn running_query(
    cluster: &Cluster,
    db: &Database,
    sql: &'static str,
    marker: &str,
) -> (
    tokio::task::JoinHandle<Result<QueryResult, ExecError>>,
    String,
) {
    let call = {
        let db = db.clone();
        tokio::spawn(async move { db.execute(sql, LIMITS).await })
    };
    let find = format!(
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = cluster.psql(DB, &find).trim().to_string();
        if !pid.is_empty() {
            return (call, pid);
        }
        assert!(Instant::now() < deadline, "the query never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An administrator's `pg_terminate_backend` on a running query sticks: the call fails once,
/// at once, with PostgreSQL's SQLSTATE and message, and the query is not started again on
/// another session. `pg_cancel_backend` is reported as a cancel, not as a timeout.
#[tokio::test]
async fn an_administrators_kill_sticks_and_is_named() {
    // Its own cluster, logging every statement: the log counts executions.
    let owned = Cluster::start("kill");
    let cluster = &owned;
    cluster.psql(DB, "ALTER SYSTEM SET log_statement = 'all'");
    cluster.psql(DB, "SELECT pg_reload_conf()");
    let db = database(cluster, "?sslmode=disable", 2);
    // Warm: the call below runs on a reused session (the case the old retry re-ran).
    db.execute("SELECT 1", LIMITS).await.unwrap();

    let started = Instant::now();
    let (call, pid) = running_query(
        cluster,
        &db,
        "SELECT pg_sleep(8) AS kill_me_once",
        "kill_me_once",
    )
    .await;
    cluster.psql(DB, &format!("SELECT pg_terminate_backend({pid})"));
    let e = call.await.unwrap().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call took {:?}: it was run again",
        started.elapsed()
    );
    assert!(matches!(e, ExecError::Terminated(_)), "{e}");
    assert_eq!(pg_code(&e), "57P01", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("terminating connection due to administrator command")
            && text.contains("not sent again"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let again = cluster.psql(DB, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%kill_me_once%' AND pid <> pg_backend_pid()");
    assert_eq!(again.trim(), "0", "the killed query was started again");
    let server_log = std::fs::read_to_string(cluster.local.dir.join("log")).unwrap();
    let runs = server_log
        .lines()
        .filter(|l| l.contains("execute") && l.contains("AS kill_me_once"))
        .count();
    assert_eq!(runs, 1, "the killed query ran {runs} times");
    // The pool goes on.
    db.execute("SELECT 2", LIMITS).await.unwrap();

    let (call, pid) =
        running_query(cluster, &db, "SELECT pg_sleep(8) AS cancel_me", "cancel_me").await;
    cluster.psql(DB, &format!("SELECT pg_cancel_backend({pid})"));
    let e = call.await.unwrap().unwrap_err();
    assert!(matches!(e, ExecError::Cancelled { .. }), "{e}");
    assert_eq!(pg_code(&e), "57014");
    assert!(e.to_string().contains("before its time limit"), "{e}");
}

/// A listener that accepts TCP and never answers (a stalled route) is a connect timeout,
/// named as such within its configured time, not a busy pool.
#[tokio::test]
async fn a_silent_database_is_a_connect_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(4) {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let dsn = Dsn::parse(&format!(
        "postgres://u:p@127.0.0.1:{port}/db?sslmode=disable"
    ))
    .unwrap();
    let db = Database::with_options(
        DirectDialer::new(dsn).unwrap().endpoint(),
        SessionSettings::default(),
        PoolOptions {
            size: 1,
            connect_timeout: Duration::from_millis(800),
            ..PoolOptions::default()
        },
    );
    let started = Instant::now();
    let e = db.execute("SELECT 1", LIMITS).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, ExecError::ConnectTimeout { limit_ms: 800, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("connect_timeout_ms"), "{e}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

/// Unused connections are closed after the idle time: an idle server holds no backend.
#[tokio::test]
async fn idle_connections_are_closed() {
    let cluster = Cluster::start("idle");
    let dsn = Dsn::parse(&cluster.dsn("?sslmode=disable")).unwrap();
    let db = Database::with_options(
        DirectDialer::new(dsn).unwrap().endpoint(),
        SessionSettings::default(),
        PoolOptions {
            size: 3,
            idle_timeout: Duration::from_secs(1),
            ..PoolOptions::default()
        },
    );
    assert_eq!(concurrent_calls(&db, 3).await, Vec::<String>::new());
    assert_eq!(guard_backends(&cluster), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while guard_backends(&cluster) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(guard_backends(&cluster), 0, "idle connections were kept");
    assert_eq!(db.status().0, 0);
    // And the pool opens new ones on demand.
    db.execute("SELECT 1", LIMITS).await.unwrap();
}

/// A value larger than the byte budget is skipped on the wire, and the result says which
/// row and column.
#[tokio::test]
async fn an_oversized_value_is_skipped_and_named() {
    let db = shared();
    let limits = RunLimits {
        max_result_bytes: 100_000,
        ..LIMITS
    };
    let r = db
        .execute(
            "SELECT g AS n, CASE WHEN g = 3 THEN repeat('x', 5000000) ELSE 'small' END AS body FROM generate_series(1, 5) g",
            limits,
        )
        .await
        .unwrap();
    assert_eq!(rows(&r).len(), 2);
    assert_eq!(r.truncated_by, Some("max_result_bytes"));
    let big = r.oversized_row.as_ref().expect("the skipped row is named");
    assert_eq!((big.row, big.column.as_str()), (3, "body"));
    assert_eq!(big.column_bytes, 5_000_000);
}

/// Passes bytes from `r` to `w` until `stall` is set; then holds them for ever.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 8192];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stall.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP route to PostgreSQL at `target` that stalls, both ways, once `stall` is set.
async fn stalling_route(target: u16, stall: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let ((cr, cw), (sr, sw)) = (client.into_split(), server.into_split());
            tokio::spawn(pump(cr, sw, stall.clone()));
            tokio::spawn(pump(sr, cw, stall.clone()));
        }
    });
    port
}

/// A route that stops answering is reported as such, not as a slow query to narrow down.
#[tokio::test]
async fn a_stalled_route_is_not_a_slow_query() {
    let cluster = Cluster::shared();
    let stall = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = stalling_route(cluster.port, stall.clone()).await;
    let dsn = cluster
        .dsn("?sslmode=disable")
        .replace(&format!(":{}/", cluster.port), &format!(":{port}/"));
    let db = Database::new(
        DirectDialer::new(Dsn::parse(&dsn).unwrap())
            .unwrap()
            .endpoint(),
        SessionSettings::default(),
        1,
    );
    db.execute("SELECT 1", LIMITS).await.unwrap();
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let limits = RunLimits {
        statement_timeout_ms: 300,
        ..LIMITS
    };
    let started = Instant::now();
    let e = db.execute("SELECT 1", limits).await.unwrap_err();
    assert!(matches!(e, ExecError::NoAnswer { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("did not answer at all") && !text.contains("LIMIT"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A slow query on a working route is still a slow query.
    let e = shared()
        .execute("SELECT pg_sleep(2)", limits)
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::Timeout { .. }), "{e}");
}
