# Which server settings may be read (changing any is a session change, denied in
# statements.rego).
package sqlguard

import rego.v1

# The rules below run only when a statement touches a setting at all: most touch none, and
# every rule body entered costs time on each call.
deny contains r if {
	some s in input.query.statements
	count(s.settings) > 0
	some r in setting_denials
}

setting_denials contains reason("setting_sensitive", i, msg) if {
	some i, s in input.query.statements
	some x in s.settings
	x.action in {"show", "read"}
	x.name in data.sqlguard.settings.sensitive
	msg := sensitive_message(x.name)
}

# A custom (dotted) setting (`app.api_key`, set by ALTER DATABASE / ALTER ROLE … SET) is
# sensitive unless settings.readable names it.
setting_denials contains reason("setting_sensitive", i, msg) if {
	some i, s in input.query.statements
	some x in s.settings
	x.action in {"show", "read"}
	x.name != null
	custom_setting_hidden(x.name)
	msg := sprintf("setting %s is a custom setting, which can hold secrets (API keys are kept in ALTER DATABASE … SET): it cannot be read unless settings.readable names it", [x.name])
}

sensitive_message("all") := "SHOW ALL lists sensitive settings: SHOW the setting you need"

sensitive_message(name) := sprintf("setting %s is sensitive (file paths, commands or keys) and cannot be read", [name]) if name != "all"

setting_denials contains reason("setting_dynamic", i, msg) if {
	some i, s in input.query.statements
	some x in s.settings
	x.name == null
	msg := sprintf("the setting name passed to %s is computed at run time: write it as a string literal", [setting_function(x.action)])
}

setting_function("read") := "current_setting"

setting_function("write") := "set_config"

setting_denials contains reason("setting_change", i, msg) if {
	some i, s in input.query.statements
	some x in s.settings
	x.action in {"set", "reset", "write"}
	x.name != null
	msg := sprintf("changing setting %s is not allowed: settings are pinned by sqlguard", [x.name])
}
