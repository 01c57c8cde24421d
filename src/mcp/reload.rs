//! Policy reload on SIGHUP and when a bundle file changes on disk. A bundle that does not
//! compile is rejected loudly and the old policy stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::State;

/// A fingerprint of the bundle files: every file's path, size and modification time.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    for p in paths {
        let entries: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        for e in entries {
            if let Ok(m) = std::fs::metadata(&e) {
                out.push((e, m.len(), m.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

fn reload(state: &Arc<State>, why: &str) {
    match state.reload_policy() {
        Ok(digest) => {
            tracing::info!(%digest, "policy reloaded ({why})");
            let linting = state.clone();
            tokio::spawn(async move { linting.lint_all().await });
        }
        Err(e) => tracing::error!(
            "POLICY RELOAD REJECTED ({why}): {e}; the previous policy stays in force"
        ),
    }
}

pub fn spawn(state: Arc<State>, paths: Vec<PathBuf>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut last = fingerprint(&paths);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            #[cfg(unix)]
            {
                let got_hup = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = got_hup => { reload(&state, "SIGHUP"); last = fingerprint(&paths); continue; }
                    _ = tick.tick() => {}
                }
            }
            #[cfg(not(unix))]
            tick.tick().await;
            if paths.is_empty() {
                continue;
            }
            let now = fingerprint(&paths);
            if now != last {
                last = now;
                reload(&state, "bundle changed on disk");
            }
        }
    })
}
