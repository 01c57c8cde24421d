//! `sqlguard check`: the security team's view of a decision.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::{usage_error, AnalysisArgs, ContextArgs, PolicyArgs};
use crate::analysis::plan::PlanFacts;
use crate::execution::{Database, DirectDialer, Dsn, Planned, RunLimits, SessionSettings};
use crate::policy::{Checked, DatabaseContext, Decision, Identity, Policy, PolicyInput};

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
    /// Also judge PostgreSQL's plan: when the static decision allows the query, EXPLAIN it
    /// (never ANALYZE; nothing runs) on this database (`postgres://…`), decide again with
    /// `input.plan`, and show the plan facts the policy saw.
    #[arg(long, value_name = "DSN")]
    explain: Option<String>,
    /// Print the policy input the SQL produces (`input.query`, `input.database`, …), the
    /// document a rule is written against, instead of deciding.
    #[arg(long)]
    print_input: bool,
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

/// One answer of `check`: the decision, and the statements' kinds or the analysis error.
#[derive(Serialize)]
struct Answer<'a> {
    allow: bool,
    reasons: &'a [crate::policy::Reason],
    /// Why a person must approve the call first (allowed only then).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ask: &'a [crate::policy::Reason],
    limits: &'a crate::policy::Limits,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    explain: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    kinds: Option<Vec<crate::analysis::StatementKind>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<serde_json::Value>,
}

fn answer_of(checked: &Checked) -> Answer<'_> {
    let d = &checked.decision;
    let (kinds, error) = match &checked.facts {
        Ok(f) => (Some(f.statements.iter().map(|s| s.kind).collect()), None),
        Err(e) => (
            None,
            Some(serde_json::json!({"code": e.code(), "message": e.to_string()})),
        ),
    };
    Answer {
        allow: d.allow,
        reasons: &d.reasons,
        ask: &d.ask,
        limits: &d.limits,
        explain: d.explain,
        kinds,
        error,
    }
}

fn json_of(checked: &Checked) -> serde_json::Value {
    serde_json::to_value(answer_of(checked)).unwrap_or_default()
}

pub fn run(args: CheckArgs) -> ExitCode {
    let policy = match args.policy.load() {
        Ok(p) => p,
        Err(e) => return usage_error(&e),
    };
    let opts = match args.analysis.options() {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    if args.jsonl {
        let code = run_jsonl(&policy, &opts, &args);
        // The process ends here: freeing the caches entry by entry (tens of thousands after a
        // long stream) would only delay the exit.
        std::mem::forget(policy);
        return code;
    }
    let sql = match super::read_sql(args.sql.as_deref()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    if args.print_input {
        return match super::policy::input_of(&sql, &args.analysis, &args.context) {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        };
    }
    let database = args.context.database();
    let identity = args.context.identity();
    let mut checked = policy.check(&sql, &opts, Some(&database), &identity, &args.context.tool);
    let mut plan = None;
    if let (Some(dsn), true, Ok(facts)) = (&args.explain, checked.decision.allow, &checked.facts) {
        let asked = checked.decision.explain;
        let static_decision = checked.decision.clone();
        let judged = explain(dsn, &sql, checked.decision.limits, |p| {
            let input = PolicyInput {
                query: Some(facts),
                database: Some(&database),
                identity: &identity,
                tool: &args.context.tool,
                plan: Some(p),
            };
            policy.decide_with_plan(&input, &static_decision)
        });
        match judged {
            Ok((facts, decision)) => {
                if asked {
                    checked.decision = decision;
                } else {
                    eprintln!("note: this policy does not ask for plans (data.sqlguard.plan.explain), so the decision above is the one sqlguard makes; with it on, the plan rules would see this plan");
                }
                plan = Some(facts);
            }
            Err(e) => return usage_error(&format!("cannot explain the query on {dsn}: {e}")),
        }
    }
    print_answer(&checked, plan.as_ref(), args.format);
    exit_code(&checked.decision)
}

/// 0 allowed, 1 denied, 3 allowed once a person approves it (2 is a usage error).
fn exit_code(d: &crate::policy::Decision) -> ExitCode {
    if d.asks() {
        ExitCode::from(3)
    } else if d.allow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The decision (and the plan facts, with `--explain`), as text or JSON.
fn print_answer(checked: &Checked, plan: Option<&PlanFacts>, format: Format) {
    match format {
        Format::Json => {
            let mut v = json_of(checked);
            if let Some(p) = plan {
                v["plan"] = serde_json::to_value(p).unwrap_or_default();
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
        }
        Format::Text => {
            let d = &checked.decision;
            if d.asks() {
                println!(
                    "ASK: runs only once a person approves it (limits: {} rows, {} bytes, {} ms)",
                    d.limits.max_rows, d.limits.max_result_bytes, d.limits.statement_timeout_ms
                );
                print_reasons(&d.ask);
            } else if d.allow {
                println!(
                    "ALLOWED (limits: {} rows, {} bytes, {} ms)",
                    d.limits.max_rows, d.limits.max_result_bytes, d.limits.statement_timeout_ms
                );
            } else {
                println!("DENIED");
                print_reasons(&d.reasons);
            }
            if d.allow && !d.mask.projected.is_empty() {
                println!("- masked in the result: {}", d.mask.projected.join(", "));
            }
            if let Some(p) = plan {
                print_plan(p);
            }
        }
    }
}

fn print_reasons(reasons: &[crate::policy::Reason]) {
    for r in reasons {
        let at = if r.statement >= 0 {
            format!("statement {}: ", r.statement + 1)
        } else {
            String::new()
        };
        println!("- {at}{} [{}]", r.message, r.rule);
    }
}

/// Explains `sql` on `dsn` inside a READ ONLY transaction that is rolled back, never
/// running it, and returns the plan facts with `judge`'s decision on them.
fn explain(
    dsn: &str,
    sql: &str,
    limits: crate::policy::Limits,
    judge: impl FnOnce(&PlanFacts) -> Decision,
) -> Result<(PlanFacts, Decision), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let dsn = Dsn::parse(dsn).map_err(|e| e.to_string())?;
        let endpoint = DirectDialer::new(dsn)
            .map_err(|e| e.to_string())?
            .endpoint();
        let db = Database::new(endpoint, SessionSettings::default(), 1);
        let limits = RunLimits {
            max_rows: limits.max_rows,
            max_result_bytes: limits.max_result_bytes,
            statement_timeout_ms: limits.statement_timeout_ms,
            work_mem_kb: limits.work_mem_kb,
            temp_file_limit_kb: limits.temp_file_limit_kb,
        };
        // The judge never lets it run: the CLI only looks.
        let planned = db
            .execute_planned(sql, limits, &crate::execution::MaskPlan::none(), |p| {
                Err::<(), _>(judge(p))
            })
            .await
            .map_err(|e| e.to_string())?;
        match planned {
            Planned::Refused { plan, verdict } => Ok((plan, verdict)),
            Planned::Ran { .. } => Err("the statement ran, which the CLI never asks for".into()),
        }
    })
}

/// The plan facts for people: the totals and one line per node.
fn print_plan(p: &PlanFacts) {
    println!(
        "plan: cost {:.0}, {:.0} rows, work_mem {} kB, {} parallel workers",
        p.total_cost,
        p.rows,
        p.work_mem_bytes / 1024,
        p.workers
    );
    for (i, n) in p.nodes.iter().enumerate() {
        let mut depth = 0;
        let mut at = n.parent;
        while at >= 0 {
            depth += 1;
            at = p.nodes.get(at as usize).map_or(-1, |x| x.parent);
        }
        let mut line = format!("{:>3} {}{}", i, "  ".repeat(depth), n.node_type);
        if let Some(r) = &n.relation {
            line.push_str(&format!(" on {r}"));
        }
        line.push_str(&format!(" (cost {:.0}, {:.0} rows", n.total_cost, n.rows));
        if let Some(r) = n.relation_rows {
            line.push_str(&format!(" of ≈{r:.0}"));
        }
        line.push(')');
        let flags = [
            (n.seq_scan, "seq_scan"),
            (n.cartesian, "cartesian"),
            (n.nested_loop_without_index, "nested_loop_without_index"),
            (n.spill_expected, "spill_expected"),
        ];
        for (on, name) in flags {
            if on {
                line.push_str(&format!(" [{name}]"));
            }
        }
        println!("{line}");
    }
    for (name, r) in &p.relations {
        println!(
            "relation {name}: ≈{:.0} rows, indexed columns: {}",
            r.rows_estimate,
            if r.indexed_columns.is_empty() {
                "none".to_string()
            } else {
                r.indexed_columns.join(", ")
            }
        );
    }
}

fn run_jsonl(
    policy: &Policy,
    opts: &crate::analysis::AnalysisOptions,
    args: &CheckArgs,
) -> ExitCode {
    let default_db = args.context.database();
    let default_id = args.context.identity();
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = String::new();
    let mut all_allowed = true;
    for n in 1.. {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return usage_error(&format!("cannot read stdin: {e}")),
        }
        let text = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line);
        let written = match serde_json::from_str::<Request>(text) {
            Ok(req) => {
                let db = req.database.as_ref().unwrap_or(&default_db);
                let id = req.identity.as_ref().unwrap_or(&default_id);
                let tool = req.tool.as_deref().unwrap_or(&args.context.tool);
                let checked = policy.check(&req.sql, opts, Some(db), id, tool);
                all_allowed &= checked.decision.allow && !checked.decision.asks();
                serde_json::to_writer(&mut out, &answer_of(&checked))
            }
            Err(e) => {
                all_allowed = false;
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({
                        "allow": false,
                        "reasons": [{"rule": "bad_request", "statement": -1,
                            "message": format!("line {n} is not a request {{\"sql\": …}}: {e}")}],
                        "limits": crate::policy::DENIED_LIMITS,
                    }),
                )
            }
        };
        let written = written.map_err(std::io::Error::from).and_then(|()| {
            out.write_all(b"\n")?;
            // Answer at once when no request is waiting: a client may wait for each answer.
            if input.buffer().is_empty() {
                out.flush()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            return usage_error(&format!("cannot write stdout: {e}"));
        }
    }
    if let Err(e) = out.flush() {
        return usage_error(&format!("cannot write stdout: {e}"));
    }
    if all_allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
