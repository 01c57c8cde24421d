# Masked columns (columns.mask): agents get the shape of a column's values, never the values.
#
# sqlguard masks the values it returns, by what PostgreSQL says each result column is (its
# table and attribute); it never rewrites the SQL. So a masked column may only be selected as
# it is: under any alias, through subqueries, CTEs and `*`. Every other use computes from its
# values and would answer questions about them (an oracle), so it is refused: conditions,
# joins, sorting, grouping, DISTINCT, set operations, functions, operators, casts, whole-row
# references, subqueries in expressions. Views built on it are refused (their columns are
# the view's, not the table's), and so are the statistics rows that sample it.
package sqlguard

import rego.v1

# "schema.table.column" → the name of a mask: a built-in one, or one of columns.mask_formats.
mask_entries := object.get(data.sqlguard.columns, "mask", {})

masked_columns contains [table, column] if {
	some entry, _ in mask_entries
	parts := split(entry, ".")
	count(parts) >= 3
	column := parts[count(parts) - 1]
	table := concat(".", array.slice(parts, 0, count(parts) - 1))
}

builtin_masks := {
	"redact": {"kind": "redact", "text": "[masked]"},
	"null": {"kind": "null"},
	"hash": {"kind": "hash"},
	"email": {"kind": "email"},
	"last4": {"kind": "partial", "keep_first": 0, "keep_last": 4, "fill": "*"},
}

# A format of the team's own: {"text": "…"} replaces every value with the text; {"keep_first":
# n, "keep_last": m, "fill": "*"} keeps the first n and last m characters and fills the rest.
mask_spec(name) := builtin_masks[name]

mask_spec(name) := {"kind": "redact", "text": f.text} if {
	not builtin_masks[name]
	f := data.sqlguard.columns.mask_formats[name]
	is_string(f.text)
}

mask_spec(name) := object.union({"kind": "partial", "keep_first": 0, "keep_last": 0, "fill": "*"}, f) if {
	not builtin_masks[name]
	f := data.sqlguard.columns.mask_formats[name]
	not f.text
}

effective_masks[entry] := mask_spec(name) if {
	some entry, name in mask_entries
}

# The decision's `mask`: what execution applies, and the masked columns this call selects.
default mask_decision := {}

mask_decision := {"columns": effective_masks, "projected": sort(projected_masked)} if count(mask_entries) > 0

projected_masked contains concat(".", [table, column]) if {
	some [table, column] in masked_columns
	some s in input.query.statements
	some c in s.columns
	reads_masked(c, table, column)
	as_is(c)
}

# A mask that names no format: every call is refused until the data is fixed.
deny contains reason("mask_unknown", -1, msg) if {
	some entry, name in mask_entries
	not mask_spec(name)
	msg := sprintf("columns.mask gives %s the mask %v, which is neither built in (redact, null, hash, email, last4) nor in columns.mask_formats: fix the policy data", [entry, name])
}

deny contains reason("mask_unknown", -1, msg) if {
	some entry, _ in mask_entries
	count(split(entry, ".")) < 3
	msg := sprintf("columns.mask entry %s is not schema.table.column: fix the policy data", [entry])
}

# Column reference c reads masked column `column` of `table`.
reads_masked(c, table, column) if {
	not c.star
	c.name == column
	table in c.relations
}

reads_masked(c, table, _) if {
	c.star
	table in c.relations
}

as_is(c) if {
	c.use == "projection"
	c.via in {"named", "star"}
}

deny contains reason("column_masked", i, msg) if {
	count(mask_entries) > 0
	some [table, column] in masked_columns
	some i, s in input.query.statements
	some c in s.columns
	reads_masked(c, table, column)
	not as_is(c)
	msg := sprintf("column %s.%s is masked: it may only be selected as it is (under any alias, through subqueries, CTEs and *), and %s", [table, column, masked_use(c, column)])
}

masked_use(c, column) := sprintf("JOIN … USING (%s) compares its values row by row: join ON other columns", [column]) if c.via == "join_using"

masked_use(c, _) := "NATURAL JOIN compares every column the two sides share, it included: name the join columns with ON" if c.via == "natural_join"

masked_use(c, _) := "a column alias list renames the columns it covers, it included: drop the list and rename with AS" if c.via == "column_aliases"

masked_use(c, _) := "a whole-row reference turns it into text with the rest of the row: name the columns you need" if c.via == "whole_row"

masked_use(c, _) := masked_place[object.get(c, "use", "other")] if c.via in {"named", "star"}

masked_place := {
	"projection": "this use of it is not one sqlguard can mask",
	"expression": "a function, operator, cast or other expression over it computes from its values: select it as it is",
	"where": "a WHERE condition on it is an oracle on its values: filter on other columns",
	"join": "a join condition on it compares its values: join on other columns",
	"order_by": "ORDER BY or GROUP BY over it (by name, position or output name) shows the order or the groups of its values: sort and group by other columns",
	"group_by": "GROUP BY over it groups rows by its values: group by other columns",
	"having": "a HAVING condition on it is an oracle on its values: leave it out of HAVING",
	"distinct": "DISTINCT compares its values: select it without DISTINCT",
	"window": "a window partitioned or ordered by it computes from its values: use other columns in OVER",
	"set_operation": "UNION, INTERSECT and EXCEPT compare the rows of their branches: select it without a set operation",
	"subquery": "a subquery in an expression (IN, EXISTS, ANY, a scalar subquery, EXPLAIN) uses its values: select it in the main query or in a subquery in FROM, naming the columns you need",
	"from": "a function, TABLESAMPLE or VALUES in FROM over it computes from its values: select it as it is",
	"limit": "a LIMIT or OFFSET computed from it is an oracle on its values",
	"other": "only a SELECT can return it",
}

# A view or materialized view built on a masked column returns its values under the view's
# own name, which PostgreSQL does not attribute to the table.
deny contains reason("view_reads_masked_column", i, msg) if {
	count(mask_entries) > 0
	some [table, column] in masked_columns
	some i, s in input.query.statements
	some r in s.relations
	concat(".", [table, column]) in r.view_reads
	msg := sprintf("view %s is built on the masked column %s.%s, whose values only come back masked from the table itself: query %s directly", [r.qualified_name, table, column, table])
}
