//! The security team's side: the policy a team writes is the policy that runs. Each
//! case was a configuration mistake that silently opened access, or a trap a new user hit.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sqlguard::analysis::{analyze, RowBound};
use sqlguard::policy::{Bundle, Evaluator, Policy, PolicyError};

use crate::mcp::{query_database, serve_config, shop_config};
use crate::support::cluster::Cluster;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlguard-team-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// Writes `files` (`name`, text) into `dir` and returns their paths.
fn write_all(dir: &Path, files: &[(&str, &str)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, text)| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        })
        .collect()
}

fn sqlguard(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args(args)
        .env_remove("SQLGUARD_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Data files with a typo or a wrong type, and what the refusal says.
const DATA_TYPOS: &[(&str, &str)] = &[
    (
        r#"{"sqlguard": {"tabels": {"allow": ["analytics.*"]}}}"#,
        "data.sqlguard.tabels is not a key sqlguard knows (did you mean data.sqlguard.tables?)",
    ),
    (
        r#"{"sqlguard": {"columns": {"dney": ["public.users.ssn"]}}}"#,
        "did you mean data.sqlguard.columns.deny?",
    ),
    (
        r#"{"sqlguard": {"tables": {"allow": "analytics.*"}}}"#,
        "data.sqlguard.tables.allow must be an array, not the string \"analytics.*\"",
    ),
    (
        r#"{"sqlguard": {"tables": {"deny": [42]}}}"#,
        "data.sqlguard.tables.deny[0] must be a string, not the number 42",
    ),
    (
        r#"{"sqlguard": {"functions": {"deny": [{"name": "lower"}]}}}"#,
        "data.sqlguard.functions.deny[0] must be a string, not an object",
    ),
    (
        r#"{"sqlguard": {"read_only": "yes"}}"#,
        "data.sqlguard.read_only must be true or false",
    ),
    (
        r#"{"sqlguard": {"limits": {"by_label": [{"labels": {"env": "prod"}, "limit": {"max_rows": 5}}]}}}"#,
        "data.sqlguard.limits.by_label[0].limit is not a key sqlguard knows (did you mean data.sqlguard.limits.by_label[0].limits?)",
    ),
    (
        r#"{"sqlguard": {"limits": {"default": {"max_rows": -1}}}}"#,
        "data.sqlguard.limits.default.max_rows is -1, below its minimum 0",
    ),
    (
        r#"{"sqlguard": {"side_channels": {"relations": {"public.v": {"shows": "values"}}}}}"#,
        "data.sqlguard.side_channels.relations.public.v.shows is \"values\", which is not one of",
    ),
    (r#"{"sqlguard": []}"#, "data.sqlguard must be an object"),
    (
        r#"{"sqlguard": {"columns": {"mask": {"public.users.ssn": 7}}}}"#,
        "data.sqlguard.columns.mask.public.users.ssn must be a string, not the number 7",
    ),
    (
        r#"{"sqlguard": {"columns": {"mask_formats": {"short": {"keep_frist": 1}}}}}"#,
        "data.sqlguard.columns.mask_formats.short.keep_frist is not a key sqlguard knows",
    ),
];

/// A typo or a wrong type in a data file is refused with its path (and the nearest
/// known key), instead of falling back to a default that opens access.
#[test]
fn data_typos_and_wrong_types_are_refused_with_their_path() {
    let dir = scratch("typos");
    let mut failures = Vec::new();
    for (i, (text, expected)) in DATA_TYPOS.iter().enumerate() {
        let file = dir.join(format!("case{i}.json"));
        std::fs::write(&file, text).unwrap();
        match Bundle::embedded(std::slice::from_ref(&file)) {
            Ok(_) => failures.push(format!("{text}: accepted")),
            Err(e) => {
                let msg = e.to_string();
                if !(msg.contains(expected) && msg.contains(&file.display().to_string())) {
                    failures.push(format!("{text}: {msg}"));
                }
            }
        }
    }
    // A layer's own data: outside data.sqlguard, or under data.sqlguard.ext.<layer>.
    let own = dir.join("own.json");
    std::fs::write(
        &own,
        r#"{"acme": {"anything": [1, "two"]}, "sqlguard": {"ext": {"acme": {"max": 5}}}}"#,
    )
    .unwrap();
    if let Err(e) = Bundle::embedded(std::slice::from_ref(&own)) {
        failures.push(format!("a layer's own namespace was refused: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Through the command line, the typo that opened every table is an error, not ALLOWED.
    let typo = dir.join("case0.json");
    let (code, out, err) = sqlguard(
        &[
            "check",
            "--data",
            typo.to_str().unwrap(),
            "SELECT * FROM public.orders",
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(!out.contains("ALLOWED"), "{out}");
    assert!(err.contains("did you mean data.sqlguard.tables?"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A merge case: its name, the data files, and the value at a JSON pointer or the path of
/// the conflict.
type MergeCase<'a> = (&'a str, &'a [&'a str], Result<(&'a str, Value), &'a str>);

fn merge_cases() -> Vec<MergeCase<'static>> {
    vec![
        (
            "disjoint keys are merged",
            &[
                r#"{"sqlguard": {"tables": {"allow": ["a.*"]}}}"#,
                r#"{"sqlguard": {"columns": {"deny": ["a.t.c"]}}}"#,
            ],
            Ok(("/sqlguard/columns/deny", json!(["a.t.c"]))),
        ),
        (
            "objects merge recursively",
            &[
                r#"{"acme": {"k": {"n": 1}}}"#,
                r#"{"acme": {"k": {"m": 2}}}"#,
            ],
            Ok(("/acme/k", json!({"n": 1, "m": 2}))),
        ),
        (
            "the same value twice is one value",
            &[
                r#"{"sqlguard": {"columns": {"deny": ["a.t.c"]}}}"#,
                r#"{"sqlguard": {"columns": {"deny": ["a.t.c"]}}}"#,
            ],
            Ok(("/sqlguard/columns/deny", json!(["a.t.c"]))),
        ),
        (
            "two lists at one path conflict (lists are values, not merged)",
            &[
                r#"{"sqlguard": {"columns": {"deny": ["public.users.ssn"]}}}"#,
                r#"{"sqlguard": {"columns": {"deny": ["public.users.email"]}}}"#,
            ],
            Err("data.sqlguard.columns.deny"),
        ),
        (
            "an object and a scalar at one path conflict",
            &[r#"{"acme": {"k": {"n": 1}}}"#, r#"{"acme": {"k": 2}}"#],
            Err("data.acme.k"),
        ),
        (
            "two scalars at one path conflict",
            &[
                r#"{"sqlguard": {"read_only": true}}"#,
                r#"{"sqlguard": {"read_only": false}}"#,
            ],
            Err("data.sqlguard.read_only"),
        ),
        (
            "a protecting list gains a layer's entries over the default",
            &[r#"{"sqlguard": {"settings": {"sensitive": ["app.secret"]}}}"#],
            Ok(("/sqlguard/settings/sensitive/1", json!("archive_command"))),
        ),
        (
            "an allow list is replaced over the default",
            &[r#"{"sqlguard": {"tables": {"allow": ["analytics.*"]}}}"#],
            Ok(("/sqlguard/tables/allow", json!(["analytics.*"]))),
        ),
    ]
}

/// Several data files merge as OPA merges data files. OPA's loader merges the
/// documents of all files recursively where both are objects and refuses ("merge error") any
/// other value two files set at one path; sqlguard does the same, accepting only a repeat of
/// the very same value, and names both files and the path. The layers' result then goes over
/// the built-in defaults, where lists the schema marks `x-merge: union` (entries that deny or
/// protect) gain the layers' entries and everything else is replaced.
#[test]
fn data_files_merge_as_opa_merges_them() {
    let dir = scratch("merge");
    let failures = merge_failures(&dir, &merge_cases());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The protecting list kept the built-in entries and gained the layer's.
    let b = Bundle::embedded(&[
        dir.join("a_protecting_list_gains_a_layer's_entries_over_the_default-0.json")
    ])
    .unwrap();
    let sensitive = b.data["sqlguard"]["settings"]["sensitive"]
        .as_array()
        .unwrap();
    assert!(sensitive.contains(&json!("app.secret")) && sensitive.contains(&json!("ssl_key_file")));

    two_files_setting_one_key_are_named(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What each case got wrong.
fn merge_failures(dir: &std::path::Path, cases: &[MergeCase<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, texts, expected) in cases {
        let files: Vec<PathBuf> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.join(format!("{}-{i}.json", name.replace(' ', "_")));
                std::fs::write(&p, t).unwrap();
                p
            })
            .collect();
        let got = Bundle::embedded(&files);
        match (expected, got) {
            (Ok((pointer, value)), Ok(b)) => {
                if b.data.pointer(pointer) != Some(value) {
                    failures.push(format!(
                        "{name}: {pointer} is {:?}",
                        b.data.pointer(pointer)
                    ));
                }
            }
            (
                Err(path),
                Err(PolicyError::Conflict {
                    path: p,
                    first,
                    second,
                }),
            ) => {
                let want = (
                    files[0].display().to_string(),
                    files[1].display().to_string(),
                );
                if p != *path || (first.clone(), second.clone()) != want {
                    failures.push(format!(
                        "{name}: conflict at {p} between {first} and {second}"
                    ));
                }
            }
            (_, got) => failures.push(format!("{name}: {:?}", got.map(|b| b.data))),
        }
    }
    failures
}

/// The issue's case: the columns example and a team's own columns.deny, refused by `check`
/// with both files named.
fn two_files_setting_one_key_are_named(dir: &std::path::Path) {
    let mine = dir.join("mine.json");
    std::fs::write(
        &mine,
        r#"{"sqlguard": {"columns": {"deny": ["public.users.email"]}}}"#,
    )
    .unwrap();
    let example = policies().join("examples/columns/data.json");
    let (code, out, err) = sqlguard(
        &[
            "check",
            "--data",
            example.to_str().unwrap(),
            "--data",
            mine.to_str().unwrap(),
            "SELECT ssn FROM public.users",
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("both set data.sqlguard.columns.deny") && err.contains("mine.json"),
        "{err}"
    );
}

/// A layer is Rego rules, data, or both, on top of the built-in bundle, whose helpers
/// (`table_refs`) it uses without a copy of the repository; `policy export` writes the
/// built-in bundle for a team that forks it instead.
#[test]
fn layers_need_no_source_and_the_built_in_bundle_can_be_exported() {
    let dir = scratch("layers");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    write_all(
        &rules,
        &[(
            "hr.rego",
            "package sqlguard\n\nimport rego.v1\n\n\
             deny contains reason(\"no_hr\", i, \"hr is closed\") if {\n\
             \tsome [i, name] in table_refs\n\tstartswith(name, \"hr.\")\n}\n",
        )],
    );
    let data_only = dir.join("data-only");
    std::fs::create_dir_all(&data_only).unwrap();
    write_all(
        &data_only,
        &[(
            "data.json",
            r#"{"sqlguard": {"tables": {"allow": ["public.*", "hr.*"]}}}"#,
        )],
    );
    let bundle = Bundle::load(&[rules.clone(), data_only.clone()], &[]).unwrap();
    assert_eq!(bundle.sources[0], "built-in");
    let policy = Policy::new(bundle).unwrap();
    let decide = |sql: &str| {
        policy
            .check(
                sql,
                &Default::default(),
                None,
                &Default::default(),
                "teleport_postgres_query",
            )
            .decision
    };
    let hr = decide("SELECT * FROM hr.salaries");
    assert!(
        !hr.allow && hr.reasons.iter().any(|r| r.rule == "no_hr"),
        "{hr:?}"
    );
    assert!(decide("SELECT * FROM public.orders").allow);
    let other = decide("SELECT * FROM analytics.daily");
    assert!(
        other.reasons.iter().any(|r| r.rule == "table_not_allowed"),
        "{other:?}"
    );
    // The message does not list the allow list: other rules may deny some of it to this
    // caller.
    assert!(!other.message().contains("hr.*"), "{}", other.message());

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Bundle::load(&[empty], &[]).unwrap_err().to_string();
    assert!(err.contains("holds no .rego or .json file"), "{err}");
    the_exported_bundle_is_a_base(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Export, then the fork is a whole bundle (a base), and its tests pass; a fork and the
/// repository's policies/ are two bases.
fn the_exported_bundle_is_a_base(dir: &std::path::Path) {
    let fork = dir.join("fork");
    let (code, out, err) = sqlguard(&["policy", "export", fork.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    for f in [
        "decision.rego",
        "policy_test.rego",
        "data.json",
        "data.schema.json",
    ] {
        assert!(fork.join(f).is_file(), "{f} not exported: {out}");
    }
    let (code, _, err) = sqlguard(&["policy", "export", fork.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
    let forked = Bundle::load(std::slice::from_ref(&fork), &[]).unwrap();
    assert_eq!(forked.sources[0], fork.display().to_string());
    assert!(forked.plan_rules_are_shipped());
    let (code, out, _) = sqlguard(&["policy", "test", fork.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    // A fork and the repository's policies/ are two bases.
    let err = Bundle::load(&[fork, policies()], &[]).unwrap_err();
    assert!(matches!(err, PolicyError::TwoBases { .. }), "{err}");
}

/// The built-in tests run against the built-in data whatever a team sets, the team's
/// tests against the merged data; `--run` picks tests, `--format json` reports them.
#[test]
fn policy_test_keeps_the_built_in_tests_green_under_a_team_layer() {
    let dir = scratch("tests");
    let [team] = write_all(
        &dir,
        &[(
            "team.json",
            r#"{"sqlguard": {"tables": {"allow": ["analytics.*"]}}}"#,
        )],
    )
    .try_into()
    .unwrap();
    let (code, out, err) = sqlguard(&["policy", "test", "--data", team.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");

    let layer = dir.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    write_all(
        &layer,
        &[
            ("data.json", r#"{"sqlguard": {"tables": {"allow": ["analytics.*"]}}}"#),
            (
                "team_test.rego",
                "package team_test\n\nimport data.sqlguard\nimport data.sqlguard_test.one\nimport data.sqlguard_test.rel\nimport rego.v1\n\n\
                 test_orders_are_closed if {\n\tnot sqlguard.decision.allow with input as one({\"relations\": [rel(\"public.orders\", \"read\")]})\n}\n\n\
                 test_wrong_on_purpose if {\n\tsqlguard.decision.allow with input as one({\"relations\": [rel(\"public.orders\", \"read\")]})\n}\n",
            ),
        ],
    );
    let layer_s = layer.to_str().unwrap();
    let (code, out, _) = sqlguard(
        &[
            "policy",
            "test",
            layer_s,
            "--run",
            "team_test",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (report["passed"].clone(), report["failed"].clone()),
        (json!(1), json!(1)),
        "{report}"
    );
    assert_eq!(report["sources"], json!(["built-in", layer_s]));
    let (code, out, _) = sqlguard(&["policy", "test", layer_s, "--run", "closed$"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    let (code, out, _) = sqlguard(
        &["policy", "test", layer_s, "--run", "nothing-matches"],
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("no test matches --run"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A query's shape as the facts give it: limit, offset, aggregates, and [group_by,
/// distinct, window, order_by].
type QueryShape = (
    Option<RowBound>,
    Option<RowBound>,
    &'static [&'static str],
    [bool; 4],
);

/// (sql, its shape)
fn shape_cases() -> Vec<(&'static str, QueryShape)> {
    let n = |v: i64| Some(RowBound::Count(v));
    let e = || Some(RowBound::Expression("expression".into()));
    vec![
        (
            "SELECT * FROM t LIMIT 10 OFFSET 5",
            (n(10), n(5), &[], [false; 4]),
        ),
        (
            "SELECT * FROM t FETCH FIRST 3 ROWS ONLY",
            (n(3), None, &[], [false; 4]),
        ),
        ("SELECT * FROM t LIMIT 0", (n(0), None, &[], [false; 4])),
        ("SELECT * FROM t LIMIT ALL", (None, None, &[], [false; 4])),
        ("SELECT * FROM t LIMIT NULL", (None, None, &[], [false; 4])),
        ("SELECT * FROM t LIMIT 5 + 5", (e(), None, &[], [false; 4])),
        ("SELECT * FROM t LIMIT '10'", (e(), None, &[], [false; 4])),
        (
            "SELECT * FROM t LIMIT (SELECT 1)",
            (e(), None, &[], [false; 4]),
        ),
        (
            "SELECT count(*), max(a) FROM t",
            (None, None, &["count", "max"], [false; 4]),
        ),
        (
            "SELECT a, count(*) FROM t GROUP BY a ORDER BY 2",
            (None, None, &["count"], [true, false, false, true]),
        ),
        (
            "SELECT DISTINCT ON (a) a FROM t",
            (None, None, &[], [false, true, false, false]),
        ),
        (
            "SELECT row_number() OVER (ORDER BY a) FROM t",
            (None, None, &[], [false, false, true, false]),
        ),
        // Aggregates of subqueries, CTEs and set-operation branches are not the query's.
        (
            "SELECT (SELECT max(x) FROM u) FROM t",
            (None, None, &[], [false; 4]),
        ),
        (
            "WITH c AS (SELECT count(*) FROM t) SELECT * FROM c",
            (None, None, &[], [false; 4]),
        ),
        (
            "SELECT count(*) FROM a UNION ALL SELECT count(*) FROM b",
            (None, None, &[], [false; 4]),
        ),
        (
            "SELECT * FROM (SELECT sum(x) FROM t) s LIMIT 2",
            (n(2), None, &[], [false; 4]),
        ),
        // A function merely named like an aggregate in another schema is not one.
        (
            "SELECT public.count(a) FROM t",
            (None, None, &[], [false; 4]),
        ),
    ]
}

/// The facts common rules need, per statement, for the outermost query only.
#[test]
fn facts_carry_limit_offset_aggregates_and_the_query_shape() {
    let cases = shape_cases();
    let mut failures = Vec::new();
    for (sql, (limit, offset, aggregates, [group_by, distinct, window, order_by])) in &cases {
        let f = analyze(sql).unwrap();
        let s = &f.statements[0];
        let got = (
            s.limit.clone(),
            s.offset.clone(),
            s.aggregates.iter().map(String::as_str).collect::<Vec<_>>(),
            s.aggregate,
            [s.group_by, s.distinct, s.window, s.order_by],
        );
        let want = (
            limit.clone(),
            offset.clone(),
            aggregates.to_vec(),
            !aggregates.is_empty(),
            [*group_by, *distinct, *window, *order_by],
        );
        if got != want {
            failures.push(format!("{sql}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The built-in aggregate list is PostgreSQL 15's, read from the cluster's `pg_proc`.
#[test]
fn the_built_in_aggregates_are_those_of_pg_proc() {
    let cluster = Cluster::shared();
    let names = cluster.psql(
        "postgres",
        "SELECT string_agg(DISTINCT proname, ',' ORDER BY proname) FROM pg_proc \
         WHERE prokind = 'a' AND pronamespace = 'pg_catalog'::regnamespace",
    );
    let from_pg: Vec<&str> = names.trim().split(',').collect();
    let mut ours = sqlguard::analysis::BUILTIN_AGGREGATES.to_vec();
    ours.sort();
    assert_eq!(ours, from_pg);
}

/// (label, SQL, allowed by the prod example)
const PROD_LIMIT_CASES: &[(&str, &str, bool)] = &[
    ("env=prod", "SELECT * FROM analytics.daily LIMIT 100", true),
    (
        "env=prod",
        "SELECT * FROM analytics.daily LIMIT 1001",
        false,
    ),
    ("env=prod", "SELECT * FROM analytics.daily", false),
    (
        "env=prod",
        "SELECT * FROM analytics.daily LIMIT 10 * 10",
        false,
    ),
    ("env=prod", "SELECT count(*) FROM analytics.daily", true),
    (
        "env=prod",
        "SELECT day, count(*) FROM analytics.daily GROUP BY day",
        false,
    ),
    (
        "env=prod",
        "SELECT day, count(*) FROM analytics.daily GROUP BY day LIMIT 31",
        true,
    ),
    ("env=dev", "SELECT * FROM analytics.daily", true),
];

/// `check --print-input` shows the input a rule is written against,
/// `policy eval --sql` evaluates a rule on it, and examples/prod's "LIMIT ≤ 1000 or an
/// aggregate" holds on env=prod only.
#[test]
fn the_input_can_be_printed_and_the_prod_limit_rule_holds() {
    let (code, out, err) = sqlguard(
        &[
            "check",
            "--print-input",
            "--label",
            "env=prod",
            "SELECT count(*) FROM t LIMIT 7",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let input: Value = serde_json::from_str(&out).unwrap();
    let s = &input["query"]["statements"][0];
    assert_eq!(
        (s["limit"].clone(), s["aggregate"].clone()),
        (json!(7), json!(true)),
        "{s}"
    );
    assert_eq!(input["database"]["labels"]["env"], "prod");
    assert!(
        s.get("location").is_none(),
        "positions are not policy input: {s}"
    );

    let (code, out, err) = sqlguard(
        &[
            "policy",
            "eval",
            "--sql",
            "SELECT 1 LIMIT 3",
            "data.sqlguard.decision",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["allow"],
        true,
        "{out}"
    );

    the_prod_limit_rule_holds();
}

/// The prod example's LIMIT rule, by `check`.
fn the_prod_limit_rule_holds() {
    let prod = policies().join("examples/prod");
    let mut failures = Vec::new();
    for (label, sql, allow) in PROD_LIMIT_CASES {
        let (code, out, err) = sqlguard(
            &[
                "check",
                "--policy",
                prod.to_str().unwrap(),
                "--label",
                label,
                sql,
            ],
            &[],
        );
        if (code == 0) != *allow || (!allow && !out.contains("[prod_limit]")) {
            failures.push(format!("{label} {sql}: exit {code}: {out}{err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A per-label entry that sets only some limits is compiled (no interpreter
/// fallback, no warning on every run).
#[test]
fn a_partial_limits_entry_compiles() {
    let dir = scratch("limits");
    let [data] = write_all(
        &dir,
        &[(
            "limits.json",
            r#"{"sqlguard": {"limits": {"by_label": [{"labels": {"env": "prod"}, "limits": {"max_rows": 10}}]}}}"#,
        )],
    )
    .try_into()
    .unwrap();
    let policy = Policy::new(Bundle::embedded(std::slice::from_ref(&data)).unwrap()).unwrap();
    assert_eq!(
        policy.evaluator(),
        Evaluator::Compiled,
        "{:?}",
        policy.interpreted_because()
    );
    let (code, out, err) = sqlguard(
        &[
            "check",
            "--data",
            data.to_str().unwrap(),
            "--label",
            "env=prod",
            "SELECT 1",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 rows"), "{out}");
    assert!(err.is_empty(), "no warning expected: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Items 1 and 8 on the real cluster: a misspelt `columns.deny` entry is warned with the real
/// column's name; a dsn database's configured identity reaches role rules, marked as not
/// verified; a reload with a typo is refused and the old policy keeps deciding.
#[tokio::test]
async fn on_the_cluster_misspelt_names_are_warned_and_configured_identities_decide() {
    use rmcp::ServiceExt;
    use tokio::io::AsyncReadExt;
    let cluster = Cluster::shared();
    let dir = scratch("cluster");
    let data = dir.join("data.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"columns": {"deny": ["public.users.emial", "public.users.ssn"], "mask": {"public.users.nmae": "redact"}}}}"#,
    )
    .unwrap();
    let settings = format!(
        "policy = [{:?}]\ndata = [{:?}]\n[identity]\nuser = \"carol\"\nroles = [\"auditor\"]\n",
        policies().join("examples/roles").display().to_string(),
        data.display().to_string(),
    );
    let config = shop_config(&dir, cluster, &settings);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SQLGUARD_LOG", "warn");
    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.unwrap();
    let db = "teleport://clusters/acme/databases/shop";
    // The misspelt entry protects nothing (the real column comes back), which is why it is
    // warned about; the correct one holds.
    let (failed, text) = query_database(&client, db, "SELECT email FROM users LIMIT 1").await;
    assert!(!failed, "{text}");
    let (failed, text) = query_database(&client, db, "SELECT ssn FROM users LIMIT 1").await;
    assert!(failed && text.contains("column_denied"), "{text}");
    // The configured identity is an auditor: EXPLAIN is refused by the roles example.
    let (failed, text) = query_database(&client, db, "EXPLAIN SELECT 1").await;
    assert!(failed && text.contains("role_auditor_explain"), "{text}");
    // A reload with a typo is refused; the old policy stays.
    std::fs::write(
        &data,
        r#"{"sqlguard": {"colums": {"deny": ["public.users.ssn"]}}}"#,
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (failed, text) = query_database(&client, db, "SELECT ssn FROM users LIMIT 1").await;
    assert!(failed, "the old policy should still decide: {text}");
    let _ = client.cancel().await;
    let mut log = String::new();
    let _ = stderr.unwrap().read_to_string(&mut log).await;
    assert!(
        log.contains(
            "data.sqlguard.columns.deny entry \"public.users.emial\" matches no column of database shop (did you mean public.users.email?)"
        ),
        "{log}"
    );
    // A misspelt mask masks nothing: warned the same way.
    assert!(
        log.contains(
            "data.sqlguard.columns.mask entry \"public.users.nmae\" matches no column of database shop (did you mean public.users.name?)"
        ),
        "{log}"
    );
    assert!(!log.contains("\"public.users.ssn\" matches no"), "{log}");
    assert!(
        log.contains("POLICY RELOAD REJECTED")
            && log.contains("did you mean data.sqlguard.columns?"),
        "{log}"
    );
    doctor_names_the_misspelt_entry(&data, &config);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `doctor` says it too, with the fix.
fn doctor_names_the_misspelt_entry(data: &std::path::Path, config: &std::path::Path) {
    std::fs::write(
        data,
        r#"{"sqlguard": {"columns": {"deny": ["public.users.emial"]}}}"#,
    )
    .unwrap();
    let (_, report) = crate::doctor::doctor(config, &[]);
    let names = crate::doctor::check(&report, "policy names");
    assert_eq!(names["ok"], false, "{names}");
    assert!(
        names["detail"]
            .as_str()
            .unwrap()
            .contains("did you mean public.users.email?"),
        "{names}"
    );
}

/// The identity is configuration's only for dsn databases, and says so.
#[test]
fn configured_identities_are_for_dsn_databases_and_marked_unverified() {
    let dir = scratch("identity");
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        "[identity]\nuser = \"carol\"\nroles = [\"auditor\"]\n\n\
         [[database]]\nuri = \"teleport://clusters/c/databases/a?dbName=a&dbUser=u\"\ndsn = \"postgres://u@127.0.0.1:1/a\"\n\n\
         [[database]]\nuri = \"teleport://clusters/c/databases/b?dbName=b&dbUser=u\"\ndsn = \"postgres://u@127.0.0.1:1/b\"\nidentity = { user = \"dan\" }\n\n\
         [[database]]\nuri = \"teleport://clusters/c/databases/t?dbName=t&dbUser=u\"\n",
    )
    .unwrap();
    let specs = sqlguard::config::Config::load(&config)
        .unwrap()
        .database_specs(&[])
        .unwrap();
    let who: Vec<Option<(String, Vec<String>, sqlguard::policy::IdentitySource)>> = specs
        .iter()
        .map(|s| {
            s.identity
                .as_ref()
                .map(|i| (i.user.clone(), i.roles.clone(), i.source))
        })
        .collect();
    use sqlguard::policy::IdentitySource::Configuration;
    assert_eq!(
        who,
        vec![
            Some(("carol".into(), vec!["auditor".into()], Configuration)),
            Some(("dan".into(), vec![], Configuration)),
            None,
        ]
    );
    let as_input = serde_json::to_value(specs[0].identity.as_ref().unwrap()).unwrap();
    assert_eq!(as_input["source"], "configuration");
    std::fs::write(
        &config,
        "[[database]]\nuri = \"teleport://clusters/c/databases/t?dbName=t&dbUser=u\"\nidentity = { user = \"x\" }\n",
    )
    .unwrap();
    let err = sqlguard::config::Config::load(&config)
        .unwrap()
        .database_specs(&[])
        .unwrap_err();
    assert!(err.contains("set identity only on dsn databases"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sqlguard config` writes the team's `--config` into the entry (also from
/// `SQLGUARD_CONFIG`) and leaves no lock file beside the client's file.
#[test]
fn client_configuration_runs_the_teams_config() {
    let dir = scratch("client");
    let server = dir.join("sqlguard.toml");
    std::fs::write(&server, "policy = []\n").unwrap();
    let client = dir.join("mcp.json");
    let uri = "teleport://clusters/c/databases/a?dbName=a&dbUser=u";
    let (code, out, err) = sqlguard(
        &[
            "config",
            "--client-config",
            client.to_str().unwrap(),
            "--config",
            server.to_str().unwrap(),
            uri,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let abs = server.canonicalize().unwrap().display().to_string();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&client).unwrap()).unwrap();
    assert_eq!(
        doc["mcpServers"]["teleport-databases"]["args"],
        json!(["serve", "--config", abs, uri])
    );
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.contains("lock")), "{left:?}");
    // From the environment, replacing the path of an earlier --config.
    let other = dir.join("other.toml");
    std::fs::write(&other, "").unwrap();
    let (code, out, err) = sqlguard(
        &["config", "--client-config", client.to_str().unwrap(), uri],
        &[("SQLGUARD_CONFIG", other.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&client).unwrap()).unwrap();
    let abs = other.canonicalize().unwrap().display().to_string();
    assert_eq!(
        doc["mcpServers"]["teleport-databases"]["args"],
        json!(["serve", "--config", abs, uri])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Honest messages. A keyed audit log checked without its key is not "BROKEN"; the
/// agents' instructions suggest information_schema only where the policy allows it; the
/// agent does not see where the database is when it cannot be reached.
#[tokio::test]
async fn messages_say_what_is_true() {
    let dir = scratch("messages");
    let log = dir.join("audit.jsonl");
    std::fs::write(dir.join("key"), "a key").unwrap();
    let cluster = Cluster::shared();
    let closed = crate::support::cluster::free_port();
    // The down database and the shop database, information_schema closed by tables.allow.
    let data = dir.join("data.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"tables": {"allow": ["public.*"]}}}"#,
    )
    .unwrap();
    let settings = format!(
        "audit_log = {:?}\naudit_key_file = {:?}\ndata = [{:?}]\nconnect_timeout_ms = 2000\n\n[[database]]\nuri = \"teleport://clusters/acme/databases/down?dbName=d&dbUser=u\"\ndsn = \"postgres://secretuser@127.0.0.1:{closed}/d\"\n",
        log.display().to_string(),
        dir.join("key").display().to_string(),
        data.display().to_string(),
    );
    let config = shop_config(&dir, cluster, &settings);
    let (client, _) = serve_config(&config).await;
    let info = client.peer_info().unwrap();
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        !instructions.contains("information_schema"),
        "{instructions}"
    );
    assert!(instructions.contains("/schema."), "{instructions}");
    let (failed, text) = query_database(
        &client,
        "teleport://clusters/acme/databases/down",
        "SELECT 1",
    )
    .await;
    assert!(failed, "{text}");
    assert!(
        text.contains("cannot connect") || text.contains("did not answer"),
        "{text}"
    );
    assert!(
        !text.contains("secretuser") && !text.contains(&closed.to_string()),
        "the agent sees where the database is: {text}"
    );
    let _ = client.cancel().await;
    // Without the narrowed allow list, the instructions do suggest information_schema.
    let config = shop_config(&dir, cluster, "");
    let (client, _) = serve_config(&config).await;
    let instructions = client
        .peer_info()
        .unwrap()
        .instructions
        .clone()
        .unwrap_or_default();
    assert!(
        instructions.contains("information_schema.tables"),
        "{instructions}"
    );
    let _ = client.cancel().await;

    let (code, out, _) = sqlguard(&["audit", "verify", log.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("NOT CHECKED") && out.contains("--key-file") && !out.contains("BROKEN"),
        "{out}"
    );
    let key = dir.join("key");
    let (code, out, _) = sqlguard(
        &[
            "audit",
            "verify",
            log.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The misspelt entry is said at start, before any call reads the catalog.
#[tokio::test]
async fn misspelt_names_are_warned_at_start() {
    use rmcp::ServiceExt;
    use tokio::io::AsyncReadExt;
    let cluster = Cluster::shared();
    let dir = scratch("start");
    let data = dir.join("data.json");
    std::fs::write(
        &data,
        r#"{"sqlguard": {"tables": {"deny": ["public.oders"]}}}"#,
    )
    .unwrap();
    let settings = format!("data = [{:?}]\n", data.display().to_string());
    let config = shop_config(&dir, cluster, &settings);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"));
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .env("SQLGUARD_LOG", "warn");
    let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let _ = client.cancel().await;
    let mut log = String::new();
    let _ = stderr.unwrap().read_to_string(&mut log).await;
    assert!(
        log.contains("data.sqlguard.tables.deny entry \"public.oders\" matches no relation of database shop (did you mean public.orders?)"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
