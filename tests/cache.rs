//! The decision cache is exact: with it, every decision is the one the bundle makes without it.

use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use sqlguard::analysis::variants::Constants;
use sqlguard::analysis::{analyze, Facts};
use sqlguard::policy::{
    to_policy_value, to_value, Bundle, DatabaseContext, Decision, Identity, Policy, PolicyInput,
};

use crate::support::corpus_statements;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default bundle with the per-role and per-database examples, so that the identity and
/// the database change decisions.
pub(crate) fn bundle() -> Bundle {
    let p = root().join("policies");
    Bundle::load(
        &[p.clone(), p.join("examples/roles"), p.join("examples/prod")],
        &[],
    )
    .unwrap()
}

/// Who calls, against which database: the calls of one stream rotate through these.
pub(crate) fn contexts() -> Vec<(Identity, DatabaseContext)> {
    let who = |roles: &[&str]| Identity {
        user: "alice".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        traits: Default::default(),
        ..Default::default()
    };
    let db = |env: &str| DatabaseContext {
        uri: format!("teleport://clusters/c/databases/{env}"),
        name: env.into(),
        labels: [("env".to_string(), env.to_string())].into(),
        ..Default::default()
    };
    vec![
        (who(&["dev"]), db("dev")),
        (who(&["contractor"]), db("dev")),
        (who(&["auditor"]), db("prod")),
        (who(&["dev"]), db("prod")),
    ]
}

pub(crate) fn input<'a>(facts: &'a Facts, ctx: &'a (Identity, DatabaseContext)) -> PolicyInput<'a> {
    PolicyInput {
        query: Some(facts),
        database: Some(&ctx.1),
        identity: &ctx.0,
        tool: "teleport_postgres_query",
        plan: None,
    }
}

/// The corpora, in order and then a third of them again with fresh constants, each call under one of four
/// contexts: the cached policy decides exactly as the uncached one, call by call.
#[test]
fn the_cache_decides_as_the_bundle_over_the_corpora() {
    let statements = corpus_statements();
    if statements.is_empty() {
        return;
    }
    let bundle = bundle();
    let cached = Policy::new(bundle.clone()).unwrap();
    let uncached = Policy::with_cache(bundle, 0).unwrap();
    assert!(uncached.cache_stats().is_none());
    let contexts = contexts();
    let mut constants = Constants::new(1);
    let (mut calls, mut hits, mut allowed) = (0u64, 0u64, 0u64);
    let mut wrong = Vec::new();
    let started = Instant::now();
    for round in 0..2 {
        for (n, sql) in statements.iter().enumerate() {
            // The second round, with fresh constants, on a third of the corpus (time).
            if round == 1 && n % 3 != 0 {
                continue;
            }
            let text = match round {
                0 => sql.clone(),
                _ => match constants.refresh(sql) {
                    Some(t) => t,
                    None => continue,
                },
            };
            let Ok(facts) = analyze(&text) else { continue };
            let ctx = &contexts[(n + round) % contexts.len()];
            let want = uncached.decide(&input(&facts, ctx));
            let (got, hit) = cached.decide_cached(&input(&facts, ctx));
            calls += 1;
            hits += u64::from(hit);
            allowed += u64::from(want.allow);
            if got != want {
                wrong.push(format!("{text}\n  cached {got:?}\n  bundle {want:?}"));
            }
        }
    }
    eprintln!(
        "decision cache differential: {calls} calls ({allowed} allowed), {hits} hits, {} s",
        started.elapsed().as_secs()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong decisions:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
    // Fresh constants leave most inputs equal, and each context keeps its own decisions.
    assert!(hits > calls / 3, "{hits} hits in {calls} calls");
    assert!(allowed > 1000 && allowed < calls);
}

/// A decision cached for one identity or database is never another's.
#[test]
fn a_decision_is_cached_per_identity_and_database() {
    let policy = Policy::new(bundle()).unwrap();
    let contexts = contexts();
    let facts = analyze("SELECT name FROM hr.salaries WHERE id = 1").unwrap();
    let explain = analyze("EXPLAIN SELECT 1").unwrap();
    for _ in 0..2 {
        let dev = policy.decide(&input(&facts, &contexts[0]));
        let contractor = policy.decide(&input(&facts, &contexts[1]));
        assert!(dev.allow, "{dev:?}");
        assert!(!contractor.allow);
        assert_eq!(contractor.reasons[0].rule, "role_contractor_hr");
        assert!(policy.decide(&input(&explain, &contexts[0])).allow);
        assert!(!policy.decide(&input(&explain, &contexts[2])).allow);
    }
    let stats = policy.cache_stats().unwrap();
    assert_eq!((stats.misses, stats.hits, stats.entries), (4, 4, 4));
}

/// The policy does not see byte positions, so constants of another length change nothing it
/// reads; `analyze` and the audit log keep them.
#[test]
fn the_policy_input_has_no_byte_positions() {
    let a = analyze("SELECT * FROM t WHERE id = 1; SELECT 2").unwrap();
    let b = analyze("SELECT * FROM t WHERE id = 123456; SELECT 'long constant'").unwrap();
    assert_ne!(a, b);
    let (ctx, identity) = (DatabaseContext::default(), Identity::default());
    let of = |f| PolicyInput {
        query: Some(f),
        database: Some(&ctx),
        identity: &identity,
        tool: "teleport_postgres_query",
        plan: None,
    };
    assert_eq!(
        to_policy_value(&of(&a)).unwrap(),
        to_policy_value(&of(&b)).unwrap()
    );
    let json = to_policy_value(&of(&a)).unwrap().to_json_str().unwrap();
    for field in ["\"location\"", "\"length\"", "\"sql_bytes\""] {
        assert!(!json.contains(field), "{field} in {json}");
    }
    let full = to_value(&a).unwrap().to_json_str().unwrap();
    assert!(full.contains("\"location\"") && full.contains("\"sql_bytes\""));
    // The explained statement inside EXPLAIN has none either.
    let e = analyze("EXPLAIN SELECT 1").unwrap();
    let json = to_policy_value(&of(&e)).unwrap().to_json_str().unwrap();
    assert!(
        json.contains("\"explain\"") && !json.contains("\"location\""),
        "{json}"
    );
}

fn rego(text: &str) -> Bundle {
    let dir = std::env::temp_dir().join(format!(
        "sqlguard-cache-{}-{}",
        std::process::id(),
        text.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), text).unwrap();
    let b = Bundle::load(std::slice::from_ref(&dir), &[]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    b
}

const LIMITS: &str = r#"{"max_rows": 1, "max_result_bytes": 1, "statement_timeout_ms": 1}"#;

/// A bundle that reads the clock, random numbers or UUIDs decides anew every time.
#[test]
fn a_bundle_that_is_not_deterministic_is_not_cached() {
    for (call, builtin) in [
        ("time.now_ns() % 2 == 0", "time.now_ns"),
        ("rand.intn(\"x\", 2) == 0", "rand."),
        ("uuid.rfc4122(\"x\") != \"\"", "uuid."),
        ("opa.runtime().env != {}", "opa.runtime"),
    ] {
        let bundle = rego(&format!(
            "package sqlguard\nimport rego.v1\ndecision := {{\"allow\": {call}, \"reasons\": [], \"limits\": {LIMITS}}}\n"
        ));
        assert_eq!(bundle.nondeterministic_builtin(), Some(builtin));
        // sqlguard's regorus is built without `uuid`: such a bundle does not load at all.
        if builtin != "uuid." {
            assert!(
                Policy::new(bundle).unwrap().cache_stats().is_none(),
                "{call}"
            );
        }
    }
    // `operand.x` is not `rand.`.
    let bundle = rego(&format!(
        "package sqlguard\nimport rego.v1\noperand := {{\"x\": true}}\ndecision := {{\"allow\": operand.x, \"reasons\": [], \"limits\": {LIMITS}}}\n"
    ));
    assert_eq!(bundle.nondeterministic_builtin(), None);
    assert!(Policy::new(bundle).unwrap().cache_stats().is_some());
}

/// Evaluation errors and time-limit denials are not kept: the next call evaluates again.
#[test]
fn failures_are_not_cached() {
    let erring = rego("package sqlguard\nimport rego.v1\ndecision := {\"allow\": true, \"reasons\": [], \"limits\": {\"max_rows\": 1 / count(input.query.statements[0].relations), \"max_result_bytes\": 1, \"statement_timeout_ms\": 1}}\n");
    let runaway = rego("package sqlguard\nimport rego.v1\nbig := [x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000)]\ndecision := {\"allow\": count(big) > 0, \"reasons\": [], \"limits\": {}} if input.query\ndecision := {\"allow\": false, \"reasons\": [], \"limits\": {}} if not input.query\n");
    let facts = analyze("SELECT 1").unwrap();
    let ctx = &contexts()[0];
    for bundle in [erring, runaway] {
        let policy = Policy::new(bundle).unwrap();
        for _ in 0..2 {
            let (d, hit) = policy.decide_cached(&input(&facts, ctx));
            assert!(!d.allow && !hit, "{d:?}");
            assert!(d.reasons[0].rule.starts_with("policy_"), "{d:?}");
        }
        assert_eq!(policy.cache_stats().unwrap().entries, 0);
    }
}

fn decide_both(cached: &Policy, uncached: &Policy, sql: &str, ctx: usize) -> (Decision, Decision) {
    let facts = analyze(sql).unwrap();
    let contexts = contexts();
    let ctx = &contexts[ctx % contexts.len()];
    (
        cached.decide(&input(&facts, ctx)),
        uncached.decide(&input(&facts, ctx)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Queries that differ in constants, names and context, in any order, against one cache.
    #[test]
    fn any_order_of_calls_gets_the_bundles_decisions(
        calls in prop::collection::vec((0usize..8, 0usize..4, 0u64..1000), 1..24)
    ) {
        static POLICIES: std::sync::OnceLock<(Policy, Policy)> = std::sync::OnceLock::new();
        let (cached, uncached) = POLICIES.get_or_init(|| {
            let b = bundle();
            (Policy::new(b.clone()).unwrap(), Policy::with_cache(b, 0).unwrap())
        });
        const TEMPLATES: [&str; 8] = [
            "SELECT * FROM orders WHERE id = 1",
            "SELECT name FROM hr.salaries WHERE id = 1",
            "SELECT current_setting('search_path')",
            "SELECT current_setting('ssl_key_file')",
            "EXPLAIN SELECT * FROM orders WHERE total > 1.5",
            "DELETE FROM orders WHERE id = 1",
            "SELECT * FROM orders o JOIN lines l USING (order_id) LIMIT 10",
            "SELECT pg_sleep(1)",
        ];
        for (t, ctx, seed) in calls {
            let sql = Constants::new(seed).refresh(TEMPLATES[t]).unwrap();
            let (got, want) = decide_both(cached, uncached, &sql, ctx);
            prop_assert_eq!(got, want, "{}", sql);
        }
    }
}

/// Over MCP against the test cluster, the same stream of calls with the cache and without: the
/// same answers, the audit log says which decisions came from the cache, and its `policy_us`
/// median drops.
#[tokio::test]
async fn over_mcp_equal_calls_are_served_from_the_cache_and_logged_as_such() {
    use crate::support::cluster::Cluster;
    let cluster = Cluster::shared();
    let mut medians = Vec::new();
    let mut decision_medians = Vec::new();
    let mut answers: Vec<Vec<(bool, String)>> = Vec::new();
    for entries in [4096, 0] {
        let (got, records) = forty_calls(cluster, entries).await;
        assert_eq!(records.len(), 40);
        let cached = records
            .iter()
            .filter(|r| r["timings"]["cached"] == true)
            .count();
        if entries == 0 {
            assert_eq!(cached, 0);
        } else {
            // Three shapes: three evaluations, every other call from the cache.
            assert_eq!(cached, 37, "{records:?}");
        }
        let mut us: Vec<u64> = records
            .iter()
            .filter_map(|r| r["timings"]["policy_us"].as_u64())
            .collect();
        us.sort_unstable();
        medians.push(us[us.len() / 2]);
        // The whole server-side decision: analysis (or the shape cache's answer) + policy.
        let mut decision: Vec<u64> = records
            .iter()
            .map(|r| {
                r["timings"]["analysis_us"].as_u64().unwrap_or(0)
                    + r["timings"]["policy_us"].as_u64().unwrap_or(0)
            })
            .collect();
        decision.sort_unstable();
        decision_medians.push(decision[decision.len() / 2]);
        answers.push(got);
    }
    eprintln!(
        "policy_us median over MCP (40 calls, 3 shapes, fresh constants): {} µs with the cache, {} µs without",
        medians[0], medians[1]
    );
    eprintln!(
        "analysis_us + policy_us median, same calls: {} µs with the caches, {} µs without",
        decision_medians[0], decision_medians[1]
    );
    assert_eq!(answers[0], answers[1]);
    assert!(answers[0].iter().filter(|a| a.0).count() >= 13);
    assert!(medians[0] < medians[1], "{medians:?}");
}

/// Forty calls of three shapes with fresh constants, on a server keeping `entries` decisions:
/// the answers (a refusal's words) and the calls' audit records.
async fn forty_calls(
    cluster: &crate::support::cluster::Cluster,
    entries: usize,
) -> (Vec<(bool, String)>, Vec<serde_json::Value>) {
    let dir = std::env::temp_dir().join(format!(
        "sqlguard-cache-mcp-{}-{entries}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let settings = format!(
        "audit_log = {:?}\ndecision_cache_entries = {entries}\n",
        log.display().to_string()
    );
    let config = crate::mcp::shop_config(&dir, cluster, &settings);
    let (client, _pid) = crate::mcp::serve_config(&config).await;
    let mut constants = Constants::new(5);
    let mut got = Vec::new();
    for i in 0..40 {
        let template = [
            "SELECT id, name FROM users WHERE id = 1",
            "SELECT u.name, sum(o.total) FROM users u JOIN orders o ON o.user_id = u.id WHERE o.total > 10.5 GROUP BY u.name",
            "DELETE FROM orders WHERE id = 1",
        ][i % 3];
        let sql = constants.refresh(template).unwrap();
        let (refused, text) = crate::mcp::query_shop(&client, &sql).await;
        // Row contents depend on the constants; the refusal's words must not.
        got.push((refused, if refused { text } else { String::new() }));
    }
    let _ = client.cancel().await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r["event"] == "intent" || r["event"] == "decision")
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    (got, records)
}
