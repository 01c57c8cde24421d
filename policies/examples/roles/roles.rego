# Rules per Teleport role (from the user's certificate: input.identity.roles).
package sqlguard

import rego.v1

deny contains reason("role_contractor_hr", i, msg) if {
	"contractor" in input.identity.roles
	some i, s in input.query.statements
	some r in s.relations
	not r.cte
	some name in relation_names(r)
	glob.match("hr.*", null, name)
	msg := sprintf("role contractor may not read %s", [name])
}

deny contains reason("role_auditor_explain", i, "role auditor may not run EXPLAIN: run the query itself") if {
	"auditor" in input.identity.roles
	some i, s in input.query.statements
	s.kind == "explain"
}
