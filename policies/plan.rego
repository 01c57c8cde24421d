# Rules over PostgreSQL's plan: input.plan.
#
# When data.sqlguard.plan.explain is true (optionally only for databases whose labels match
# data.sqlguard.plan.labels), a query the rest of the policy allows is first explained inside
# its READ ONLY transaction, never with ANALYZE, and decided again with input.plan: the
# planner's total cost, estimated rows, and per node its type, relation, estimates and flags
# (seq_scan, cartesian, nested_loop_without_index, spill_expected). Nothing runs unless that
# second decision allows it too. Without the knob there is no input.plan and no rule here
# fires. Each limit below is off when absent.
package sqlguard

import rego.v1

# Statement kinds PostgreSQL can EXPLAIN.
explainable_kinds := {"select", "insert", "update", "delete", "merge"}

default explain_plan := false

explain_plan if {
	data.sqlguard.plan.explain == true
	every k, v in object.get(data.sqlguard.plan, "labels", {}) {
		input.database.labels[k] == v
	}
	count(input.query.statements) == 1
	input.query.statements[0].kind in explainable_kinds
}

# The plan rules add to plan_deny, and so to deny: the decision with input.plan is the
# whole decision. sqlguard evaluates plan_decision alone for the second decision when every
# module that mentions plans is one it ships (the static decision, just made, stands for
# the rest); a bundle of your own that reads input.plan elsewhere gets the whole decision
# evaluated again. Every plan rule judges input.plan: without one (the first decision, the
# CLI) none can hold, and none is entered (each rule body entered costs time on every call).
deny contains r if {
	input.plan
	some r in plan_deny
}

plan_by_key := {reason_key(d): d | some d in plan_deny}

plan_ask_by_key := {reason_key(a): a | some a in plan_ask}

plan_decision := {
	"allow": count(plan_deny) == 0,
	"reasons": [plan_by_key[k] | some k in sort(object.keys(plan_by_key))],
	"ask": [plan_ask_by_key[k] | some k in sort(object.keys(plan_ask_by_key))],
}

# A plan rule may ask instead of deny (`plan_ask contains reason(…)`): a person approves the
# call after its plan is judged and before it is sent.
ask contains r if {
	input.plan
	some r in plan_ask
}

# EXPLAIN ANALYZE runs its statement: where queries are judged by their plan, it would run
# one that was never judged.
deny contains reason("plan_explain_analyze", i, msg) if {
	data.sqlguard.plan.explain == true
	every k, v in object.get(data.sqlguard.plan, "labels", {}) {
		input.database.labels[k] == v
	}
	some i, s in input.query.statements
	s.explain.analyze
	msg := "EXPLAIN ANALYZE runs the query, and on this database queries are judged by their plan before they run: send EXPLAIN without ANALYZE, or the query itself"
}

plan_deny contains reason("plan_cost", 0, msg) if {
	limit := data.sqlguard.plan.max_total_cost
	input.plan.total_cost > limit
	msg := sprintf("PostgreSQL estimates this query's cost at %s, over this database's limit of %s%s: %s", [approx(input.plan.total_cost), approx(limit), costliest_part, "filter on indexed columns, aggregate before joining, and add a LIMIT"])
}

# plan.ask_over_total_cost: a plan dearer than this (and within max_total_cost) runs only once
# a person approves it.
plan_ask contains reason("plan_cost_needs_approval", 0, msg) if {
	limit := data.sqlguard.plan.ask_over_total_cost
	input.plan.total_cost > limit
	msg := sprintf("PostgreSQL estimates this query's cost at %s, over %s, above which a person approves each query on this database%s", [approx(input.plan.total_cost), approx(limit), costliest_part])
}

plan_deny contains reason("plan_rows", 0, msg) if {
	limit := data.sqlguard.plan.max_rows
	input.plan.rows > limit
	msg := sprintf("PostgreSQL expects this query to return about %s rows, over this database's limit of %s: aggregate (count, GROUP BY), filter with WHERE, or add a LIMIT", [approx(input.plan.rows), approx(limit)])
}

plan_deny contains reason("plan_seq_scan", 0, msg) if {
	limit := data.sqlguard.plan.deny_seq_scan_over_rows
	some node in input.plan.nodes
	node.seq_scan
	node.relation_rows > limit
	msg := sprintf("%s (≈%s rows) would be read sequentially, and this database allows that only for tables up to %s rows: %s", [node.relation, approx(node.relation_rows), approx(limit), index_hint(node.relation)])
}

plan_deny contains reason("plan_cartesian", 0, msg) if {
	data.sqlguard.plan.deny_cartesian == true
	some node in input.plan.nodes
	node.cartesian
	msg := sprintf("the query pairs every row of %s with every row of %s (≈%s pairs): there is no join condition between them; add one (JOIN … ON a.x = b.y)", [side(node.outer), side(node.inner), approx(node.pairs)])
}

plan_deny contains reason("plan_spill", 0, msg) if {
	data.sqlguard.plan.deny_spill == true
	some node in input.plan.nodes
	node.spill_expected
	msg := sprintf("a %s step would hold about %s, more than work_mem (%s), and write temporary files: narrow the rows first (WHERE, LIMIT) or sort and group by fewer, smaller columns", [node.type, approx_bytes(node.memory_bytes), approx_bytes(input.plan.work_mem_bytes)])
}

# The indexed columns of a relation, as the advice for a sequential scan.
index_hint(rel) := sprintf("filter on an indexed column: %s", [concat(", ", cols)]) if {
	cols := input.plan.relations[rel].indexed_columns
	count(cols) > 0
}

index_hint(rel) := "it has no index: aggregate a smaller table, or ask the DBA for an index on the column you filter by" if {
	count(object.get(input.plan.relations, [rel, "indexed_columns"], [])) == 0
}

side(rels) := concat(", ", rels) if count(rels) > 0

side(rels) := "a subquery" if count(rels) == 0

# The node that costs the most on its own, named when it is a scan.
costliest_part := sprintf(" (most of it reading %s)", [names[0]]) if {
	scans := [n | some n in input.plan.nodes; n.relation]
	count(scans) > 0
	top := max([n.total_cost | some n in scans])
	names := sort({n.relation | some n in scans; n.total_cost == top})
} else := ""

# Numbers for people: 1234 → "1234", 56789 → "57 k", 4250000 → "4.3 M" (%v: never an
# error, whatever the number).
approx(n) := sprintf("%v", [round(n)]) if n < 10000

approx(n) := sprintf("%v k", [round(n / 1000)]) if {
	n >= 10000
	n < 1000000
}

approx(n) := sprintf("%v M", [round(n / 100000) / 10]) if n >= 1000000

approx_bytes(n) := sprintf("%v kB", [round(n / 1024)]) if n < 10485760

approx_bytes(n) := sprintf("%v MB", [round(n / 1048576)]) if n >= 10485760
