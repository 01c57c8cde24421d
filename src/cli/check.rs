//! `sqlguard check`: the security team's view of a decision.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use super::{usage_error, AnalysisArgs, ContextArgs, PolicyArgs};
use crate::policy::{Checked, DatabaseContext, Identity, Policy};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The SQL; `-` or nothing reads stdin.
    sql: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    analysis: AnalysisArgs,
    #[command(flatten)]
    context: ContextArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Read one request per stdin line (`{"sql": …, "database": …, "identity": …}`) and write
    /// one decision per line, in order.
    #[arg(long)]
    jsonl: bool,
}

/// One `--jsonl` request.
#[derive(Deserialize)]
struct Request {
    sql: String,
    #[serde(default)]
    database: Option<DatabaseContext>,
    #[serde(default)]
    identity: Option<Identity>,
    #[serde(default)]
    tool: Option<String>,
}

fn json_of(checked: &Checked) -> serde_json::Value {
    let d = &checked.decision;
    let mut v = serde_json::json!({
        "allow": d.allow,
        "reasons": d.reasons,
        "limits": d.limits,
    });
    match &checked.facts {
        Ok(f) => {
            v["kinds"] = serde_json::json!(f.statements.iter().map(|s| s.kind).collect::<Vec<_>>())
        }
        Err(e) => v["error"] = serde_json::json!({"code": e.code(), "message": e.to_string()}),
    }
    v
}

pub fn run(args: CheckArgs) -> ExitCode {
    let policy = match args.policy.load() {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let opts = args.analysis.options();
    if args.jsonl {
        return run_jsonl(&policy, &args);
    }
    let sql = match super::read_sql(args.sql.as_deref()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let database = args.context.database();
    let checked = policy.check(
        &sql,
        &opts,
        Some(&database),
        &args.context.identity(),
        &args.context.tool,
    );
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_of(&checked)).unwrap_or_default()
        ),
        Format::Text => {
            let d = &checked.decision;
            if d.allow {
                println!(
                    "ALLOWED (limits: {} rows, {} bytes, {} ms)",
                    d.limits.max_rows, d.limits.max_result_bytes, d.limits.statement_timeout_ms
                );
            } else {
                println!("DENIED");
                for r in &d.reasons {
                    let at = if r.statement >= 0 {
                        format!("statement {}: ", r.statement + 1)
                    } else {
                        String::new()
                    };
                    println!("- {at}{} [{}]", r.message, r.rule);
                }
            }
        }
    }
    if checked.decision.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_jsonl(policy: &Policy, args: &CheckArgs) -> ExitCode {
    let opts = args.analysis.options();
    let default_db = args.context.database();
    let default_id = args.context.identity();
    let stdin = std::io::stdin();
    let mut all_allowed = true;
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return usage_error(&format!("cannot read stdin: {e}")),
        };
        let out = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let db = req.database.unwrap_or_else(|| default_db.clone());
                let id = req.identity.unwrap_or_else(|| default_id.clone());
                let tool = req.tool.unwrap_or_else(|| args.context.tool.clone());
                let checked = policy.check(&req.sql, &opts, Some(&db), &id, &tool);
                json_of(&checked)
            }
            Err(e) => serde_json::json!({
                "allow": false,
                "reasons": [{"rule": "bad_request", "statement": -1,
                    "message": format!("line {} is not a request {{\"sql\": …}}: {e}", n + 1)}],
                "limits": crate::policy::DENIED_LIMITS,
            }),
        };
        all_allowed &= out["allow"] == serde_json::Value::Bool(true);
        println!("{out}");
    }
    if all_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
