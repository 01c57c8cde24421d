package sqlguard_prod_test

import data.sqlguard
import data.sqlguard_test.call
import data.sqlguard_test.rel
import data.sqlguard_test.stmt
import rego.v1

prod(stmts) := object.union(call(stmts), {"database": {"labels": {"env": "prod"}}})

test_prod_reads_analytics_only if {
	d := sqlguard.decision with input as prod([stmt({"relations": [rel("public.users", "read")]})])
	not d.allow
	some r in d.reasons
	r.rule == "prod_schema"
}

test_prod_allows_analytics_with_tighter_limits if {
	d := sqlguard.decision with input as prod([stmt({"relations": [rel("analytics.daily", "read")], "limit": 100})])
	d.allow
	d.limits.max_rows == 200
	d.limits.statement_timeout_ms == 5000
}

test_dev_is_unaffected if {
	d := sqlguard.decision with input as call([stmt({"relations": [rel("public.users", "read")]})])
	d.allow
	d.limits.max_rows == 1000
}

test_prod_queries_are_judged_by_their_plan if {
	d := sqlguard.decision with input as prod([stmt({"relations": [rel("analytics.daily", "read")], "limit": 100})])
	d.explain
	d.limits.work_mem_kb == 16384
	d2 := sqlguard.decision with input as call([stmt({"relations": [rel("public.users", "read")]})])
	not d2.explain
}

test_prod_denies_a_large_sequential_scan if {
	scan := {
		"type": "Seq Scan", "parent": -1, "relation": "analytics.events", "rows": 10, "relation_rows": 2000000,
		"total_cost": 40000, "seq_scan": true, "cartesian": false, "nested_loop_without_index": false,
		"spill_expected": false, "workers": 0,
	}
	p := {
		"total_cost": 40000, "startup_cost": 0, "rows": 10, "work_mem_bytes": 16777216, "workers": 0, "nodes": [scan],
		"relations": {"analytics.events": {"rows_estimate": 2000000, "kind": "r", "indexed_columns": []}},
	}
	i := object.union(prod([stmt({"relations": [rel("analytics.events", "read")], "limit": 10})]), {"plan": p})
	d := sqlguard.decision with input as i
	not d.allow
	some r in d.reasons
	r.rule == "plan_seq_scan"
	contains(r.message, "it has no index")
}

daily(fields) := prod([stmt(object.union({"relations": [rel("analytics.daily", "read")]}, fields))])

limit_denied(fields) if {
	d := sqlguard.decision with input as daily(fields)
	not d.allow
	some r in d.reasons
	r.rule == "prod_limit"
}

test_prod_needs_a_limit_of_at_most_1000 if {
	limit_denied({})
	limit_denied({"limit": 1001})
	limit_denied({"limit": "expression"})
	not limit_denied({"limit": 1000})
	not limit_denied({"limit": 0})
}

test_prod_allows_an_aggregate_without_group_by if {
	not limit_denied({"aggregate": true, "aggregates": ["count"]})
	limit_denied({"aggregate": true, "aggregates": ["count"], "group_by": true})
	not limit_denied({"aggregate": true, "aggregates": ["count"], "group_by": true, "limit": 50})
}

test_dev_needs_no_limit if {
	d := sqlguard.decision with input as call([stmt({"relations": [rel("analytics.daily", "read")]})])
	d.allow
}

test_prod_asks_a_person_before_a_bulk_read if {
	d := sqlguard.decision with input as prod([stmt({"relations": [rel("analytics.daily", "read")], "limit": 500})])
	d.allow
	some r in d.ask
	r.rule == "prod_bulk_read"
	contains(r.message, "up to 500 rows")
	small := sqlguard.decision with input as prod([stmt({"relations": [rel("analytics.daily", "read")], "limit": 100})])
	count(small.ask) == 0
	dev := sqlguard.decision with input as call([stmt({"relations": [rel("analytics.daily", "read")], "limit": 500})])
	count(dev.ask) == 0
}
