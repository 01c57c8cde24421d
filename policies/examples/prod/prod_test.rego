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
	d := sqlguard.decision with input as prod([stmt({"relations": [rel("analytics.daily", "read")]})])
	d.allow
	d.limits.max_rows == 200
	d.limits.statement_timeout_ms == 5000
}

test_dev_is_unaffected if {
	d := sqlguard.decision with input as call([stmt({"relations": [rel("public.users", "read")]})])
	d.allow
	d.limits.max_rows == 1000
}
