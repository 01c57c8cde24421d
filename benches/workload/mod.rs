//! What the benches (and `examples/catalog_cost.rs`, `examples/rule_cost.rs`) decide: the
//! point and join queries, TPC-H's 22, never-seen regression statements, and the tables they
//! read.

use std::path::PathBuf;

use sqlguard::analysis::{analyze_with, AnalysisOptions, Facts};
use sqlguard::policy::{to_policy_value, Identity, PolicyInput};

pub const POINT: &str = "SELECT id, name, email FROM users WHERE id = 42";

/// About 350 bytes: a join with a CTE and a subquery.
pub const JOIN: &str = "WITH recent AS (SELECT user_id, sum(total) AS spent FROM orders WHERE placed_at > now() - interval '30 days' GROUP BY user_id) \
SELECT u.id, u.name, r.spent, (SELECT count(*) FROM tickets t WHERE t.user_id = u.id AND t.status = 'open') AS open_tickets \
FROM users u JOIN recent r ON r.user_id = u.id WHERE u.active ORDER BY r.spent DESC LIMIT 20";

/// TPC-H's 22 queries from `../shared/corpus/tpch` (`q01`…), empty (said loudly) without it.
pub fn tpch() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/tpch");
    if !dir.is_dir() {
        eprintln!("!!!!! ../shared/corpus/tpch is absent: the TPC-H benches are SKIPPED !!!!!");
        return Vec::new();
    }
    (1..=22)
        .filter_map(|i| {
            let text = std::fs::read_to_string(dir.join(format!("{i}.sql"))).ok()?;
            // PostgreSQL spells Q1's interval without a precision; Q15's query sits between
            // its view DDL.
            let text = text.replace("interval '90' day (3)", "interval '90' day");
            let sql = pg_query::split_with_parser(&text)
                .ok()?
                .into_iter()
                .find(|s| {
                    s.trim_start().to_lowercase().starts_with("select")
                        || s.trim_start().to_lowercase().starts_with("with")
                })?
                .to_string();
            Some((format!("q{i:02}"), sql))
        })
        .collect()
}

/// The point and join queries' tables and TPC-H's (its `orders` and the join's share one
/// table), with TPC-H's column types.
pub const BENCH_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (id int PRIMARY KEY, name text, email text, active bool);
CREATE TABLE IF NOT EXISTS tickets (id int, user_id int, status text);
CREATE TABLE IF NOT EXISTS region (r_regionkey int, r_name char(25), r_comment varchar(152));
CREATE TABLE IF NOT EXISTS nation (n_nationkey int, n_name char(25), n_regionkey int, n_comment varchar(152));
CREATE TABLE IF NOT EXISTS part (p_partkey int, p_name varchar(55), p_mfgr char(25), p_brand char(10),
    p_type varchar(25), p_size int, p_container char(10), p_retailprice decimal(15,2), p_comment varchar(23));
CREATE TABLE IF NOT EXISTS supplier (s_suppkey int, s_name char(25), s_address varchar(40), s_nationkey int,
    s_phone char(15), s_acctbal decimal(15,2), s_comment varchar(101));
CREATE TABLE IF NOT EXISTS partsupp (ps_partkey int, ps_suppkey int, ps_availqty int, ps_supplycost decimal(15,2),
    ps_comment varchar(199));
CREATE TABLE IF NOT EXISTS customer (c_custkey int, c_name varchar(25), c_address varchar(40), c_nationkey int,
    c_phone char(15), c_acctbal decimal(15,2), c_mktsegment char(10), c_comment varchar(117));
CREATE TABLE IF NOT EXISTS orders (o_orderkey int, o_custkey int, o_orderstatus char(1), o_totalprice decimal(15,2),
    o_orderdate date, o_orderpriority char(15), o_clerk char(15), o_shippriority int, o_comment varchar(79),
    user_id int, total numeric, placed_at timestamptz);
CREATE TABLE IF NOT EXISTS lineitem (l_orderkey int, l_partkey int, l_suppkey int, l_linenumber int,
    l_quantity decimal(15,2), l_extendedprice decimal(15,2), l_discount decimal(15,2), l_tax decimal(15,2),
    l_returnflag char(1), l_linestatus char(1), l_shipdate date, l_commitdate date, l_receiptdate date,
    l_shipinstruct char(25), l_shipmode char(10), l_comment varchar(44));
CREATE OR REPLACE VIEW revenue0 (supplier_no, total_revenue) AS
    SELECT l_suppkey, sum(l_extendedprice * (1 - l_discount)) FROM lineitem GROUP BY l_suppkey;
";

/// The policy input of a query tool call on no particular database.
pub fn query_input<'a>(facts: &'a Facts, identity: &'a Identity) -> PolicyInput<'a> {
    PolicyInput {
        query: Some(facts),
        database: None,
        identity,
        tool: "teleport_postgres_query",
        plan: None,
    }
}

/// Up to `n` statements of PostgreSQL's regression SQL (`../shared/corpus/pg_regress`), each
/// of a policy input not seen before, with their facts; empty (said loudly) without the corpus.
pub fn never_seen_shapes(n: usize) -> Vec<(String, Facts)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/pg_regress");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "!!!!! ../shared/corpus/pg_regress is absent: the never-seen stream is SKIPPED !!!!!"
        );
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let opts = AnalysisOptions::default();
    let identity = Identity::default();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for path in files {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        for sql in pg_query::split_with_scanner(&text).unwrap_or_default() {
            let Ok(facts) = analyze_with(sql, &opts) else {
                continue;
            };
            let key = to_policy_value(&query_input(&facts, &identity))
                .map(|v| v.to_json_str().unwrap_or_default())
                .unwrap_or_default();
            if seen.insert(key) {
                out.push((sql.to_string(), facts));
            }
            if out.len() == n {
                return out;
            }
        }
    }
    out
}
