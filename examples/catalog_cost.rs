//! What a catalog snapshot costs a decision: each benched query (point, join, TPC-H's 22)
//! decided without the database's catalog and with it, on a throwaway cluster holding
//! pg_trgm, hstore, citext and the queries' tables (as `cargo bench -- catalog/` does).
//!
//!   cargo run --release --example catalog_cost [CALLS]     wall time per call
//!   scripts/catalog-cost                                   instructions per call (callgrind)
//!
//! Wall time on a shared machine drifts by tens of percent between runs; instruction counts
//! under callgrind do not, which is what `scripts/catalog-cost` reads: each `measure` call
//! ends a callgrind dump.

use std::sync::Arc;

use sqlguard::analysis::AnalysisOptions;
use sqlguard::demo::cluster::{ClusterOptions, LocalCluster};
use sqlguard::execution::{Database, DirectDialer, Dsn, SessionSettings};
use sqlguard::policy::{Bundle, Identity, Policy};

#[path = "../benches/workload/mod.rs"]
#[allow(dead_code)] // the benches' workload: this example reads the queries and their schema
mod workload;

/// Decides `sql` `calls` times. Not inlined: callgrind dumps its counters after each call.
#[inline(never)]
fn measure(policy: &Policy, sql: &str, opts: &AnalysisOptions, calls: u32) -> std::time::Duration {
    let identity = Identity::default();
    let start = std::time::Instant::now();
    for _ in 0..calls {
        std::hint::black_box(policy.check(sql, opts, None, &identity, "teleport_postgres_query"));
    }
    start.elapsed() / calls
}

fn main() -> Result<(), String> {
    let calls: u32 = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|e| format!("CALLS must be a number: {e}"))?,
        None => 2000,
    };
    let cluster = LocalCluster::start(&ClusterOptions {
        tag: "catalog-cost".into(),
        host_auth: "trust".into(),
        ..Default::default()
    })?;
    for ext in ["pg_trgm", "hstore", "citext"] {
        cluster.psql("postgres", &format!("CREATE EXTENSION IF NOT EXISTS {ext}"))?;
    }
    cluster.psql("postgres", workload::BENCH_SCHEMA)?;
    let dsn = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        cluster.port
    );
    let endpoint = DirectDialer::new(Dsn::parse(&dsn).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?
        .endpoint();
    let db = Database::new(endpoint, SessionSettings::default(), 1);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let snapshot = rt.block_on(db.read_catalog()).map_err(|e| e.to_string())?;
    drop(cluster);
    eprintln!("catalog: {}", snapshot.summary());

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut bundle = Bundle::load(&[dir], &[]).map_err(|e| e.to_string())?;
    // Under callgrind a call is ~50× slower: the default limit would cut evaluations short.
    bundle.eval_time_limit = std::time::Duration::from_secs(60);
    // No decision cache: every call analyzes and evaluates.
    let policy = Policy::with_cache(bundle, 0).map_err(|e| e.to_string())?;
    let without = AnalysisOptions::default();
    let with = AnalysisOptions::default().with_snapshot(Some(Arc::new(snapshot)));

    let mut queries = vec![
        ("point".to_string(), workload::POINT.to_string()),
        ("join".to_string(), workload::JOIN.to_string()),
    ];
    queries.extend(workload::tpch());
    println!("query\tstatic_us\tsnapshot_us\tratio");
    for (name, sql) in &queries {
        // One call each first, so that what is built once per snapshot is not counted.
        measure(&policy, sql, &without, 1);
        let a = measure(&policy, sql, &without, calls);
        measure(&policy, sql, &with, 1);
        let b = measure(&policy, sql, &with, calls);
        println!(
            "{name}\t{:.1}\t{:.1}\t{:.3}",
            a.as_secs_f64() * 1e6,
            b.as_secs_f64() * 1e6,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    Ok(())
}
