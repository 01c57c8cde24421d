# Production databases (label env=prod) expose only the analytics schema, and every query
# returns a bounded number of rows.
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

# A LIMIT of at most data.sqlguard.ext.prod.max_limit (a number: an expression could be
# anything), or an aggregate without GROUP BY (one row).
deny contains reason("prod_limit", i, msg) if {
	input.database.labels.env == "prod"
	some i, s in input.query.statements
	s.kind == "select"
	not bounded_rows(s)
	max := data.sqlguard.ext.prod.max_limit
	msg := sprintf("on production databases a query returns at most %d rows: add LIMIT %d (a number), or aggregate without GROUP BY", [max, max])
}

# More than data.sqlguard.ext.prod.ask_over_limit rows (within max_limit) is a bulk read: a
# person at the MCP client approves it before it runs.
ask contains reason("prod_bulk_read", i, msg) if {
	input.database.labels.env == "prod"
	some i, s in input.query.statements
	is_number(s.limit)
	s.limit > data.sqlguard.ext.prod.ask_over_limit
	s.limit <= data.sqlguard.ext.prod.max_limit
	msg := sprintf("this query reads up to %d rows from a production database, more than %d: a person approves each such read", [s.limit, data.sqlguard.ext.prod.ask_over_limit])
}

bounded_rows(s) if {
	is_number(s.limit)
	s.limit <= data.sqlguard.ext.prod.max_limit
}

bounded_rows(s) if {
	s.aggregate
	not s.group_by
}
