# The decision sqlguard asks for on every tool call: data.sqlguard.decision.
#
# Every other file of this package adds entries to `deny`, each an object
# {"rule": <name>, "message": <what to change>, "statement": <index or -1>}.
# A call is allowed only when nothing denies it. Entries of `ask`, of the same shape, say
# that a person must approve the call before it runs: deny wins over ask, ask over allow.
package sqlguard

import rego.v1

decision := {
	"allow": count(deny) == 0,
	"reasons": sorted_reasons,
	"ask": sorted_asks,
	"limits": effective_limits,
	"explain": explain_plan,
	"mask": mask_decision,
}

# Reasons ordered by statement, then rule, for stable output.
reason_by_key := {reason_key(d): d | some d in deny}

sorted_reasons := [reason_by_key[k] | some k in sort(object.keys(reason_by_key))]

# Asks in the same order; none where the call is denied anyway.
ask_by_key := {reason_key(a): a | some a in ask}

sorted_asks := [ask_by_key[k] | count(deny) == 0; some k in sort(object.keys(ask_by_key))]

reason_key(r) := sprintf("%06d %s %s", [r.statement + 1, r.rule, r.message])

# A reason about statement `i`.
reason(rule, i, message) := {"rule": rule, "statement": i, "message": message}

# Glob match where `*` matches any characters, dots included ("public.*", "*.secret").
# The common shapes (everything, a literal, one `*`) are matched without compiling a glob.
name_matches(pattern, _) if pattern == "*"

name_matches(pattern, name) if pattern == name

name_matches(pattern, name) if {
	parts := split(pattern, "*")
	count(parts) == 2
	startswith(name, parts[0])
	endswith(name, parts[1])
	count(name) >= count(parts[0]) + count(parts[1])
}

name_matches(pattern, name) if {
	count(split(pattern, "*")) > 2
	glob.match(pattern, null, name)
}

matches_any(patterns, name) if {
	some p in patterns
	name_matches(p, name)
}
