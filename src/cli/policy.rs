//! `sqlguard policy test|eval|export`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{usage_error, AnalysisArgs, ContextArgs};
use crate::policy::{testing, Bundle, PolicyInput};

#[derive(Clone, Copy, ValueEnum)]
pub enum TestFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_*` rule, like `opa test`: the built-in bundle's (or a fork's) tests
    /// against its own data, each layer's tests against the merged data.
    Test {
        /// Layer directories, or a whole bundle (default: the built-in bundle alone).
        dirs: Vec<PathBuf>,
        /// Data files merged over the bundle's data (layers too).
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        /// Only the tests whose full name (`data.package.test_name`) matches this regular
        /// expression.
        #[arg(long, value_name = "REGEX")]
        run: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TestFormat,
        /// Report the policy lines no test evaluated.
        #[arg(long)]
        coverage: bool,
        /// SQL fixtures (JSON lines: `{"sql": …, "allow": false, "rules": […], "catalog":
        /// "snapshot.json"}`), decided as the server would, against a database's catalog
        /// snapshot when a case names one (`sqlguard catalog dump`).
        #[arg(long, value_name = "FILE")]
        cases: Vec<PathBuf>,
    },
    /// Evaluate a rule (default data.sqlguard.decision) for an input document, or for the
    /// input a SQL text produces (`--sql`).
    Eval {
        /// JSON input document.
        #[arg(long, conflicts_with = "sql", required_unless_present = "sql")]
        input: Option<PathBuf>,
        /// Build the input from this SQL text, as `sqlguard check --print-input` shows it.
        #[arg(long)]
        sql: Option<String>,
        rule: Option<String>,
        #[arg(long = "policy")]
        policy: Vec<PathBuf>,
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        #[command(flatten)]
        analysis: AnalysisArgs,
        #[command(flatten)]
        context: ContextArgs,
    },
    /// Write the built-in bundle (Rego, tests, data.json, data.schema.json) into DIR, for a
    /// team that wants to fork it rather than add a layer.
    Export {
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

/// The policy input document `sql` produces for a call from `context`, as JSON: what the
/// policy sees (byte positions left out).
pub fn input_of(
    sql: &str,
    analysis: &AnalysisArgs,
    context: &ContextArgs,
) -> Result<serde_json::Value, String> {
    let opts = analysis.options()?;
    let facts = crate::analysis::analyze_with(sql, &opts).map_err(|e| {
        format!(
            "the SQL cannot be analyzed, so every policy denies it ({}): {e}",
            e.code()
        )
    })?;
    let database = context.database();
    let identity = context.identity();
    let input = PolicyInput {
        query: Some(&facts),
        database: Some(&database),
        identity: &identity,
        tool: &context.tool,
        plan: None,
    };
    let value = crate::policy::to_policy_value(&input).map_err(|e| e.to_string())?;
    let text = value.to_json_str().map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Test {
            dirs,
            data,
            run,
            format,
            coverage,
            cases,
        } => test(&dirs, &data, run.as_deref(), format, coverage, &cases),
        PolicyCommand::Eval {
            input,
            sql,
            rule,
            policy,
            data,
            analysis,
            context,
        } => {
            let bundle = match Bundle::load(&policy, &data) {
                Ok(b) => b,
                Err(e) => return usage_error(&e.to_string()),
            };
            let mut engine = match bundle.engine() {
                Ok(e) => e,
                Err(e) => return usage_error(&e.to_string()),
            };
            let text = match (&input, &sql) {
                (Some(input), _) => match std::fs::read_to_string(input) {
                    Ok(t) => t,
                    Err(e) => return usage_error(&format!("cannot read {}: {e}", input.display())),
                },
                (None, Some(sql)) => match input_of(sql, &analysis, &context) {
                    Ok(v) => v.to_string(),
                    Err(e) => return usage_error(&e),
                },
                (None, None) => return usage_error("give --input FILE or --sql TEXT"),
            };
            match regorus::Value::from_json_str(&text) {
                Ok(v) => engine.set_input(v),
                Err(e) => return usage_error(&format!("the input is not JSON: {e}")),
            }
            let rule = rule.unwrap_or_else(|| crate::policy::DECISION_RULE.to_string());
            match engine.eval_rule(rule) {
                Ok(v) => {
                    println!("{}", v.to_json_str().unwrap_or_else(|e| e.to_string()));
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(&e.to_string()),
            }
        }
        PolicyCommand::Export { dir, force } => match Bundle::export(&dir, force) {
            Ok(files) => {
                for f in &files {
                    println!("wrote {}", f.display());
                }
                println!(
                    "{} is a whole bundle (a base): serve it with `--policy {}` instead of the \
                     built-in one; `sqlguard policy test {}` runs its tests",
                    dir.display(),
                    dir.display(),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        },
    }
}

fn test(
    dirs: &[PathBuf],
    data: &[PathBuf],
    filter: Option<&str>,
    format: TestFormat,
    coverage: bool,
    cases: &[PathBuf],
) -> ExitCode {
    let filter = match filter.map(regex::Regex::new).transpose() {
        Ok(f) => f,
        Err(e) => return usage_error(&format!("--run is not a regular expression: {e}")),
    };
    let bundle = match Bundle::load(dirs, data) {
        Ok(b) => b,
        Err(e) => return usage_error(&e.to_string()),
    };
    let (mut results, uncovered) = match testing::run(&bundle, coverage, filter.as_ref()) {
        Ok(r) => r,
        Err(e) => return usage_error(&e.to_string()),
    };
    for file in cases {
        match testing::run_cases(&bundle, file) {
            Ok(r) => results.extend(
                r.into_iter()
                    .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(&t.name))),
            ),
            Err(e) => return usage_error(&e),
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    match format {
        TestFormat::Json => {
            let report = serde_json::json!({
                "sources": bundle.sources,
                "passed": results.len() - failed,
                "failed": failed,
                "tests": results,
                "uncovered": if coverage { Some(&uncovered) } else { None },
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        TestFormat::Text => print_text(
            &results,
            coverage.then_some(&uncovered[..]),
            filter.is_some(),
        ),
    }
    if failed == 0 && !results.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `policy test`'s report for people: the failures, the lines no test evaluated, the totals.
fn print_text(
    results: &[testing::TestResult],
    uncovered: Option<&[testing::Uncovered]>,
    filtered: bool,
) {
    for r in results.iter().filter(|r| !r.passed) {
        if r.package == testing::CASES {
            println!("FAIL case {}: {}", r.name, r.detail);
        } else {
            println!(
                "FAIL data.{}.{} ({}): {}",
                r.package, r.name, r.file, r.detail
            );
        }
    }
    if let Some(uncovered) = uncovered {
        for u in uncovered {
            if u.lines.is_empty() {
                println!("coverage: {} fully covered", u.path);
            } else {
                let lines: Vec<String> = u.lines.iter().map(u32::to_string).collect();
                println!(
                    "coverage: {} lines not covered: {}",
                    u.path,
                    lines.join(", ")
                );
            }
        }
    }
    if results.is_empty() && filtered {
        println!("no test matches --run");
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    println!("{} passed, {} failed", results.len() - failed, failed);
}
