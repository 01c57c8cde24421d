# Which functions and operators may be called.
package sqlguard

import rego.v1

function_allowed(f) if matches_any(data.sqlguard.functions.allow, f.qualified_name)

function_allowed(f) if {
	not f.qualified
	matches_any(data.sqlguard.functions.allow, f.name)
}

# Risk categories are denied whatever the volatility (threat model, classes 8 and 9).
deny contains reason("function_risk", i, msg) if {
	some i, s in input.query.statements
	some f in s.functions
	some risk in f.risks
	not risk in data.sqlguard.functions.allow_risks
	not function_allowed(f)
	msg := sprintf("function %s is not allowed: category %s", [f.name, risk])
}

deny contains reason("function_volatile", i, msg) if {
	some i, s in input.query.statements
	some f in s.functions
	f.builtin
	f.volatility == "volatile"
	count(f.risks) == 0
	not f.name in data.sqlguard.functions.harmless_volatile
	not function_allowed(f)
	msg := sprintf("function %s is not allowed: it is volatile (it may change state); use a stable or immutable function", [f.name])
}

deny contains reason("function_unknown", i, msg) if {
	some i, s in input.query.statements
	some f in s.functions
	not f.builtin
	count(f.risks) == 0
	not function_allowed(f)
	msg := sprintf("function %s is not a PostgreSQL built-in and is not in functions.allow: use built-in functions only", [f.qualified_name])
}

deny contains reason("function_denied", i, msg) if {
	some pattern in data.sqlguard.functions.deny
	some i, s in input.query.statements
	some f in s.functions
	some name in {f.qualified_name, f.name}
	name_matches(pattern, name)
	msg := sprintf("function %s is denied by the policy (functions.deny)", [f.qualified_name])
}

deny contains reason("operator_unknown", i, msg) if {
	some i, s in input.query.statements
	some o in s.operators
	msg := sprintf("operator %s is not a PostgreSQL built-in: use built-in operators only", [o.name])
}
