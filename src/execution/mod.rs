//! Decision → guarded execution: the second wall behind the policy.
//!
//! An allowed statement runs alone over the extended protocol, inside `BEGIN READ ONLY` …
//! `ROLLBACK` (never committed), with a transaction-local `statement_timeout` plus a
//! client-side cancel, on a connection whose session settings are pinned at start-up
//! (`default_transaction_read_only`, `search_path`, `standard_conforming_strings`, timeouts),
//! reading at most `max_rows` rows and `max_result_bytes` bytes. If the analysis ever missed
//! something, PostgreSQL itself still refuses to write, to run a second statement, or to
//! run forever (threat model, "defence in depth at execution").

mod dsn;
mod error;
pub mod tls;
mod values;
mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use dsn::{Dsn, SslMode};
pub use error::{ExecError, PgError};
pub use values::{render_for, to_json, Render};
pub use wire::{BoxStream, Connection, PgStream, QueryResult, RunLimits};

/// Opens byte streams to one PostgreSQL server. Implemented for direct connections here and
/// for Teleport's routes in [`crate::teleport`].
pub trait Dial: Send + Sync {
    /// A stream ready for the startup message (TLS, if any, already negotiated).
    fn dial(&self) -> Pin<Box<dyn Future<Output = Result<BoxStream, ExecError>> + Send + '_>>;
    /// Where it dials, for messages.
    fn target(&self) -> String;
}

/// Who to log in as, through which route.
#[derive(Clone)]
pub struct Endpoint {
    pub dialer: Arc<dyn Dial>,
    pub user: String,
    pub dbname: String,
    pub password: Option<String>,
}

/// Session settings pinned on every connection.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub search_path: Vec<String>,
    /// Default `statement_timeout`; each query sets its own limit too.
    pub statement_timeout_ms: u64,
    pub lock_timeout_ms: u64,
    pub idle_in_transaction_session_timeout_ms: u64,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            search_path: crate::analysis::DEFAULT_SEARCH_PATH
                .iter()
                .map(|s| s.to_string())
                .collect(),
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 5_000,
            idle_in_transaction_session_timeout_ms: 60_000,
        }
    }
}

/// Quotes an identifier for a `search_path` value when PostgreSQL would otherwise fold or
/// split it.
fn quote_ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

impl SessionSettings {
    /// Startup parameters: PostgreSQL applies any setting named in the startup packet before
    /// the first query, so no model text ever runs on an unpinned session.
    pub fn startup_params(&self, user: &str, dbname: &str) -> Vec<(String, String)> {
        let path: Vec<String> = self.search_path.iter().map(|s| quote_ident(s)).collect();
        [
            ("user", user.to_string()),
            ("database", dbname.to_string()),
            ("application_name", "sqlguard".to_string()),
            ("client_encoding", "UTF8".to_string()),
            ("search_path", path.join(", ")),
            ("standard_conforming_strings", "on".to_string()),
            ("default_transaction_read_only", "on".to_string()),
            ("statement_timeout", self.statement_timeout_ms.to_string()),
            ("lock_timeout", self.lock_timeout_ms.to_string()),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_session_timeout_ms.to_string(),
            ),
            ("DateStyle", "ISO, MDY".to_string()),
            ("IntervalStyle", "iso_8601".to_string()),
            ("TimeZone", "UTC".to_string()),
            ("extra_float_digits", "3".to_string()),
            ("bytea_output", "hex".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A direct connection (`postgres://…`): TCP or a Unix socket, TLS per `sslmode`.
pub struct DirectDialer {
    dsn: Dsn,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl DirectDialer {
    pub fn new(dsn: Dsn) -> Result<DirectDialer, ExecError> {
        let tls = match dsn.sslmode {
            SslMode::Disable => None,
            _ if dsn.is_unix_socket() => None,
            mode => {
                let verify = match mode {
                    SslMode::VerifyFull => tls::Verify::Full,
                    SslMode::VerifyCa => tls::Verify::Chain,
                    _ => tls::Verify::None,
                };
                let cas: Vec<&std::path::Path> =
                    dsn.sslrootcert.iter().map(PathBuf::as_path).collect();
                let roots = if verify == tls::Verify::None {
                    rustls::RootCertStore::empty()
                } else {
                    tls::roots(&cas).map_err(ExecError::Dsn)?
                };
                let config =
                    tls::client_config(verify, roots, None, Vec::new()).map_err(ExecError::Dsn)?;
                Some(Arc::new(config))
            }
        };
        Ok(DirectDialer { dsn, tls })
    }

    pub fn endpoint(self) -> Endpoint {
        Endpoint {
            user: self.dsn.user.clone(),
            dbname: self.dsn.dbname.clone(),
            password: self.dsn.password.clone(),
            dialer: Arc::new(self),
        }
    }

    async fn connect(&self) -> Result<BoxStream, ExecError> {
        let fail = |reason: String| ExecError::Connect {
            target: self.dsn.redacted(),
            reason,
        };
        if self.dsn.is_unix_socket() {
            #[cfg(unix)]
            {
                let path = format!("{}/.s.PGSQL.{}", self.dsn.host, self.dsn.port);
                let s = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| fail(format!("{path}: {e}")))?;
                return Ok(Box::new(s));
            }
            #[cfg(not(unix))]
            return Err(fail("Unix sockets are not supported here".into()));
        }
        let mut tcp = TcpStream::connect((self.dsn.host.as_str(), self.dsn.port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        // SSLRequest: the server answers S (TLS follows) or N.
        let mut buf = bytes::BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut buf);
        tcp.write_all(&buf).await.map_err(|e| fail(e.to_string()))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| fail(e.to_string()))?;
        match answer[0] {
            b'S' => {}
            b'N' if self.dsn.sslmode == SslMode::Prefer => return Ok(Box::new(tcp)),
            _ => {
                return Err(fail(format!(
                    "the server does not accept TLS, but sslmode={:?} requires it",
                    self.dsn.sslmode
                )))
            }
        }
        let name = rustls::pki_types::ServerName::try_from(self.dsn.host.clone())
            .map_err(|e| fail(format!("bad host name for TLS: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| fail(format!("TLS handshake failed: {e}")))?;
        Ok(Box::new(stream))
    }
}

impl Dial for DirectDialer {
    fn dial(&self) -> Pin<Box<dyn Future<Output = Result<BoxStream, ExecError>> + Send + '_>> {
        Box::pin(self.connect())
    }

    fn target(&self) -> String {
        self.dsn.redacted()
    }
}

/// Creates pinned sessions for the pool and discards those left in an unknown state.
struct Manager {
    endpoint: Endpoint,
    settings: SessionSettings,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = ExecError;

    async fn create(&self) -> Result<Connection, ExecError> {
        let stream = self.endpoint.dialer.dial().await?;
        let params = self
            .settings
            .startup_params(&self.endpoint.user, &self.endpoint.dbname);
        Connection::startup(stream, &params, self.endpoint.password.as_deref())
            .await
            .map_err(|e| match e {
                ExecError::Postgres(pg) => ExecError::Connect {
                    target: self.endpoint.dialer.target(),
                    reason: pg.to_string(),
                },
                other => other,
            })
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<ExecError> {
        if conn.broken {
            return Err(RecycleError::message(
                "the connection was left in an unknown state",
            ));
        }
        Ok(())
    }
}

/// How long a caller waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(15);
/// How long the client waits past the server-side timeout before cancelling itself.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// A bounded pool of pinned sessions to one database.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    endpoint: Endpoint,
    size: usize,
}

impl Database {
    pub fn new(endpoint: Endpoint, settings: SessionSettings, pool_size: usize) -> Database {
        let size = pool_size.max(1);
        let pool = Pool::builder(Manager {
            endpoint: endpoint.clone(),
            settings,
        })
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(Duration::from_secs(15)))
        .runtime(deadpool::Runtime::Tokio1)
        .build();
        // Building only fails without a runtime for the timeouts, which is set above.
        let pool = pool.unwrap_or_else(|e| panic!("pool configuration: {e}"));
        Database {
            pool,
            endpoint,
            size,
        }
    }

    pub fn target(&self) -> String {
        self.endpoint.dialer.target()
    }

    async fn get(&self) -> Result<Object<Manager>, ExecError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => ExecError::PoolExhausted {
                waited_ms: POOL_WAIT.as_millis() as u64,
                size: self.size,
            },
            other => ExecError::Protocol(format!("connection pool: {other}")),
        })
    }

    /// Runs one allowed statement under the guard. A connection lost on a reused session
    /// (the server restarted since) is retried once on a new one: nothing ran.
    pub async fn execute(&self, sql: &str, limits: RunLimits) -> Result<QueryResult, ExecError> {
        for attempt in 0..2 {
            let mut conn = self.get().await?;
            let reused = Object::metrics(&conn).recycle_count > 0;
            let budget = Duration::from_millis(limits.statement_timeout_ms) + CANCEL_GRACE;
            match tokio::time::timeout(budget, conn.run_guarded(sql, limits)).await {
                Ok(Err(ExecError::ConnectionLost(_))) if attempt == 0 && reused => continue,
                Ok(result) => return result,
                Err(_) => {
                    // The server did not stop in time: cancel, and drop this session.
                    conn.broken = true;
                    if let Some(key) = conn.backend_key {
                        if let Ok(stream) = self.endpoint.dialer.dial().await {
                            let _ = wire::send_cancel(stream, key).await;
                        }
                    }
                    return Err(ExecError::Timeout {
                        limit_ms: limits.statement_timeout_ms,
                    });
                }
            }
        }
        Err(ExecError::ConnectionLost(
            "the server closed two connections in a row".into(),
        ))
    }

    /// Opens a session and checks it runs `SELECT 1` under the guard (for `doctor`).
    pub async fn ping(&self) -> Result<(), ExecError> {
        let limits = RunLimits {
            max_rows: 1,
            max_result_bytes: 1024,
            statement_timeout_ms: 5_000,
        };
        self.execute("SELECT 1", limits).await.map(|_| ())
    }

    /// Pool status: `(connections open, idle)`.
    pub fn status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}

/// The JSON the tools return: `{"data": [...] | null, "rowsCount": N, "truncated": bool}`.
pub fn result_json(r: &QueryResult) -> serde_json::Value {
    let mut v = serde_json::json!({
        "data": r.rows,
        "rowsCount": r.rows.as_ref().map_or(0, Vec::len),
        "truncated": r.truncated,
    });
    if let Some(by) = r.truncated_by {
        v["truncatedBy"] = serde_json::Value::from(by);
    }
    v
}
