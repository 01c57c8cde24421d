# Unit tests for the plan rules (plan.rego): `sqlguard policy test policies`.
package sqlguard_plan_test

import data.sqlguard
import data.sqlguard_test.call
import data.sqlguard_test.rel
import data.sqlguard_test.stmt
import rego.v1

knobs := {
	"explain": true, "max_total_cost": 100000, "max_rows": 1000000,
	"deny_seq_scan_over_rows": 100000, "deny_cartesian": true, "deny_spill": true,
}

node(fields) := object.union(
	{
		"type": "Result", "parent": -1, "rows": 1, "total_cost": 1, "seq_scan": false,
		"cartesian": false, "nested_loop_without_index": false, "spill_expected": false, "workers": 0,
	},
	fields,
)

scan(relation, rows) := node({
	"type": "Seq Scan", "relation": relation, "rows": rows,
	"relation_rows": rows, "total_cost": rows / 50, "seq_scan": true,
})

plan(nodes, relations) := {
	"total_cost": max([n.total_cost | some n in nodes]), "startup_cost": 0, "rows": nodes[0].rows,
	"work_mem_bytes": 4194304, "workers": 0, "nodes": nodes, "relations": relations,
}

events := {"analytics.events": {"rows_estimate": 4000000, "kind": "r", "indexed_columns": ["created_at", "id"]}}

select_events := call([stmt({"relations": [rel("analytics.events", "read")]})])

with_plan(p) := object.union(select_events, {"plan": p})

reasons(d) := {r.rule | some r in d.reasons}

test_the_plan_is_asked_for_only_when_configured if {
	not sqlguard.decision.explain with input as select_events
	sqlguard.decision.explain with input as select_events with data.sqlguard.plan as knobs
	not sqlguard.decision.explain with input as call([stmt({"kind": "show"})]) with data.sqlguard.plan as knobs
	labelled := object.union(knobs, {"labels": {"env": "prod"}})
	not sqlguard.decision.explain with input as select_events with data.sqlguard.plan as labelled
}

test_without_a_plan_the_plan_rules_are_silent if {
	d := sqlguard.decision with input as select_events with data.sqlguard.plan as knobs
	d.allow
}

test_a_large_sequential_scan_names_the_indexed_columns if {
	d := sqlguard.decision with input as with_plan(plan([scan("analytics.events", 4000000)], events))
		with data.sqlguard.plan as knobs
	not d.allow
	some r in d.reasons
	r.rule == "plan_seq_scan"
	contains(r.message, "analytics.events (≈4 M rows)")
	contains(r.message, "filter on an indexed column: created_at, id")
}

test_a_small_sequential_scan_and_an_index_scan_pass if {
	small := plan([scan("analytics.events", 5000)], events)
	d := sqlguard.decision with input as with_plan(small) with data.sqlguard.plan as knobs
	d.allow
	index := plan([node({"type": "Index Scan", "relation": "analytics.events", "relation_rows": 4000000, "rows": 1, "total_cost": 8})], events)
	d2 := sqlguard.decision with input as with_plan(index) with data.sqlguard.plan as knobs
	d2.allow
}

test_cost_rows_cartesian_and_spill if {
	cross := node({
		"type": "Nested Loop", "rows": 16000000, "total_cost": 250000, "cartesian": true, "pairs": 16000000,
		"outer": ["analytics.events"], "inner": ["public.users"],
	})
	sort := node({"type": "Sort", "parent": 0, "memory_bytes": 104857600, "spill_expected": true})
	d := sqlguard.decision with input as with_plan(plan([cross, sort], events)) with data.sqlguard.plan as knobs
	reasons(d) == {"plan_cost", "plan_rows", "plan_cartesian", "plan_spill"}
	some r in d.reasons
	r.rule == "plan_cartesian"
	contains(r.message, "every row of analytics.events with every row of public.users (≈16 M pairs)")
	some s in d.reasons
	s.rule == "plan_spill"
	contains(s.message, "about 100 MB, more than work_mem (4096 kB)")
}

test_knobs_left_out_are_off if {
	cross := node({"type": "Nested Loop", "rows": 16000000, "total_cost": 250000, "cartesian": true, "pairs": 1, "outer": [], "inner": []})
	d := sqlguard.decision with input as with_plan(plan([cross, scan("analytics.events", 4000000)], events))
		with data.sqlguard.plan as {"explain": true}
	d.allow
}

test_explain_analyze_is_denied_where_plans_are_judged if {
	analyze := call([stmt({"kind": "explain", "explain": {"analyze": true, "options": ["analyze"], "statement": stmt({})}})])
	d := sqlguard.decision with input as analyze with data.sqlguard.plan as knobs
	"plan_explain_analyze" in reasons(d)
	d2 := sqlguard.decision with input as analyze
	not "plan_explain_analyze" in reasons(d2)
}

test_memory_limits_merge_by_label if {
	l := {"default": {"max_rows": 1000, "max_result_bytes": 1048576, "statement_timeout_ms": 30000},
		"by_label": [{"labels": {"env": "dev"}, "limits": {"max_rows": 10, "work_mem_kb": 8192}}], "by_role": []}
	d := sqlguard.decision with input as select_events with data.sqlguard.limits as l
	d.limits.max_rows == 10
	d.limits.work_mem_kb == 8192
	not d.limits.temp_file_limit_kb
}

test_numbers_for_people if {
	sqlguard.approx(1234) == "1234"
	sqlguard.approx(56789) == "57 k"
	sqlguard.approx(4250000) == "4.3 M"
	sqlguard.approx_bytes(104857600) == "100 MB"
}

test_a_dear_plan_asks_a_person_and_a_dearer_one_is_denied if {
	asking := object.union(knobs, {"ask_over_total_cost": 1000})
	d := sqlguard.plan_decision with input as with_plan(plan([scan("analytics.events", 100000)], events))
		with data.sqlguard.plan as object.union(asking, {"deny_seq_scan_over_rows": 10000000})
	d.allow
	some r in d.ask
	r.rule == "plan_cost_needs_approval"
	contains(r.message, "above which a person approves")
	cheap := sqlguard.plan_decision with input as with_plan(plan([scan("analytics.events", 100)], events))
		with data.sqlguard.plan as asking
	count(cheap.ask) == 0
	dear := sqlguard.plan_decision with input as with_plan(plan([scan("analytics.events", 40000000)], events))
		with data.sqlguard.plan as asking
	not dear.allow
}
