//! `sqlguard demo`: a throwaway local PostgreSQL with a sample `employees` database, served by
//! `sqlguard serve` and driven over real MCP (stdio), with a short tour of what is allowed
//! and what is refused.

pub mod cluster;

use std::path::{Path, PathBuf};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::Value;

use cluster::{ClusterOptions, LocalCluster};

pub const DEMO_URI: &str =
    "teleport://clusters/demo/databases/employees?dbName=employees&dbUser=agent";
pub const DEMO_RESOURCE: &str = "teleport://clusters/demo/databases/employees";

const SEED: &str = r#"
CREATE TABLE departments (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE employees (
  id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, email text NOT NULL,
  department_id integer REFERENCES departments, title text, salary numeric(10, 2),
  hired_on date NOT NULL, ssn text, manager_id integer REFERENCES employees
);
INSERT INTO departments (name) VALUES ('Engineering'), ('Sales'), ('Support'), ('Finance'), ('People');
INSERT INTO employees (first_name, last_name, email, department_id, title, salary, hired_on, ssn)
SELECT f, l, lower(f || '.' || l || g) || '@example.com', 1 + g % 5,
       (ARRAY['Engineer', 'Account Executive', 'Support Specialist', 'Analyst', 'Recruiter'])[1 + g % 5],
       50000 + (g * 7919) % 90000, date '2015-01-01' + (g * 37) % 3500, lpad(((g * 104729) % 1000000000)::text, 9, '0')
FROM generate_series(1, 300) g,
     LATERAL (SELECT (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'])[1 + g % 8] AS f,
                     (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson'])[1 + (g / 8) % 8] AS l) n;
UPDATE employees SET manager_id = 1 + (id % 10) WHERE id > 10;
CREATE SEQUENCE badge_numbers;
-- As autovacuum would: pg_stats now holds samples of every column, ssn included.
ANALYZE employees;
"#;

/// The demo database, running.
pub struct Demo {
    pub cluster: LocalCluster,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Demo {
    /// Starts the cluster, seeds `employees`, writes a configuration for `sqlguard serve`.
    pub fn start() -> Result<Demo, String> {
        let cluster = LocalCluster::start(&ClusterOptions {
            tag: "demo".into(),
            host_auth: "trust".into(),
            ..Default::default()
        })?;
        cluster.psql("postgres", "CREATE ROLE agent LOGIN")?;
        cluster.psql("postgres", "CREATE DATABASE employees OWNER agent")?;
        // The agent owns the tables: it *could* write, so what stops it is sqlguard.
        cluster.psql("employees", &format!("SET ROLE agent; {SEED}"))?;
        let dir = cluster.dir.join("sqlguard");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let data = dir.join("demo-policy.json");
        std::fs::write(&data, r#"{"sqlguard": {"columns": {"deny": ["public.employees.ssn"]}, "limits": {"default": {"max_rows": 100, "max_result_bytes": 262144, "statement_timeout_ms": 5000}}}}"#)
            .map_err(|e| e.to_string())?;
        let config = dir.join("sqlguard.toml");
        let toml = format!(
            "data = [{data:?}]\naudit_log = {audit:?}\n\n[[database]]\nuri = {DEMO_URI:?}\ndsn = {dsn:?}\nlabels = {{ env = \"demo\" }}\ndescription = \"Sample HR database (sqlguard demo)\"\n",
            data = data.display().to_string(),
            audit = dir.join("audit.jsonl").display().to_string(),
            dsn = format!("postgres://agent@127.0.0.1:{}/employees?sslmode=disable", cluster.port),
        );
        std::fs::write(&config, toml).map_err(|e| e.to_string())?;
        Ok(Demo {
            cluster,
            dir,
            config,
        })
    }
}

fn text_of(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

/// Renders rows as a small text table.
fn table(rows: &[Value]) -> String {
    let Some(first) = rows.first().and_then(Value::as_object) else {
        return "  (no rows)\n".into();
    };
    let cols: Vec<&String> = first.keys().collect();
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    for r in rows {
        for (i, c) in cols.iter().enumerate() {
            widths[i] = widths[i].max(cell(&r[c.as_str()]).chars().count().min(40));
        }
    }
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:<w$}",
                    v.chars().take(40).collect::<String>(),
                    w = widths[i]
                )
            })
            .collect();
        format!("  {}\n", parts.join(" | "))
    };
    let mut out = line(cols.iter().map(|c| c.to_string()).collect());
    out.push_str(&format!(
        "  {}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for r in rows {
        out.push_str(&line(cols.iter().map(|c| cell(&r[c.as_str()])).collect()));
    }
    out
}

const ALLOWED: &[(&str, &str)] = &[
    ("Head count and average salary per department", "SELECT d.name AS department, count(*) AS employees, round(avg(e.salary)) AS avg_salary FROM employees e JOIN departments d ON d.id = e.department_id GROUP BY d.name ORDER BY employees DESC"),
    ("The longest-serving employees", "SELECT first_name, last_name, title, hired_on FROM employees ORDER BY hired_on, id LIMIT 3"),
    ("A recursive CTE (read-only, so fine)", "WITH RECURSIVE chain AS (SELECT id, manager_id, 1 AS depth FROM employees WHERE id = 42 UNION ALL SELECT e.id, e.manager_id, c.depth + 1 FROM employees e JOIN chain c ON e.id = c.manager_id) SELECT max(depth) AS levels_to_the_top FROM chain"),
    ("More rows than the limit: the result is cut and says so", "SELECT id, email FROM employees ORDER BY id"),
];

const DENIED: &[(&str, &str)] = &[
    ("A write", "DELETE FROM employees WHERE title = 'Recruiter'"),
    (
        "A write hidden in a CTE",
        "WITH gone AS (DELETE FROM employees RETURNING *) SELECT count(*) FROM gone",
    ),
    ("Stacked statements", "SELECT 1; DROP TABLE employees"),
    (
        "A denied column (policy: columns.deny)",
        "SELECT first_name, ssn FROM employees",
    ),
    (
        "SELECT * reaches the denied column too",
        "SELECT * FROM employees LIMIT 1",
    ),
    (
        "A join that compares the denied column: a yes/no oracle on any guess",
        "SELECT id FROM employees JOIN (SELECT '000104729' AS ssn) guess USING (ssn)",
    ),
    (
        "The statistics hold samples of the denied column",
        "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'employees' AND attname = 'ssn'",
    ),
    ("A side-effect function", "SELECT nextval('badge_numbers')"),
    ("A sleep", "SELECT pg_sleep(60)"),
    (
        "Row locks",
        "SELECT id FROM employees WHERE id = 1 FOR UPDATE",
    ),
    (
        "Password hashes",
        "SELECT rolname, rolpassword FROM pg_authid",
    ),
];

/// Runs the tour: prints to stdout, returns an error message on failure.
pub async fn tour(exe: &Path) -> Result<(), String> {
    println!("sqlguard demo: starting a throwaway PostgreSQL with a sample `employees` database…");
    let demo = Demo::start()?;
    println!(
        "  PostgreSQL on 127.0.0.1:{} (data in {}), removed when the demo ends.\n",
        demo.cluster.port,
        demo.cluster.dir.display()
    );
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--config")
        .arg(&demo.config)
        .env("SQLGUARD_LOG", "warn");
    let transport =
        TokioChildProcess::new(cmd).map_err(|e| format!("cannot start sqlguard serve: {e}"))?;
    let client = ().serve(transport).await.map_err(|e| format!("MCP initialize failed: {e}"))?;
    let info = client
        .peer_info()
        .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone()))
        .unwrap_or_default();
    let tools = client.list_all_tools().await.map_err(|e| e.to_string())?;
    println!(
        "Connected over MCP (stdio) to `{info}`. Tools: {}.\n",
        tools
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let list = client
        .call_tool(CallToolRequestParams::new("teleport_list_databases"))
        .await
        .map_err(|e| e.to_string())?;
    let yaml: String = list
        .content
        .iter()
        .filter_map(|c| c.as_resource())
        .filter_map(|r| match &r.resource {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    println!(
        "teleport_list_databases →\n{}",
        yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );

    allowed_tour(&client).await?;
    refused_tour(&client).await?;
    let _ = client.cancel().await;
    let audit = demo.dir.join("audit.jsonl");
    match crate::audit::verify(&audit, None) {
        Ok(n) => println!("Every call above is in the hash-chained audit log: {n} records, chain intact (`sqlguard audit verify FILE`).\n"),
        Err(e) => return Err(format!("the demo's audit log does not verify: {e}")),
    }
    audit_tour(&audit)?;
    print_client_setup(exe);
    println!("\nDemo finished: the PostgreSQL cluster is being removed.");
    Ok(())
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// The demo's reads, each with its first rows.
async fn allowed_tour(client: &Client) -> Result<(), String> {
    let query = |sql: &'static str| {
        let args = serde_json::json!({"database": DEMO_RESOURCE, "query": sql});
        let params = CallToolRequestParams::new("teleport_postgres_query")
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        async move { client.call_tool(params).await.map_err(|e| e.to_string()) }
    };
    println!("== Allowed: reads run, inside a READ ONLY transaction that is rolled back ==\n");
    for (what, sql) in ALLOWED {
        let r = query(sql).await?;
        let body: Value = serde_json::from_str(&text_of(&r)).map_err(|e| e.to_string())?;
        if r.is_error == Some(true) {
            return Err(format!(
                "the demo query was refused: {sql}: {}",
                body["error"]
            ));
        }
        let rows = body["data"].as_array().cloned().unwrap_or_default();
        println!("-- {what}\n   {sql}");
        let shown = rows.len().min(5);
        print!("{}", table(&rows[..shown]));
        if rows.len() > shown {
            println!("  … {} rows in all", rows.len());
        }
        if body["truncated"] == Value::Bool(true) {
            println!(
                "  truncated: true ({})",
                body["note"].as_str().unwrap_or("")
            );
        }
        println!();
    }
    Ok(())
}

/// The demo's refusals, each with the reasons the agent sees.
async fn refused_tour(client: &Client) -> Result<(), String> {
    let query = |sql: &'static str| {
        let args = serde_json::json!({"database": DEMO_RESOURCE, "query": sql});
        let params = CallToolRequestParams::new("teleport_postgres_query")
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        async move { client.call_tool(params).await.map_err(|e| e.to_string()) }
    };
    println!("== Refused: each with the reason the agent sees ==\n");
    for (what, sql) in DENIED {
        let r = query(sql).await?;
        let body: Value = serde_json::from_str(&text_of(&r)).map_err(|e| e.to_string())?;
        if r.is_error != Some(true) {
            return Err(format!("the demo expected a refusal for: {sql}"));
        }
        println!("-- {what}\n   {sql}");
        for line in body["error"]
            .as_str()
            .unwrap_or("")
            .lines()
            .skip(1)
            .filter(|l| l.starts_with("- "))
        {
            println!("   {line}");
        }
        println!();
    }
    Ok(())
}

/// How to use the demo, and then one's own databases, from an MCP client.
fn print_client_setup(exe: &Path) {
    println!("== Use it from an MCP client ==\n");
    println!(
        "Keep this demo database running and serve it on stdio:\n  {} demo --serve\n",
        exe.display()
    );
    println!("Claude Desktop (claude_desktop_config.json) or Cursor (~/.cursor/mcp.json):");
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"mcpServers": {"sqlguard-demo": {"command": exe.display().to_string(), "args": ["demo", "--serve"]}}}))
            .unwrap_or_default()
    );
    println!("\nFor your own databases behind Teleport, replace `tsh mcp db start` with `sqlguard serve` (same URIs):");
    println!("  {} serve \"{DEMO_URI}\"", exe.display());
}

/// `sqlguard demo --serve`: the demo database, served on stdio until the client leaves.
pub async fn serve() -> Result<(), String> {
    let demo = Demo::start()?;
    eprintln!(
        "sqlguard demo: serving the sample database {DEMO_RESOURCE} over MCP on stdio (PostgreSQL on 127.0.0.1:{})",
        demo.cluster.port
    );
    crate::mcp::serve(crate::mcp::ServeOptions {
        config: Some(demo.config.clone()),
        ..Default::default()
    })
    .await
}

/// The refused calls of the demo's log and the counts, as `audit query` and `audit summary`
/// print them.
fn audit_tour(audit: &std::path::Path) -> Result<(), String> {
    use crate::audit::query::{scan, Filter, Format, Summary, Writer};
    println!("`sqlguard audit query FILE --verdict denied` lists the refused calls and the rules that refused them:");
    let mut writer = Writer::new(std::io::stdout().lock(), Format::Table);
    let denied = Filter {
        verdict: Some(crate::audit::verdict::DENIED.into()),
        ..Filter::default()
    };
    scan(audit, None, &denied, |row| writer.row(&row))?;
    let _ = writer.flush();
    println!("\n`sqlguard audit summary FILE` counts every call:");
    let mut summary = Summary::default();
    scan(audit, None, &Filter::default(), |row| {
        summary.add(&row);
        Ok(())
    })?;
    summary
        .print(&mut std::io::stdout().lock())
        .map_err(|e| e.to_string())?;
    println!();
    Ok(())
}
