# Which relations and columns may be read.
package sqlguard

import rego.v1

# Every table a statement names, under each schema its name could resolve to (CTE
# references are no tables), computed once per call: [statement index, "schema.table"].
table_refs contains [i, name] if {
	some i, s in input.query.statements
	some r in s.relations
	not r.cte
	some schema in r.candidates
	name := concat(".", [schema, r.name])
}

# A partition or child table holds its parents' rows: their rules apply to it (needs the
# database's catalog: `ancestors`).
table_refs contains [i, name] if {
	some i, s in input.query.statements
	some r in s.relations
	some name in r.ancestors
}

# Reading a parent without ONLY reads its partitions and children (transitively): their rules
# apply to every query that can reach them, its EXPLAIN included (needs the database's
# catalog: `descendants`).
table_refs contains [i, name] if {
	some i, s in input.query.statements
	some r in s.relations
	some name in r.descendants
}

# The names one relation could resolve to (for rules of your own).
relation_names(r) := {concat(".", [c, r.name]) | some c in r.candidates}

deny contains reason("table_denied", i, msg) if {
	some pattern in data.sqlguard.tables.deny
	some [i, name] in table_refs
	name_matches(pattern, name)
	msg := sprintf("table %s is not allowed by the policy (tables.deny): query other tables", [name])
}

# "*" allows every table, so the usual configuration costs nothing here.
deny contains reason("table_not_allowed", i, msg) if {
	not "*" in data.sqlguard.tables.allow
	some [i, name] in table_refs
	not matches_any(data.sqlguard.tables.allow, name)
	# The allow list is not shown: other rules (per role, per database) may deny some of its
	# entries to this caller, and the schema resource lists exactly what the caller may read.
	msg := sprintf("table %s is not in the policy's allowed tables (tables.allow): query the tables the database's schema resource lists, which are the ones you may read", [name])
}

# tables.ask: relations a person must approve each read of (the agent's human, asked in the
# MCP client before the query runs). It holds for every other way to the same rows: their
# partitions and children (table_refs), views and materialized views built on them, and the
# statistics rows that sample their values.
table_asks contains reason("table_needs_approval", i, msg) if {
	some [i, name] in table_refs
	asked_table(name)
	msg := sprintf("table %s needs a person's approval for each query (tables.ask)", [name])
}

table_asks contains reason("table_needs_approval", i, msg) if {
	some i, s in input.query.statements
	some r in s.relations
	some table in r.view_tables
	asked_table(table)
	msg := sprintf("view %s reads %s, which needs a person's approval for each query (tables.ask)", [r.qualified_name, table])
}

table_asks contains reason("table_needs_approval", i, msg) if {
	some [i, r] in stats_reads
	some e in r.stats_of.columns
	[table, _] := stats_column(e)
	asked_table(table)
	msg := sprintf("%s rows sample values of %s, which needs a person's approval for each query (tables.ask)", [r.qualified_name, table])
}

# The usual configuration asks nothing: one test, and the rules above are not entered.
ask contains r if {
	count(asked_patterns) > 0
	some r in table_asks
}

asked_patterns := object.get(data.sqlguard.tables, "ask", [])

asked_table(name) if {
	some pattern in asked_patterns
	name_matches(pattern, name)
}

deny contains reason("sensitive_catalog", i, msg) if {
	some [i, name] in table_refs
	name in data.sqlguard.tables.sensitive
	msg := sprintf("%s holds credentials or server internals and is never readable: use another view", [name])
}

# columns.deny entries are "schema.table.column": [schema.table, column].
denied_columns contains [table, column] if {
	some entry in data.sqlguard.columns.deny
	parts := split(entry, ".")
	count(parts) >= 3
	column := parts[count(parts) - 1]
	table := concat(".", array.slice(parts, 0, count(parts) - 1))
}

# Denied and masked columns: what the statistics and query-text side channels must not show.
protected_columns := denied_columns | masked_columns

deny contains reason("column_denied", i, msg) if {
	some [table, column] in denied_columns
	some i, s in input.query.statements
	some c in s.columns
	not c.star
	c.name == column
	table in c.relations
	msg := named_column_message(object.get(c, "via", "named"), table, column)
}

named_column_message("join_using", table, column) := sprintf(
	"JOIN … USING (%s) compares the denied column %s.%s row by row: join ON readable columns instead",
	[column, table, column],
)

named_column_message(via, table, column) := sprintf(
	"column %s.%s is not readable: leave it out of the query",
	[table, column],
) if via != "join_using"

deny contains reason("column_denied", i, msg) if {
	some [table, column] in denied_columns
	some i, s in input.query.statements
	some c in s.columns
	c.star
	table in c.relations
	msg := all_columns_message(object.get(c, "via", "star"), table, column)
}

all_columns_message("natural_join", table, column) := sprintf(
	"NATURAL JOIN compares every column %s shares with the other side, the denied column %s.%s included: name the join columns with ON",
	[table, table, column],
)

all_columns_message("column_aliases", table, column) := sprintf(
	"a column alias list on %s renames its columns, the denied column %s.%s included: drop the alias list and name the columns you need",
	[table, table, column],
)

all_columns_message(via, table, column) := sprintf(
	"* (or a whole-row reference) of %s would read the denied column %s.%s: name the columns you need instead",
	[table, table, column],
) if not via in {"natural_join", "column_aliases"}

# A foreign table's rows come from another server: reading it sends a query there, under
# credentials of this database's user mapping (needs the database's catalog to be known).
deny contains reason("foreign_table", i, msg) if {
	not data.sqlguard.tables.allow_foreign
	some i, s in input.query.statements
	some r in s.relations
	r.foreign == true
	msg := sprintf("%s.%s is a foreign table (server %s): reading it sends queries to another server, which this policy does not allow (tables.allow_foreign)", [r.schema, r.name, object.get(r, "foreign_server", "unknown")])
}

# A view reads what its definition reads (needs the database's catalog): `view_tables`, its
# base tables through other views and partitions, and `view_reads`, those tables and their
# columns as `schema.table.column`.
deny contains reason("view_reads_denied", i, msg) if {
	some i, s in input.query.statements
	some r in s.relations
	some table in r.view_tables
	denied_base(table)
	msg := sprintf("view %s reads %s, which the policy does not let you read: query allowed tables directly", [r.qualified_name, table])
}

# tables.allow holds through views too: a view's base tables must be allowed, unless the
# view is named in tables.exposing_views, a deliberate exposure of what it shows (deny rules,
# sensitive catalogs and denied columns still hold through it).
deny contains reason("view_reads_not_allowed", i, msg) if {
	not "*" in data.sqlguard.tables.allow
	some i, s in input.query.statements
	some r in s.relations
	some table in r.view_tables
	not matches_any(data.sqlguard.tables.allow, table)
	not exposing_view(r)
	msg := sprintf("view %s reads %s, which is not in the policy's allowed tables (tables.allow): query the tables the database's schema resource lists, or ask for the view to be listed in tables.exposing_views", [r.qualified_name, table])
}

exposing_view(r) if matches_any(object.get(data.sqlguard.tables, "exposing_views", []), r.qualified_name)

denied_base(table) if {
	some pattern in data.sqlguard.tables.deny
	name_matches(pattern, table)
}

denied_base(table) if table in data.sqlguard.tables.sensitive

# A side channel (pg_stats, pg_stat_activity, pg_settings…) behind a view of the user's:
# the view's own WHERE cannot be judged, so it is refused.
denied_base(table) if data.sqlguard.side_channels.relations[table]

deny contains reason("view_reads_denied_column", i, msg) if {
	some [table, column] in denied_columns
	some i, s in input.query.statements
	some r in s.relations
	concat(".", [table, column]) in r.view_reads
	msg := sprintf("view %s is built on the denied column %s.%s: query the columns you need from the tables directly", [r.qualified_name, table, column])
}
