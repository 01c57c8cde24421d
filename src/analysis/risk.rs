//! Risk categories of functions callable from a plain `SELECT` (threat model, classes 8–10).
//!
//! A category is a fact, not a decision: the default policy denies every category whatever
//! the function's volatility, and a security team can allow one by name. Patterns match the
//! function name (`*` at the end is a prefix); a schema-qualified pattern matches only that
//! schema. Extension functions (dblink, cron, adminpack, …) are listed too, since an
//! extension can be installed in any database.

/// `(pattern, category)`, most specific first.
const RISKS: &[(&str, &str)] = &[
    // 9. SQL given as text: tables and functions inside are invisible to any AST policy.
    ("query_to_xml*", "dynamic_sql"),
    ("query_to_xmlschema", "dynamic_sql"),
    ("cursor_to_xml*", "dynamic_sql"),
    ("table_to_xml*", "dynamic_sql"),
    ("schema_to_xml*", "dynamic_sql"),
    ("database_to_xml*", "dynamic_sql"),
    ("ts_stat", "dynamic_sql"),
    ("ts_rewrite", "dynamic_sql"),
    ("xpath_table", "dynamic_sql"),
    ("crosstab*", "dynamic_sql"),
    ("connectby", "dynamic_sql"),
    ("dblink*", "external_session"),
    ("postgres_fdw_*", "external_session"),
    // 8. Server files.
    ("pg_read_file", "server_files"),
    ("pg_read_binary_file", "server_files"),
    ("pg_ls_*", "server_files"),
    ("pg_stat_file", "server_files"),
    ("pg_file_*", "server_files"),
    ("pg_logdir_ls", "server_files"),
    ("pg_current_logfile", "server_files"),
    // Large objects (import/export touch server files; unlink/write change data).
    ("lo_*", "large_objects"),
    ("loread", "large_objects"),
    ("lowrite", "large_objects"),
    ("be_lo_*", "large_objects"),
    // Backends and the server itself.
    ("pg_terminate_backend", "backend_control"),
    ("pg_cancel_backend", "backend_control"),
    ("pg_reload_conf", "backend_control"),
    ("pg_rotate_logfile*", "backend_control"),
    ("pg_log_backend_memory_contexts", "backend_control"),
    ("pg_promote", "backend_control"),
    ("pg_wal_replay_*", "backend_control"),
    ("pg_signal_backend", "backend_control"),
    // Sleep and advisory locks.
    ("pg_sleep*", "sleep"),
    ("pg_advisory_*", "advisory_locks"),
    ("pg_try_advisory_*", "advisory_locks"),
    // Sequences.
    ("nextval", "sequences"),
    ("setval", "sequences"),
    // Notifications.
    ("pg_notify", "notify"),
    // Configuration.
    ("set_config", "configuration"),
    // Statistics resets.
    ("pg_stat_reset*", "statistics_reset"),
    ("pg_stat_statements_reset", "statistics_reset"),
    // Replication and backup control.
    ("pg_backup_*", "replication_backup"),
    ("pg_start_backup", "replication_backup"),
    ("pg_stop_backup", "replication_backup"),
    ("pg_switch_wal", "replication_backup"),
    ("pg_create_restore_point", "replication_backup"),
    ("pg_create_*_replication_slot", "replication_backup"),
    ("pg_copy_*_replication_slot", "replication_backup"),
    ("pg_drop_replication_slot", "replication_backup"),
    ("pg_replication_slot_advance", "replication_backup"),
    ("pg_logical_slot_*", "replication_backup"),
    ("pg_logical_emit_message", "replication_backup"),
    ("pg_replication_origin_*", "replication_backup"),
    ("pg_sync_replication_slots", "replication_backup"),
    // Maintenance functions that write despite READ ONLY.
    ("gin_clean_pending_list", "maintenance"),
    ("brin_summarize_*", "maintenance"),
    ("brin_desummarize_range", "maintenance"),
    ("pg_import_system_collations", "maintenance"),
    ("pg_prewarm", "maintenance"),
    ("binary_upgrade_*", "maintenance"),
    ("pg_nextoid", "maintenance"),
    ("txid_current", "maintenance"),
    ("pg_current_xact_id", "maintenance"),
    // Extension schedulers and background workers.
    ("cron.*", "scheduler"),
    ("pg_cron.*", "scheduler"),
    ("pg_background_*", "scheduler"),
];

/// One entry of [`RISKS`], split once: schema (if any), and the name as a literal or as the
/// prefix and suffix around its `*`.
struct Pattern {
    schema: Option<&'static str>,
    name: &'static str,
    star: Option<(&'static str, &'static str)>,
    category: &'static str,
}

static PATTERNS: std::sync::LazyLock<Vec<Pattern>> = std::sync::LazyLock::new(|| {
    RISKS
        .iter()
        .map(|(pattern, category)| {
            let (schema, name) = match pattern.split_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, *pattern),
            };
            Pattern {
                schema,
                name,
                star: name.split_once('*'),
                category,
            }
        })
        .collect()
});

/// The risk categories of `schema.name` (`schema` as resolved, `None` when unknown).
pub fn categories(schema: Option<&str>, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in PATTERNS.iter() {
        if p.schema.is_some() && schema != p.schema {
            continue;
        }
        let hit = match p.star {
            Some((prefix, suffix)) => {
                name.starts_with(prefix)
                    && name.ends_with(suffix)
                    && name.len() >= prefix.len() + suffix.len()
            }
            None => name == p.name,
        };
        if hit && !out.iter().any(|c| c == p.category) {
            out.push(p.category.to_string());
        }
    }
    out
}

/// Every category name, for documentation and policy tests.
pub fn all_categories() -> Vec<&'static str> {
    let mut v: Vec<&str> = RISKS.iter().map(|(_, c)| *c).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_functions() {
        assert_eq!(categories(Some("pg_catalog"), "pg_sleep_for"), ["sleep"]);
        assert_eq!(
            categories(Some("pg_catalog"), "query_to_xml_and_xmlschema"),
            ["dynamic_sql"]
        );
        assert_eq!(categories(None, "dblink_exec"), ["external_session"]);
        assert_eq!(categories(Some("cron"), "schedule"), ["scheduler"]);
        assert_eq!(
            categories(Some("pg_catalog"), "pg_create_logical_replication_slot"),
            ["replication_backup"]
        );
        assert!(categories(Some("pg_catalog"), "lower").is_empty());
        assert!(all_categories().contains(&"sequences"));
    }
}
