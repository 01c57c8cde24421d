# Unit tests for every rule of the default bundle: `sqlguard policy test policies`.
package sqlguard_test

import data.sqlguard
import rego.v1

# A statement's facts with every field present; `fields` overrides some.
stmt(fields) := object.union(
	{
		"index": 0, "location": 0, "length": 8, "node": "SelectStmt", "kind": "select",
		"nested_kinds": [], "read_only": true, "not_read_only": [], "relations": [],
		"functions": [], "operators": [], "columns": [], "settings": [], "locking": [],
		"into": [], "explain": null, "transaction": null, "unclassified": [], "parameters": [],
		"aggregates": [], "aggregate": false, "group_by": false, "distinct": false, "window": false,
		"order_by": false,
	},
	fields,
)

call(stmts) := {
	"query": {"sql_bytes": 8, "statement_count": count(stmts), "search_path": ["pg_catalog", "public"], "statements": stmts},
	"database": {"uri": "teleport://clusters/c/databases/shop", "cluster": "c", "name": "shop", "db_name": "shop", "db_user": "agent", "labels": {"env": "dev"}},
	"identity": {"user": "alice", "roles": ["dev"], "traits": {}},
	"tool": "teleport_postgres_query",
}

one(fields) := call([stmt(fields)])

rel(qualified, access) := {
	"schema": split(qualified, ".")[0], "name": split(qualified, ".")[1],
	"candidates": [split(qualified, ".")[0]], "qualified": true, "access": access,
	"cte": false, "builtin": startswith(qualified, "pg_catalog."), "qualified_name": qualified,
}

fn(name, volatility, builtin, risks) := {
	"schema": "pg_catalog", "name": name, "qualified_name": sprintf("pg_catalog.%s", [name]),
	"qualified": false, "builtin": builtin, "volatility": volatility, "risks": risks, "context": "call",
}

construct(name, detail) := {"construct": name, "detail": detail}


allowed(inp) if sqlguard.decision.allow with input as inp

denied_by(rule, inp) if {
	d := sqlguard.decision with input as inp
	not d.allow
	some r in d.reasons
	r.rule == rule
}

# ---- statements.rego

test_plain_select_is_allowed if allowed(one({"relations": [rel("public.users", "read")]}))

test_empty_query_is_denied if denied_by("empty_query", call([]))

test_two_statements_are_denied if denied_by("max_statements", call([stmt({}), stmt({"index": 1})]))

test_max_statements_is_a_knob if {
	allowed(call([stmt({}), stmt({"index": 1})])) with data.sqlguard.max_statements as 2
}

test_unclassified_node_is_denied if denied_by("unclassified_node", one({"unclassified": ["Var"]}))

test_parameters_are_denied if denied_by("parameters", one({"parameters": [1]}))

test_write_kinds_are_denied_in_read_only_mode if {
	every kind in ["insert", "update", "delete", "merge", "ddl", "dcl", "set", "transaction", "copy", "do", "call", "lock", "maintenance", "prepare", "execute", "cursor", "listen", "notify", "discard", "reset", "load", "utility"] {
		denied_by("statement_kind", one({"kind": kind}))
	}
}

test_show_and_explain_are_allowed if {
	allowed(one({"kind": "show", "node": "VariableShowStmt"}))
	allowed(one({"kind": "explain", "explain": {"analyze": false, "options": [], "statement": stmt({})}}))
}

test_dml_is_allowed_when_read_only_is_off if {
	allowed(one({"kind": "insert", "read_only": false, "not_read_only": [construct("data_modifying_statement", "INSERT")]})) with data.sqlguard.read_only as false
	denied_by("statement_kind", one({"kind": "ddl"})) with data.sqlguard.read_only as false
}

test_constructs_anywhere_are_denied if {
	every c in ["data_modifying_cte", "select_into", "row_lock", "explain_analyze_write", "read_write_transaction", "identity_switch"] {
		denied_by(c, one({"read_only": false, "not_read_only": [construct(c, "FOR UPDATE locks rows")]}))
	}
}

test_row_lock_message_says_what_to_remove if {
	d := sqlguard.decision with input as one({"not_read_only": [construct("row_lock", "FOR UPDATE locks rows")]})
	some r in d.reasons
	r.rule == "row_lock"
	contains(r.message, "remove FOR UPDATE")
}

test_escape_constructs_are_denied_even_when_writable if {
	denied_by("read_write_transaction", one({"kind": "insert", "not_read_only": [construct("read_write_transaction", "READ WRITE")]})) with data.sqlguard.read_only as false
}

test_explain_of_a_write_is_denied if {
	denied_by("explain_target", one({"kind": "explain", "explain": {"analyze": false, "options": [], "statement": stmt({"kind": "delete"})}}))
}

# Found by the sqlparser oracle: `EXPLAIN SELECT … INTO t` was allowed.
test_explain_of_a_read_that_is_not_read_only_is_denied if {
	every c in ["select_into", "data_modifying_cte", "row_lock"] {
		denied_by("explain_target", one({"kind": "explain", "explain": {"analyze": false, "options": [], "statement": stmt({"not_read_only": [construct(c, "x")]})}}))
	}
	# Where the statement itself is allowed (writable mode, a row lock), so is its EXPLAIN.
	not denied_by("explain_target", one({"kind": "explain", "explain": {"analyze": false, "options": [], "statement": stmt({"not_read_only": [construct("row_lock", "x")]})}})) with data.sqlguard.read_only as false
}

# ---- tables.rego

test_sensitive_catalogs_are_denied if denied_by("sensitive_catalog", one({"relations": [rel("pg_catalog.pg_authid", "read")]}))

test_tables_allow_limits_relations if {
	inp := one({"relations": [rel("public.orders", "read"), rel("pg_catalog.pg_class", "read")]})
	denied_by("table_not_allowed", inp) with data.sqlguard.tables.allow as ["public.orders"]
	allowed(inp) with data.sqlguard.tables.allow as ["public.orders", "pg_catalog.*"]
}

test_tables_deny_wins if {
	denied_by("table_denied", one({"relations": [rel("hr.salaries", "read")]})) with data.sqlguard.tables.deny as ["hr.*"]
}

test_every_candidate_schema_is_checked if {
	r := object.union(rel("public.users", "read"), {"candidates": ["public", "secret"]})
	denied_by("table_denied", one({"relations": [r]})) with data.sqlguard.tables.deny as ["secret.*"]
}

test_ctes_are_not_tables if {
	cte := object.union(rel("public.x", "read"), {"cte": true})
	allowed(one({"relations": [cte]})) with data.sqlguard.tables.allow as ["public.users"]
}

test_denied_column_by_name if {
	denied_by("column_denied", one({"columns": [{"name": "ssn", "relations": ["public.users"], "star": false}]})) with data.sqlguard.columns.deny as ["public.users.ssn"]
}

test_denied_column_through_star if {
	inp := one({"columns": [{"name": "*", "relations": ["public.users"], "star": true}]})
	denied_by("column_denied", inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
}

test_other_columns_are_allowed if {
	allowed(one({"columns": [{"name": "email", "relations": ["public.users"], "star": false}]})) with data.sqlguard.columns.deny as ["public.users.ssn"]
}

col(table, name, via) := {"name": name, "relations": [table], "star": name == "*", "via": via}

pinned(r, pins) := object.union(r, {"pinned": [{"column": c, "values": v} | some c, v in pins]})

reason_for(rule, inp) := [r.message | d := sqlguard.decision with input as inp; some r in d.reasons; r.rule == rule]

test_join_using_a_denied_column_is_an_oracle if {
	inp := one({"columns": [col("public.users", "ssn", "join_using")]})
	denied_by("column_denied", inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
	some m in reason_for("column_denied", inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
	contains(m, "USING (ssn)")
}

test_natural_join_and_column_aliases_say_what_to_change if {
	nat := one({"columns": [col("public.users", "*", "natural_join")]})
	some m in reason_for("column_denied", nat) with data.sqlguard.columns.deny as ["public.users.ssn"]
	contains(m, "with ON")
	ali := one({"columns": [col("public.users", "*", "column_aliases")]})
	some n in reason_for("column_denied", ali) with data.sqlguard.columns.deny as ["public.users.ssn"]
	contains(n, "alias list")
}

stats_read(pins) := one({
	"relations": [pinned(rel("pg_catalog.pg_stats", "read"), pins)],
	"columns": [col("pg_catalog.pg_stats", "histogram_bounds", "named")],
})

# pg_stats as the analysis writes it with the database's catalog: what its pinned rows sample.
stats_of(tables, columns, unmapped) := one({
	"relations": [object.union(rel("pg_catalog.pg_stats", "read"), {"stats_of": {"tables": tables, "columns": columns, "unmapped": unmapped}})],
	"columns": [col("pg_catalog.pg_stats", "histogram_bounds", "named")],
})

test_statistics_without_the_catalog_are_denied if {
	denied_by("column_side_channel", stats_read({}))
	denied_by("column_side_channel", stats_read({"tablename": ["users"], "attname": ["id"]}))
}

test_statistics_of_a_denied_column_are_denied if {
	deny := ["public.users.ssn"]
	denied_by("column_side_channel", stats_of(["public.users"], ["public.users.ssn"], [])) with data.sqlguard.columns.deny as deny
	denied_by("column_side_channel", stats_of(["public.users"], ["public.users.*"], [])) with data.sqlguard.columns.deny as deny
	# An expression index's row: its table's column.
	denied_by("column_side_channel", stats_of(["public.users", "public.users_lower_ssn"], ["public.users.ssn", "public.users_lower_ssn.lower"], [])) with data.sqlguard.columns.deny as deny
	some m in reason_for("column_side_channel", stats_of(["public.users"], ["public.users.ssn"], [])) with data.sqlguard.columns.deny as deny
	contains(m, "public.users.ssn")
}

test_statistics_of_protected_tables_are_denied if {
	denied_by("column_side_channel", stats_of(["public.secret"], ["public.secret.x"], [])) with data.sqlguard.tables.deny as ["public.secret"]
	denied_by("column_side_channel", stats_of(["hr.salaries"], ["hr.salaries.salary"], [])) with data.sqlguard.tables.allow as ["public.*"]
	denied_by("column_side_channel", stats_of(["pg_catalog.pg_authid"], ["pg_catalog.pg_authid.rolpassword"], []))
	# A side channel's own statistics show its values.
	denied_by("column_side_channel", stats_of(["pg_catalog.pg_db_role_setting"], ["pg_catalog.pg_db_role_setting.setconfig"], []))
	denied_by("column_side_channel", stats_of(["pg_catalog.pg_db_role_setting"], ["pg_catalog.pg_db_role_setting.*"], []))
}

test_statistics_that_cannot_be_mapped_are_denied if {
	denied_by("column_side_channel", stats_of([], [], ["every relation (tablename is not pinned)"]))
	denied_by("column_side_channel", stats_of(["public.orders"], ["public.orders.id"], ["public.gone (not in the catalog)"]))
}

test_statistics_pinned_to_readable_columns_are_allowed if {
	deny := ["public.users.ssn"]
	allowed(stats_of(["public.users"], ["public.users.id"], [])) with data.sqlguard.columns.deny as deny
	allowed(stats_of(["public.orders"], ["public.orders.*"], [])) with data.sqlguard.columns.deny as deny
	allowed(stats_of(["pg_catalog.pg_class"], ["pg_catalog.pg_class.*"], [])) with data.sqlguard.columns.deny as deny
	allowed(stats_of(["pg_catalog.pg_db_role_setting"], ["pg_catalog.pg_db_role_setting.setdatabase"], []))
	allowed(stats_of(["app.t"], ["app.t.x"], [])) with data.sqlguard.tables.allow as ["app.*", "pg_catalog.*"]
}

test_statistics_counts_are_allowed if {
	inp := one({
		"relations": [rel("pg_catalog.pg_stats", "read")],
		"columns": [col("pg_catalog.pg_stats", "null_frac", "named")],
	})
	allowed(inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
}

test_query_texts_are_denied_with_column_rules if {
	inp := one({
		"relations": [rel("pg_catalog.pg_stat_activity", "read")],
		"columns": [col("pg_catalog.pg_stat_activity", "query", "named")],
	})
	denied_by("column_side_channel", inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
	allowed(inp) with data.sqlguard.columns.deny as []
}

settings_read(pins) := one({
	"relations": [pinned(rel("pg_catalog.pg_settings", "read"), pins)],
	"columns": [col("pg_catalog.pg_settings", "*", "star")],
})

test_settings_view_follows_settings_sensitive if {
	denied_by("setting_sensitive", settings_read({}))
	denied_by("setting_sensitive", settings_read({"name": ["work_mem", "data_directory"]}))
	allowed(settings_read({"name": ["work_mem"]}))
	allowed(settings_read({})) with data.sqlguard.settings.sensitive as [] with data.sqlguard.settings.readable as ["*"]
}

test_custom_settings_are_sensitive_unless_readable if {
	denied_by("setting_sensitive", settings_read({}))
	denied_by("setting_sensitive", settings_read({"name": ["work_mem", "app.api_key"]}))
	allowed(settings_read({"name": ["work_mem", "app.region"]})) with data.sqlguard.settings.readable as ["app.region"]
	show := one({"settings": [{"action": "show", "name": "app.api_key"}]})
	denied_by("setting_sensitive", show)
	read := one({"settings": [{"action": "read", "name": "app.api_key"}]})
	denied_by("setting_sensitive", read)
	allowed(read) with data.sqlguard.settings.readable as ["app.*"]
	allowed(one({"settings": [{"action": "show", "name": "work_mem"}]}))
}

test_views_are_held_to_the_allow_list if {
	view := object.union(rel("public.salaries", "read"), {"kind": "view", "view_tables": ["hr.salaries"], "view_reads": ["hr.salaries", "hr.salaries.salary"]})
	inp := one({"relations": [view]})
	denied_by("view_reads_not_allowed", inp) with data.sqlguard.tables.allow as ["public.*"]
	allowed(inp) with data.sqlguard.tables.allow as ["public.*"] with data.sqlguard.tables.exposing_views as ["public.salaries"]
	# An exposing view still obeys deny rules.
	denied_by("view_reads_denied", inp) with data.sqlguard.tables.exposing_views as ["public.salaries"] with data.sqlguard.tables.deny as ["hr.*"]
}

test_rules_on_a_child_apply_to_its_parent if {
	parent := object.union(rel("public.ledger", "read"), {"descendants": ["public.ledger_secret"]})
	denied_by("table_denied", one({"relations": [parent]})) with data.sqlguard.tables.deny as ["public.ledger_secret"]
	# ONLY: the analysis lists no descendants.
	allowed(one({"relations": [rel("public.ledger", "read")]})) with data.sqlguard.tables.deny as ["public.ledger_secret"]
}

test_a_view_definition_call_is_named_with_its_view if {
	f := object.union(fn("reveal", "volatile", false, []), {"schema": "public", "qualified_name": "public.reveal", "source": "user", "language": "sql", "view": "public.customer_cards"})
	some m in reason_for("function_user", one({"functions": [f]}))
	contains(m, "called by the definition of view public.customer_cards")
}

test_role_settings_are_denied if {
	inp := one({
		"relations": [rel("pg_catalog.pg_roles", "read")],
		"columns": [col("pg_catalog.pg_roles", "rolconfig", "named")],
	})
	denied_by("setting_sensitive", inp)
}

test_side_channel_functions if {
	denied_by("setting_sensitive", one({"functions": [fn("pg_show_all_settings", "stable", true, [])]}))
	inp := one({"functions": [fn("pg_stat_get_activity", "stable", true, [])]})
	denied_by("column_side_channel", inp) with data.sqlguard.columns.deny as ["public.users.ssn"]
	allowed(inp) with data.sqlguard.columns.deny as []
}

# ---- functions.rego

test_risky_functions_are_denied_whatever_volatility if {
	denied_by("function_risk", one({"functions": [fn("query_to_xml", "stable", true, ["dynamic_sql"])]}))
}

test_risk_can_be_allowed_by_category if {
	allowed(one({"functions": [fn("pg_sleep", "volatile", true, ["sleep"])]})) with data.sqlguard.functions.allow_risks as ["sleep"]
}

test_volatile_builtins_are_denied_unless_harmless if {
	denied_by("function_volatile", one({"functions": [fn("pg_stat_clear_snapshot", "volatile", true, [])]}))
	allowed(one({"functions": [fn("random", "volatile", true, [])]}))
}

test_stable_and_immutable_builtins_are_allowed if {
	allowed(one({"functions": [fn("lower", "immutable", true, []), fn("now", "stable", true, [])]}))
}

test_unknown_functions_need_functions_allow if {
	f := {"schema": null, "name": "my_fn", "qualified_name": "my_fn", "qualified": false, "builtin": false, "volatility": "unknown", "risks": [], "context": "call"}
	denied_by("function_unknown", one({"functions": [f]}))
	allowed(one({"functions": [f]})) with data.sqlguard.functions.allow as ["my_fn"]
}

test_functions_deny_adds_more if {
	denied_by("function_denied", one({"functions": [fn("lower", "immutable", true, [])]})) with data.sqlguard.functions.deny as ["lower"]
}

test_unknown_operators_are_denied if {
	denied_by("operator_unknown", one({"operators": [{"schema": "public", "name": "+", "builtin": false}]}))
}

# ---- functions.rego with the database's catalog (facts from a snapshot)

# A function as a catalog snapshot describes it.
cat_fn(qualified, volatility, source, extension, secdef) := {
	"schema": split(qualified, ".")[0], "name": split(qualified, ".")[1], "qualified_name": qualified,
	"qualified": false, "builtin": source == "builtin", "volatility": volatility, "risks": [],
	"context": "call", "source": source, "security_definer": secdef, "extension": extension,
	"language": "c",
}

with_catalog(fields) := object.union(one(fields), {"query": object.union(one(fields).query, {"catalog": {"source": "snapshot", "server_version_num": 150000}})})

test_a_trusted_extensions_immutable_function_is_allowed if {
	allowed(with_catalog({"functions": [cat_fn("public.similarity", "immutable", "extension", "pg_trgm", false)]}))
	allowed(with_catalog({"functions": [cat_fn("public.levenshtein", "immutable", "extension", "fuzzystrmatch", false)]}))
}

test_an_untrusted_extensions_function_is_denied if {
	denied_by("function_extension_untrusted", with_catalog({"functions": [cat_fn("public.crypt", "immutable", "extension", "pgcrypto", false)]}))
	allowed(with_catalog({"functions": [cat_fn("public.crypt", "immutable", "extension", "pgcrypto", false)]})) with data.sqlguard.functions.trusted_extensions as ["pgcrypto"]
}

test_a_trusted_extensions_volatile_function_is_denied if {
	f := cat_fn("public.gen_random_bytes", "volatile", "extension", "pgcrypto", false)
	denied_by("function_volatile", with_catalog({"functions": [f]})) with data.sqlguard.functions.trusted_extensions as ["pgcrypto"]
}

test_a_trusted_extensions_risky_function_is_denied if {
	f := object.union(cat_fn("public.dblink", "volatile", "extension", "dblink", false), {"risks": ["external_session"]})
	denied_by("function_risk", with_catalog({"functions": [f]})) with data.sqlguard.functions.trusted_extensions as ["dblink"]
}

test_user_functions_are_denied_unless_allowed if {
	f := cat_fn("public.total", "stable", "user", null, false)
	denied_by("function_user", with_catalog({"functions": [f]}))
	allowed(with_catalog({"functions": [f]})) with data.sqlguard.functions.allow as ["public.total"]
}

test_security_definer_functions_have_their_own_reason if {
	f := cat_fn("public.peek", "stable", "user", null, true)
	denied_by("function_security_definer", with_catalog({"functions": [f]}))
	g := cat_fn("public.similarity", "immutable", "extension", "pg_trgm", true)
	denied_by("function_security_definer", with_catalog({"functions": [g]}))
}

test_a_function_missing_from_the_catalog_says_so if {
	f := object.union(cat_fn("public.nope", "unknown", "unknown", null, false), {"builtin": false})
	d := sqlguard.decision with input as with_catalog({"functions": [f]})
	some r in d.reasons
	r.rule == "function_unknown"
	contains(r.message, "does not exist in this database's catalog")
}

test_operators_are_judged_by_their_function if {
	trgm := {"schema": "public", "name": "<%", "builtin": false, "function": object.union(cat_fn("public.word_similarity_op", "stable", "extension", "pg_trgm", false), {"context": "operator", "operator": "<%"})}
	allowed(with_catalog({"operators": [trgm]}))
	mine := {"schema": "public", "name": "===", "builtin": false, "function": object.union(cat_fn("public.my_eq", "volatile", "user", null, false), {"context": "operator", "operator": "==="})}
	d := sqlguard.decision with input as with_catalog({"operators": [mine]})
	some r in d.reasons
	r.rule == "function_user"
	contains(r.message, "operator === (function public.my_eq)")
	allowed(with_catalog({"operators": [mine]})) with data.sqlguard.operators.allow as ["public.==="]
}

test_casts_are_judged_by_their_function if {
	check := object.union(cat_fn("public.chk", "volatile", "user", null, false), {"context": "cast", "cast": "public.positive"})
	d := sqlguard.decision with input as with_catalog({"functions": [check]})
	some r in d.reasons
	r.rule == "function_user"
	contains(r.message, "a cast to public.positive (function public.chk)")
	allowed(with_catalog({"functions": [check]})) with data.sqlguard.functions.allow as ["public.chk"]
	trusted := object.union(cat_fn("public.hstore_to_json", "immutable", "extension", "hstore", false), {"context": "cast", "cast": "pg_catalog.json"})
	allowed(with_catalog({"functions": [trusted]}))
}

test_operators_allow_opens_an_unknown_operator if {
	op := {"schema": "public", "name": "<%", "builtin": false}
	denied_by("operator_unknown", one({"operators": [op]}))
	allowed(one({"operators": [op]})) with data.sqlguard.operators.allow as ["<%"]
}

test_foreign_tables_are_denied_unless_allowed if {
	r := object.union(rel("public.remote_orders", "read"), {"kind": "foreign_table", "foreign": true, "foreign_server": "erp"})
	denied_by("foreign_table", with_catalog({"relations": [r]}))
	allowed(with_catalog({"relations": [r]})) with data.sqlguard.tables.allow_foreign as true
}

# ---- settings.rego

test_sensitive_settings_cannot_be_read if {
	denied_by("setting_sensitive", one({"kind": "show", "settings": [{"name": "ssl_key_file", "action": "show", "local": false, "value": null}]}))
	denied_by("setting_sensitive", one({"settings": [{"name": "archive_command", "action": "read", "local": false, "value": null}]}))
	denied_by("setting_sensitive", one({"kind": "show", "settings": [{"name": "all", "action": "show", "local": false, "value": null}]}))
}

test_ordinary_settings_can_be_read if {
	allowed(one({"kind": "show", "settings": [{"name": "search_path", "action": "show", "local": false, "value": null}]}))
}

test_computed_setting_names_are_denied if {
	denied_by("setting_dynamic", one({"settings": [{"name": null, "action": "read", "local": false, "value": null}]}))
}

test_setting_changes_are_denied if {
	denied_by("setting_change", one({"settings": [{"name": "role", "action": "write", "local": false, "value": "postgres"}]}))
}

# ---- tools.rego

tool_call(tool) := {"tool": tool, "identity": {"user": "alice", "roles": [], "traits": {}}}

test_both_tools_are_allowed_by_default if {
	allowed(tool_call("teleport_postgres_query"))
	allowed(tool_call("teleport_list_databases"))
}

test_tool_deny_literal_glob_and_regex if {
	denied_by("tool_denied", tool_call("teleport_postgres_query")) with data.sqlguard.tools.deny as ["teleport_postgres_query"]
	denied_by("tool_denied", tool_call("teleport_postgres_query")) with data.sqlguard.tools.deny as ["*_query"]
	denied_by("tool_denied", tool_call("teleport_postgres_query")) with data.sqlguard.tools.deny as ["^teleport_.*$"]
	allowed(tool_call("teleport_list_databases")) with data.sqlguard.tools.deny as ["^.*_query$"]
}

test_tool_allow_list_and_deny_wins if {
	denied_by("tool_denied", tool_call("teleport_postgres_query")) with data.sqlguard.tools.allow as ["teleport_list_databases"]
	denied_by("tool_denied", tool_call("teleport_list_databases")) with data.sqlguard.tools.allow as ["*"]
		with data.sqlguard.tools.deny as ["teleport_list_*"]
}

test_no_tool_is_allowed_when_allow_is_empty if {
	denied_by("tool_denied", tool_call("teleport_list_databases")) with data.sqlguard.tools.allow as []
}

# ---- limits.rego

test_default_limits if {
	d := sqlguard.decision with input as one({})
	d.limits == {"max_rows": 1000, "max_result_bytes": 1048576, "statement_timeout_ms": 30000}
}

test_limits_tighten_by_label_and_role if {
	by_label := [{"labels": {"env": "dev"}, "limits": {"max_rows": 100, "max_result_bytes": 1048576, "statement_timeout_ms": 5000}}]
	by_role := [{"role": "dev", "limits": {"max_rows": 500, "max_result_bytes": 4096, "statement_timeout_ms": 30000}}]
	d := sqlguard.decision with input as one({})
		with data.sqlguard.limits.by_label as by_label
		with data.sqlguard.limits.by_role as by_role
	d.limits == {"max_rows": 100, "max_result_bytes": 4096, "statement_timeout_ms": 5000}
}

test_limits_never_loosen if {
	by_role := [{"role": "dev", "limits": {"max_rows": 1000000, "max_result_bytes": 1048576, "statement_timeout_ms": 30000}}]
	d := sqlguard.decision with input as one({}) with data.sqlguard.limits.by_role as by_role
	d.limits.max_rows == 1000
}

test_other_labels_do_not_apply if {
	by_label := [{"labels": {"env": "prod"}, "limits": {"max_rows": 10, "max_result_bytes": 10, "statement_timeout_ms": 10}}]
	d := sqlguard.decision with input as one({}) with data.sqlguard.limits.by_label as by_label
	d.limits.max_rows == 1000
}

# ---- tables.rego with the database's catalog

test_a_partition_falls_under_its_parents_rules if {
	p := object.union(rel("public.events_2024", "read"), {"ancestors": ["public.events"]})
	denied_by("table_denied", one({"relations": [p]})) with data.sqlguard.tables.deny as ["public.events"]
}

test_a_partitions_columns_are_its_parents if {
	p := object.union(rel("public.vault_p1", "read"), {"ancestors": ["public.vault"]})
	c := {"name": "secret", "relations": ["public.vault_p1", "public.vault"], "star": false, "via": "named"}
	denied_by("column_denied", one({"relations": [p], "columns": [c]})) with data.sqlguard.columns.deny as ["public.vault.secret"]
}

test_a_view_over_a_denied_column_is_denied if {
	v := object.union(rel("public.vault_all", "read"), {"kind": "view", "view_reads": ["public.vault", "public.vault.id", "public.vault.secret"], "view_tables": ["public.vault"]})
	denied_by("view_reads_denied_column", one({"relations": [v]})) with data.sqlguard.columns.deny as ["public.vault.secret"]
	w := object.union(rel("public.vault_owners", "read"), {"kind": "view", "view_reads": ["public.vault.id", "public.vault.owner"], "view_tables": ["public.vault"]})
	allowed(one({"relations": [w]})) with data.sqlguard.columns.deny as ["public.vault.secret"]
}

test_a_view_over_a_side_channel_or_a_sensitive_catalog_is_denied if {
	v := object.union(rel("public.stats_peek", "read"), {"kind": "view", "view_reads": ["pg_catalog.pg_stats.most_common_vals"], "view_tables": ["pg_catalog.pg_stats"]})
	denied_by("view_reads_denied", one({"relations": [v]}))
	w := object.union(rel("public.roles_peek", "read"), {"kind": "view", "view_reads": ["pg_catalog.pg_authid.rolpassword"], "view_tables": ["pg_catalog.pg_authid"]})
	denied_by("view_reads_denied", one({"relations": [w]}))
}

# ---- ask: a person approves in the MCP client (tables.ask)

asked_by(rule, inp) if {
	d := sqlguard.decision with input as inp
	d.allow
	some r in d.ask
	r.rule == rule
}

test_an_asked_table_is_allowed_once_approved if {
	inp := one({"relations": [rel("hr.payroll", "read")]})
	asked_by("table_needs_approval", inp) with data.sqlguard.tables.ask as ["hr.payroll"]
	d := sqlguard.decision with input as inp with data.sqlguard.tables.ask as ["hr.*"]
	some r in d.ask
	contains(r.message, "hr.payroll needs a person's approval")
}

test_no_ask_without_tables_ask if {
	d := sqlguard.decision with input as one({"relations": [rel("hr.payroll", "read")]})
	d.allow
	count(d.ask) == 0
}

test_deny_wins_over_ask if {
	inp := one({"relations": [rel("hr.payroll", "read")]})
	d := sqlguard.decision with input as inp with data.sqlguard.tables.ask as ["hr.payroll"] with data.sqlguard.tables.deny as ["hr.*"]
	not d.allow
	count(d.ask) == 0
}

test_ask_holds_through_views_children_and_statistics if {
	view := object.union(rel("public.pay_view", "read"), {"kind": "view", "view_tables": ["hr.payroll"], "view_reads": ["hr.payroll", "hr.payroll.amount"]})
	asked_by("table_needs_approval", one({"relations": [view]})) with data.sqlguard.tables.ask as ["hr.payroll"]
	parent := object.union(rel("hr.payroll_all", "read"), {"descendants": ["hr.payroll"]})
	asked_by("table_needs_approval", one({"relations": [parent]})) with data.sqlguard.tables.ask as ["hr.payroll"]
	child := object.union(rel("hr.payroll_2026", "read"), {"ancestors": ["hr.payroll"]})
	asked_by("table_needs_approval", one({"relations": [child]})) with data.sqlguard.tables.ask as ["hr.payroll"]
	asked_by("table_needs_approval", stats_of(["hr.payroll"], ["hr.payroll.amount"], [])) with data.sqlguard.tables.ask as ["hr.payroll"] with data.sqlguard.tables.allow as ["*"]
}

# Masked columns (masks.rego).
masks := {"public.users.email": "email", "public.users.ssn": "initials"}

formats := {"initials": {"keep_first": 2, "fill": "#"}}

used(table, name, via, use) := object.union(col(table, name, via), {"use": use})

decision_of(inp) := d if {
	d := sqlguard.decision with input as inp with data.sqlguard.columns.mask as masks with data.sqlguard.columns.mask_formats as formats
}

test_a_masked_column_selected_as_it_is_is_allowed_and_masked if {
	d := decision_of(one({"columns": [used("public.users", "email", "named", "projection"), used("public.users", "*", "star", "projection")]}))
	d.allow
	d.mask.columns["public.users.email"] == {"kind": "email"}
	d.mask.columns["public.users.ssn"] == {"kind": "partial", "keep_first": 2, "keep_last": 0, "fill": "#"}
	d.mask.projected == ["public.users.email", "public.users.ssn"]
}

test_every_other_use_of_a_masked_column_is_refused if {
	some use in ["where", "join", "order_by", "group_by", "having", "distinct", "window", "expression", "set_operation", "subquery", "from", "limit", "other"]
	d := decision_of(one({"columns": [used("public.users", "email", "named", use)]}))
	not d.allow
	d.reasons[0].rule == "column_masked"
}

test_a_masked_column_reached_another_way_is_refused if {
	some via in ["whole_row", "join_using", "natural_join", "column_aliases"]
	name := {"whole_row": "*", "join_using": "email", "natural_join": "*", "column_aliases": "*"}[via]
	d := decision_of(one({"columns": [used("public.users", name, via, "projection")]}))
	not d.allow
	d.reasons[0].rule == "column_masked"
}

test_a_reference_without_its_place_is_not_a_projection if {
	not decision_of(one({"columns": [col("public.users", "email", "named")]})).allow
}

test_without_masks_the_decision_has_none if {
	d := sqlguard.decision with input as one({"columns": [used("public.users", "email", "named", "where")]})
	d.allow
	d.mask == {}
}

test_a_view_over_a_masked_column_is_refused if {
	v := object.union(rel("public.user_emails", "read"), {"kind": "view", "view_reads": ["public.users", "public.users.email"], "view_tables": ["public.users"]})
	d := decision_of(one({"relations": [v]}))
	not d.allow
	d.reasons[0].rule == "view_reads_masked_column"
}

test_statistics_of_a_masked_column_are_refused if {
	denied_by("column_side_channel", stats_of(["public.users"], ["public.users.email"], [])) with data.sqlguard.columns.mask as masks with data.sqlguard.columns.mask_formats as formats
}

test_an_unknown_mask_refuses_every_call if {
	d := sqlguard.decision with input as one({}) with data.sqlguard.columns.mask as {"public.users.email": "emial"}
	not d.allow
	d.reasons[0].rule == "mask_unknown"
	e := sqlguard.decision with input as one({}) with data.sqlguard.columns.mask as {"users.email": "email"}
	e.reasons[0].rule == "mask_unknown"
}
