package sqlguard_roles_test

import data.sqlguard
import data.sqlguard_test.call
import data.sqlguard_test.rel
import data.sqlguard_test.stmt
import rego.v1

as_role(role, stmts) := object.union(call(stmts), {"identity": {"user": "bob", "roles": [role], "traits": {}}})

test_contractors_cannot_read_hr if {
	d := sqlguard.decision with input as as_role("contractor", [stmt({"relations": [rel("hr.salaries", "read")]})])
	some r in d.reasons
	r.rule == "role_contractor_hr"
}

test_contractors_read_the_rest if {
	d := sqlguard.decision with input as as_role("contractor", [stmt({"relations": [rel("public.orders", "read")]})])
	d.allow
}

test_auditors_get_no_explain_and_fewer_rows if {
	e := sqlguard.decision with input as as_role("auditor", [stmt({"kind": "explain", "explain": {"analyze": false, "options": [], "statement": stmt({})}})])
	not e.allow
	d := sqlguard.decision with input as as_role("auditor", [stmt({})])
	d.limits.max_rows == 100
}
