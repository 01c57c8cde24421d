//! Decision → guarded execution: the second wall behind the policy.
//!
//! An allowed statement runs alone over the extended protocol, inside `BEGIN READ ONLY` …
//! `ROLLBACK` (never committed), under the session's `statement_timeout` (set to each call's
//! limit; the rollback undoes any change a statement makes to it) plus a client-side cancel,
//! on a connection whose session settings are pinned at start-up
//! (`default_transaction_read_only`, `search_path`, `standard_conforming_strings`, timeouts),
//! reading at most `max_rows` rows and `max_result_bytes` bytes. If the analysis ever missed
//! something, PostgreSQL itself still refuses to write, to run a second statement, or to
//! run forever (threat model, "defence in depth at execution").

pub mod catalog;
mod dsn;
mod error;
pub mod masking;
pub mod tls;
mod values;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool::managed::{
    self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult, TimeoutType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use dsn::{Dsn, SslMode};
pub use error::{ExecError, PgError};
pub use masking::MaskPlan;
pub use values::{render_for, to_json, Render};
pub use wire::{
    BoxStream, Connection, MaskedColumn, OversizedRow, PgStream, QueryResult, RunLimits,
    SessionMemory,
};

use crate::analysis::plan::{plan_facts, MemorySettings, PlanFacts, RelationInfo};

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
    /// Default `statement_timeout`; a call whose limit differs sets its own first.
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
    connect_timeout: Duration,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = ExecError;

    /// Opens and starts a session within `connect_timeout`, saying which step did not answer:
    /// a route that accepts TCP and then stays silent is a connect problem, not a busy pool.
    async fn create(&self) -> Result<Connection, ExecError> {
        let target = || self.endpoint.dialer.target();
        let limit_ms = self.connect_timeout.as_millis() as u64;
        let stream = tokio::time::timeout(self.connect_timeout, self.endpoint.dialer.dial())
            .await
            .map_err(|_| ExecError::ConnectTimeout {
                target: target(),
                limit_ms,
                step: "opening the connection",
            })??;
        let params = self
            .settings
            .startup_params(&self.endpoint.user, &self.endpoint.dbname);
        let startup = Connection::startup(stream, &params, self.endpoint.password.as_deref());
        let conn = tokio::time::timeout(self.connect_timeout, startup)
            .await
            .map_err(|_| ExecError::ConnectTimeout {
                target: target(),
                limit_ms,
                step: "the database's answer to the startup message",
            })?;
        let mut conn = conn.map_err(|e| match e {
            ExecError::Postgres(pg) => ExecError::Connect {
                target: target(),
                reason: pg.to_string(),
            },
            // In TLS 1.3 the server checks the client certificate after the client considers
            // the handshake done: its refusal arrives as an alert on the first read.
            ExecError::ConnectionLost(m) if m.contains("received fatal alert") => ExecError::Connect {
                target: target(),
                reason: format!(
                    "the server refused this client's certificate after the TLS handshake ({m}); retrying cannot help: renew the certificate (through Teleport: `tsh login`, then `tsh db login`; after a CA rotation, `tsh logout` first) and check that this machine's clock is right"
                ),
            },
            other => other,
        })?;
        // The memory pins only ever lower the session's values, so they must be known. A
        // server that cannot say keeps PostgreSQL's defaults and no temp_file_limit pin.
        let probed = tokio::time::timeout(self.connect_timeout, conn.probe_memory())
            .await
            .map_err(|_| ExecError::ConnectTimeout {
                target: target(),
                limit_ms,
                step: "the database's answer to sqlguard's first query",
            })?;
        if let Err(e) = probed {
            if conn.broken {
                return Err(e);
            }
            tracing::warn!(target = %target(), "the session's work_mem and temp_file_limit could not be read ({e}); PostgreSQL's defaults are assumed");
        } else if !conn.memory.can_limit_temp_files {
            tracing::debug!(target = %target(), "this role may not set temp_file_limit: the policy's temp_file_limit_kb is not pinned (GRANT SET ON PARAMETER temp_file_limit TO the role, PostgreSQL 15+)");
        }
        Ok(conn)
    }

    /// A pooled session is handed out only if it is still alive. When PostgreSQL restarts, or
    /// an administrator ends an idle backend, the server sends a FATAL error and closes: both
    /// are already readable on the idle socket, so looking costs no round trip and a dead
    /// session is replaced before a query is ever sent on it.
    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<ExecError> {
        if conn.broken {
            return Err(RecycleError::message(
                "the connection was left in an unknown state",
            ));
        }
        // A yielded task resumes after the runtime has polled the I/O driver, so the socket's
        // readiness below is current even when no task has run since the server went away.
        tokio::task::yield_now().await;
        if let Some(why) = conn.closed_while_idle() {
            tracing::info!(target = %self.endpoint.dialer.target(), "an idle database connection was closed by the server ({why}); opening another");
            return Err(RecycleError::message(why));
        }
        Ok(())
    }
}

/// How long the client waits past the server-side timeout before cancelling itself.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// Size and timeouts of a database's connection pool (`pool_size`, `connect_timeout_ms`,
/// `pool_wait_ms`, `idle_timeout_s` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub size: usize,
    /// Opening a connection and starting its session (TCP, TLS, Teleport, authentication).
    pub connect_timeout: Duration,
    /// Waiting for a connection another call holds.
    pub wait_timeout: Duration,
    /// An unused connection is closed after this long, so that idle agents hold no backend.
    pub idle_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            size: 4,
            connect_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A bounded pool of pinned sessions to one database.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    endpoint: Endpoint,
    options: PoolOptions,
    /// The catalog's description of relations plans scanned, kept for [`RELATION_TTL`].
    relations: Arc<std::sync::Mutex<HashMap<String, (Instant, RelationInfo)>>>,
}

/// How long a relation's size and indexes are reused before the catalog is asked again.
const RELATION_TTL: Duration = Duration::from_secs(60);

/// What a planned execution did.
#[derive(Debug)]
pub enum Planned<V> {
    /// The plan was judged and allowed: the statement ran.
    Ran {
        plan: PlanFacts,
        result: QueryResult,
    },
    /// The plan was judged and refused: the transaction was rolled back, nothing ran.
    Refused { plan: PlanFacts, verdict: V },
}

impl Database {
    pub fn new(endpoint: Endpoint, settings: SessionSettings, pool_size: usize) -> Database {
        Self::with_options(
            endpoint,
            settings,
            PoolOptions {
                size: pool_size,
                ..PoolOptions::default()
            },
        )
    }

    pub fn with_options(
        endpoint: Endpoint,
        settings: SessionSettings,
        mut options: PoolOptions,
    ) -> Database {
        options.size = options.size.max(1);
        let pool = Pool::builder(Manager {
            endpoint: endpoint.clone(),
            settings,
            connect_timeout: options.connect_timeout,
        })
        .max_size(options.size)
        .wait_timeout(Some(options.wait_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build();
        // Building only fails without a runtime for the timeouts, which is set above.
        let pool = pool.unwrap_or_else(|e| panic!("pool configuration: {e}"));
        close_idle_connections(&pool, options.idle_timeout);
        Database {
            pool,
            endpoint,
            options,
            relations: Arc::default(),
        }
    }

    pub fn target(&self) -> String {
        self.endpoint.dialer.target()
    }

    async fn get(&self) -> Result<Object<Manager>, ExecError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => {
                tracing::warn!(target = %self.target(), "no database connection: {e}");
                e
            }
            PoolError::Timeout(TimeoutType::Wait) => ExecError::PoolExhausted {
                waited_ms: self.options.wait_timeout.as_millis() as u64,
                size: self.options.size,
            },
            other => ExecError::Protocol(format!("connection pool: {other}")),
        })
    }

    /// Runs one allowed statement under the guard, once. A query that may have reached the
    /// server is never sent again (an administrator's kill must stick); dead idle sessions
    /// are weeded out before use instead (see `Manager::recycle`).
    pub async fn execute(&self, sql: &str, limits: RunLimits) -> Result<QueryResult, ExecError> {
        self.execute_masked(sql, limits, &MaskPlan::none()).await
    }

    /// [`Self::execute`], with the values of masked columns masked.
    pub async fn execute_masked(
        &self,
        sql: &str,
        limits: RunLimits,
        masks: &MaskPlan,
    ) -> Result<QueryResult, ExecError> {
        let mut conn = self.get().await?;
        let budget = Duration::from_millis(limits.statement_timeout_ms) + CANCEL_GRACE;
        match tokio::time::timeout(budget, conn.run_guarded(sql, limits, masks)).await {
            Ok(result) => self.after_call(&mut conn, result),
            Err(_) => Err(self.timed_out(&mut conn, limits, budget).await),
        }
    }

    /// Runs one allowed statement only if its plan passes `judge`: the guarded transaction
    /// is opened and the statement explained in one round trip (never `EXPLAIN ANALYZE`),
    /// the plan's relations are described from the catalog (cached), `judge` decides, and
    /// the statement then runs in the same transaction — or the transaction is rolled back
    /// and nothing ran. The statement's time limit covers all of it.
    pub async fn execute_planned<V>(
        &self,
        sql: &str,
        limits: RunLimits,
        masks: &MaskPlan,
        judge: impl FnOnce(&PlanFacts) -> Result<(), V>,
    ) -> Result<Planned<V>, ExecError> {
        let mut conn = self.get().await?;
        let budget = Duration::from_millis(limits.statement_timeout_ms) + CANCEL_GRACE;
        let work = async {
            let explain = conn.begin_explain(sql, limits).await?;
            let memory = MemorySettings {
                work_mem_bytes: limits.work_mem_kb.map_or(conn.memory.work_mem_kb, |kb| {
                    kb.min(conn.memory.work_mem_kb).max(64)
                }) * 1024,
                hash_mem_multiplier: conn.memory.hash_mem_multiplier,
            };
            let mut plan = match plan_facts(&explain, memory) {
                Ok(p) => p,
                Err(e) => {
                    conn.abandon().await?;
                    return Err(ExecError::Plan(e.to_string()));
                }
            };
            let described = self.describe(&mut conn, &plan).await?;
            plan.describe_relations(described);
            match judge(&plan) {
                Ok(()) => {
                    let result = conn.finish_planned(limits, masks).await?;
                    Ok(Planned::Ran { plan, result })
                }
                Err(verdict) => {
                    conn.abandon().await?;
                    Ok(Planned::Refused { plan, verdict })
                }
            }
        };
        match tokio::time::timeout(budget, work).await {
            Ok(result) => self.after_call(&mut conn, result),
            Err(_) => Err(self.timed_out(&mut conn, limits, budget).await),
        }
    }

    /// The catalog's description of the relations `plan` scans: cached ones, and the rest
    /// asked for in one round trip inside the open transaction.
    async fn describe(
        &self,
        conn: &mut Connection,
        plan: &PlanFacts,
    ) -> Result<std::collections::BTreeMap<String, RelationInfo>, ExecError> {
        let mut out = std::collections::BTreeMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.relations.lock().unwrap_or_else(|p| p.into_inner());
            for (schema, name) in plan.scanned_relations() {
                let key = format!("{schema}.{name}");
                match cache.get(&key) {
                    Some((at, info)) if at.elapsed() < RELATION_TTL => {
                        out.insert(key, info.clone());
                    }
                    _ => missing.push(serde_json::json!([schema, name])),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let rows = conn
            .describe_relations(&serde_json::Value::Array(missing))
            .await?;
        let mut cache = self.relations.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for row in rows {
            let Some(name) = row.get("name").and_then(|v| v.as_str()) else {
                continue;
            };
            let info = RelationInfo {
                rows_estimate: row
                    .get("rows_estimate")
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(-1.0),
                kind: row
                    .get("kind")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                indexed_columns: row
                    .get("indexed_columns")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            cache.insert(name.to_string(), (now, info.clone()));
            out.insert(name.to_string(), info);
        }
        Ok(out)
    }

    /// Logs a lost connection and gives back a large result's memory.
    fn after_call<T>(
        &self,
        conn: &mut Connection,
        result: Result<T, ExecError>,
    ) -> Result<T, ExecError> {
        if let Err(e) = &result {
            if matches!(e, ExecError::ConnectionLost(_) | ExecError::Terminated(_)) {
                tracing::warn!(target = %self.target(), "database connection lost during a query: {e}");
            }
        }
        if conn.read_buffer_capacity() > SHRINK_ABOVE {
            conn.shrink_buffers();
        }
        result
    }

    /// The server did not stop in time: cancel, and drop this session.
    async fn timed_out(
        &self,
        conn: &mut Connection,
        limits: RunLimits,
        budget: Duration,
    ) -> ExecError {
        conn.broken = true;
        if let Some(key) = conn.backend_key {
            if let Ok(stream) = self.endpoint.dialer.dial().await {
                let _ = wire::send_cancel(stream, key).await;
            }
        }
        if !conn.answered {
            return ExecError::NoAnswer {
                target: self.target(),
                waited_ms: budget.as_millis() as u64,
            };
        }
        ExecError::Timeout {
            limit_ms: limits.statement_timeout_ms,
        }
    }

    /// Opens a session and checks it runs `SELECT 1` under the guard (for `doctor`).
    pub async fn ping(&self) -> Result<(), ExecError> {
        let limits = RunLimits {
            max_rows: 1,
            max_result_bytes: 1024,
            statement_timeout_ms: 5_000,
            ..RunLimits::default()
        };
        self.execute("SELECT 1", limits).await.map(|_| ())
    }

    /// Pool status: `(connections open, idle)`.
    pub fn status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}

/// A session's read buffer larger than this after a call is given back (a large result must
/// not pin its memory for the life of the connection).
const SHRINK_ABOVE: usize = 256 * 1024;

/// Closes connections unused for `idle` (checked every quarter of it, between 0.1 and 60 s)
/// for as long as the pool exists. Without a Tokio runtime (no server), nothing is reaped.
fn close_idle_connections(pool: &Pool<Manager>, idle: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = pool.weak();
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = weak.upgrade() else { return };
            let closed = pool.retain(|_, metrics| metrics.last_used() < idle);
            if !closed.removed.is_empty() {
                tracing::debug!(
                    "closed {} idle database connection(s)",
                    closed.removed.len()
                );
            }
        }
    });
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
    if !r.masked.is_empty() {
        v["masked"] = r.masked.iter().map(|m| m.column.as_str()).collect();
    }
    v
}
