# The other ways a column's or a setting's values come out of PostgreSQL's own catalog: views
# that show samples of columns (statistics) or the SQL other sessions sent, views of settings,
# and the functions behind them (threat model, "side channels"; every catalog view checked is
# listed in docs/threat-model.md). The views are data: data.sqlguard.side_channels.
package sqlguard

import rego.v1

# Statement i reads the value columns (or every column) of side-channel relation `name`.
side_channel_reads contains [i, name] if {
	some [i, name] in table_refs
	view := data.sqlguard.side_channels.relations[name]
	some c in input.query.statements[i].columns
	name in c.relations
	shows_values(view, c)
}

shows_values(_, c) if c.star

shows_values(view, c) if c.name in view.columns

# Could an occurrence of relation `name` in statement i show the row whose key columns hold
# `keys` ({column: value})? Only when every occurrence's WHERE pins a key column away from it
# can it not (the analysis records pins for catalog relations: Relation.pinned).
shows_row(i, name, keys) if {
	some r in input.query.statements[i].relations
	not r.cte
	some schema in r.candidates
	concat(".", [schema, r.name]) == name
	not pinned_away(r, keys)
}

pinned_away(r, keys) if {
	some p in object.get(r, "pinned", [])
	some column, value in keys
	p.column == column
	not value in p.values
}

# columns.deny as [schema, table, column] (a table name with dots stays whole).
denied_column_parts contains [parts[0], concat(".", array.slice(parts, 1, count(parts))), column] if {
	some [table, column] in denied_columns
	parts := split(table, ".")
}

# The rules below run only when a call reads a side-channel view at all: most calls read none,
# and every rule body entered costs time on each call.
deny contains r if {
	count(side_channel_reads) > 0
	some r in side_channel_denials
}

# Statistics (pg_stats' most common values, histogram bounds, …) are samples of real values.
side_channel_denials contains reason("column_side_channel", i, msg) if {
	some [i, name] in side_channel_reads
	view := data.sqlguard.side_channels.relations[name]
	view.shows == "column_values"
	exposed := {concat(".", [s, t, c]) |
		some [s, t, c] in denied_column_parts
		shows_row(i, name, {view.keys.schema: s, view.keys.table: t, view.keys.column: c})
	}
	count(exposed) > 0
	msg := sprintf(
		"%s shows sample values of columns (%s), the denied %s included: leave those columns out, or pin %s and %s to readable columns with WHERE %s = '…' AND %s = '…'",
		[name, few({c | some c in view.columns}), few(exposed), view.keys.table, view.keys.column, view.keys.table, view.keys.column],
	)
}

# Other sessions' SQL text carries the values they wrote and compared.
side_channel_denials contains reason("column_side_channel", i, msg) if {
	count(denied_columns) > 0
	some [i, name] in side_channel_reads
	data.sqlguard.side_channels.relations[name].shows == "query_texts"
	msg := sprintf(
		"%s shows the SQL text of other sessions, which can carry values of the denied columns (%s): leave its query column out",
		[name, few({concat(".", [t, c]) | some [t, c] in denied_columns})],
	)
}

# pg_settings shows every setting's value unless its WHERE pins `name` to harmless ones.
side_channel_denials contains reason("setting_sensitive", i, msg) if {
	some [i, name] in side_channel_reads
	view := data.sqlguard.side_channels.relations[name]
	view.shows == "setting_values"
	exposed := {x |
		some x in data.sqlguard.settings.sensitive
		x != "all"
		shows_row(i, name, {view.keys.name: x})
	}
	count(exposed) > 0
	msg := sprintf(
		"%s can show sensitive settings (%s): pin the settings you need with WHERE %s = '…' (or IN (…)) and no other condition on its columns",
		[name, few(exposed), view.keys.name],
	)
}

# ALTER ROLE / ALTER DATABASE … SET values: free-form, where people do keep secrets.
side_channel_denials contains reason("setting_sensitive", i, msg) if {
	some [i, name] in side_channel_reads
	view := data.sqlguard.side_channels.relations[name]
	view.shows == "role_settings"
	msg := sprintf(
		"%s (%s) shows settings stored with ALTER ROLE or ALTER DATABASE … SET, which can hold secrets: leave it out",
		[name, concat(", ", view.columns)],
	)
}

deny contains reason(rule, i, msg) if {
	some i, s in input.query.statements
	some f in s.functions
	shows := data.sqlguard.side_channels.functions[f.qualified_name]
	[rule, msg] := side_channel_function(shows, f.qualified_name)
}

side_channel_function("setting_values", name) := ["setting_sensitive", msg] if {
	count(data.sqlguard.settings.sensitive) > 0
	msg := sprintf("%s() returns every setting, sensitive ones included: read pg_catalog.pg_settings WHERE name = '…' instead", [name])
}

side_channel_function("query_texts", name) := ["column_side_channel", msg] if {
	count(denied_columns) > 0
	msg := sprintf("%s() shows the SQL text of other sessions, which can carry values of denied columns: read pg_stat_activity without its query column", [name])
}

side_channel_function("column_values", name) := ["column_side_channel", msg] if {
	count(denied_columns) > 0
	msg := sprintf("%s() shows sample values of columns, denied ones included: leave it out", [name])
}

# A set as a short, stable list for messages.
few(set) := concat(", ", sort(set)) if count(set) <= 4

few(set) := sprintf("%s and %d more", [concat(", ", array.slice(sort(set), 0, 3)), count(set) - 3]) if count(set) > 4
