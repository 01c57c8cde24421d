//! Guarded execution → MCP response: the stdio MCP server, a drop-in for
//! `tsh mcp db start` (`../shared/docs/teleport-compat.md`).
//!
//! Every `teleport_postgres_query` call goes analysis → policy (with database, identity and
//! tool in the input) → guarded execution with the decision's limits → result, and leaves
//! one audit line. stdout belongs to the protocol: every log goes to stderr.

pub mod approval;
pub mod framing;
mod handler;
pub mod http;
pub mod limits;
pub mod metrics;
mod reload;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;

use rmcp::ServiceExt;

pub use handler::{Sqlguard, TOOL_LIST, TOOL_QUERY};
pub use state::{ServeOptions, State};

/// What both transports start with: the state built and its `start` recorded, the policy's
/// names checked against the catalogs, and the policy files watched (the watcher lives as long
/// as the returned handle).
async fn start(
    opts: &mut ServeOptions,
    transport: &str,
) -> Result<(Arc<State>, tokio::task::JoinHandle<()>), String> {
    opts.ship = true;
    let state = State::build(opts).await?;
    tracing::info!(
        databases = state.databases.len(),
        policy = %state.policy().digest(),
        "sqlguard serving MCP on {transport}"
    );
    state.lifecycle("start", None);
    // Misspelt names in the policy are said at start (in the background: the catalog read
    // must not delay the MCP handshake).
    let linting = state.clone();
    tokio::spawn(async move { linting.lint_all().await });
    let watch_paths: Vec<PathBuf> = opts.policy_paths();
    let reloader = reload::spawn(state.clone(), watch_paths);
    Ok((state, reloader))
}

/// Runs the server on stdin/stdout until the client disconnects.
pub async fn serve(mut opts: ServeOptions) -> Result<(), String> {
    let (state, _reloader) = start(&mut opts, "stdio").await?;
    let server = Sqlguard::new(state.clone());
    let framed = framing::stdio();
    let session = async {
        let running = server
            .serve((framed.reader, framed.writer))
            .await
            .map_err(|e| format!("the MCP session could not start: {e}"))?;
        running.waiting().await.map_err(|e| e.to_string())
    };
    let ended = session.await;
    // The last answers still queued for stdout.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), framed.output).await;
    // Whatever ended the session, the log says the server stopped.
    state.lifecycle("stop", None);
    let reason = ended?;
    tracing::info!(?reason, "MCP client disconnected");
    Ok(())
}
