use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sqlguard",
    version,
    about = "Policy-checked, read-only PostgreSQL access for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the facts the analysis finds in SQL (argument, or `-`/nothing for stdin) as JSON.
    Analyze {
        sql: Option<String>,
        /// search_path to resolve unqualified names through (comma-separated).
        #[arg(long, default_value = "pg_catalog,public")]
        search_path: String,
    },
}

fn read_sql(arg: Option<String>) -> std::io::Result<String> {
    match arg.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(s)
        }
        Some(s) => Ok(s.to_string()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SQLGUARD_LOG"))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze { sql, search_path } => {
            let sql = match read_sql(sql) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot read the SQL from stdin: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = sqlguard::analysis::AnalysisOptions::new(
                search_path.split(',').map(str::to_string).collect(),
            );
            match sqlguard::analysis::analyze_with(&sql, &opts) {
                Ok(facts) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&facts).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
