//! `sqlguard catalog dump`: a database's own catalog as a snapshot file, so that policies can
//! be checked against it without a connection (`sqlguard check --catalog FILE`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{runtime, usage_error};
use crate::analysis::snapshot::Snapshot;
use crate::execution::{Database, DirectDialer, Dsn, SessionSettings};
use crate::mcp::{ServeOptions, State};

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Read a database's catalog and print it as a snapshot (JSON) on stdout.
    Dump {
        /// `postgres://…`, or a database resource URI served by the configuration
        /// (`teleport://clusters/<cluster>/databases/<name>?dbName=…&dbUser=…`).
        database: String,
        /// Configuration file (for a served database's route), as for `serve`.
        #[arg(long, env = "SQLGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: CatalogCommand) -> ExitCode {
    let CatalogCommand::Dump { database, config } = cmd;
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    match rt.block_on(dump(&database, config)) {
        Ok(snapshot) => {
            eprintln!("{}", snapshot.summary());
            println!("{}", snapshot.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot read the catalog of {database}: {e}");
            ExitCode::from(1)
        }
    }
}

async fn dump(database: &str, config: Option<PathBuf>) -> Result<Snapshot, String> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        let endpoint = Dsn::parse(database)
            .and_then(DirectDialer::new)
            .map_err(|e| e.to_string())?
            .endpoint();
        let db = Database::new(endpoint, SessionSettings::default(), 1);
        return db.read_catalog().await.map_err(|e| e.to_string());
    }
    // A served database: the route the server would take.
    let state = State::build(&ServeOptions {
        uris: vec![database.to_string()],
        config,
        ..ServeOptions::default()
    })
    .await?;
    let served = state
        .databases
        .iter()
        .find(|d| database.starts_with(&d.context.uri))
        .ok_or("the configuration serves no such database")?;
    let db = served.backend.ready().map_err(str::to_string)?;
    db.read_catalog().await.map_err(|e| e.to_string())
}
