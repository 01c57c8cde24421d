//! `tsh proxy db --tunnel` as a supervised child, for setups native routing cannot serve (L7
//! load balancers, per-session MFA): started on first use, ready when its port accepts,
//! restarted when it dies, stopped with sqlguard (no orphans), its stderr kept for messages.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::DatabaseUri;
use crate::execution::{BoxStream, Dial, ExecError};

/// How long tsh may take to start listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The last bytes of tsh's stderr kept for error messages.
const STDERR_KEEP: usize = 4096;

struct Running {
    child: Child,
    port: u16,
}

pub struct Tunnel {
    tsh: PathBuf,
    uri: DatabaseUri,
    home: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    stderr: Arc<Mutex<String>>,
    starts: Mutex<u32>,
}

impl Tunnel {
    /// A tunnel run by `tsh` for `uri`, with `home` as its `TELEPORT_HOME`: the tsh home
    /// sqlguard itself reads (`[teleport] home`, `$TELEPORT_HOME` or `~/.tsh`), so that the
    /// child sees the same login as `doctor` does.
    pub fn new(tsh: PathBuf, uri: DatabaseUri, home: PathBuf) -> Tunnel {
        Tunnel {
            tsh,
            uri,
            home,
            running: tokio::sync::Mutex::new(None),
            stderr: Arc::new(Mutex::new(String::new())),
            starts: Mutex::new(0),
        }
    }

    /// How many times tsh was started.
    pub fn starts(&self) -> u32 {
        self.starts.lock().map(|s| *s).unwrap_or(0)
    }

    /// The running child's process id.
    pub async fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .await
            .as_ref()
            .and_then(|r| r.child.id())
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// The tunnel's port, starting (or restarting) tsh when it is not running.
    pub async fn ensure(&self) -> Result<u16, ExecError> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut() {
            match r.child.try_wait() {
                Ok(None) => return Ok(r.port),
                Ok(Some(status)) => {
                    tracing::warn!(%status, "the tsh tunnel for {} exited; restarting it", self.uri.name)
                }
                Err(e) => tracing::warn!("cannot check the tsh tunnel: {e}; restarting it"),
            }
        }
        *running = None;
        let r = self.start().await?;
        let port = r.port;
        *running = Some(r);
        Ok(port)
    }

    /// `tsh proxy db --tunnel` for this database, stopped with sqlguard.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.tsh);
        cmd.env("TELEPORT_HOME", &self.home)
            // No --port: tsh binds a free one and names it on its ready line.
            .args(["proxy", "db", "--tunnel"])
            .args([
                "--db-user",
                self.uri.db_user(),
                "--db-name",
                self.uri.db_name(),
                "--cluster",
                &self.uri.cluster,
                &self.uri.name,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no Rust state; it
        // makes the kernel stop tsh if sqlguard dies without cleaning up (no orphans).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd
    }

    async fn start(&self) -> Result<Running, ExecError> {
        let fail = |reason: String| ExecError::Connect {
            target: format!("tsh proxy db tunnel for {}", self.uri.name),
            reason,
        };
        let mut cmd = self.command();
        let mut child = cmd.spawn().map_err(|e| {
            fail(format!(
                "cannot run {}: {e}; install tsh or set [teleport] tsh = \"/path/to/tsh\"",
                self.tsh.display()
            ))
        })?;
        if let Ok(mut s) = self.starts.lock() {
            *s += 1;
        }
        if let Ok(mut s) = self.stderr.lock() {
            s.clear();
        }
        if let Some(err) = child.stderr.take() {
            keep_stderr(err, self.stderr.clone());
        }
        // tsh prints "Started authenticated tunnel … on 127.0.0.1:<port>." once it listens:
        // that line is the readiness signal and names the port (no probe connection, which
        // would open a session through the proxy for nothing).
        let Some(out) = child.stdout.take() else {
            return Err(fail("tsh's output could not be read".into()));
        };
        let mut lines = BufReader::new(out).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!("tsh: {line}");
                if let Some(port) = ready_port(&line) {
                    return Some(port);
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(port)) => {
                tokio::spawn(async move {
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!("tsh: {line}");
                    }
                });
                tracing::info!(port, "tsh tunnel for {} is ready", self.uri.name);
                Ok(Running { child, port })
            }
            Ok(None) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                // Its last words may still be on their way through the stderr reader.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(fail(format!(
                    "tsh exited ({status}) before the tunnel was ready: {}",
                    self.stderr_text()
                )))
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(fail(format!(
                    "tsh did not open the tunnel within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    self.stderr_text()
                )))
            }
        }
    }

    /// Stops tsh and waits for it.
    pub async fn stop(&self) {
        if let Some(mut r) = self.running.lock().await.take() {
            let _ = r.child.kill().await;
        }
    }
}

/// Dials through the tunnel: plain PostgreSQL to 127.0.0.1 (tsh authenticates).
pub struct TunnelDialer {
    pub tunnel: Arc<Tunnel>,
}

impl TunnelDialer {
    async fn connect(&self) -> Result<BoxStream, ExecError> {
        let port = self.tunnel.ensure().await?;
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(ExecError::Connect {
                target: format!("tsh tunnel on 127.0.0.1:{port}"),
                reason: format!("{e}; tsh said: {}", self.tunnel.stderr_text()),
            }),
        }
    }
}

impl Dial for TunnelDialer {
    fn dial(&self) -> Pin<Box<dyn Future<Output = Result<BoxStream, ExecError>> + Send + '_>> {
        Box::pin(self.connect())
    }

    fn target(&self) -> String {
        format!("{} (tsh proxy db --tunnel)", self.tunnel.uri.resource())
    }
}

/// The port on tsh's ready line ("Started authenticated tunnel for the PostgreSQL database
/// "shop" in cluster "acme" on 127.0.0.1:54321.").
fn ready_port(line: &str) -> Option<u16> {
    if !line.contains("tunnel") {
        return None;
    }
    let addr = line.trim_end().trim_end_matches('.').rsplit(' ').next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Keeps the last [`STDERR_KEEP`] bytes tsh writes to stderr in `buf`, for error messages.
fn keep_stderr(
    mut err: tokio::process::ChildStderr,
    buf: std::sync::Arc<std::sync::Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut chunk = [0u8; 1024];
        while let Ok(n) = err.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = buf.lock() {
                s.push_str(&String::from_utf8_lossy(&chunk[..n]));
                if s.len() > STDERR_KEEP {
                    let cut = s.len() - STDERR_KEEP;
                    let cut = (cut..s.len())
                        .find(|i| s.is_char_boundary(*i))
                        .unwrap_or(s.len());
                    s.drain(..cut);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_line() {
        let line = "Started authenticated tunnel for the PostgreSQL database \"shop\" in cluster \"acme\" on 127.0.0.1:54321.";
        assert_eq!(super::ready_port(line), Some(54321));
        assert_eq!(super::ready_port("Some other line"), None);
    }
}
