//! `sqlguard policy test|eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::usage_error;
use crate::policy::{testing, Bundle};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run every `test_*` rule of the bundle(s), like `opa test`.
    Test {
        /// Bundle directories (default: policies).
        dirs: Vec<PathBuf>,
        /// Data files merged over the bundle's data.
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        /// Report the policy lines no test evaluated.
        #[arg(long)]
        coverage: bool,
        /// SQL fixtures (JSON lines: `{"sql": …, "allow": false, "rules": […], "catalog":
        /// "snapshot.json"}`), decided as the server would, against a database's catalog
        /// snapshot when a case names one (`sqlguard catalog dump`).
        #[arg(long, value_name = "FILE")]
        cases: Vec<PathBuf>,
    },
    /// Evaluate a rule (default data.sqlguard.decision) for an input document.
    Eval {
        /// JSON input document.
        #[arg(long)]
        input: PathBuf,
        rule: Option<String>,
        #[arg(long = "policy")]
        policy: Vec<PathBuf>,
        #[arg(long = "data")]
        data: Vec<PathBuf>,
    },
}

pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Test {
            dirs,
            data,
            coverage,
            cases,
        } => {
            let dirs = testing::default_dirs(dirs);
            let bundle = match Bundle::load(&dirs, &data) {
                Ok(b) => b,
                Err(e) => return usage_error(&e.to_string()),
            };
            let (mut results, uncovered) = match testing::run(&bundle, coverage) {
                Ok(r) => r,
                Err(e) => return usage_error(&e.to_string()),
            };
            for file in &cases {
                match testing::run_cases(&bundle, file) {
                    Ok(r) => results.extend(r),
                    Err(e) => return usage_error(&e),
                }
            }
            let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
            for r in &failed {
                if r.package == testing::CASES {
                    println!("FAIL case {}: {}", r.name, r.detail);
                } else {
                    println!("FAIL data.{}.{}: {}", r.package, r.name, r.detail);
                }
            }
            if coverage {
                for u in &uncovered {
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
            println!(
                "{} passed, {} failed",
                results.len() - failed.len(),
                failed.len()
            );
            if failed.is_empty() && !results.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        PolicyCommand::Eval {
            input,
            rule,
            policy,
            data,
        } => {
            let bundle = match Bundle::load_or_embedded(&policy, &data) {
                Ok(b) => b,
                Err(e) => return usage_error(&e.to_string()),
            };
            let mut engine = match bundle.engine(false) {
                Ok(e) => e,
                Err(e) => return usage_error(&e.to_string()),
            };
            let text = match std::fs::read_to_string(&input) {
                Ok(t) => t,
                Err(e) => return usage_error(&format!("cannot read {}: {e}", input.display())),
            };
            match regorus::Value::from_json_str(&text) {
                Ok(v) => engine.set_input(v),
                Err(e) => return usage_error(&format!("{} is not JSON: {e}", input.display())),
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
    }
}
