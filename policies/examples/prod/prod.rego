# Production databases (label env=prod) expose only the analytics schema.
package sqlguard

import rego.v1

deny contains reason("prod_schema", i, msg) if {
	input.database.labels.env == "prod"
	some i, s in input.query.statements
	some r in s.relations
	not r.cte
	not startswith(r.qualified_name, "analytics.")
	msg := sprintf("on production databases only the analytics schema is readable, not %s: query analytics.* instead", [r.qualified_name])
}
