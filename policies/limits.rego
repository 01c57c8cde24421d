# Result and time limits. Rules may only tighten the defaults: each limit is the smallest
# of the default and every matching entry of limits.by_label (database labels) and
# limits.by_role (Teleport roles).
package sqlguard

import rego.v1

limit_names := ["max_rows", "max_result_bytes", "statement_timeout_ms", "work_mem_kb", "temp_file_limit_kb"]

# Every set of limits that applies to this call.
applicable_limits contains data.sqlguard.limits.default

applicable_limits contains entry.limits if {
	some entry in data.sqlguard.limits.by_label
	every k, v in entry.labels {
		input.database.labels[k] == v
	}
}

applicable_limits contains entry.limits if {
	some entry in data.sqlguard.limits.by_role
	entry.role in input.identity.roles
}

# Usually only the defaults apply: then they are the limits, with nothing to compare.
effective_limits := data.sqlguard.limits.default if count(applicable_limits) == 1

effective_limits := {name: min(values) |
	some name in limit_names
	# `some k, v in l` rather than `l[name]`: regorus' RVM keeps an undefined lookup as an
	# element of the array.
	values := [v | some l in applicable_limits; some k, v in l; k == name]
	count(values) > 0
} if count(applicable_limits) > 1
