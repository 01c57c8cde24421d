# Which MCP tools an identity may use, with Teleport's matching rules: a literal, a glob with
# `*`, or a regular expression written ^…$. Deny wins; denied tools are hidden from
# tools/list and refused on call.
package sqlguard

import rego.v1

tool_matches(pattern, tool) if {
	not is_regex(pattern)
	name_matches(pattern, tool)
}

tool_matches(pattern, tool) if {
	is_regex(pattern)
	regex.match(pattern, tool)
}

is_regex(p) if {
	startswith(p, "^")
	endswith(p, "$")
}

tool_allowed if {
	tool_listed
	not tool_denied
}

# "*" lists every tool, so the usual configuration needs no matching.
tool_listed if "*" in data.sqlguard.tools.allow

tool_listed if {
	not "*" in data.sqlguard.tools.allow
	some p in data.sqlguard.tools.allow
	tool_matches(p, input.tool)
}

tool_denied if {
	some p in data.sqlguard.tools.deny
	tool_matches(p, input.tool)
}

deny contains reason("tool_denied", -1, msg) if {
	input.tool
	not tool_allowed
	msg := sprintf("tool %s is not allowed for %s by the policy", [input.tool, object.get(input, ["identity", "user"], "this identity")])
}
