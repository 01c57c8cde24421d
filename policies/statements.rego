# Which statements may run: one statement, and in read-only mode only reads.
package sqlguard

import rego.v1


deny contains reason("empty_query", -1, "the query has no SQL statement: send one SELECT") if {
	input.query
	input.query.statement_count == 0
}

deny contains reason("max_statements", -1, msg) if {
	input.query.statement_count > data.sqlguard.max_statements
	msg := sprintf("the query has %d statements but at most %d may be sent at once: send them one at a time", [input.query.statement_count, data.sqlguard.max_statements])
}

deny contains reason("unclassified_node", i, msg) if {
	some i, s in input.query.statements
	some node in s.unclassified
	msg := sprintf("sqlguard cannot classify the construct %s: rewrite the query without it", [node])
}

deny contains reason("parameters", i, msg) if {
	some i, s in input.query.statements
	count(s.parameters) > 0
	msg := "the query uses $n parameters but none are sent: write the values into the query"
}

allowed_kinds := data.sqlguard.statements.read_only_kinds if data.sqlguard.read_only

allowed_kinds := data.sqlguard.statements.writable_kinds if not data.sqlguard.read_only

deny contains reason("statement_kind", i, msg) if {
	some i, s in input.query.statements
	not s.kind in allowed_kinds
	msg := sprintf("%s statements are not allowed%s: only %s may run", [upper(kind_label(s.kind)), mode_label, concat(", ", [upper(kind_label(k)) | some k in allowed_kinds])])
}

mode_label := " (read-only mode)" if data.sqlguard.read_only

mode_label := "" if not data.sqlguard.read_only

kind_label(k) := replace(k, "_", " ")

# In read-only mode, every construct that makes a statement other than read-only is denied,
# wherever it sits in the tree (data-modifying CTEs, SELECT INTO, row locks, EXPLAIN
# ANALYZE of a write, session and transaction changes, side-effect functions).
deny contains reason(c.construct, i, construct_message(c)) if {
	data.sqlguard.read_only
	some i, s in input.query.statements
	some c in s.not_read_only
	not c.construct in kind_constructs
}

# These constructs repeat the statement kind, which `statement_kind` already reports.
kind_constructs := {
	"data_modifying_statement", "session_change", "transaction_control", "copy", "ddl", "dcl",
	"prepared_statement", "cursor", "notification", "table_lock", "maintenance",
	"procedural_code", "load_library", "utility", "side_effect_function",
}

# Never allowed, even with read_only off: they step outside the guarded transaction or
# identity (threat model, classes 2 and 10).
deny contains reason(c.construct, i, construct_message(c)) if {
	not data.sqlguard.read_only
	some i, s in input.query.statements
	some c in s.not_read_only
	c.construct in {"read_write_transaction", "identity_switch", "select_into", "data_modifying_cte", "explain_analyze_write"}
}

construct_message(c) := msg if {
	advice := {
		"data_modifying_cte": "remove the INSERT/UPDATE/DELETE/MERGE from the WITH clause",
		"select_into": "remove INTO and select the rows instead of creating a table",
		"row_lock": sprintf("remove %s (reads need no row locks)", [trim_suffix(c.detail, " locks rows")]),
		"explain_analyze_write": "explain it without ANALYZE, or EXPLAIN ANALYZE a SELECT",
		"read_write_transaction": "remove READ WRITE (transactions are read-only)",
		"identity_switch": "do not change the role or session user",
	}
	msg := sprintf("%s: %s", [c.detail, advice[c.construct]])
}

construct_message(c) := c.detail if {
	not c.construct in {"data_modifying_cte", "select_into", "row_lock", "explain_analyze_write", "read_write_transaction", "identity_switch"}
}

# The EXPLAIN rules below run only for an EXPLAIN: every rule body entered costs time on
# each call.
deny contains r if {
	some s in input.query.statements
	s.kind == "explain"
	some r in explain_denials
}

# EXPLAIN is allowed only for a statement that is itself allowed.
explain_denials contains reason("explain_target", i, msg) if {
	some i, s in input.query.statements
	s.kind == "explain"
	not s.explain.statement.kind in allowed_kinds
	msg := sprintf("EXPLAIN of %s is not allowed: explain a statement that may itself run", [upper(kind_label(s.explain.statement.kind))])
}

# …and a read that is not read-only (`SELECT … INTO`, a data-modifying `WITH`, `FOR UPDATE`)
# is not itself allowed either, even though a plain EXPLAIN would not run it.
explain_denials contains reason("explain_target", i, msg) if {
	some i, s in input.query.statements
	s.kind == "explain"
	some c in s.explain.statement.not_read_only
	construct_denied(c)
	msg := sprintf("EXPLAIN of a statement that is not read-only is not allowed (%s)", [construct_message(c)])
}

# The constructs denied in the explained statement itself: all of them in read-only mode, the
# escapes always.
construct_denied(_) if data.sqlguard.read_only

construct_denied(c) if {
	c.construct in {"read_write_transaction", "identity_switch", "select_into", "data_modifying_cte", "explain_analyze_write"}
}
