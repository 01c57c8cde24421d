//! Policy: facts → decision, through the real Rego files of `policies/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use sqlguard::analysis::AnalysisOptions;
use sqlguard::policy::{Bundle, Decision, Identity, Policy, PolicyError};

use crate::support::{corpus_dir, peer_cases};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The default bundle, loaded from `policies/` on disk.
fn default_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::new(Bundle::load(&[policies_dir()], &[]).unwrap()).unwrap())
}

/// The decision for `sql` by `policy`, for alice (role dev), no database.
pub fn decide(policy: &Policy, sql: &str) -> Decision {
    let identity = Identity {
        user: "alice".into(),
        roles: vec!["dev".into()],
        traits: Default::default(),
        ..Default::default()
    };
    policy
        .check(
            sql,
            &AnalysisOptions::default(),
            None,
            &identity,
            "teleport_postgres_query",
        )
        .decision
}

/// Each case: SQL and the rule that must deny it.
fn expect_denied(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (sql, rule) in cases {
        let d = decide(default_policy(), sql);
        if d.allow || !d.reasons.iter().any(|r| r.rule == *rule) {
            failures.push(format!("{sql}\n  expected a denial by {rule}, got {d:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn expect_allowed(cases: &[&str]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|sql| {
            let d = decide(default_policy(), sql);
            (!d.allow).then(|| format!("{sql}\n  expected allowed, got {}", d.message()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

static DEEP: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000)));

/// The cases of [`threat_model_classes_are_denied`].
const THREAT_MODEL_CLASSES: &[(&str, &str)] = &[
    // 1. Stacked statements.
    ("COMMIT; DROP TABLE users", "max_statements"),
    ("SELECT 1; DELETE FROM users", "max_statements"),
    ("END; SELECT 1", "statement_kind"),
    // 2. Read-write switches.
    ("SET TRANSACTION READ WRITE", "read_write_transaction"),
    ("BEGIN READ WRITE", "read_write_transaction"),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "read_write_transaction",
    ),
    ("SET default_transaction_read_only = off", "setting_change"),
    (
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "function_risk",
    ),
    ("RESET ALL", "statement_kind"),
    ("DISCARD ALL", "statement_kind"),
    // 3. Data-modifying CTEs.
    (
        "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d",
        "data_modifying_cte",
    ),
    (
        "SELECT * FROM (WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x) s",
        "data_modifying_cte",
    ),
    // 4. SELECT INTO.
    ("SELECT * INTO copy FROM users", "select_into"),
    // 5. Row locks.
    ("SELECT * FROM users FOR UPDATE", "row_lock"),
    (
        "SELECT * FROM (SELECT * FROM users FOR KEY SHARE) s",
        "row_lock",
    ),
    // 6. EXPLAIN ANALYZE of a write.
    ("EXPLAIN ANALYZE DELETE FROM users", "explain_analyze_write"),
    ("EXPLAIN DELETE FROM users", "explain_target"),
    // 7. Statements allowed inside READ ONLY.
    ("SET search_path = evil, public", "statement_kind"),
    ("PREPARE p AS SELECT 1", "statement_kind"),
    ("EXECUTE p", "statement_kind"),
    ("DECLARE c CURSOR FOR SELECT 1", "statement_kind"),
    ("LOAD 'x'", "statement_kind"),
    ("VACUUM users", "statement_kind"),
    ("ANALYZE users", "statement_kind"),
    ("LISTEN ch", "statement_kind"),
    ("NOTIFY ch", "statement_kind"),
    ("LOCK TABLE users IN ACCESS SHARE MODE", "statement_kind"),
    ("COPY users TO STDOUT", "statement_kind"),
    ("COPY (SELECT 1) TO PROGRAM 'id'", "statement_kind"),
    ("CHECKPOINT", "statement_kind"),
    ("ALTER SYSTEM SET work_mem = '1GB'", "statement_kind"),
    ("DO $$ BEGIN END $$", "statement_kind"),
    ("CALL p()", "statement_kind"),
    // 8. Side-effect functions.
    ("SELECT nextval('s')", "function_risk"),
    ("SELECT pg_terminate_backend(1)", "function_risk"),
    ("SELECT pg_sleep(10)", "function_risk"),
    ("SELECT pg_advisory_lock(1)", "function_risk"),
    ("SELECT pg_notify('c', 'x')", "function_risk"),
    ("SELECT pg_reload_conf()", "function_risk"),
    ("SELECT pg_stat_reset()", "function_risk"),
    ("SELECT pg_read_file('/etc/passwd')", "function_risk"),
    ("SELECT * FROM pg_ls_dir('.')", "function_risk"),
    ("SELECT lo_import('/etc/passwd')", "function_risk"),
    (
        "SELECT dblink_exec('host=x', 'DROP TABLE t')",
        "function_risk",
    ),
    ("SELECT gin_clean_pending_list('i')", "function_risk"),
    (
        "SELECT cron.schedule('* * * * *', 'DELETE FROM t')",
        "function_risk",
    ),
    (
        "SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM t",
        "function_risk",
    ),
    (
        "SELECT * FROM t LIMIT (SELECT nextval('s'))",
        "function_risk",
    ),
    // 9. SQL as text.
    (
        "SELECT query_to_xml('DELETE FROM users RETURNING *', true, true, '')",
        "function_risk",
    ),
    ("SELECT * FROM ts_stat('SELECT v FROM t')", "function_risk"),
    // 10. Identity switches.
    ("SET ROLE postgres", "identity_switch"),
    ("SET SESSION AUTHORIZATION postgres", "identity_switch"),
    (
        "SELECT set_config('role', 'postgres', false)",
        "setting_change",
    ),
    // 11–12. Resolution: sensitive catalogs by any spelling.
    ("SELECT * FROM pg_authid", "sensitive_catalog"),
    ("SELECT * FROM pg_catalog.pg_shadow", "sensitive_catalog"),
    (
        "WITH pg_authid AS (SELECT * FROM pg_authid) SELECT * FROM pg_authid",
        "sensitive_catalog",
    ),
    // 13. Unicode escapes.
    ("SELECT U&\"pg_read_fil\\0065\"('x')", "function_risk"),
    ("SELECT * FROM U&\"pg_auth\\0069d\"", "sensitive_catalog"),
    // 15. Parser limits: a clear denial (and `DEEP`, in the test).
    ("SELECT * FORM users", "syntax_error"),
    // Settings and unknown code.
    ("SHOW ssl_key_file", "setting_sensitive"),
    ("SHOW ALL", "setting_sensitive"),
    (
        "SELECT current_setting('archive_command')",
        "setting_sensitive",
    ),
    (
        "SELECT current_setting(name) FROM pg_settings",
        "setting_dynamic",
    ),
    ("SELECT my_function()", "function_unknown"),
    ("SELECT 1 OPERATOR(public.+) 1", "operator_unknown"),
    ("SELECT * FROM t WHERE id = $1", "parameters"),
    ("", "empty_query"),
];

/// Every bypass class of the threat model is denied, with a reason naming it.
#[test]
fn threat_model_classes_are_denied() {
    expect_denied(THREAT_MODEL_CLASSES);
    expect_denied(&[(DEEP.as_str(), "too_deep")]);
}

/// Text that looks dangerous to a lexer but is a plain read.
#[test]
fn false_positive_traps_are_allowed() {
    expect_allowed(&[
        "SELECT 'DROP TABLE users; DELETE FROM x' AS s",
        "SELECT $$ COMMIT; DROP TABLE t $$",
        "SELECT 1 -- ; DROP TABLE users",
        "SELECT /* DELETE FROM t; */ 1",
        "SELECT \"update\", \"delete\" FROM \"insert\"",
        "SELECT * FROM t WHERE note = 'for update'",
        "SELECT 'a''; DELETE FROM t; --'",
        "SELECT nextval_count FROM stats",
        "WITH updates AS (SELECT * FROM t) SELECT * FROM updates",
        "EXPLAIN SELECT * FROM users",
        "EXPLAIN ANALYZE SELECT * FROM users",
        "SHOW search_path",
        "SELECT current_setting('search_path')",
        "SELECT now(), random(), gen_random_uuid(), lower('X'), count(*) FROM users",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        "SELECT relname, pg_total_relation_size(oid) FROM pg_class",
        "VALUES (1, 'a'), (2, 'b')",
        "TABLE users",
        "SELECT * FROM users TABLESAMPLE BERNOULLI (10)",
    ]);
}

#[test]
fn tpch_queries_are_allowed() {
    let Some(dir) = corpus_dir() else { return };
    let mut n = 0;
    for i in 1..=22 {
        let path = dir.join(format!("tpch/{i}.sql"));
        let text = std::fs::read_to_string(&path).unwrap();
        if i == 1 {
            // Q1 writes `interval '90' day (3)`, SQL-standard syntax PostgreSQL's grammar
            // rejects: the server could not run it either, so it is refused with the
            // parser's message.
            let d = decide(default_policy(), &text);
            assert_eq!(d.reasons[0].rule, "syntax_error", "{d:?}");
            assert!(
                d.reasons[0]
                    .message
                    .contains("syntax error at or near \"(\""),
                "{d:?}"
            );
            let fixed = text.replace("interval '90' day (3)", "interval '90' day");
            assert!(
                decide(default_policy(), &fixed).allow,
                "TPC-H Q1 (PostgreSQL spelling) denied"
            );
            n += 1;
            continue;
        }
        for sql in pg_query::split_with_parser(&text).unwrap() {
            // Q15 creates and drops a view around its query: only the query is a read.
            if sql.trim_start().to_lowercase().starts_with("create view")
                || sql.trim_start().to_lowercase().starts_with("drop view")
            {
                continue;
            }
            let d = decide(default_policy(), sql);
            assert!(d.allow, "TPC-H Q{i} denied: {}\n{sql}", d.message());
            n += 1;
        }
    }
    assert_eq!(n, 22);
}

/// Agreement with the peers' suites; every difference must be explained in
/// `tests/conformance/differences.tsv`.
#[test]
fn peer_conformance_report() {
    let Some(dir) = corpus_dir() else { return };
    let explained = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/differences.tsv"),
    )
    .unwrap();
    let explained: Vec<(String, String, String)> = explained
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut p = l.splitn(3, '\t');
            (
                p.next().unwrap_or("").to_string(),
                p.next().unwrap_or("").to_string(),
                p.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut unexplained = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("peers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let peer = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let cases = peer_cases(&text);
        let mut agree = 0;
        let mut differ = Vec::new();
        for (peer_allows, source, sql) in &cases {
            let d = decide(default_policy(), sql);
            if d.allow == *peer_allows {
                agree += 1;
                continue;
            }
            let key = first_line(sql);
            let reason = explained
                .iter()
                .find(|(p, k, _)| *p == peer && *k == key)
                .map(|(_, _, r)| r.clone());
            let ours = if d.allow {
                "allow".to_string()
            } else {
                format!(
                    "deny ({})",
                    d.reasons
                        .iter()
                        .map(|r| r.rule.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            match reason {
                Some(r) => differ.push(format!(
                    "  {source}: peer {}, sqlguard {ours}: {key}\n    why: {r}",
                    if *peer_allows { "allow" } else { "deny" }
                )),
                None => unexplained.push(format!(
                    "{peer}\t{key}\t(peer {}, sqlguard {ours}, {source})",
                    if *peer_allows { "allow" } else { "deny" }
                )),
            }
        }
        eprintln!(
            "conformance {peer}: {agree}/{} agree, {} differ (explained)",
            cases.len(),
            differ.len()
        );
        for d in &differ {
            eprintln!("{d}");
        }
    }
    assert!(
        unexplained.is_empty(),
        "{} differences from peers have no reason in tests/conformance/differences.tsv:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}

/// The first line of a case's SQL, whitespace folded: the key in differences.tsv.
fn first_line(sql: &str) -> String {
    sql.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(120)
        .collect()
}

/// A fresh temporary directory, unique within this test run.
fn scratch_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sqlguard-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bundle_from(files: &[(&str, &str)]) -> Result<Bundle, PolicyError> {
    let dir = scratch_dir("bundle");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let b = Bundle::load(std::slice::from_ref(&dir), &[]);
    let _ = std::fs::remove_dir_all(&dir);
    b
}

#[test]
fn invalid_policy_is_a_startup_error_naming_file_and_line() {
    let bundle = bundle_from(&[(
        "broken.rego",
        "package sqlguard\n\nimport rego.v1\n\ndecision := {\"allow\": true,\n",
    )])
    .unwrap();
    let err = Policy::new(bundle)
        .err()
        .expect("a broken policy must not load");
    let msg = err.to_string();
    assert!(msg.contains("broken.rego") && msg.contains(":"), "{msg}");
}

/// A directory without `decision :=` is a layer over the built-in bundle: defining `allow`
/// there opens nothing, since the built-in decision still decides.
#[test]
fn a_layer_defining_allow_does_not_replace_the_decision() {
    let bundle = bundle_from(&[(
        "p.rego",
        "package sqlguard\n\nimport rego.v1\n\nallow := true\n",
    )])
    .unwrap();
    assert_eq!(bundle.sources[0], "built-in");
    let policy = Policy::new(bundle).unwrap();
    let d = policy
        .check(
            "DROP TABLE users",
            &AnalysisOptions::default(),
            None,
            &Identity::default(),
            "teleport_postgres_query",
        )
        .decision;
    assert!(!d.allow, "{d:?}");
}

/// Two directories that each define the decision are two bases: refused, naming both.
#[test]
fn two_bases_are_refused() {
    let err = Bundle::load(&[policies_dir(), policies_dir()], &[]).unwrap_err();
    assert!(matches!(err, PolicyError::TwoBases { .. }), "{err}");
    assert!(err.to_string().contains("make the other a layer"), "{err}");
}

#[test]
fn decision_without_shape_denies() {
    let bundle = bundle_from(&[(
        "p.rego",
        "package sqlguard\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n",
    )])
    .unwrap();
    let d = decide(&Policy::new(bundle).unwrap(), "SELECT 1");
    assert!(!d.allow);
    assert_eq!(d.reasons[0].rule, "policy_malformed");
}

#[test]
fn undefined_decision_denies() {
    let bundle = bundle_from(&[("p.rego", "package sqlguard\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"reasons\": [], \"limits\": {\"max_rows\": 1, \"max_result_bytes\": 1, \"statement_timeout_ms\": 1}} if input.never\n")]).unwrap();
    let d = decide(&Policy::new(bundle).unwrap(), "SELECT 1");
    assert!(!d.allow);
    assert_eq!(d.reasons[0].rule, "policy_missing_decision");
}

#[test]
fn evaluation_error_denies() {
    let bundle = bundle_from(&[("p.rego", "package sqlguard\n\nimport rego.v1\n\ndecision := {\"allow\": true, \"reasons\": [], \"limits\": {\"max_rows\": 1 / count(input.query.statements[0].relations), \"max_result_bytes\": 1, \"statement_timeout_ms\": 1}}\n")]).unwrap();
    let d = decide(&Policy::new(bundle).unwrap(), "SELECT 1");
    assert!(!d.allow, "{d:?}");
}

#[test]
fn runaway_policy_denies() {
    let bundle = bundle_from(&[("p.rego", "package sqlguard\n\nimport rego.v1\n\nbig := [x | some x in numbers.range(1, 100000); some y in numbers.range(1, 100000)]\n\ndecision := {\"allow\": count(big) > 0, \"reasons\": [], \"limits\": {\"max_rows\": 1, \"max_result_bytes\": 1, \"statement_timeout_ms\": 1}} if input.query\n\ndecision := {\"allow\": false, \"reasons\": [], \"limits\": {}} if not input.query\n")]).unwrap();
    let start = std::time::Instant::now();
    let d = decide(&Policy::new(bundle).unwrap(), "SELECT 1");
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.reasons[0].rule, "policy_error");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
}

/// The default bundle with one data file of `json` merged over it (`--data`).
fn policy_with_data(json: &str) -> Policy {
    let dir = scratch_dir("data");
    let file = dir.join("data.json");
    std::fs::write(&file, json).unwrap();
    let policy = Policy::new(Bundle::load(&[policies_dir()], &[file]).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    policy
}

#[test]
fn data_files_merge_over_the_bundle() {
    let policy = policy_with_data(
        r#"{"sqlguard": {"tables": {"allow": ["public.orders", "public.users"]}}}"#,
    );
    assert!(decide(&policy, "SELECT * FROM orders JOIN users ON true").allow);
    let d = decide(&policy, "SELECT * FROM payments");
    assert!(
        d.reasons.iter().any(|r| r.rule == "table_not_allowed"),
        "{d:?}"
    );
    // The rest of the bundle's data is kept.
    assert!(!decide(&policy, "SELECT * FROM users FOR UPDATE").allow);
}

#[test]
fn embedded_bundle_matches_policies_dir() {
    let disk = Bundle::load(&[policies_dir()], &[]).unwrap();
    let embedded = Bundle::embedded(&[]).unwrap();
    let disk_modules: Vec<&String> = disk.modules.iter().map(|(_, t)| t).collect();
    for (_, text) in &embedded.modules {
        assert!(disk_modules.contains(&text));
    }
    assert_eq!(
        disk.modules.len(),
        embedded.modules.len(),
        "a policy file is missing from bundle.rs EMBEDDED"
    );
    assert_eq!(disk.data, embedded.data);
}

/// A built-in that fails on the security team's data (an invalid glob in tables.deny) is an
/// evaluation error, so every call is denied — never a deny rule that silently stops matching.
/// (regorus' RVM as released treats such an error as a false rule body, which would allow the
/// call; the vendored, patched RVM that decides by default does not: `tests/evaluator.rs`.)
#[test]
fn failing_builtin_denies() {
    let policy = policy_with_data(r#"{"sqlguard": {"tables": {"deny": ["a*b*["]}}}"#);
    let d = decide(&policy, "SELECT * FROM users");
    assert!(!d.allow, "{d:?}");
    assert_eq!(d.reasons[0].rule, "policy_error", "{d:?}");
}

/// Each case: SQL, and `None` when allowed or `Some((rule, words the message must contain))`.
type SideChannelCase<'a> = (&'a str, Option<(&'a str, &'a str)>);

/// Decides every case with `policy`; returns the failures.
fn side_channel_failures(policy: &Policy, cases: &[SideChannelCase]) -> Vec<String> {
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let d = decide(policy, sql);
        let ok = match expected {
            None => d.allow,
            Some((rule, words)) => {
                !d.allow
                    && d.reasons
                        .iter()
                        .any(|r| r.rule == *rule && r.message.contains(words))
            }
        };
        if !ok {
            failures.push(format!(
                "{sql}\n  expected {expected:?}, got {}",
                d.message()
            ));
        }
    }
    failures
}

/// `columns.deny` holds against every way a column's values come out without naming it in the
/// select list (threat model, "implicit references" and "side channels"), and stays out of the
/// way of reads that cannot show it.
#[test]
fn column_rules_hold_against_implicit_references_and_side_channels() {
    let policy =
        policy_with_data(r#"{"sqlguard": {"columns": {"deny": ["public.vault.secret"]}}}"#);
    let denied = |words| Some(("column_denied", words));
    let stats = |words| Some(("column_side_channel", words));
    let failures = side_channel_failures(
        &policy,
        &[
            // Implicit references: joins compare the column, alias lists rename it.
            ("SELECT id FROM vault NATURAL JOIN (SELECT 'top secret' AS secret) s", denied("public.vault.secret")),
            ("SELECT id FROM vault JOIN (SELECT 'top secret' AS secret) s USING (secret)", denied("USING (secret)")),
            ("SELECT j.id FROM vault JOIN (SELECT 'x' AS secret) s USING (secret) AS j", denied("public.vault.secret")),
            ("SELECT count(*) FROM vault v NATURAL JOIN (SELECT 1 AS id, 'x' AS secret) s", denied("with ON")),
            // Without the catalog the shared columns are unknown: even a join that shares only
            // `id` is refused, with the way out.
            ("SELECT v.id FROM vault v NATURAL JOIN (SELECT 1 AS id) s", denied("with ON")),
            ("SELECT b FROM vault v(a, b)", denied("alias list")),
            ("SELECT j.secret FROM (vault JOIN other USING (id)) AS j", denied("public.vault.secret")),
            ("SELECT 1 FROM vault WHERE secret LIKE 'a%'", denied("public.vault.secret")),
            ("SELECT id FROM vault ORDER BY secret", denied("public.vault.secret")),
            ("SELECT row_to_json(v) FROM vault v", denied("public.vault.secret")),
            ("TABLE vault", denied("public.vault.secret")),
            // Statistics: samples of the column's values.
            ("SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'vault' AND attname = 'secret'", stats("without the database's catalog")),
            ("SELECT most_common_vals FROM pg_stats WHERE tablename = 'vault'", stats("without the database's catalog")),
            ("SELECT most_common_elems, elem_count_histogram FROM pg_stats", stats("without the database's catalog")),
            ("SELECT * FROM pg_stats WHERE schemaname = 'public'", stats("without the database's catalog")),
            ("SELECT s FROM pg_stats s WHERE s.attname = 'id' OR s.attname = 'secret'", stats("without the database's catalog")),
            ("SELECT count(*) FROM pg_stats WHERE attname = 'id' AND histogram_bounds::text LIKE '%a%'", stats("without the database's catalog")),
            ("SELECT histogram_bounds FROM pg_stats WHERE attname = 'id' AND histogram_bounds::text::int > 0", stats("without the database's catalog")),
            ("WITH s AS (SELECT * FROM pg_stats) SELECT histogram_bounds FROM s WHERE attname = 'id'", stats("without the database's catalog")),
            ("SELECT histogram_bounds FROM pg_catalog.pg_stats WHERE attname IN ('id', 'secret')", stats("without the database's catalog")),
            ("SELECT x FROM pg_stats s(a, b, c, x) WHERE c = 'id'", stats("without the database's catalog")),
            // Other sessions' SQL text.
            ("SELECT query FROM pg_stat_activity", stats("query column")),
            ("SELECT * FROM pg_stat_get_activity(NULL)", stats("pg_stat_get_activity")),
            // Reads that cannot show the column stay allowed.
            ("SELECT id FROM vault JOIN other USING (id)", None),
            ("SELECT count(*) FROM vault", None),
            ("SELECT id, note FROM vault WHERE id = 1", None),
            ("SELECT histogram_bounds FROM pg_stats WHERE tablename = 'vault' AND attname = 'id'", stats("without the database's catalog")),
            ("SELECT histogram_bounds FROM pg_stats WHERE attname IN ('id', 'note')", stats("without the database's catalog")),
            ("SELECT tablename, attname, null_frac, n_distinct, correlation FROM pg_stats", None),
            ("SELECT pid, state, wait_event FROM pg_stat_activity", None),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Without column rules, the statistics and query texts are ordinary catalog reads.
    let failures = side_channel_failures(
        default_policy(),
        &[
            (
                "SELECT * FROM pg_stats WHERE schemaname = 'public'",
                stats("without the database's catalog"),
            ),
            ("SELECT query FROM pg_stat_activity", None),
            ("SELECT id FROM vault NATURAL JOIN other", None),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The settings views follow `settings.sensitive` as `SHOW` and `current_setting` do.
#[test]
fn settings_views_follow_settings_sensitive() {
    let sensitive = |words| Some(("setting_sensitive", words));
    let failures = side_channel_failures(
        default_policy(),
        &[
            ("SELECT setting FROM pg_settings WHERE name = 'data_directory'", sensitive("data_directory")),
            ("SELECT * FROM pg_settings", sensitive("WHERE name = ")),
            ("SELECT name, setting FROM pg_settings WHERE name IN ('work_mem', 'ssl_key_file')", sensitive("ssl_key_file")),
            ("SELECT reset_val FROM pg_settings WHERE name = 'work_mem' OR name = 'config_file'", sensitive("WHERE name = ")),
            ("SELECT setting FROM pg_settings WHERE name = 'work_mem' AND setting::int > 0", sensitive("no other condition")),
            ("SELECT count(*) FROM pg_settings WHERE sourcefile LIKE '/etc/%'", sensitive("pg_catalog.pg_settings")),
            ("SELECT * FROM pg_show_all_settings()", sensitive("pg_show_all_settings")),
            ("SELECT setconfig FROM pg_db_role_setting", sensitive("ALTER ROLE")),
            ("SELECT rolname, rolconfig FROM pg_roles", sensitive("rolconfig")),
            ("SELECT * FROM pg_user", sensitive("useconfig")),
            ("SHOW data_directory", sensitive("data_directory")),
            ("SELECT current_setting('ssl_key_file')", sensitive("ssl_key_file")),
            // Harmless settings, and the columns that hold no values.
            ("SELECT setting FROM pg_settings WHERE name = 'work_mem'", None),
            ("SELECT name, setting, unit FROM pg_settings WHERE name IN ('work_mem', 'search_path')", None),
            ("SELECT name, short_desc FROM pg_settings", None),
            ("SELECT rolname, rolsuper FROM pg_roles", None),
            ("SELECT setdatabase, setrole FROM pg_db_role_setting", None),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A policy error denies with a message that sends the agent to the operator, without the
/// Rego source, file or line; a reload refuses a bundle that errors on every call.
#[test]
fn policy_errors_stay_with_the_operator() {
    let policy = policy_with_data(r#"{"sqlguard": {"tables": {"deny": ["a*b*["]}}}"#);
    let d = decide(&policy, "SELECT * FROM users");
    assert!(!d.allow);
    let m = &d.reasons[0].message;
    assert!(m.contains("ask the operator"), "{m}");
    assert!(!m.contains(".rego") && !m.contains("glob"), "{m}");
    assert!(policy.smoke_test().is_err());
    assert_eq!(default_policy().smoke_test(), Ok(()));
}

/// A module of the decision's package that sorts before `decision.rego` (a user's
/// `access.rego`) leaves the bundle's own tests passing (regorus 0.14.1 needs the decision's
/// module added first for `with input as`).
#[test]
fn a_users_module_sorting_first_keeps_the_tests_working() {
    let dir = scratch_dir("order");
    for entry in std::fs::read_dir(policies_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.join("access.rego"),
        "package sqlguard\n\nimport rego.v1\n\nteam_tables := {\"public.orders\"}\n",
    )
    .unwrap();
    let bundle = Bundle::load(std::slice::from_ref(&dir), &[]).unwrap();
    let (results, _) = sqlguard::policy::testing::run(&bundle, false, None).unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.name, r.detail))
        .collect();
    assert!(results.len() > 40 && failed.is_empty(), "{failed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Four plans of one query: an index scan, a sequential scan, a cartesian join, a sort.
fn four_plans() -> [serde_json::Value; 4] {
    let scan = |rel: &str, rows: f64| {
        serde_json::json!({"Node Type": "Seq Scan", "Schema": "analytics", "Relation Name": rel,
            "Alias": rel, "Plan Rows": rows, "Plan Width": 40, "Total Cost": rows / 50.0})
    };
    [
        serde_json::json!([{"Plan": {"Node Type": "Index Scan", "Schema": "analytics",
            "Relation Name": "events", "Alias": "e", "Index Name": "events_pkey", "Plan Rows": 1,
            "Plan Width": 40, "Total Cost": 8.4}}]),
        serde_json::json!([{"Plan": scan("events", 2e6)}]),
        serde_json::json!([{"Plan": {"Node Type": "Nested Loop", "Plan Rows": 2e8, "Plan Width": 80,
            "Total Cost": 3e6, "Plans": [scan("events", 2e6), scan("kinds", 100.0)]}}]),
        serde_json::json!([{"Plan": {"Node Type": "Sort", "Plan Rows": 2e6, "Plan Width": 80,
            "Total Cost": 5e5, "Plans": [scan("kinds", 2e6)]}}]),
    ]
}

/// `explain`'s plan facts, its relations described as 2 M-row tables indexed on `id`.
fn described(explain: &serde_json::Value) -> sqlguard::analysis::plan::PlanFacts {
    use sqlguard::analysis::plan::{plan_facts, MemorySettings, RelationInfo};
    let mut plan = plan_facts(explain, MemorySettings::default()).unwrap();
    let info = RelationInfo {
        rows_estimate: 2e6,
        kind: "r".into(),
        indexed_columns: vec!["id".into()],
    };
    plan.describe_relations(
        [
            ("analytics.events".to_string(), info.clone()),
            ("analytics.kinds".to_string(), info),
        ]
        .into(),
    );
    plan
}

/// The second decision (with `input.plan`) evaluates the shipped plan rules alone; it must
/// decide exactly as the whole decision does, and a bundle that reads `input.plan` in a
/// module of its own gets the whole decision.
#[test]
fn the_plan_decision_equals_the_whole_decision() {
    use sqlguard::policy::{DatabaseContext, PolicyInput};
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = [root.join("policies"), root.join("policies/examples/prod")];
    let bundle = Bundle::load(&dirs, &[]).unwrap();
    assert!(bundle.plan_rules_are_shipped());
    let prod = Policy::new(bundle.clone()).unwrap();
    let database = DatabaseContext {
        labels: [("env".to_string(), "prod".to_string())].into(),
        ..Default::default()
    };
    let identity = sqlguard::policy::Identity::default();
    let facts =
        sqlguard::analysis::analyze("SELECT * FROM analytics.events e, analytics.kinds k LIMIT 10")
            .unwrap();
    let mut who_denied = Vec::new();
    let user_rule = "package sqlguard\nimport rego.v1\ndeny contains reason(\"mine\", 0, \"no\") if input.plan.total_cost > 100\n";
    let mut own = bundle.clone();
    own.modules
        .push((root.join("policies/mine.rego"), user_rule.to_string()));
    assert!(!own.plan_rules_are_shipped());
    let own = Policy::new(own).unwrap();
    for explain in &four_plans() {
        let plan = described(explain);
        let without = PolicyInput {
            query: Some(&facts),
            database: Some(&database),
            identity: &identity,
            tool: "teleport_postgres_query",
            plan: None,
        };
        let allowed = prod.decide(&without);
        assert!(allowed.allow && allowed.explain, "{allowed:?}");
        let with = PolicyInput {
            plan: Some(&plan),
            ..without.clone()
        };
        let whole = prod.decide(&with);
        let narrow = prod.decide_with_plan(&with, &allowed);
        assert_eq!(narrow, whole, "{explain}");
        who_denied.push(
            whole
                .reasons
                .iter()
                .map(|r| r.rule.clone())
                .collect::<Vec<_>>(),
        );
        // A rule of the user's own over input.plan is evaluated too.
        let mine = own.decide_with_plan(&with, &own.decide(&without));
        assert_eq!(
            mine.reasons.iter().any(|r| r.rule == "mine"),
            plan.total_cost > 100.0,
            "{mine:?}"
        );
    }
    assert_eq!(
        who_denied,
        [
            vec![],
            vec!["plan_seq_scan".to_string()],
            vec![
                "plan_cartesian".into(),
                "plan_cost".into(),
                "plan_seq_scan".into(),
                "plan_seq_scan".into()
            ],
            vec!["plan_cost".into(), "plan_seq_scan".into()],
        ]
    );
}
