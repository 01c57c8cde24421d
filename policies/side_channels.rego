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

# The rules below run only when a call reads a side-channel view at all: most calls read none,
# and every rule body entered costs time on each call.
deny contains r if {
	count(side_channel_reads) > 0
	some r in side_channel_denials
}

# Statistics (pg_stats' most common values, histogram bounds, …) are samples of real values.
# With the database's catalog, the analysis maps the rows a query's WHERE pins (schemaname,
# tablename, attname) to what they sample (`stats_of`): an index's row to its table's columns,
# a materialized view's to its base columns, a partition's or child's to its parents' and a
# parent's to its children's. Every rule on those tables and columns applies; a row that
# cannot be mapped, or a read without the catalog, is refused.
stats_reads contains [i, r] if {
	some [i, name] in side_channel_reads
	data.sqlguard.side_channels.relations[name].shows == "column_values"
	some r in input.query.statements[i].relations
	not r.cte
	some schema in r.candidates
	concat(".", [schema, r.name]) == name
}

side_channel_denials contains reason("column_side_channel", i, msg) if {
	some [i, r] in stats_reads
	not r.stats_of
	msg := sprintf(
		"%s shows sample values of columns, and without the database's catalog sqlguard cannot tell which tables and columns its rows sample (indexes, materialized views and child tables hold values of others): run with the database's catalog, or leave its value columns out",
		[r.qualified_name],
	)
}

side_channel_denials contains reason("column_side_channel", i, msg) if {
	some [i, r] in stats_reads
	count(r.stats_of.unmapped) > 0
	msg := sprintf(
		"%s rows of %s cannot be mapped to the columns they sample: pin schemaname and tablename to relations of the catalog with WHERE schemaname = '…' AND tablename = '…'",
		[r.qualified_name, few({u | some u in r.stats_of.unmapped})],
	)
}

side_channel_denials contains reason("column_side_channel", i, msg) if {
	some [i, r] in stats_reads
	exposed := {t | some t in r.stats_of.tables; stats_table_protected(t)}
	count(exposed) > 0
	msg := sprintf(
		"%s rows pinned this way sample values of %s, which the policy does not let you read: pin tablename to readable tables",
		[r.qualified_name, few(exposed)],
	)
}

side_channel_denials contains reason("column_side_channel", i, msg) if {
	some [i, r] in stats_reads
	exposed := stats_exposed(r) | stats_side_channel_exposed(r)
	count(exposed) > 0
	msg := sprintf(
		"%s rows pinned this way sample values of the protected column %s: pin tablename and attname to readable columns with WHERE tablename = '…' AND attname = '…'",
		[r.qualified_name, few(exposed)],
	)
}

stats_table_protected(t) if {
	some pattern in data.sqlguard.tables.deny
	name_matches(pattern, t)
}

stats_table_protected(t) if {
	not "*" in data.sqlguard.tables.allow
	not matches_any(data.sqlguard.tables.allow, t)
}

stats_table_protected(t) if t in data.sqlguard.tables.sensitive

# "schema.table.column" (or "schema.table.*") as [schema.table, column].
stats_column(e) := [concat(".", array.slice(parts, 0, count(parts) - 1)), parts[count(parts) - 1]] if {
	parts := split(e, ".")
}

# The denied and masked columns a statistics read samples ("schema.table.*": every column of the table).
stats_exposed(r) := {concat(".", [table, column]) |
	some e in r.stats_of.columns
	[sampled, which] := stats_column(e)
	some [table, column] in protected_columns
	table == sampled
	which in {"*", column}
}

# A side channel's own statistics: pg_db_role_setting's setconfig values, say.
stats_side_channel_exposed(r) := {concat(".", [sampled, column]) |
	some e in r.stats_of.columns
	[sampled, which] := stats_column(e)
	some column in data.sqlguard.side_channels.relations[sampled].columns
	which in {"*", column}
}

# Other sessions' SQL text carries the values they wrote and compared.
side_channel_denials contains reason("column_side_channel", i, msg) if {
	count(protected_columns) > 0
	some [i, name] in side_channel_reads
	data.sqlguard.side_channels.relations[name].shows == "query_texts"
	msg := sprintf(
		"%s shows the SQL text of other sessions, which can carry values of the denied or masked columns (%s): leave its query column out",
		[name, few({concat(".", [t, c]) | some [t, c] in protected_columns})],
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

# Custom (dotted) settings, set by ALTER DATABASE / ALTER ROLE … SET or by an extension, are
# where people keep API keys: pg_settings shows them unless its WHERE pins `name` to names in
# settings.readable (or to built-in settings).
side_channel_denials contains reason("setting_sensitive", i, msg) if {
	some [i, name] in side_channel_reads
	view := data.sqlguard.side_channels.relations[name]
	view.shows == "setting_values"
	some r in input.query.statements[i].relations
	not r.cte
	some schema in r.candidates
	concat(".", [schema, r.name]) == name
	exposed := custom_settings_shown(r, view.keys.name)
	count(exposed) > 0
	msg := sprintf(
		"%s can show custom settings (%s), which can hold secrets: pin the settings you need with WHERE %s = '…', or ask for them to be listed in settings.readable",
		[name, few(exposed), view.keys.name],
	)
}

custom_settings_shown(r, column) := {"every custom (dotted) setting"} if {
	not pinned_column(r, column)
	not "*" in object.get(data.sqlguard.settings, "readable", [])
}

custom_settings_shown(r, column) := {v |
	some p in r.pinned
	p.column == column
	some v in p.values
	custom_setting_hidden(v)
} if pinned_column(r, column)

pinned_column(r, column) if {
	some p in object.get(r, "pinned", [])
	p.column == column
}

custom_setting_hidden(name) if {
	contains(name, ".")
	not matches_any(object.get(data.sqlguard.settings, "readable", []), lower(name))
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
	# The function behind a side-channel view (pg_stat_statements) is judged by the view's
	# columns the query reads, above.
	not data.sqlguard.side_channels.relations[object.get(f, "view", "")]
	[rule, msg] := side_channel_function(shows, f.qualified_name)
}

side_channel_function("setting_values", name) := ["setting_sensitive", msg] if {
	count(data.sqlguard.settings.sensitive) > 0
	msg := sprintf("%s() returns every setting, sensitive ones included: read pg_catalog.pg_settings WHERE name = '…' instead", [name])
}

side_channel_function("query_texts", name) := ["column_side_channel", msg] if {
	count(protected_columns) > 0
	msg := sprintf("%s() shows the SQL text of other sessions, which can carry values of denied or masked columns: read pg_stat_activity without its query column", [name])
}

side_channel_function("column_values", name) := ["column_side_channel", msg] if {
	count(protected_columns) > 0
	msg := sprintf("%s() shows sample values of columns, denied and masked ones included: leave it out", [name])
}

# A set as a short, stable list for messages.
few(set) := concat(", ", sort(set)) if count(set) <= 4

few(set) := sprintf("%s and %d more", [concat(", ", array.slice(sort(set), 0, 3)), count(set) - 3]) if count(set) > 4
