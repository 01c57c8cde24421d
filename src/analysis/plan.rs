//! PostgreSQL's plan → [`PlanFacts`]: what the planner expects a query to cost, as facts a
//! policy can judge before anything runs (`input.plan`).
//!
//! The input is the output of `EXPLAIN (FORMAT JSON, VERBOSE)` (never `ANALYZE`: nothing is
//! executed). The facts carry no constant of the query: node kinds, relations, estimates and
//! a few derived flags — a sequential scan, a join without any join condition, a nested loop
//! that rescans its inner side without an index, a sort or hash expected to spill past
//! `work_mem`. Relation sizes and indexed columns come from the catalog ([`RelationInfo`]) and
//! are filled in by the execution layer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// What PostgreSQL's planner expects of one statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanFacts {
    /// The planner's total cost (its arbitrary units: sequential page reads ≈ 1.0).
    pub total_cost: f64,
    pub startup_cost: f64,
    /// Estimated rows the statement returns.
    pub rows: f64,
    /// The session's `work_mem` the spill estimates were made against, in bytes.
    pub work_mem_bytes: u64,
    /// The largest number of parallel workers any Gather node plans.
    pub workers: u64,
    /// Every node, depth first (the root is node 0).
    pub nodes: Vec<PlanNode>,
    /// The relations scanned, by `schema.name`, as the catalog describes them.
    pub relations: BTreeMap<String, RelationInfo>,
}

/// One plan node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanNode {
    /// PostgreSQL's node type: `Seq Scan`, `Index Scan`, `Nested Loop`, `Sort`, `Hash`, …
    #[serde(rename = "type")]
    pub node_type: String,
    /// Index of the parent node, -1 for the root.
    pub parent: i64,
    /// `schema.name` of the relation a scan reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Estimated rows the node returns.
    pub rows: f64,
    /// Estimated rows the relation holds (catalog), for scans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation_rows: Option<f64>,
    pub total_cost: f64,
    /// A sequential scan: every row of `relation` is read.
    pub seq_scan: bool,
    /// A join with no condition between its sides: every pair of rows (both sides estimated
    /// at more than one row).
    pub cartesian: bool,
    /// A nested loop whose inner side is rescanned for each outer row without an index on
    /// the join condition.
    pub nested_loop_without_index: bool,
    /// For joins: estimated rows of the outer side × rows of the inner side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<f64>,
    /// For joins: the relations (`schema.name`, or the alias of a subquery or function)
    /// under the outer and the inner side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<Vec<String>>,
    /// For sorts, hashes, hashed aggregates and materializations: the planner's size of what
    /// the node holds, in bytes (estimated the way PostgreSQL's cost model does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<f64>,
    /// `memory_bytes` exceeds the node's memory limit (`work_mem`, × `hash_mem_multiplier`
    /// for hashes): it is expected to write temporary files.
    pub spill_expected: bool,
    /// Parallel workers planned (Gather and Gather Merge).
    pub workers: u64,
}

/// A relation as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelationInfo {
    /// `pg_class.reltuples`: the row count as of the last ANALYZE or VACUUM (`-1` if never).
    pub rows_estimate: f64,
    /// `pg_class.relkind`: `r` table, `p` partitioned, `m` materialized view, `f` foreign, …
    pub kind: String,
    /// Columns that lead a valid index (an index can serve a condition on them).
    pub indexed_columns: Vec<String>,
}

/// Session memory settings the spill estimates are made against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorySettings {
    pub work_mem_bytes: u64,
    pub hash_mem_multiplier: f64,
}

impl Default for MemorySettings {
    /// PostgreSQL 15's defaults.
    fn default() -> Self {
        MemorySettings {
            work_mem_bytes: 4 << 20,
            hash_mem_multiplier: 2.0,
        }
    }
}

/// Why an EXPLAIN output could not be read: the plan step then denies (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PostgreSQL's plan could not be read ({0})")]
pub struct PlanError(pub String);

/// Nodes deeper than this are not read (a plan that deep is refused).
const MAX_PLAN_DEPTH: usize = 200;

fn maxalign(width: f64) -> f64 {
    (width / 8.0).ceil() * 8.0
}

/// Reads `EXPLAIN (FORMAT JSON, VERBOSE)` output: `[{"Plan": {...}}]`.
pub fn plan_facts(explain: &Value, memory: MemorySettings) -> Result<PlanFacts, PlanError> {
    if explain.is_string() {
        // The JSON reader stops at 128 levels and hands back the text.
        return Err(PlanError("it is nested too deeply to read".into()));
    }
    let root = explain
        .get(0)
        .and_then(|v| v.get("Plan"))
        .ok_or_else(|| PlanError("no \"Plan\" in the EXPLAIN output".into()))?;
    let mut facts = PlanFacts {
        total_cost: num(root, "Total Cost"),
        startup_cost: num(root, "Startup Cost"),
        rows: num(root, "Plan Rows"),
        work_mem_bytes: memory.work_mem_bytes,
        workers: 0,
        nodes: Vec::new(),
        relations: BTreeMap::new(),
    };
    let mut reader = Reader {
        memory,
        nodes: &mut facts.nodes,
    };
    reader.node(root, -1, None, 0)?;
    facts.workers = facts.nodes.iter().map(|n| n.workers).max().unwrap_or(0);
    Ok(facts)
}

impl PlanFacts {
    /// The relations the plan scans, as `(schema, name)`.
    pub fn scanned_relations(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .nodes
            .iter()
            .filter_map(|n| n.relation.as_deref())
            .filter_map(|r| r.split_once('.'))
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Adds the catalog's description of the scanned relations.
    pub fn describe_relations(&mut self, relations: BTreeMap<String, RelationInfo>) {
        for node in &mut self.nodes {
            if let Some(info) = node.relation.as_ref().and_then(|r| relations.get(r)) {
                // Never analyzed (-1): the scan's own estimate is all that is known.
                node.relation_rows = Some(if info.rows_estimate >= 0.0 {
                    info.rows_estimate.max(node.rows)
                } else {
                    node.rows
                });
            }
        }
        self.relations = relations;
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn children(v: &Value) -> &[Value] {
    v.get("Plans")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Condition fields that can refer to another relation's columns.
const CONDITIONS: [&str; 9] = [
    "Index Cond",
    "Recheck Cond",
    "Filter",
    "Join Filter",
    "Hash Cond",
    "Merge Cond",
    "TID Cond",
    "Function Call",
    "Cache Key",
];

struct Reader<'a> {
    memory: MemorySettings,
    nodes: &'a mut Vec<PlanNode>,
}

impl Reader<'_> {
    /// Adds `v` and its subtree; `parent_type` is the parent's node type.
    fn node(
        &mut self,
        v: &Value,
        parent: i64,
        parent_node: Option<&Value>,
        depth: usize,
    ) -> Result<(), PlanError> {
        if depth > MAX_PLAN_DEPTH {
            return Err(PlanError(format!(
                "the plan is deeper than {MAX_PLAN_DEPTH} nodes"
            )));
        }
        let node_type = text(v, "Node Type")
            .ok_or_else(|| PlanError("a plan node without \"Node Type\"".into()))?
            .to_string();
        let relation = match (text(v, "Schema"), text(v, "Relation Name")) {
            (Some(s), Some(r)) => Some(format!("{s}.{r}")),
            (None, Some(r)) => Some(r.to_string()),
            _ => None,
        };
        let kids = children(v);
        let mut n = PlanNode {
            seq_scan: node_type == "Seq Scan",
            node_type,
            parent,
            relation,
            index: text(v, "Index Name").map(str::to_string),
            rows: num(v, "Plan Rows"),
            relation_rows: None,
            total_cost: num(v, "Total Cost"),
            cartesian: false,
            nested_loop_without_index: false,
            pairs: None,
            outer: None,
            inner: None,
            memory_bytes: None,
            spill_expected: false,
            workers: v
                .get("Workers Planned")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        };
        self.join_flags(v, kids, &mut n);
        self.memory_flags(v, kids, parent_node, &mut n);
        let me = self.nodes.len() as i64;
        self.nodes.push(n);
        for kid in kids {
            self.node(kid, me, Some(v), depth + 1)?;
        }
        Ok(())
    }

    fn join_flags(&self, v: &Value, kids: &[Value], n: &mut PlanNode) {
        let joins = ["Nested Loop", "Hash Join", "Merge Join"];
        if !joins.contains(&n.node_type.as_str()) || kids.len() != 2 {
            return;
        }
        let (outer, inner) = (&kids[0], &kids[1]);
        let (outer_rows, inner_rows) = (num(outer, "Plan Rows"), num(inner, "Plan Rows"));
        n.pairs = Some(outer_rows * inner_rows);
        n.outer = Some(names_under(outer));
        n.inner = Some(names_under(inner));
        if n.node_type != "Nested Loop" {
            return; // Hash and merge joins always have their condition.
        }
        let mut aliases = Vec::new();
        collect_aliases(outer, &mut aliases);
        let correlated = refers_to(inner, &aliases);
        let filtered = v.get("Join Filter").is_some();
        n.cartesian = !correlated && !filtered && outer_rows > 1.0 && inner_rows > 1.0;
        n.nested_loop_without_index = !correlated && filtered && inner_rows > 1.0;
    }

    fn memory_flags(
        &self,
        v: &Value,
        kids: &[Value],
        parent_node: Option<&Value>,
        n: &mut PlanNode,
    ) {
        let width = maxalign(num(v, "Plan Width"));
        let input_rows = kids.first().map_or(n.rows, |k| num(k, "Plan Rows"));
        let work_mem = self.memory.work_mem_bytes as f64;
        let hash_mem = work_mem * self.memory.hash_mem_multiplier;
        // Sizes as PostgreSQL's costsize.c estimates them: a tuple header per row, plus the
        // hash table's per-entry overhead.
        let (bytes, limit) = match n.node_type.as_str() {
            "Sort" | "Incremental Sort" => {
                // Under a LIMIT, a bounded (top-N) sort keeps about twice the limit.
                let bounded = parent_node
                    .filter(|p| text(p, "Node Type") == Some("Limit"))
                    .map(|p| 2.0 * num(p, "Plan Rows"));
                let rows = bounded.map_or(input_rows, |b| b.min(input_rows));
                (rows * (width + 24.0), work_mem)
            }
            "Materialize" => (input_rows * (width + 24.0), work_mem),
            "Hash" => (input_rows * (width + 32.0), hash_mem),
            "Aggregate" if text(v, "Strategy") == Some("Hashed") => {
                (n.rows * (width + 48.0), hash_mem)
            }
            "SetOp" if text(v, "Strategy") == Some("Hashed") => (n.rows * (width + 48.0), hash_mem),
            _ => return,
        };
        n.memory_bytes = Some(bytes);
        n.spill_expected = bytes > limit;
    }
}

/// The relations under `v` (`schema.name`), or the aliases of what is not a relation.
fn names_under(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match (
            text(v, "Schema"),
            text(v, "Relation Name"),
            text(v, "Alias"),
        ) {
            (Some(s), Some(r), _) => out.push(format!("{s}.{r}")),
            (None, Some(r), _) => out.push(r.to_string()),
            (_, None, Some(a)) => out.push(a.to_string()),
            _ => {}
        }
        for kid in children(v) {
            walk(kid, out);
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort();
    out.dedup();
    out
}

fn collect_aliases(v: &Value, out: &mut Vec<String>) {
    if let Some(a) = text(v, "Alias") {
        out.push(a.to_string());
    }
    for kid in children(v) {
        collect_aliases(kid, out);
    }
}

/// Whether a condition anywhere in `v`'s subtree names a column of one of `aliases`
/// (`alias.column` in VERBOSE output), or a parameter from above (`$1`).
fn refers_to(v: &Value, aliases: &[String]) -> bool {
    let own = CONDITIONS.iter().filter_map(|k| text(v, k)).any(|cond| {
        cond.contains('$')
            || aliases
                .iter()
                .any(|a| mentions(cond, a) || mentions(cond, &format!("\"{a}\"")))
    });
    own || children(v).iter().any(|k| refers_to(k, aliases))
}

/// `cond` holds `alias.` not preceded by an identifier character.
fn mentions(cond: &str, alias: &str) -> bool {
    let needle = format!("{alias}.");
    cond.match_indices(&needle).any(|(at, _)| {
        cond[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scan(rel: &str, rows: f64, extra: Value) -> Value {
        let mut v = json!({"Node Type": "Seq Scan", "Relation Name": rel, "Schema": "public",
            "Alias": rel, "Plan Rows": rows, "Plan Width": 8, "Total Cost": rows});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    fn nested_loop(outer: Value, inner: Value, extra: Value) -> Value {
        let mut v = json!({"Node Type": "Nested Loop", "Plan Rows": 10, "Plan Width": 16,
            "Total Cost": 100, "Plans": [outer, inner]});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        json!([{ "Plan": v }])
    }

    #[test]
    fn a_join_without_condition_is_cartesian() {
        let m = MemorySettings::default();
        let cross = nested_loop(
            scan("a", 1e6, json!({})),
            scan("b", 1e3, json!({})),
            json!({}),
        );
        let p = plan_facts(&cross, m).unwrap();
        assert!(p.nodes[0].cartesian && !p.nodes[0].nested_loop_without_index);
        assert_eq!(p.nodes[0].pairs, Some(1e9));
        assert_eq!(p.nodes[1].relation.as_deref(), Some("public.a"));
        assert!(p.nodes[1].seq_scan);

        // The inner side's index condition names the outer alias: a join.
        let indexed = json!({"Node Type": "Index Scan", "Relation Name": "b", "Schema": "public",
            "Alias": "b", "Plan Rows": 1, "Index Cond": "(b.aid = a.id)"});
        let p = plan_facts(
            &nested_loop(scan("a", 1e6, json!({})), indexed, json!({})),
            m,
        )
        .unwrap();
        assert!(!p.nodes[0].cartesian && !p.nodes[0].nested_loop_without_index);

        // A join filter: a join, but every inner row is compared for every outer row.
        let filtered = nested_loop(
            scan("a", 1e6, json!({})),
            scan("b", 1e3, json!({})),
            json!({"Join Filter": "(a.x < b.y)"}),
        );
        let p = plan_facts(&filtered, m).unwrap();
        assert!(!p.nodes[0].cartesian && p.nodes[0].nested_loop_without_index);

        // One side of one row (an aggregate, a constant): not a product that hurts.
        let single = nested_loop(
            scan("a", 1e6, json!({})),
            scan("b", 1.0, json!({})),
            json!({}),
        );
        assert!(!plan_facts(&single, m).unwrap().nodes[0].cartesian);

        // `data.` in a condition is not the alias `a.`.
        let other = json!({"Node Type": "Seq Scan", "Relation Name": "b", "Schema": "public",
            "Alias": "b", "Plan Rows": 50, "Filter": "(data.x = 1)"});
        let p = plan_facts(
            &nested_loop(scan("a", 10.0, json!({})), other, json!({})),
            m,
        )
        .unwrap();
        assert!(p.nodes[0].cartesian);
    }

    #[test]
    fn sorts_and_hashes_spill_past_work_mem() {
        let m = MemorySettings {
            work_mem_bytes: 1 << 20,
            hash_mem_multiplier: 2.0,
        };
        let sort = |rows: f64| {
            json!([{"Plan": {"Node Type": "Sort", "Plan Rows": rows, "Plan Width": 40,
                "Total Cost": 1, "Plans": [scan("a", rows, json!({}))]}}])
        };
        let p = plan_facts(&sort(1e6), m).unwrap();
        assert!(p.nodes[0].spill_expected);
        assert_eq!(p.nodes[0].memory_bytes, Some(1e6 * 64.0));
        assert!(!plan_facts(&sort(100.0), m).unwrap().nodes[0].spill_expected);

        // Top-N under a LIMIT keeps twice the limit.
        let top = json!([{"Plan": {"Node Type": "Limit", "Plan Rows": 10, "Plan Width": 40,
            "Plans": [{"Node Type": "Sort", "Plan Rows": 1e6, "Plan Width": 40,
                "Plans": [scan("a", 1e6, json!({}))]}]}}]);
        let p = plan_facts(&top, m).unwrap();
        assert!(!p.nodes[1].spill_expected);
        assert_eq!(p.nodes[1].parent, 0);

        let hash = json!([{"Plan": {"Node Type": "Hash", "Plan Rows": 1e5, "Plan Width": 8,
            "Plans": [scan("a", 1e5, json!({}))]}}]);
        let p = plan_facts(&hash, m).unwrap();
        assert_eq!(p.nodes[0].memory_bytes, Some(1e5 * 40.0));
        assert!(p.nodes[0].spill_expected, "4 MB over 2 MB of hash memory");
    }

    #[test]
    fn unreadable_plans_are_errors() {
        let m = MemorySettings::default();
        assert!(plan_facts(&json!([]), m).is_err());
        assert!(plan_facts(&json!([{"Plan": {"Plan Rows": 1}}]), m).is_err());
        assert!(plan_facts(&json!("[{\"Plan\": …"), m).is_err());
        let mut deep = json!({"Node Type": "Result"});
        for _ in 0..250 {
            deep = json!({"Node Type": "Subquery Scan", "Plans": [deep]});
        }
        assert!(plan_facts(&json!([{ "Plan": deep }]), m).is_err());
    }

    #[test]
    fn catalog_sizes_fill_the_scans() {
        let m = MemorySettings::default();
        let mut p = plan_facts(
            &json!([{"Plan": scan("a", 10.0, json!({"Filter": "(a.x = 1)"}))}]),
            m,
        )
        .unwrap();
        assert_eq!(p.scanned_relations(), vec![("public".into(), "a".into())]);
        let info = RelationInfo {
            rows_estimate: 5e6,
            kind: "r".into(),
            indexed_columns: vec!["id".into()],
        };
        p.describe_relations(BTreeMap::from([("public.a".to_string(), info)]));
        assert_eq!(p.nodes[0].relation_rows, Some(5e6));
    }
}
