//! Masked columns (threat model, class 26), over MCP on the real cluster: a masked column
//! selected as it is (`*`, an alias, a CTE, a subquery, a child table, a partition) comes back
//! masked, and every other use of it is refused, each refusal proven to be an oracle on raw
//! PostgreSQL: the same SQL gives another answer once only the masked values change.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::mcp::{query_database, serve_config};
use crate::support::cluster::{Cluster, WRITER, WRITER_PASSWORD};

const DB: &str = "masking";
const URI: &str = "teleport://clusters/acme/databases/masking";

const SCHEMA: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text, phone text, city text);
INSERT INTO customers VALUES
  (1, 'Annabel', 'ann.lee@example.com', '123-45-6789', '555-0101', 'Oslo'),
  (2, 'Roberto', 'bob@example.org', '987-65-4321', '555-0102', 'Lima'),
  (3, 'Cyrille', 'cyrille.poe.long@example.net', '555-12-3456', '555-0103', 'Oslo'),
  (4, 'Dorothea', NULL, '222-33-4444', '555-0101', 'Rome'),
  (5, 'Evander', 'evander@example.com', '333-44-5555', '555-0105', 'Lima'),
  (6, 'Fiorella', 'fiorella@example.org', '444-55-6666', '555-0106', 'Oslo');
CREATE TABLE orders (id int, customer_id int, email text, total int);
INSERT INTO orders VALUES (10, 1, 'ann.lee@example.com', 30), (11, 2, 'bob@example.org', 40), (12, 3, 'nobody@example.com', 50);
CREATE TABLE contacts (email text, note text);
INSERT INTO contacts VALUES ('ann.lee@example.com', 'first'), ('bob@example.org', 'second');
CREATE TABLE vip (tier text) INHERITS (customers);
INSERT INTO vip VALUES (101, 'Valentina', 'valentina@example.com', '777-88-9999', '555-0199', 'Rome', 'gold');
CREATE TABLE events (id int, email text) PARTITION BY RANGE (id);
CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100);
INSERT INTO events VALUES (1, 'ann.lee@example.com'), (2, 'bob@example.org');
CREATE VIEW customer_emails AS SELECT id, email FROM customers;
CREATE MATERIALIZED VIEW customer_mv AS SELECT id, email FROM customers;
CREATE INDEX customers_email_lower ON customers (lower(email));
"#;

/// Changes only the masked values: customers 1 and 2 swap theirs, 3 takes 2's; the child's
/// and the partition's are reversed.
const MUTATE: &str =
    "UPDATE customers c SET name = o.name, email = o.email, ssn = o.ssn, phone = o.phone \
     FROM customers o WHERE (c.id, o.id) IN ((1, 2), (2, 1), (3, 2)); \
     UPDATE ONLY vip SET email = reverse(email); UPDATE events SET email = reverse(email);";

/// The values no answer may hold (name, email's local part, ssn, phone).
pub const SECRETS: &[&str] = &[
    "Annabel",
    "Roberto",
    "Cyrille",
    "Dorothea",
    "Evander",
    "Fiorella",
    "Valentina",
    "ann.lee",
    "bob@",
    "cyrille.poe",
    "evander@",
    "fiorella@",
    "valentina@",
    "123-45",
    "987-65",
    "555-12",
    "222-33",
    "333-44",
    "444-55",
    "777-88",
    "555-010",
    "555-0199",
];

const POLICY: &str = r#"{"sqlguard": {"columns": {
  "mask": {
    "public.customers.email": "email",
    "public.customers.ssn": "last4",
    "public.customers.phone": "hash",
    "public.customers.name": "initial",
    "public.events.email": "redact"
  },
  "mask_formats": {"initial": {"keep_first": 1, "fill": "."}}
}}}"#;

fn masking() -> &'static Cluster {
    static BUILT: OnceLock<()> = OnceLock::new();
    let cluster = Cluster::shared();
    BUILT.get_or_init(|| {
        cluster.psql("postgres", &format!("CREATE DATABASE {DB} OWNER {WRITER}"));
        cluster.psql(DB, &format!("SET ROLE {WRITER}; {SCHEMA}"));
        cluster.psql(DB, "ANALYZE");
    });
    cluster
}

/// `dir/sqlguard.toml` serving the database with the policy above and a mask key.
pub fn masking_config(dir: &Path, key: &str) -> PathBuf {
    config_with(dir, Some(key), "")
}

/// The same, with the mask key `key` (none: no key) and more settings.
fn config_with(dir: &Path, key: Option<&str>, settings: &str) -> PathBuf {
    let cluster = masking();
    std::fs::create_dir_all(dir).unwrap();
    let data = dir.join("data.json");
    std::fs::write(&data, POLICY).unwrap();
    let key_line = match key {
        Some(key) => {
            let key_file = dir.join("mask.key");
            std::fs::write(&key_file, key).unwrap();
            format!("mask_key_file = {:?}\n", key_file.display().to_string())
        }
        None => String::new(),
    };
    let dsn = format!(
        "postgres://{WRITER}:{WRITER_PASSWORD}@127.0.0.1:{}/{DB}?sslmode=disable",
        cluster.port
    );
    let config = dir.join("sqlguard.toml");
    std::fs::write(
        &config,
        format!(
            "data = [{:?}]\n{key_line}audit_log = {:?}\n{settings}\n[[database]]\nuri = \"{URI}?dbName={DB}&dbUser={WRITER}\"\ndsn = {dsn:?}\n",
            data.display().to_string(),
            dir.join("audit.jsonl").display().to_string(),
        ),
    )
    .unwrap();
    config
}

fn temp(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sqlguard-masking-{tag}-{}", std::process::id()))
}

/// Raw PostgreSQL's answer to `sql` as the served user (its output or its error).
fn raw(sql: &str) -> String {
    match masking()
        .local
        .psql(DB, &format!("SET ROLE {WRITER}; {sql}"))
    {
        Ok(out) | Err(out) => out,
    }
}

/// The same, after only the masked values changed (rolled back).
fn raw_mutated(sql: &str) -> String {
    raw(&format!("BEGIN; {MUTATE} {sql}; ROLLBACK;"))
}

/// The secrets `text` holds.
pub fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS
        .iter()
        .copied()
        .filter(|s| text.contains(s))
        .collect()
}

fn rows(text: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {text}"))
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect()
}

fn masked(text: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    v["masked"]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// One call that must be answered without a masked value: its text.
async fn answered(client: &Client, sql: &str) -> String {
    let (err, text) = query_database(client, URI, sql).await;
    assert!(!err, "{sql}: {text}");
    assert!(
        leaked(&text).is_empty(),
        "{sql} leaked {:?}: {text}",
        leaked(&text)
    );
    text
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

#[tokio::test]
async fn selected_as_they_are_masked_columns_come_back_masked() {
    let dir = temp("allowed");
    let (client, _) = serve_config(&masking_config(&dir, "first key")).await;
    star_masks_every_masked_column(&client).await;
    renamed_and_passed_through_they_stay_masked(&client).await;
    unattributed_columns_are_masked_too(&client).await;
    the_audit_and_the_schema_name_the_masks(&client, &dir).await;
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `*`: every masked column, each with its mask; other columns as they are; NULL stays.
async fn star_masks_every_masked_column(client: &Client) {
    let all = answered(client, "SELECT * FROM customers ORDER BY id").await;
    let r = rows(&all);
    assert_eq!(r.len(), 7, "the child's row too: {all}");
    assert_eq!(r[0]["email"], "a***@example.com");
    assert_eq!(r[0]["ssn"], "*******6789");
    assert_eq!(r[0]["name"], "A......");
    assert_eq!(r[0]["city"], "Oslo");
    assert_eq!(r[3]["email"], serde_json::Value::Null);
    let phone = |i: usize| r[i]["phone"].as_str().unwrap().to_string();
    assert_eq!(phone(0).len(), 32);
    // Equal values hash alike under one key (customers 1 and 4 share a phone number).
    assert_eq!(phone(0), phone(3));
    assert_ne!(phone(0), phone(1));
    let mut m = masked(&all);
    m.sort();
    assert_eq!(m, ["email", "name", "phone", "ssn"]);
}

/// An alias, a CTE, a subquery, a child table, a partition.
async fn renamed_and_passed_through_they_stay_masked(client: &Client) {
    for (sql, column, expect) in [
        (
            "SELECT email AS e FROM customers WHERE id = 1",
            "e",
            "a***@example.com",
        ),
        (
            "WITH c AS (SELECT id, email FROM customers) SELECT email FROM c WHERE id = 2",
            "email",
            "b***@example.org",
        ),
        (
            "SELECT s.e FROM (SELECT id, email AS e FROM customers) s WHERE s.id = 3",
            "e",
            "c***@example.net",
        ),
        (
            "SELECT x.* FROM (SELECT * FROM customers) x WHERE x.id = 1",
            "ssn",
            "*******6789",
        ),
        ("SELECT email FROM vip", "email", "v***@example.com"),
        (
            "SELECT email FROM events_low WHERE id = 1",
            "email",
            "[masked]",
        ),
        ("SELECT email FROM events WHERE id = 2", "email", "[masked]"),
    ] {
        let text = answered(client, sql).await;
        assert_eq!(rows(&text)[0][column], expect, "{sql}: {text}");
        assert!(masked(&text).contains(&column.to_string()), "{sql}: {text}");
    }
}

/// A column PostgreSQL cannot attribute, in a call that selects a masked one, is masked
/// whole: the analysis cannot tell which it is. Without a masked column, nothing is masked.
async fn unattributed_columns_are_masked_too(client: &Client) {
    let text = answered(
        client,
        "SELECT email, 'literal' AS l, id FROM customers WHERE id = 1",
    )
    .await;
    assert_eq!(rows(&text)[0]["l"], "[masked]", "{text}");
    assert_eq!(rows(&text)[0]["id"], 1, "{text}");
    let text = answered(
        client,
        "SELECT id, city, 'x' AS l FROM customers WHERE id = 1",
    )
    .await;
    assert_eq!(rows(&text)[0]["l"], "x");
    assert!(masked(&text).is_empty(), "{text}");
}

/// The audit record names the masked columns, never their values; the schema resource shows
/// each masked column's mask.
async fn the_audit_and_the_schema_name_the_masks(client: &Client, dir: &Path) {
    let log = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(
        leaked(&log).is_empty(),
        "the audit log leaked {:?}",
        leaked(&log)
    );
    assert!(
        log.contains(r#""masked":[{"column":"e","source":"public.customers.email"}]"#),
        "{log}"
    );
    let schema = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "sqlguard://clusters/acme/databases/masking/schema",
        ))
        .await
        .unwrap();
    let text = match &schema.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        text.contains(r#"{"name":"email","type":"text","mask":{"kind":"email"}}"#),
        "{text}"
    );
}

#[tokio::test]
async fn hashes_differ_across_keys() {
    let sql = "SELECT phone FROM customers WHERE id = 1";
    let mut hashes = Vec::new();
    for key in ["first key", "second key"] {
        let dir = temp(&format!("key-{}", key.len()));
        let (client, _) = serve_config(&masking_config(&dir, key)).await;
        let (err, text) = query_database(&client, URI, sql).await;
        assert!(!err, "{text}");
        hashes.push(rows(&text)[0]["phone"].clone());
        let _ = client.cancel().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert_ne!(hashes[0], hashes[1]);
}

/// How a case is proven an oracle (or a leak) on raw PostgreSQL.
enum Proof {
    /// The SQL's answer changes when only the masked values change.
    Differs,
    /// As `Differs`, for this SQL, which answers the same question without returning the
    /// masked column itself.
    DiffersAs(&'static str),
    /// Raw PostgreSQL returns this masked value through it.
    Shows(&'static str),
}

use Proof::*;

/// Each oracle, the proof, and words its refusal holds.
const ORACLES: &[(&str, Proof, &str)] = &[
    ("SELECT id FROM customers WHERE email = 'ann.lee@example.com'", Differs, "WHERE"),
    ("SELECT id FROM customers WHERE email LIKE 'a%'", Differs, "WHERE"),
    ("SELECT id FROM customers WHERE length(email) > 18 ORDER BY id", Differs, "WHERE"),
    ("SELECT id FROM customers WHERE ssn LIKE '123%'", Differs, "WHERE"),
    ("SELECT id FROM customers WHERE phone = '555-0101' ORDER BY id", Differs, "WHERE"),
    ("SELECT c.id FROM customers c JOIN orders o ON o.email = c.email ORDER BY 1", Differs, "join condition"),
    ("SELECT c.id FROM customers c JOIN orders o USING (email) ORDER BY 1", Differs, "USING (email)"),
    ("SELECT count(*) FROM customers NATURAL JOIN contacts", Differs, "NATURAL JOIN"),
    ("SELECT id FROM customers WHERE id <= 3 ORDER BY email", Differs, "ORDER BY"),
    (
        "SELECT id, email FROM customers WHERE id <= 3 ORDER BY 2",
        DiffersAs("SELECT id FROM (SELECT id, email FROM customers WHERE id <= 3 ORDER BY 2) s"),
        "ORDER BY",
    ),
    (
        "SELECT id, email AS e FROM customers WHERE id <= 3 ORDER BY e",
        DiffersAs("SELECT id FROM (SELECT id, email AS e FROM customers WHERE id <= 3 ORDER BY e) s"),
        "ORDER BY",
    ),
    ("SELECT count(*) FROM customers GROUP BY email ORDER BY 1 DESC", Differs, "GROUP BY"),
    (
        "SELECT email, count(*) FROM customers GROUP BY 1 ORDER BY 2 DESC",
        DiffersAs("SELECT n FROM (SELECT email, count(*) AS n FROM customers GROUP BY 1) s ORDER BY 1 DESC"),
        "GROUP BY",
    ),
    (
        "SELECT DISTINCT email FROM customers",
        DiffersAs("SELECT count(*) FROM (SELECT DISTINCT email FROM customers) s"),
        "DISTINCT",
    ),
    ("SELECT DISTINCT ON (email) id FROM customers ORDER BY email, id", Differs, "DISTINCT"),
    (
        "SELECT email FROM customers UNION SELECT 'x'",
        DiffersAs("SELECT count(*) FROM (SELECT email FROM customers UNION SELECT 'x') s"),
        "UNION",
    ),
    (
        "SELECT email FROM customers WHERE id = 1 INTERSECT SELECT 'ann.lee@example.com'",
        DiffersAs("SELECT count(*) FROM (SELECT email FROM customers WHERE id = 1 INTERSECT SELECT 'ann.lee@example.com') s"),
        "INTERSECT",
    ),
    ("SELECT 'ann.lee@example.com' EXCEPT SELECT email FROM customers WHERE id = 1", Differs, "EXCEPT"),
    // UNION ALL compares nothing, but a set operation's columns belong to no table, so
    // PostgreSQL's row description cannot say which values to mask.
    ("SELECT email FROM customers WHERE id = 1 UNION ALL SELECT 'x'", Shows("ann.lee@example.com"), "UNION"),
    ("SELECT id, count(*) OVER (PARTITION BY email) FROM customers ORDER BY id", Differs, "window"),
    ("SELECT id, row_number() OVER (ORDER BY email) FROM customers WHERE id <= 3 ORDER BY id", Differs, "window"),
    ("SELECT id, length(email) FROM customers ORDER BY id", Differs, "function, operator, cast"),
    ("SELECT upper(email) FROM customers WHERE id = 1", Shows("ANN.LEE@EXAMPLE.COM"), "function, operator, cast"),
    ("SELECT id, email = 'ann.lee@example.com' FROM customers ORDER BY id", Differs, "function, operator, cast"),
    ("SELECT email::varchar(7) FROM customers WHERE id = 1", Shows("ann.lee"), "function, operator, cast"),
    ("SELECT id, CASE WHEN email LIKE 'a%' THEN 1 ELSE 0 END FROM customers ORDER BY id", Differs, "function, operator, cast"),
    ("SELECT coalesce(email, 'none') FROM customers WHERE id = 1", Shows("ann.lee@example.com"), "function, operator, cast"),
    ("SELECT count(DISTINCT email) FROM customers", Differs, "function, operator, cast"),
    ("SELECT string_agg(email, ',') FROM customers", Shows("ann.lee@example.com"), "function, operator, cast"),
    ("SELECT c FROM customers c WHERE id = 1", Shows("ann.lee@example.com"), "whole-row"),
    ("SELECT row_to_json(c) FROM customers c WHERE id = 1", Shows("ann.lee@example.com"), "whole-row"),
    ("SELECT c::text FROM customers c WHERE id = 1", Shows("ann.lee@example.com"), "whole-row"),
    ("SELECT (c).email FROM customers c WHERE id = 1", Shows("ann.lee@example.com"), "whole-row"),
    ("SELECT id FROM orders WHERE email IN (SELECT email FROM customers WHERE id = 1)", Differs, "subquery in an expression"),
    (
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.email = c.email) ORDER BY id",
        Differs,
        "WHERE",
    ),
    ("SELECT (SELECT email FROM customers WHERE id = 1) AS e", Shows("ann.lee@example.com"), "subquery in an expression"),
    ("SELECT id FROM customers GROUP BY id HAVING max(email) LIKE 'a%'", Differs, "HAVING"),
    ("SELECT c.id, x FROM customers c, LATERAL split_part(c.email, '@', 2) x WHERE c.id = 1", Differs, "in FROM"),
    ("SELECT x.a, x.c FROM customers AS x(a, b, c) WHERE x.a = 1", Shows("ann.lee@example.com"), "column alias list"),
    ("WITH s AS (SELECT id, email FROM customers) SELECT id FROM s WHERE email LIKE 'a%'", Differs, "WHERE"),
    ("SELECT id FROM (SELECT id, email AS e FROM customers) s WHERE e LIKE 'a%'", Differs, "WHERE"),
    ("SELECT a.id FROM (SELECT id, email FROM customers) a JOIN orders USING (email) ORDER BY 1", Differs, "USING (email)"),
    ("SELECT id FROM customers LIMIT (SELECT length(email) FROM customers WHERE id = 1) - 14", Differs, "subquery in an expression"),
    ("SELECT id FROM vip WHERE email LIKE 'v%'", Differs, "WHERE"),
    ("SELECT id FROM events WHERE email LIKE 'a%'", Differs, "WHERE"),
    ("SELECT * FROM customer_emails WHERE id = 1", Shows("ann.lee@example.com"), "view public.customer_emails is built on the masked column"),
    ("SELECT * FROM customer_mv WHERE id = 1", Shows("ann.lee@example.com"), "built on the masked column"),
    (
        "SELECT histogram_bounds FROM pg_stats WHERE schemaname = 'public' AND tablename = 'customers' AND attname = 'email'",
        Shows("ann.lee@example.com"),
        "sample values",
    ),
    (
        "SELECT histogram_bounds FROM pg_stats WHERE schemaname = 'public' AND tablename = 'customers_email_lower'",
        Shows("ann.lee@example.com"),
        "sample values",
    ),
];

#[tokio::test]
async fn every_other_use_of_a_masked_column_is_refused() {
    assert!(ORACLES.len() >= 30);
    let dir = temp("oracles");
    let (client, _) = serve_config(&masking_config(&dir, "first key")).await;
    let mut failures = Vec::new();
    for (sql, proof, words) in ORACLES {
        // The proof: raw PostgreSQL answers something the masks would not hide.
        match proof {
            Differs | DiffersAs(_) => {
                let p = match proof {
                    DiffersAs(p) => p,
                    _ => sql,
                };
                let (before, after) = (raw(p), raw_mutated(p));
                if before == after || before.contains("ERROR") {
                    failures.push(format!("{sql}: the raw proof {p} does not change with the masked values: {before:?} / {after:?}"));
                }
            }
            Shows(value) => {
                let out = raw(sql);
                if !out.contains(value) {
                    failures.push(format!(
                        "{sql}: raw PostgreSQL does not show {value:?}: {out}"
                    ));
                }
            }
        }
        let (err, text) = query_database(&client, URI, sql).await;
        if !err || !text.contains(words) || !leaked(&text).is_empty() {
            failures.push(format!(
                "{sql}: expected a refusal naming {words:?}, without values: {text}"
            ));
        }
    }
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Queries from a small grammar over the masked table: projections (`*`, names, aliases),
/// sources (the table, a subquery, a CTE, a join, the child table), filters and sorts on other
/// columns, and now and then a use that is refused (a filter or a sort on a masked column).
fn query() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let projection = prop::sample::select(vec![
        "*",
        "c.*",
        "email",
        "c.email AS e",
        "id, email, ssn",
        "name AS n, phone AS p, city",
        "email AS id2, id",
        "c.phone, c.phone AS again",
    ]);
    let source = prop::sample::select(vec![
        "FROM customers c",
        "FROM (SELECT * FROM customers) c",
        "FROM (SELECT id, name, email, ssn, phone, city FROM customers WHERE id > 1) c",
        "FROM vip c",
        // Not orders.email nor contacts.email: unmasked copies of the same addresses.
        "FROM customers c JOIN (SELECT id AS order_id, customer_id, total FROM orders) o ON o.customer_id = c.id",
        "FROM customers c LEFT JOIN (SELECT note FROM contacts) k ON k.note = c.city",
        "FROM (SELECT x.* FROM (SELECT * FROM customers) x) c",
    ]);
    let with = prop::bool::ANY;
    let filter = prop::sample::select(vec![
        "",
        "WHERE c.id > 2",
        "WHERE c.id IN (1, 2, 4)",
        "WHERE c.city = 'Oslo'",
        "WHERE c.id < 100 AND c.city <> 'Rome'",
        "WHERE c.email LIKE 'a%'",
        "WHERE c.ssn > '5'",
    ]);
    let order = prop::sample::select(vec![
        "",
        "ORDER BY c.id",
        "ORDER BY c.city, c.id DESC",
        "ORDER BY c.email",
        "ORDER BY 1",
    ]);
    let limit = prop::sample::select(vec!["", "LIMIT 2", "LIMIT 50 OFFSET 1"]);
    (projection, source, with, filter, order, limit).prop_map(|(p, s, w, f, o, l)| {
        let body = format!("SELECT {p} {s} {f} {o} {l}");
        if w && s == "FROM customers c" {
            format!("WITH t AS (SELECT * FROM customers) SELECT {p} FROM t c {f} {o} {l}")
        } else {
            body
        }
    })
}

/// Property: whatever the query, no byte of any answer (data, masks, refusals, notes) holds a
/// cleartext value of a masked column.
#[test]
fn no_answer_holds_a_masked_value() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = temp("property");
    let config = masking_config(&dir, "first key");
    let (client, _) = rt.block_on(serve_config(&config));
    let cases: u32 = std::env::var("SQLGUARD_MASK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(160);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let answered = std::cell::Cell::new(0u32);
    let result = runner.run(&query(), |sql| {
        let (err, text) = rt.block_on(query_database(&client, URI, &sql));
        if !err {
            answered.set(answered.get() + 1);
        }
        proptest::prop_assert!(
            leaked(&text).is_empty(),
            "{sql} leaked {:?}: {text}",
            leaked(&text)
        );
        Ok(())
    });
    let _ = rt.block_on(client.cancel());
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
    // Not vacuous: most queries of the grammar run.
    assert!(
        answered.get() * 3 >= cases,
        "only {} of {cases} queries ran",
        answered.get()
    );
}

/// Without a mask key, a call selecting a hashed column is refused (and `doctor` says how to
/// fix it); other calls run. The plan step does not change what is masked.
#[tokio::test]
async fn a_missing_key_refuses_hashed_columns_and_doctor_names_it() {
    let dir = temp("nokey");
    let config = config_with(&dir, None, "");
    let (client, _) = serve_config(&config).await;
    let (err, text) = query_database(&client, URI, "SELECT phone FROM customers").await;
    assert!(
        err && text.contains("no mask key") && text.contains("mask_key_file"),
        "{text}"
    );
    let (err, text) =
        query_database(&client, URI, "SELECT id, email FROM customers WHERE id = 1").await;
    assert!(!err, "{text}");
    assert_eq!(rows(&text)[0]["email"], "a***@example.com");
    let _ = client.cancel().await;
    let (_, report) = crate::doctor::doctor(&config, &[]);
    let masks = crate::doctor::check(&report, "masks");
    assert_eq!(masks["ok"], false, "{masks}");
    assert!(
        masks["fix"].as_str().unwrap().contains("mask_key_file"),
        "{masks}"
    );
    // With the plan judged too, the same values come back masked.
    let planned = temp("planned");
    let layer = planned.join("layer");
    std::fs::create_dir_all(&layer).unwrap();
    std::fs::write(
        layer.join("data.json"),
        r#"{"sqlguard": {"plan": {"explain": true}}}"#,
    )
    .unwrap();
    let config = config_with(
        &planned,
        Some("first key"),
        &format!("policy = [{:?}]\n", layer.display().to_string()),
    );
    let (client, _) = serve_config(&config).await;
    let (err, text) = query_database(
        &client,
        URI,
        "SELECT email, ssn FROM customers WHERE id = 1",
    )
    .await;
    assert!(!err, "{text}");
    assert_eq!(rows(&text)[0]["ssn"], "*******6789", "{text}");
    assert!(leaked(&text).is_empty(), "{text}");
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&planned);
}
