//! The decision hot path and the cost of the guard at execution.
//!
//!   cargo bench --bench decision            (all)
//!   cargo bench --bench decision -- analysis/join
//!   cargo bench --bench decision -- 'stream/|cli/'   (the decision cache on streams)
//!
//! `policy/…` and `decision/…` evaluate the bundle every time (no decision cache);
//! `decision/hit/…` is the same call repeated (served by the cache), `decision/miss/…` a call
//! the cache holds no decision for (looked up, evaluated, stored).
//!
//! Execution benches start a throwaway PostgreSQL (see `sqlguard::demo::cluster`).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sqlguard::analysis::variants::Constants;
use sqlguard::analysis::{analyze_with, AnalysisOptions};
use sqlguard::policy::{Bundle, Identity, Policy, PolicyInput};

mod workload;
use workload::{query_input, tpch, BENCH_SCHEMA, JOIN, POINT};

fn big_query() -> String {
    let cols: Vec<String> = (0..60)
        .map(|i| format!("coalesce(t{}.c{i}, 0) AS c{i}", i % 6))
        .collect();
    let joins: Vec<String> = (1..6)
        .map(|i| format!("LEFT JOIN table_{i} t{i} ON t{i}.id = t0.id AND t{i}.kind = 'k{i}'"))
        .collect();
    format!("SELECT {} FROM table_0 t0 {} WHERE t0.created_at > '2024-01-01' AND t0.id IN (SELECT id FROM audit WHERE ok) ORDER BY 1 LIMIT 100", cols.join(", "), joins.join(" "))
}

fn nested_query(depth: usize) -> String {
    format!(
        "SELECT * FROM {}users{}",
        "(SELECT * FROM ".repeat(depth),
        ") s".repeat(depth)
    )
}

fn inputs() -> Vec<(String, String)> {
    let mut v = vec![
        ("point".to_string(), POINT.to_string()),
        ("join".to_string(), JOIN.to_string()),
        ("3kb".to_string(), big_query()),
        ("nested40".to_string(), nested_query(40)),
    ];
    v.extend(tpch().into_iter().map(|(n, s)| (format!("tpch/{n}"), s)));
    v
}

fn policy_with(cache_entries: usize) -> Policy {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    Policy::with_cache(Bundle::load(&[dir], &[]).unwrap(), cache_entries).unwrap()
}

/// The default bundle evaluated by regorus' interpreter (the reference), without a cache.
fn interpreted(cache_entries: usize) -> Policy {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut bundle = Bundle::load(&[dir], &[]).unwrap();
    bundle.evaluator = sqlguard::policy::Evaluator::Interpreter;
    Policy::with_cache(bundle, cache_entries).unwrap()
}

/// The default bundle as served (the default decision cache).
fn policy() -> Policy {
    policy_with(sqlguard::policy::DEFAULT_CACHE_ENTRIES)
}

fn hot_path(c: &mut Criterion) {
    decision_steps(c);
    analysis_parts(c);
}

/// Each input through the analysis, the policy (compiled and interpreted), and the whole
/// decision: a cache hit and a miss.
fn decision_steps(c: &mut Criterion) {
    let opts = AnalysisOptions::default();
    let cached = policy();
    let policy = policy_with(0);
    assert_eq!(policy.evaluator(), sqlguard::policy::Evaluator::Compiled);
    let reference = interpreted(0);
    // One entry: two calls that alternate always miss.
    let one_entry = policy_with(1);
    let bob = Identity {
        user: "bob".into(),
        ..Identity::default()
    };
    let identity = Identity {
        user: "alice".into(),
        roles: vec!["dev".into()],
        traits: Default::default(),
        ..Default::default()
    };
    for (name, sql) in inputs() {
        assert!(
            policy
                .check(&sql, &opts, None, &identity, "teleport_postgres_query")
                .decision
                .allow,
            "{name} is not allowed"
        );
        c.bench_with_input(BenchmarkId::new("analysis", &name), &sql, |b, sql| {
            b.iter(|| analyze_with(black_box(sql), &opts).unwrap())
        });
        // The reference path: libpg_query's JSON text, read back (the JSON reader).
        c.bench_with_input(BenchmarkId::new("analysis/json", &name), &sql, |b, sql| {
            b.iter(|| sqlguard::analysis::analyze_json_with(black_box(sql), &opts).unwrap())
        });
        let facts = analyze_with(&sql, &opts).unwrap();
        let input = query_input(&facts, &identity);
        c.bench_with_input(BenchmarkId::new("policy", &name), &input, |b, input| {
            b.iter(|| policy.decide(black_box(input)))
        });
        c.bench_with_input(
            BenchmarkId::new("policy/interpreter", &name),
            &input,
            |b, input| b.iter(|| reference.decide(black_box(input))),
        );
        c.bench_with_input(BenchmarkId::new("decision", &name), &sql, |b, sql| {
            b.iter(|| {
                policy.check(
                    black_box(sql),
                    &opts,
                    None,
                    &identity,
                    "teleport_postgres_query",
                )
            })
        });
        c.bench_with_input(BenchmarkId::new("decision/hit", &name), &sql, |b, sql| {
            b.iter(|| {
                let checked = cached.check(
                    black_box(sql),
                    &opts,
                    None,
                    &identity,
                    "teleport_postgres_query",
                );
                debug_assert!(checked.cached);
                checked
            })
        });
        let mut turn = false;
        c.bench_with_input(BenchmarkId::new("decision/miss", &name), &sql, |b, sql| {
            b.iter(|| {
                turn = !turn;
                let who = if turn { &identity } else { &bob };
                let checked =
                    one_entry.check(black_box(sql), &opts, None, who, "teleport_postgres_query");
                debug_assert!(!checked.cached);
                checked
            })
        });
    }
}

/// The analysis' parts on the join: the parse, the arena, the scanner, the shape key, the
/// traced analysis; and pg_query's own parse and summary as baselines.
fn analysis_parts(c: &mut Criterion) {
    c.bench_function("analysis-parts/events/join", |b| {
        b.iter(|| sqlguard::analysis::raw::parse(black_box(JOIN)).unwrap())
    });
    // The raw path's parts (ids kept from when C wrote events): libpg_query's parse writing the
    // arena, and the arena's check before the walk.
    let events = sqlguard::analysis::raw::parse(JOIN).unwrap();
    c.bench_function("analysis-parts/tree/join", |b| {
        b.iter(|| {
            sqlguard::analysis::raw::tree(black_box(&events))
                .unwrap()
                .members(0)
                .len()
        })
    });
    c.bench_function("analysis-parts/events+tree/join", |b| {
        b.iter(|| {
            let e = sqlguard::analysis::raw::parse(black_box(JOIN)).unwrap();
            sqlguard::analysis::raw::tree(&e).unwrap().members(0).len()
        })
    });
    // The shape cache's parts: the scanner's tokens and the shape key (a hit's cost before
    // the lookup), and the analysis that records which constants it read (a miss's).
    c.bench_function("analysis-parts/scan/join", |b| {
        b.iter(|| {
            sqlguard::analysis::raw::scan(black_box(JOIN))
                .unwrap()
                .tokens()
                .len()
        })
    });
    c.bench_function("analysis-parts/shape-key/join", |b| {
        let mut key = Vec::new();
        b.iter(|| {
            key.clear();
            sqlguard::analysis::shape::Shape::scan(black_box(JOIN))
                .unwrap()
                .key(&mut key);
            key.len()
        })
    });
    c.bench_function("analysis/traced/join", |b| {
        let opts = AnalysisOptions::default();
        b.iter(|| sqlguard::analysis::analyze_traced(black_box(JOIN), &opts).unwrap())
    });
    c.bench_function("baseline/pg_query::parse/join", |b| {
        b.iter(|| pg_query::parse(black_box(JOIN), 0).unwrap())
    });
    c.bench_function("baseline/pg_query::summary/join", |b| {
        b.iter(|| pg_query::summary(black_box(JOIN), 0, -1).unwrap())
    });
}

/// TPC-H's 22 queries, each sent 100 times with fresh constants, in turn.
fn tpch_fresh_constants() -> Vec<String> {
    let templates = tpch();
    let mut constants = Constants::new(22);
    (0..100)
        .flat_map(|_| templates.iter().map(|(_, sql)| sql.clone()))
        .map(|sql| constants.refresh(&sql).unwrap_or(sql))
        .collect()
}

/// Statements of PostgreSQL's regression SQL, each of a shape the stream has not seen.
fn never_seen_shapes() -> Vec<String> {
    workload::never_seen_shapes(2000)
        .into_iter()
        .map(|(sql, _)| sql)
        .collect()
}

/// Per decision over a stream of calls, as an agent sends them: TPC-H with fresh constants
/// (the cache's case) and never-seen shapes (each one a miss).
fn streams(c: &mut Criterion) {
    let opts = AnalysisOptions::default();
    let identity = Identity::default();
    for (name, stream, policy) in [
        (
            "stream/tpch-fresh-constants",
            tpch_fresh_constants(),
            policy(),
        ),
        (
            "stream/tpch-fresh-constants/no-cache",
            tpch_fresh_constants(),
            policy_with(0),
        ),
        (
            "stream/never-seen-shapes",
            never_seen_shapes(),
            policy_with(1),
        ),
        (
            "stream/never-seen-shapes/interpreter",
            never_seen_shapes(),
            interpreted(1),
        ),
    ] {
        if stream.is_empty() {
            continue;
        }
        let mut next = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % stream.len();
                policy.check(
                    black_box(&stream[next]),
                    &opts,
                    None,
                    &identity,
                    "teleport_postgres_query",
                )
            })
        });
    }
    cli_stream();
}

/// `sqlguard check --jsonl` over the TPC-H stream with fresh constants and over never-seen
/// shapes: per decision, the start-up (a one-line run) subtracted; best of five. Beside it, in
/// the same run, the pglast-based peer guards over the same streams when `scripts/peer-bench`
/// has installed them. Printed, not criterion rows.
fn cli_stream() {
    // Kept after the run, for profiling (`sqlguard check --jsonl < target/bench-streams/…`).
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-streams");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, stream) in [
        ("tpch-fresh-constants", tpch_fresh_constants()),
        ("never-seen-shapes", never_seen_shapes()),
    ] {
        if stream.len() < 2 {
            continue;
        }
        let write = |file: &str, lines: &[String]| {
            let path = dir.join(file);
            let text: String = lines
                .iter()
                .map(|sql| format!("{}\n", serde_json::json!({ "sql": sql })))
                .collect();
            std::fs::write(&path, text).unwrap();
            path
        };
        let all = write(&format!("{name}.jsonl"), &stream);
        let one = write(&format!("{name}-first.jsonl"), &stream[..1]);
        let time = |path: &PathBuf| {
            (0..5)
                .map(|_| {
                    let started = std::time::Instant::now();
                    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
                        .args(["check", "--jsonl"])
                        .stdin(std::fs::File::open(path).unwrap())
                        .output()
                        .unwrap();
                    assert!(!out.stdout.is_empty());
                    started.elapsed()
                })
                .min()
                .unwrap()
        };
        let (t_all, t_one) = (time(&all), time(&one));
        println!(
            "cli/check --jsonl/{name}: {:.1} µs per decision ({} decisions in {:.1} ms, start-up {:.1} ms subtracted)",
            (t_all.saturating_sub(t_one)).as_secs_f64() * 1e6 / (stream.len() - 1) as f64,
            stream.len(),
            t_all.as_secs_f64() * 1e3,
            t_one.as_secs_f64() * 1e3,
        );
        peers(name, &all);
    }
}

/// The pglast-based peers (Postgres MCP Pro, the awslabs Postgres MCP server) over a stream,
/// with the interpreters `scripts/peer-bench` installs under `target/peer-bench`.
fn peers(stream: &str, path: &std::path::Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for peer in ["postgres-mcp", "awslabs"] {
        let python = root.join("target/peer-bench").join(peer).join("bin/python");
        if !python.exists() {
            println!(
                "peers/{peer}/{stream}: not installed (scripts/peer-bench --install): SKIPPED"
            );
            continue;
        }
        match std::process::Command::new(&python)
            .arg(root.join("benches/peers.py"))
            .arg(peer)
            .arg(path)
            .output()
        {
            Ok(out) if out.status.success() => {
                print!("peers/{stream}/{}", String::from_utf8_lossy(&out.stdout))
            }
            Ok(out) => println!(
                "peers/{peer}/{stream}: failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => println!(
                "peers/{peer}/{stream}: cannot run {}: {e}",
                python.display()
            ),
        }
    }
}

fn execution(c: &mut Criterion) {
    use sqlguard::demo::cluster::{ClusterOptions, LocalCluster};
    use sqlguard::execution::{Database, DirectDialer, Dsn, RunLimits, SessionSettings};
    let cluster = match LocalCluster::start(&ClusterOptions {
        tag: "bench".into(),
        host_auth: "trust".into(),
        ..Default::default()
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("!!!!! no PostgreSQL for the execution benches ({e}): SKIPPED !!!!!");
            return;
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dsn = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let db = Database::new(
        DirectDialer::new(Dsn::parse(&dsn).unwrap())
            .unwrap()
            .endpoint(),
        SessionSettings::default(),
        1,
    );
    let (client, conn) = rt
        .block_on(tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                cluster.port
            ),
            tokio_postgres::NoTls,
        ))
        .unwrap();
    rt.spawn(conn);
    let limits = RunLimits {
        max_rows: 1000,
        max_result_bytes: 1 << 20,
        statement_timeout_ms: 30_000,
        work_mem_kb: None,
        temp_file_limit_kb: None,
    };
    catalog_snapshot(c, &rt, &cluster, &db);
    let policy = policy();
    let opts = AnalysisOptions::default();
    let identity = Identity::default();
    for (name, sql) in [
        ("select1", "SELECT 1"),
        (
            "rows1000",
            "SELECT g, 'row ' || g AS label FROM generate_series(1, 1000) g",
        ),
    ] {
        c.bench_function(&format!("execution/unguarded/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { client.query_typed(sql, &[]).await.unwrap() })
        });
        c.bench_function(&format!("execution/guarded/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { db.execute(sql, limits).await.unwrap() })
        });
        c.bench_function(&format!("execution/guarded+decision/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let checked = policy.check(sql, &opts, None, &identity, "teleport_postgres_query");
                assert!(checked.decision.allow);
                db.execute(sql, limits).await.unwrap()
            })
        });
    }
    interleaved(&rt, &client, &db, &policy, limits);
    plan_step(c, &rt, &db, &cluster, limits);
    masking(c, &rt, &db, &cluster, limits);
    drop(cluster);
}

/// A 1,000-row result read with and without masks (email, last4, hash, a format of the
/// team's own on four of its six columns), in the same run.
fn masking(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    db: &sqlguard::execution::Database,
    cluster: &sqlguard::demo::cluster::LocalCluster,
    limits: sqlguard::execution::RunLimits,
) {
    use sqlguard::execution::MaskPlan;
    use sqlguard::policy::{MaskDecision, MaskSpec};
    if let Err(e) = cluster.psql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS masked_people AS SELECT g AS id, 'Name ' || g AS name, \
         'person' || g || '@example.com' AS email, lpad(g::text, 9, '0') AS ssn, \
         '555-' || lpad(g::text, 4, '0') AS phone, 'City ' || (g % 17) AS city \
         FROM generate_series(1, 1000) g",
    ) {
        eprintln!("!!!!! cannot create the masked table ({e}): masking benches SKIPPED !!!!!");
        return;
    }
    let snapshot = std::sync::Arc::new(rt.block_on(db.read_catalog()).unwrap());
    let column = |c: &str| format!("public.masked_people.{c}");
    let partial = |keep_first, keep_last, fill: &str| MaskSpec::Partial {
        keep_first,
        keep_last,
        fill: fill.into(),
    };
    let plan = |masks: Vec<(&str, MaskSpec)>| {
        let decision = MaskDecision {
            columns: masks.into_iter().map(|(c, m)| (column(c), m)).collect(),
            projected: vec![column("email")],
        };
        let key = Some(std::sync::Arc::from(&b"bench key"[..]));
        MaskPlan::new(&decision, Some(&snapshot), key).unwrap()
    };
    // Two masked columns of six, as a customer table has; and four, a hash among them.
    let two = plan(vec![
        ("email", MaskSpec::Email),
        ("ssn", partial(0, 4, "*")),
    ]);
    let four = plan(vec![
        ("email", MaskSpec::Email),
        ("ssn", partial(0, 4, "*")),
        ("name", partial(1, 0, ".")),
        ("phone", MaskSpec::Hash),
    ]);
    let sql = "SELECT * FROM masked_people";
    for (p, n) in [(&two, 2), (&four, 4)] {
        let masked = rt.block_on(db.execute_masked(sql, limits, p)).unwrap();
        assert_eq!(masked.masked.len(), n, "{:?}", masked.masked);
    }
    c.bench_function("masking/unmasked/rows1000", |b| {
        b.to_async(rt)
            .iter(|| async { db.execute(sql, limits).await.unwrap() })
    });
    for (name, p) in [("email+last4", &two), ("four+hash", &four)] {
        c.bench_function(&format!("masking/{name}/rows1000"), |b| {
            b.to_async(rt)
                .iter(|| async { db.execute_masked(sql, limits, p).await.unwrap() })
        });
    }
}

/// `SELECT 1` unguarded, guarded, and guarded with its decision, one call of each in turn,
/// 3,000 rounds: the three medians and their ratios to the unguarded call. Interleaving makes
/// the machine's drift (large on a shared VM) fall on the three alike. Printed, not rows.
fn interleaved(
    rt: &tokio::runtime::Runtime,
    client: &tokio_postgres::Client,
    db: &sqlguard::execution::Database,
    policy: &Policy,
    limits: sqlguard::execution::RunLimits,
) {
    let (opts, identity, sql) = (AnalysisOptions::default(), Identity::default(), "SELECT 1");
    let mut times: [Vec<std::time::Duration>; 3] = Default::default();
    rt.block_on(async {
        for round in 0..3_100 {
            let t = std::time::Instant::now();
            client.query_typed(sql, &[]).await.unwrap();
            let unguarded = t.elapsed();
            let t = std::time::Instant::now();
            db.execute(sql, limits).await.unwrap();
            let guarded = t.elapsed();
            let t = std::time::Instant::now();
            let checked = policy.check(sql, &opts, None, &identity, "teleport_postgres_query");
            assert!(checked.decision.allow);
            db.execute(sql, limits).await.unwrap();
            let decided = t.elapsed();
            if round >= 100 {
                for (v, d) in times.iter_mut().zip([unguarded, guarded, decided]) {
                    v.push(d);
                }
            }
        }
    });
    let [u, g, d] = times.map(|mut v| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    });
    println!(
        "execution/interleaved/select1: unguarded {u:.1} µs, guarded {g:.1} µs ({:.2}×), guarded+decision {d:.1} µs ({:.2}×) (medians of 3,000 rounds)",
        g / u,
        d / u
    );
}

/// The plan step's cost on a point query (`SELECT … WHERE id = $const` on a 100 k-row
/// table): decision + guarded execution, without and with the prod example's plan step
/// (EXPLAIN in the same transaction, relations described from the cache, a second
/// decision with `input.plan`).
fn plan_step(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    db: &sqlguard::execution::Database,
    cluster: &sqlguard::demo::cluster::LocalCluster,
    limits: sqlguard::execution::RunLimits,
) {
    use sqlguard::policy::DatabaseContext;
    if let Err(e) = cluster.psql(
        "postgres",
        "CREATE SCHEMA analytics; CREATE TABLE analytics.events (id bigint PRIMARY KEY, kind int, payload text); \
         INSERT INTO analytics.events SELECT g, g % 97, md5(g::text) FROM generate_series(1, 100000) g; ANALYZE analytics.events",
    ) {
        eprintln!("!!!!! cannot build the plan bench's table ({e}): SKIPPED !!!!!");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = [root.join("policies"), root.join("policies/examples/prod")];
    let prod = Policy::new(Bundle::load(&dirs, &[]).unwrap()).unwrap();
    let opts = AnalysisOptions::default();
    let identity = Identity::default();
    let database = DatabaseContext {
        labels: [("env".to_string(), "prod".to_string())].into(),
        ..Default::default()
    };
    let sql = "SELECT id, kind, payload FROM analytics.events WHERE id = 4242";
    c.bench_function("execution/guarded+decision/point", |b| {
        b.to_async(rt).iter(|| async {
            let checked = prod.check(sql, &opts, None, &identity, "teleport_postgres_query");
            assert!(checked.decision.allow && !checked.decision.explain);
            db.execute(sql, limits).await.unwrap()
        })
    });
    c.bench_function("execution/guarded+decision+plan/point", |b| {
        b.to_async(rt).iter(|| async {
            let checked = prod.check(
                sql,
                &opts,
                Some(&database),
                &identity,
                "teleport_postgres_query",
            );
            assert!(checked.decision.allow && checked.decision.explain);
            let facts = checked.facts.clone().unwrap();
            let planned = db
                .execute_planned(
                    sql,
                    limits,
                    &sqlguard::execution::MaskPlan::none(),
                    |plan| {
                        let input = PolicyInput {
                            query: Some(&facts),
                            database: Some(&database),
                            identity: &identity,
                            tool: "teleport_postgres_query",
                            plan: Some(plan),
                        };
                        let d = prod.decide_with_plan(&input, &checked.decision);
                        if d.allow {
                            Ok(())
                        } else {
                            Err(d)
                        }
                    },
                )
                .await
                .unwrap();
            assert!(matches!(planned, sqlguard::execution::Planned::Ran { .. }));
        })
    });
}

/// The decision with the database's own catalog against the same decision without it (no
/// decision cache: every call analyzes and evaluates), on a catalog holding pg_trgm, hstore
/// and citext, whose operators shadow `=`, `%`, `->`, so each such operator is resolved to
/// its worst case.
fn catalog_snapshot(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    cluster: &sqlguard::demo::cluster::LocalCluster,
    db: &sqlguard::execution::Database,
) {
    for ext in ["pg_trgm", "hstore", "citext"] {
        if let Err(e) = cluster.psql("postgres", &format!("CREATE EXTENSION IF NOT EXISTS {ext}")) {
            eprintln!(
                "!!!!! {ext} is not installed ({e}): the catalog benches run without it !!!!!"
            );
        }
    }
    // The tables the benched queries read, so the snapshot knows their columns' types (as a
    // served database's does).
    if let Err(e) = cluster.psql("postgres", BENCH_SCHEMA) {
        eprintln!("!!!!! cannot create the benched tables ({e}): the catalog benches run without them !!!!!");
    }
    let snapshot = std::sync::Arc::new(rt.block_on(db.read_catalog()).unwrap());
    let policy = policy_with(0);
    let identity = Identity::default();
    let plain = AnalysisOptions::default();
    let with = AnalysisOptions::default().with_snapshot(Some(snapshot));
    let mut cases = vec![
        ("point".to_string(), POINT.to_string()),
        ("join".to_string(), JOIN.to_string()),
    ];
    cases.extend(tpch().into_iter().map(|(n, s)| (format!("tpch/{n}"), s)));
    for (name, sql) in cases {
        for (label, opts) in [("static", &plain), ("snapshot", &with)] {
            c.bench_with_input(
                BenchmarkId::new(format!("catalog/analysis/{label}"), &name),
                &sql,
                |b, sql| b.iter(|| analyze_with(black_box(sql), opts).unwrap()),
            );
            c.bench_with_input(
                BenchmarkId::new(format!("catalog/{label}"), &name),
                &sql,
                |b, sql| {
                    b.iter(|| {
                        policy.check(
                            black_box(sql),
                            opts,
                            None,
                            &identity,
                            "teleport_postgres_query",
                        )
                    })
                },
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = hot_path, streams, execution
}
criterion_main!(benches);
