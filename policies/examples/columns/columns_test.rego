package sqlguard_columns_test

import data.sqlguard
import data.sqlguard_test.one
import rego.v1

col(table, name) := {"name": name, "relations": [table], "star": name == "*"}

test_pii_columns_are_unreadable if {
	d := sqlguard.decision with input as one({"columns": [col("public.users", "ssn")]})
	not d.allow
}

test_star_on_a_pii_table_is_refused if {
	d := sqlguard.decision with input as one({"columns": [col("public.payments", "*")]})
	some r in d.reasons
	r.rule == "column_denied"
	contains(r.message, "name the columns")
}

test_other_columns_are_readable if {
	d := sqlguard.decision with input as one({"columns": [col("public.users", "email"), col("public.orders", "*")]})
	d.allow
}
