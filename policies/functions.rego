# Which functions and operators may be called.
#
# With the database's catalog (input.query.catalog.source == "snapshot"), every function
# carries where it comes from (`source`: builtin, extension, user), its volatility as
# declared, `security_definer` and its `extension`; every operator that is not PostgreSQL's
# own carries the function behind it and is judged as that function. Without a catalog,
# only PostgreSQL 15's built-ins are known and everything else is `unknown`.
package sqlguard

import rego.v1

function_allowed(f) if matches_any(data.sqlguard.functions.allow, f.qualified_name)

function_allowed(f) if {
	not f.qualified
	matches_any(data.sqlguard.functions.allow, f.name)
}

# An operator opened by name (operators.allow: "<%", "public.<%", "*").
operator_allowed(o) if {
	some pattern in data.sqlguard.operators.allow
	some name in {o.name, sprintf("%v.%v", [o.schema, o.name])}
	name_matches(pattern, name)
}

# Every function a statement runs, as [statement index, function]: those it calls, and
# those behind its operators (unless the operator itself is allowed by name). A rule, so
# it is computed once per call.
calls contains [i, f] if {
	some i, s in input.query.statements
	some f in s.functions
}

calls contains [i, o.function] if {
	some i, s in input.query.statements
	some o in s.operators
	o.function
	not operator_allowed(o)
}

# A call no rule below can deny (apart from functions.deny): an immutable or stable
# function of PostgreSQL or of a trusted extension, in no risk category, not SECURITY
# DEFINER. Most calls are; the rules then look only at the others.
plain(f) if {
	f.builtin
	count(f.risks) == 0
	f.volatility in {"immutable", "stable"}
	not f.security_definer
}

plain(f) if {
	f.source == "extension"
	f.extension in data.sqlguard.functions.trusted_extensions
	count(f.risks) == 0
	f.volatility in {"immutable", "stable"}
	not f.security_definer
}

suspect contains [i, f] if {
	some i, s in input.query.statements
	some f in s.functions
	not plain(f)
}

suspect contains [i, o.function] if {
	some i, s in input.query.statements
	some o in s.operators
	o.function
	not plain(o.function)
	not operator_allowed(o)
}

# Where a function comes from; facts without `source` (hand-written inputs) are read as
# the static catalog would have written them.
source(f) := f.source

source(f) := "builtin" if {
	not f.source
	f.builtin
}

source(f) := "unknown" if {
	not f.source
	not f.builtin
}

trusted_extension(f) if f.extension in data.sqlguard.functions.trusted_extensions

# How messages name what was called: a function behind an operator or a cast is named with
# what ran it.
behind(f) := sprintf("operator %s (function %s)", [f.operator, f.qualified_name]) if f.operator

behind(f) := sprintf("a cast to %s (function %s)", [f.cast, f.qualified_name]) if f.cast

own_callee(f) := behind(f)

own_callee(f) := sprintf("function %s", [f.name]) if not behind(f)

own_callee_qualified(f) := behind(f)

own_callee_qualified(f) := sprintf("function %s", [f.qualified_name]) if not behind(f)

# A function a view's definition calls runs whenever the view is read: named with the view.
callee(f) := sprintf("%s, called by the definition of view %s,", [own_callee(f), f.view]) if f.view

callee(f) := own_callee(f) if not f.view

callee_qualified(f) := sprintf("%s, called by the definition of view %s,", [own_callee_qualified(f), f.view]) if f.view

callee_qualified(f) := own_callee_qualified(f) if not f.view

# The rules on suspect calls below run only when a call has one at all: most calls call
# only plain built-ins, and every rule body entered costs time on each call.
deny contains r if {
	count(suspect) > 0
	some r in suspect_denials
}

# Risk categories are denied whatever the volatility or origin (threat model, classes 8
# and 9): a trusted extension's dblink, file or large-object function stays denied.
suspect_denials contains reason("function_risk", i, msg) if {
	some [i, f] in suspect
	some risk in f.risks
	not risk in data.sqlguard.functions.allow_risks
	not function_allowed(f)
	msg := sprintf("%s is not allowed: category %s", [callee(f), risk])
}

suspect_denials contains reason("function_volatile", i, msg) if {
	some [i, f] in suspect
	source(f) in {"builtin", "extension"}
	f.volatility == "volatile"
	count(f.risks) == 0
	not f.name in data.sqlguard.functions.harmless_volatile
	not function_allowed(f)
	msg := sprintf("%s is not allowed: it is volatile (it may change state); use a stable or immutable function", [callee(f)])
}

suspect_denials contains reason("function_unknown", i, msg) if {
	some [i, f] in suspect
	source(f) == "unknown"
	count(f.risks) == 0
	not function_allowed(f)
	msg := unknown_message(f, input.query)
}

unknown_message(f, q) := sprintf("function %s is not a PostgreSQL built-in and is not in functions.allow: use built-in functions only", [f.qualified_name]) if {
	object.get(q, ["catalog", "source"], "static") != "snapshot"
}

unknown_message(f, q) := sprintf("function %s does not exist in this database's catalog: check its name and arguments (read the schema resource for what exists)", [f.qualified_name]) if {
	q.catalog.source == "snapshot"
}

suspect_denials contains reason("function_extension_untrusted", i, msg) if {
	some [i, f] in suspect
	source(f) == "extension"
	count(f.risks) == 0
	not trusted_extension(f)
	not function_allowed(f)
	msg := sprintf("%s belongs to the extension %s, which is not in functions.trusted_extensions: use built-in functions, or ask for the extension to be trusted", [callee_qualified(f), f.extension])
}

suspect_denials contains reason("function_user", i, msg) if {
	some [i, f] in suspect
	source(f) == "user"
	count(f.risks) == 0
	not function_allowed(f)
	msg := sprintf("%s is defined by a user of this database (language %s) and is not in functions.allow: its body is not analyzed; use built-in functions, or ask for it to be allowed", [callee_qualified(f), object.get(f, "language", "unknown")])
}

suspect_denials contains reason("function_security_definer", i, msg) if {
	some [i, f] in suspect
	f.security_definer == true
	not function_allowed(f)
	msg := sprintf("%s runs with its owner's privileges (SECURITY DEFINER), which the read-only guard cannot limit: it is not allowed unless named in functions.allow", [callee_qualified(f)])
}

deny contains reason("function_denied", i, msg) if {
	some pattern in data.sqlguard.functions.deny
	some [i, f] in calls
	some name in {f.qualified_name, f.name}
	name_matches(pattern, name)
	msg := sprintf("%s is denied by the policy (functions.deny)", [callee_qualified(f)])
}

# Without the database's catalog an operator that is not PostgreSQL's own cannot be judged.
deny contains reason("operator_unknown", i, msg) if {
	some i, s in input.query.statements
	some o in s.operators
	not o.function
	not operator_allowed(o)
	msg := sprintf("operator %s is not a PostgreSQL built-in: use built-in operators only, or ask for it in operators.allow", [o.name])
}
