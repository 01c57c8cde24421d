//! One PostgreSQL connection speaking the wire protocol (messages from `postgres-protocol`,
//! the codec under tokio-postgres).
//!
//! sqlguard drives the protocol itself because the guarded execution needs what
//! tokio-postgres' `Client` cannot express: results in *text* format (the faithful form of
//! every type, extensions included), an `Execute` row limit on the unnamed portal (the
//! server stops producing rows past `max_rows`), and the whole
//! `BEGIN READ ONLY … ROLLBACK` wrapper pipelined in one write.

use std::collections::HashMap;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend::Message, frontend};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::masking::{ColumnMask, MaskPlan};
use super::values::{render_for, to_json, Render};
use super::{ExecError, PgError};

/// A byte stream to a PostgreSQL server (TCP, Unix socket, TLS, Teleport's TLS routing).
pub trait PgStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PgStream for T {}

pub type BoxStream = Box<dyn PgStream>;

/// What a guarded execution returned.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// Column names as returned, made unique (`a`, `a_2`, …).
    pub columns: Vec<String>,
    /// `None` for a statement that returns no rows (no row description).
    pub rows: Option<Vec<Map<String, Value>>>,
    /// True when rows were left out because a limit was reached.
    pub truncated: bool,
    /// `max_rows` or `max_result_bytes`.
    pub truncated_by: Option<&'static str>,
    /// PostgreSQL's command tag (`SELECT 3`).
    pub command_tag: Option<String>,
    /// Bytes of row data received.
    pub bytes: usize,
    /// The first row left out because it alone was larger than what was left of
    /// `max_result_bytes`: it was skipped on the wire, never held in memory.
    pub oversized_row: Option<OversizedRow>,
    /// The result columns whose values were masked.
    pub masked: Vec<MaskedColumn>,
}

/// A result column whose values were masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedColumn {
    /// Its name in the result.
    pub column: String,
    /// The masked table column it is (`schema.table.column`); `None`: a column PostgreSQL
    /// does not attribute to one, in a call that selects a masked column.
    pub source: Option<String>,
}

/// A row skipped on the wire because it did not fit in the byte budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedRow {
    /// 1-based position of the row in the result.
    pub row: usize,
    pub row_bytes: usize,
    /// The row's largest value: its column and size.
    pub column: String,
    pub column_bytes: usize,
}

/// The statement's result as it streams in: rows kept within `max_rows` and the byte budget,
/// the first error, the first row skipped for its size.
struct ResultReader<'m> {
    max_rows: usize,
    byte_cap: usize,
    /// After the statement's RowDescription (or NoData): rows belong to it.
    in_statement: bool,
    /// After the statement's end (its CommandComplete, PortalSuspended, EmptyQueryResponse
    /// or error): what follows is the ROLLBACK's.
    done: bool,
    columns: Vec<String>,
    renders: Vec<Render>,
    /// The call's masks, and each result column's (empty when the call masks nothing).
    plan: &'m MaskPlan,
    masks: Vec<Option<ColumnMask>>,
    rows: Option<Vec<Map<String, Value>>>,
    truncated_by: Option<&'static str>,
    oversized_row: Option<OversizedRow>,
    command_tag: Option<String>,
    /// Bytes of row data received, kept or not.
    bytes: usize,
    error: Option<PgError>,
    /// The transaction status of the last ReadyForQuery (`I`, `T`, `E`).
    ready: u8,
}

/// The masks of a call that masks nothing.
static NO_MASKS: std::sync::LazyLock<MaskPlan> = std::sync::LazyLock::new(MaskPlan::none);

impl<'m> ResultReader<'m> {
    fn new(max_rows: usize, byte_cap: usize, plan: &'m MaskPlan) -> ResultReader<'m> {
        ResultReader {
            max_rows,
            byte_cap,
            in_statement: false,
            done: false,
            columns: Vec::new(),
            renders: Vec::new(),
            plan,
            masks: Vec::new(),
            rows: None,
            truncated_by: None,
            oversized_row: None,
            command_tag: None,
            bytes: 0,
            error: None,
            ready: 0,
        }
    }

    /// The largest row read into memory next: what is left of the budget, or once the
    /// result is cut, just enough to step over small rows.
    fn row_budget(&self) -> usize {
        match self.truncated_by {
            Some(_) => 4096,
            None => self.byte_cap.saturating_sub(self.bytes),
        }
    }

    fn describe(
        &mut self,
        desc: &postgres_protocol::message::backend::RowDescriptionBody,
    ) -> Result<(), ExecError> {
        self.in_statement = true;
        let mut fields = desc.fields();
        while let Some(f) = fields.next().map_err(proto)? {
            let mut name = f.name().to_string();
            // Duplicate names stay distinguishable: a, a_2, a_3, …
            if self.columns.contains(&name) {
                let mut n = 2;
                while self.columns.contains(&format!("{name}_{n}")) {
                    n += 1;
                }
                name = format!("{name}_{n}");
            }
            self.columns.push(name);
            self.renders.push(render_for(f.type_oid()));
            if !self.plan.is_empty() {
                self.masks
                    .push(self.plan.column(f.table_oid(), f.column_id()));
            }
        }
        self.rows = Some(Vec::new());
        Ok(())
    }

    fn row(
        &mut self,
        row: &postgres_protocol::message::backend::DataRowBody,
    ) -> Result<(), ExecError> {
        self.bytes += row.buffer().len();
        if self.truncated_by.is_some() {
            return Ok(());
        }
        let Some(out) = self.rows.as_mut() else {
            return Err(ExecError::Protocol(
                "a row arrived without a row description".into(),
            ));
        };
        if out.len() >= self.max_rows {
            self.truncated_by = Some("max_rows");
            return Ok(());
        }
        if self.bytes > self.byte_cap {
            self.truncated_by = Some("max_result_bytes");
            return Ok(());
        }
        let buf = row.buffer();
        let mut ranges = row.ranges();
        let mut map = Map::with_capacity(self.columns.len());
        let mut i = 0;
        while let Some(range) = ranges.next().map_err(proto)? {
            let text = match range {
                Some(r) => Some(std::str::from_utf8(&buf[r]).map_err(proto)?),
                None => None,
            };
            if let (Some(name), Some(render)) = (self.columns.get(i), self.renders.get(i)) {
                let value = match self.masks.get(i) {
                    Some(Some(mask)) => mask.apply(text),
                    _ => to_json(*render, text),
                };
                map.insert(name.clone(), value);
            }
            i += 1;
        }
        out.push(map);
        Ok(())
    }

    /// A row of `len` bytes was skipped on the wire; its largest value was field `field`.
    fn skipped(&mut self, len: usize, field: usize, field_len: usize) {
        self.bytes += len;
        if self.truncated_by.is_none() {
            self.truncated_by = Some("max_result_bytes");
            self.oversized_row = Some(OversizedRow {
                row: self.rows.as_ref().map_or(0, Vec::len) + 1,
                row_bytes: len,
                column: self.columns.get(field).cloned().unwrap_or_default(),
                column_bytes: field_len,
            });
        }
    }

    /// A FATAL error followed by end of file is the server ending the session (an
    /// administrator's pg_terminate_backend, a shutdown): say so, with its SQLSTATE.
    fn lost(&mut self, e: ExecError) -> ExecError {
        match (e, self.error.take()) {
            (ExecError::ConnectionLost(_), Some(pg)) if pg.severity == "FATAL" => {
                ExecError::Terminated(Box::new(pg))
            }
            (e, _) => e,
        }
    }

    fn finish(self, timeout_ms: u64, ran: std::time::Duration) -> Result<QueryResult, ExecError> {
        if let Some(e) = self.error {
            // query_canceled is both the statement timeout and pg_cancel_backend; the message
            // text is localized, the clock is not.
            if e.code == "57014" {
                let ran_ms = ran.as_millis() as u64;
                if ran_ms + 50 < timeout_ms {
                    return Err(ExecError::Cancelled {
                        pg: Box::new(e),
                        ran_ms,
                    });
                }
                return Err(ExecError::Timeout {
                    limit_ms: timeout_ms,
                });
            }
            return Err(ExecError::Postgres(Box::new(e)));
        }
        let masked = self
            .masks
            .iter()
            .zip(&self.columns)
            .filter_map(|(m, c)| {
                Some(MaskedColumn {
                    column: c.clone(),
                    source: m.as_ref()?.source.as_deref().map(str::to_string),
                })
            })
            .collect();
        Ok(QueryResult {
            masked,
            columns: self.columns,
            rows: self.rows,
            truncated: self.truncated_by.is_some(),
            truncated_by: self.truncated_by,
            command_tag: self.command_tag,
            bytes: self.bytes,
            oversized_row: self.oversized_row,
        })
    }
}

/// Largest message other than a row that is read into memory (an error message quoting a
/// 500 MB value is not).
const MAX_MESSAGE: usize = 8 << 20;

/// Limits on one execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunLimits {
    pub max_rows: u64,
    pub max_result_bytes: u64,
    pub statement_timeout_ms: u64,
    /// `work_mem` for the transaction, in kB; only ever lowers the session's value.
    pub work_mem_kb: Option<u64>,
    /// `temp_file_limit` for the transaction, in kB; only ever lowers the session's value,
    /// and only where the role may set it (superusers, or `GRANT SET ON PARAMETER`).
    pub temp_file_limit_kb: Option<u64>,
}

/// What a session's memory settings are, read once when it starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionMemory {
    pub work_mem_kb: u64,
    /// `None`: no limit (`-1`).
    pub temp_file_limit_kb: Option<u64>,
    pub hash_mem_multiplier: f64,
    /// Whether this role may set `temp_file_limit` (a superuser-only setting).
    pub can_limit_temp_files: bool,
}

impl Default for SessionMemory {
    /// PostgreSQL 15's defaults, assumed when the session could not be asked.
    fn default() -> Self {
        SessionMemory {
            work_mem_kb: 4096,
            temp_file_limit_kb: None,
            hash_mem_multiplier: 2.0,
            can_limit_temp_files: false,
        }
    }
}

/// Reads the session's memory settings (fixed SQL, one row).
const PROBE_MEMORY: &str = "SELECT pg_size_bytes(current_setting('work_mem')) / 1024, pg_size_bytes(current_setting('temp_file_limit')), coalesce(current_setting('hash_mem_multiplier', true), '1'), (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)";
/// PostgreSQL 15 lets a superuser grant `SET` on one parameter.
const PROBE_TEMP_FILE_GRANT: &str = "SELECT has_parameter_privilege('temp_file_limit', 'SET')";

/// The relations a plan scans, as the catalog describes them: one row per relation found,
/// for a JSON array of `[schema, name]` pairs bound as `$1` (never spliced into the text).
const DESCRIBE_RELATIONS: &str = "SELECT n.nspname || '.' || c.relname AS name, c.reltuples::float8 AS rows_estimate, c.relkind::text AS kind, ARRAY(SELECT DISTINCT a.attname::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = c.oid AND i.indisvalid ORDER BY 1) AS indexed_columns FROM json_array_elements($1::json) AS r(v) JOIN pg_catalog.pg_namespace n ON n.nspname = r.v->>0 JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = r.v->>1";

/// Sent after every `ROLLBACK`, before the same Sync: session-level advisory locks are the state
/// a statement can create that a rollback does not undo (a function calling
/// `pg_advisory_lock`), so no pooled session keeps one a call took (threat model, class 22).
const RELEASE_SESSION_STATE: &str = "SELECT pg_catalog.pg_advisory_unlock_all()";

/// The prepared statement a planned execution explains, then runs.
const PLANNED: &str = "sqlguard_planned";

const EXPLAIN_PLANNED: &str = "EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE sqlguard_planned";

/// Largest EXPLAIN output read (a plan is a few kB; one this large is refused).
const MAX_PLAN_BYTES: usize = 16 << 20;

pub struct Connection {
    stream: BoxStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// `(process id, secret key)` for cancel requests.
    pub backend_key: Option<(i32, i32)>,
    /// Server parameters reported by ParameterStatus.
    pub parameters: HashMap<String, String>,
    /// Set when the connection is in an unknown state: it must not be reused.
    pub broken: bool,
    /// Whether the server sent anything since the last call was sent: a call that times out
    /// with no answer at all met a stalled route, not a slow query.
    pub answered: bool,
    /// The session's memory settings (`work_mem`, `temp_file_limit`).
    pub memory: SessionMemory,
    /// The session's own `statement_timeout` in ms, as the startup packet or the last
    /// [`Connection::pin_timeout`] set it (`None`: unknown). Every statement runs in a
    /// transaction that is rolled back, which undoes any change a statement makes to it.
    statement_timeout_ms: Option<u64>,
}

fn io_lost(e: std::io::Error) -> ExecError {
    ExecError::ConnectionLost(e.to_string())
}

fn proto(e: impl std::fmt::Display) -> ExecError {
    ExecError::Protocol(e.to_string())
}

/// Reads an ErrorResponse/NoticeResponse's fields.
fn pg_error(fields: postgres_protocol::message::backend::ErrorFields<'_>) -> PgError {
    let mut e = PgError::default();
    let mut fields = fields;
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'V' => e.severity = v,
            b'S' if e.severity.is_empty() => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            b'P' => e.position = v.parse().ok(),
            _ => {}
        }
    }
    e
}

impl Connection {
    /// Starts a session on `stream`: startup parameters (the pinned settings), then
    /// authentication (trust, password, MD5, SCRAM-SHA-256).
    pub async fn startup(
        stream: BoxStream,
        params: &[(String, String)],
        password: Option<&str>,
    ) -> Result<Connection, ExecError> {
        let mut conn = Connection {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            write_buf: BytesMut::with_capacity(4 * 1024),
            backend_key: None,
            parameters: HashMap::new(),
            broken: false,
            answered: false,
            memory: SessionMemory::default(),
            statement_timeout_ms: params
                .iter()
                .find(|(k, _)| k == "statement_timeout")
                .and_then(|(_, v)| v.parse().ok()),
        };
        frontend::startup_message(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut conn.write_buf,
        )
        .map_err(proto)?;
        conn.flush().await?;
        let need_password = || {
            password.ok_or_else(|| ExecError::Credentials("the database asks for a password and none is configured: add it to the dsn (behind Teleport, the database service should authenticate by certificate: check its configuration)".into()))
        };
        loop {
            match conn.read().await? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(need_password()?.as_bytes(), &mut conn.write_buf)
                        .map_err(proto)?;
                    conn.flush().await?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let user = params
                        .iter()
                        .find(|(k, _)| k == "user")
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("");
                    let hash = md5_hash(user.as_bytes(), need_password()?.as_bytes(), body.salt());
                    frontend::password_message(hash.as_bytes(), &mut conn.write_buf)
                        .map_err(proto)?;
                    conn.flush().await?;
                }
                Message::AuthenticationSasl(body) => conn.scram(&body, need_password()?).await?,
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => return Err(ExecError::Protocol(
                    "unsupported authentication method (use password, md5, scram-sha-256 or trust)"
                        .into(),
                )),
            }
        }
        conn.await_ready().await?;
        Ok(conn)
    }

    /// SCRAM-SHA-256 authentication, the server having offered SASL.
    async fn scram(
        &mut self,
        body: &postgres_protocol::message::backend::AuthenticationSaslBody,
        password: &str,
    ) -> Result<(), ExecError> {
        let mut mechs = body.mechanisms();
        let mut scram = false;
        while let Some(m) = mechs.next().map_err(proto)? {
            scram |= m == sasl::SCRAM_SHA_256;
        }
        if !scram {
            return Err(ExecError::Protocol(
                "the server offers no SASL mechanism sqlguard supports (SCRAM-SHA-256)".into(),
            ));
        }
        let mut client =
            sasl::ScramSha256::new(password.as_bytes(), sasl::ChannelBinding::unsupported());
        frontend::sasl_initial_response(sasl::SCRAM_SHA_256, client.message(), &mut self.write_buf)
            .map_err(proto)?;
        self.flush().await?;
        match self.read().await? {
            Message::AuthenticationSaslContinue(b) => client.update(b.data()).map_err(proto)?,
            Message::ErrorResponse(e) => {
                return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
            }
            _ => {
                return Err(ExecError::Protocol(
                    "unexpected message during SCRAM".into(),
                ))
            }
        }
        frontend::sasl_response(client.message(), &mut self.write_buf).map_err(proto)?;
        self.flush().await?;
        match self.read().await? {
            Message::AuthenticationSaslFinal(b) => client.finish(b.data()).map_err(proto)?,
            Message::ErrorResponse(e) => {
                return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
            }
            _ => {
                return Err(ExecError::Protocol(
                    "unexpected message during SCRAM".into(),
                ))
            }
        }
        Ok(())
    }

    /// After authentication: the backend's key and parameters, until it is ready; refused
    /// unless it lexes strings as the analysis does.
    async fn await_ready(&mut self) -> Result<(), ExecError> {
        loop {
            match self.read().await? {
                Message::ReadyForQuery(_) => break,
                Message::BackendKeyData(k) => {
                    self.backend_key = Some((k.process_id(), k.secret_key()))
                }
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => {}
            }
        }
        // The analysis parses with standard_conforming_strings on; a server that lexes
        // differently could read a string literal another way (threat model, class 14).
        if self
            .parameters
            .get("standard_conforming_strings")
            .map(String::as_str)
            != Some("on")
        {
            return Err(ExecError::Protocol(
                "the server does not run with standard_conforming_strings=on, so its lexer could disagree with sqlguard's: the connection is refused".into(),
            ));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ExecError> {
        let r = self.stream.write_all(&self.write_buf).await;
        self.write_buf.clear();
        if let Err(e) = r {
            self.broken = true;
            return Err(io_lost(e));
        }
        self.stream.flush().await.map_err(|e| {
            self.broken = true;
            io_lost(e)
        })
    }

    async fn fill(&mut self) -> Result<(), ExecError> {
        match self.stream.read_buf(&mut self.read_buf).await {
            Ok(0) => {
                self.broken = true;
                Err(ExecError::ConnectionLost(
                    "the server closed the connection".into(),
                ))
            }
            Ok(_) => {
                self.answered = true;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(io_lost(e))
            }
        }
    }

    /// Reads the next message that is not a notice or a parameter report.
    async fn read(&mut self) -> Result<Message, ExecError> {
        loop {
            if let Some((tag, len)) = self.peek_header() {
                if tag != b'D' && len > MAX_MESSAGE {
                    self.broken = true;
                    self.skip_bytes(len + 1).await?;
                    return Err(ExecError::Postgres(Box::new(PgError {
                        severity: "ERROR".into(),
                        message: format!(
                            "the server sent a {len}-byte {} message, more than sqlguard reads ({MAX_MESSAGE} bytes); it was discarded",
                            if tag == b'E' { "error" } else { "protocol" }
                        ),
                        ..PgError::default()
                    })));
                }
            }
            match Message::parse(&mut self.read_buf) {
                Ok(Some(Message::ParameterStatus(p))) => {
                    let (k, v) = (p.name().map_err(proto)?, p.value().map_err(proto)?);
                    self.parameters.insert(k.to_string(), v.to_string());
                }
                Ok(Some(Message::NoticeResponse(_)))
                | Ok(Some(Message::NotificationResponse(_))) => {}
                Ok(Some(m)) => return Ok(m),
                Ok(None) => self.fill().await?,
                Err(e) => {
                    self.broken = true;
                    return Err(proto(e));
                }
            }
        }
    }

    /// The type and length of the next message, when its header is buffered.
    fn peek_header(&self) -> Option<(u8, usize)> {
        let b = self.read_buf.get(..5)?;
        Some((b[0], u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize))
    }

    /// Waits until at least `n` bytes are buffered.
    async fn need(&mut self, n: usize) -> Result<(), ExecError> {
        while self.read_buf.len() < n {
            self.fill().await?;
        }
        Ok(())
    }

    /// Discards the next `n` bytes of the stream, buffering at most one read at a time.
    async fn skip_bytes(&mut self, mut n: usize) -> Result<(), ExecError> {
        loop {
            let take = n.min(self.read_buf.len());
            self.read_buf.advance(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Discards a DataRow longer than `budget` bytes without buffering it whole, reading
    /// only its field lengths. Returns `(row length, index and length of its largest field)`
    /// when one was skipped.
    async fn skip_large_data_row(
        &mut self,
        budget: usize,
    ) -> Result<Option<(usize, usize, usize)>, ExecError> {
        self.need(5).await?;
        let Some((b'D', len)) = self.peek_header() else {
            return Ok(None);
        };
        if len <= budget {
            return Ok(None);
        }
        self.need(7).await?;
        let fields = u16::from_be_bytes([self.read_buf[5], self.read_buf[6]]) as usize;
        self.read_buf.advance(7);
        let mut left = len.checked_sub(6).ok_or_else(|| proto("short DataRow"))?;
        let mut largest = (0, 0);
        for i in 0..fields {
            self.need(4).await?;
            let n = i32::from_be_bytes([
                self.read_buf[0],
                self.read_buf[1],
                self.read_buf[2],
                self.read_buf[3],
            ]);
            self.read_buf.advance(4);
            let n = usize::try_from(n).unwrap_or(0); // -1: NULL
            left = left
                .checked_sub(4 + n)
                .ok_or_else(|| proto("a DataRow field overruns its row"))?;
            self.skip_bytes(n).await?;
            if n > largest.1 {
                largest = (i, n);
            }
        }
        self.skip_bytes(left).await?;
        Ok(Some((len, largest.0, largest.1)))
    }

    /// Has the server closed this idle connection (a restart, `pg_terminate_backend`, an
    /// idle timeout)? It then sent a FATAL error, or end of file, already readable now: one
    /// poll tells, without a round trip. Returns why, or `None` when it is alive.
    pub fn closed_while_idle(&mut self) -> Option<String> {
        use std::task::{Context, Poll, Waker};
        let mut cx = Context::from_waker(Waker::noop());
        let mut scratch = [0u8; 1024];
        let mut buf = tokio::io::ReadBuf::new(&mut scratch);
        match std::pin::Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf) {
            Poll::Pending => None,
            Poll::Ready(Err(e)) => Some(e.to_string()),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Some("the server closed the connection".into())
            }
            Poll::Ready(Ok(())) => {
                self.read_buf.extend_from_slice(buf.filled());
                match Message::parse(&mut self.read_buf) {
                    Ok(Some(Message::ErrorResponse(e))) => Some(pg_error(e.fields()).to_string()),
                    // Anything else unasked for (a notice, a parameter report) leaves the
                    // session in a state sqlguard did not set up: do not reuse it.
                    _ => Some("the server sent a message while the connection was idle".into()),
                }
            }
        }
    }

    /// Capacity of the read buffer (it grows to the largest row read).
    pub fn read_buffer_capacity(&self) -> usize {
        self.read_buf.capacity()
    }

    /// Gives back the memory of a large result (called between calls, nothing buffered).
    pub fn shrink_buffers(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::with_capacity(8192);
        }
        self.write_buf = BytesMut::with_capacity(1024);
    }

    fn push_statement(
        &mut self,
        sql: &str,
        describe: bool,
        max_rows: i32,
    ) -> Result<(), ExecError> {
        frontend::parse("", sql, std::iter::empty(), &mut self.write_buf).map_err(proto)?;
        frontend::bind(
            "",
            "",
            std::iter::empty(),
            std::iter::empty::<i32>(),
            |_, _| Ok(postgres_protocol::IsNull::No),
            std::iter::empty(), // no result formats: every column in text format
            &mut self.write_buf,
        )
        .map_err(|_| ExecError::Protocol("cannot encode Bind".into()))?;
        if describe {
            frontend::describe(b'P', "", &mut self.write_buf).map_err(proto)?;
        }
        frontend::execute("", max_rows, &mut self.write_buf).map_err(proto)?;
        Ok(())
    }

    /// Refuses a connection left in an unknown state (an earlier call broke off mid-protocol).
    fn usable(&self) -> Result<(), ExecError> {
        if self.broken {
            return Err(ExecError::ConnectionLost(
                "the connection was left in an unknown state".into(),
            ));
        }
        Ok(())
    }

    /// Runs one statement of `sql` inside `BEGIN READ ONLY` … `ROLLBACK`, under the session's
    /// `statement_timeout` pinned to `limits` first, at most `max_rows` rows and
    /// `max_result_bytes` bytes kept, in one round trip (two when the limit changed). The extended protocol makes the server itself refuse
    /// a text holding several statements (threat model, class 1).
    pub async fn run_guarded(
        &mut self,
        sql: &str,
        limits: RunLimits,
        masks: &MaskPlan,
    ) -> Result<QueryResult, ExecError> {
        self.usable()?;
        self.pin_timeout(limits.statement_timeout_ms).await?;
        // One row past the limit tells "more rows exist" from "exactly max_rows rows".
        let max_rows = usize::try_from(limits.max_rows.max(1))
            .unwrap_or(usize::MAX)
            .min(i32::MAX as usize - 1);
        self.queue_guarded(sql, limits, max_rows as i32 + 1)?;
        self.read_guarded(max_rows, limits, masks).await
    }

    /// Sends what is queued and reads the statement's result and the ROLLBACK's answer.
    async fn read_guarded(
        &mut self,
        max_rows: usize,
        limits: RunLimits,
        masks: &MaskPlan,
    ) -> Result<QueryResult, ExecError> {
        // From here until the last ReadyForQuery, an interruption leaves the protocol
        // mid-way: the connection must then be discarded.
        self.broken = true;
        self.answered = !self.read_buf.is_empty();
        let started = std::time::Instant::now();
        self.flush().await?;
        let byte_cap = usize::try_from(limits.max_result_bytes).unwrap_or(usize::MAX);
        let mut reader = ResultReader::new(max_rows, byte_cap, masks);
        let read = match self.read_statement(&mut reader).await {
            // The ROLLBACK queued with the statement ended the transaction.
            Ok(()) if reader.ready == b'I' => Ok(()),
            // The statement failed, so the server skipped the ROLLBACK queued after it: the
            // transaction is ended now, in a round trip only errors pay.
            Ok(()) if reader.ready == b'E' => {
                self.queue_rollback_closing_planned()?;
                self.flush().await?;
                self.read_rollback().await
            }
            Ok(()) => Err(ExecError::Protocol(
                "the transaction did not end after ROLLBACK".into(),
            )),
            Err(e) => Err(e),
        };
        if let Err(e) = read {
            return Err(reader.lost(e));
        }
        // A session whose lexer changed under it is not reused (threat model, class 14).
        self.broken = self
            .parameters
            .get("standard_conforming_strings")
            .map(String::as_str)
            != Some("on");
        reader.finish(limits.statement_timeout_ms, started.elapsed())
    }

    /// Queues `BEGIN READ ONLY`, the transaction's limits, the statement (fetching at most
    /// `fetch` rows) and `ROLLBACK`, never a commit, for one round trip.
    fn queue_guarded(&mut self, sql: &str, limits: RunLimits, fetch: i32) -> Result<(), ExecError> {
        self.queue_begin(limits)?;
        self.queue_statement_and_rollback(sql, fetch)
    }

    /// Sets the session's `statement_timeout` to `ms` (at least 1: 0 would mean none) unless
    /// it already is: one round trip when a call's limit differs from the last one's, none
    /// otherwise. Outside any transaction, so it stays; each statement then runs in a
    /// transaction that is rolled back, which reverts whatever the statement does to it.
    async fn pin_timeout(&mut self, ms: u64) -> Result<(), ExecError> {
        let ms = ms.max(1);
        if self.statement_timeout_ms == Some(ms) {
            return Ok(());
        }
        self.statement_timeout_ms = None;
        self.broken = true;
        self.answered = !self.read_buf.is_empty();
        let status = self
            .simple_status(&format!("SET statement_timeout = {ms}"))
            .await?;
        if status != b'I' {
            return Err(ExecError::Protocol(
                "the session was inside a transaction when its time limit was set".into(),
            ));
        }
        self.broken = false;
        self.statement_timeout_ms = Some(ms);
        Ok(())
    }

    /// Queues `BEGIN READ ONLY` and the transaction's memory pins, each only ever lowering
    /// what the session already has. The time limit is the session's (`pin_timeout`).
    fn queue_begin(&mut self, limits: RunLimits) -> Result<(), ExecError> {
        self.push_statement("BEGIN READ ONLY", false, 0)?;
        if let Some(kb) = limits.work_mem_kb {
            // PostgreSQL's minimum is 64 kB.
            let kb = kb.min(self.memory.work_mem_kb).max(64);
            self.push_statement(&format!("SET LOCAL work_mem = '{kb}kB'"), false, 0)?;
        }
        if let (Some(kb), true) = (limits.temp_file_limit_kb, self.memory.can_limit_temp_files) {
            let kb = self.memory.temp_file_limit_kb.map_or(kb, |s| kb.min(s));
            self.push_statement(&format!("SET LOCAL temp_file_limit = '{kb}kB'"), false, 0)?;
        }
        Ok(())
    }

    /// The statement and `ROLLBACK` before one Sync: one answer from the server. When the
    /// statement fails the server skips the ROLLBACK, and `read_guarded` sends it.
    fn queue_statement_and_rollback(&mut self, sql: &str, fetch: i32) -> Result<(), ExecError> {
        self.push_statement(sql, true, fetch)?;
        self.push_statement("ROLLBACK", false, 0)?;
        self.push_statement(RELEASE_SESSION_STATE, false, 0)?;
        frontend::sync(&mut self.write_buf);
        Ok(())
    }

    /// Reads the session's memory settings (once, when it starts). A server that cannot say
    /// keeps PostgreSQL's defaults, and `temp_file_limit` is then never pinned.
    pub async fn probe_memory(&mut self) -> Result<(), ExecError> {
        let row = self.simple_row(PROBE_MEMORY).await?;
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let superuser = field(3) == "t";
        let grant = if superuser {
            true
        } else if self.server_version_num() >= 150000 {
            self.simple_row(PROBE_TEMP_FILE_GRANT)
                .await
                .map(|r| r.first().cloned().flatten().as_deref() == Some("t"))
                .unwrap_or(false)
        } else {
            false
        };
        let temp: i64 = field(1).parse().unwrap_or(-1);
        self.memory = SessionMemory {
            work_mem_kb: field(0).parse().unwrap_or(4096),
            temp_file_limit_kb: (temp >= 0).then_some(temp as u64 / 1024),
            hash_mem_multiplier: field(2).parse().unwrap_or(1.0),
            can_limit_temp_files: grant,
        };
        Ok(())
    }

    /// `server_version_num` from the `server_version` the server reported (`15.4 (Debian…)`).
    pub fn server_version_num(&self) -> u32 {
        let v = self
            .parameters
            .get("server_version")
            .map_or("", String::as_str);
        let mut parts = v
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        major * 10000 + minor
    }

    /// Runs fixed, sqlguard-written SQL with the simple protocol and returns its first row
    /// in text form (never model text).
    async fn simple_row(&mut self, sql: &'static str) -> Result<Vec<Option<String>>, ExecError> {
        frontend::query(sql, &mut self.write_buf).map_err(proto)?;
        self.flush().await?;
        let mut error = None;
        let mut first = None;
        loop {
            match self.read().await? {
                Message::ReadyForQuery(_) => break,
                Message::ErrorResponse(e) => error = Some(pg_error(e.fields())),
                Message::DataRow(row) if first.is_none() => {
                    let buf = row.buffer();
                    let mut values = Vec::new();
                    let mut ranges = row.ranges();
                    while let Some(r) = ranges.next().map_err(proto)? {
                        values.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
                    }
                    first = Some(values);
                }
                _ => {}
            }
        }
        if let Some(e) = error {
            return Err(ExecError::Postgres(Box::new(e)));
        }
        Ok(first.unwrap_or_default())
    }

    /// The first half of a planned execution, in one round trip: opens the guarded
    /// transaction (as [`Connection::run_guarded`] does), prepares `sql` as the statement
    /// [`PLANNED`] and explains that, never with `ANALYZE`: nothing runs. PostgreSQL plans a
    /// statement without parameters once, generically, and keeps the plan with it, so
    /// [`Connection::finish_planned`] runs exactly the plan the policy judged, without
    /// planning again. Returns the EXPLAIN output; the transaction stays open for
    /// [`Connection::finish_planned`] or [`Connection::abandon`]. An error (the statement
    /// cannot be prepared or planned) ends the transaction.
    pub async fn begin_explain(
        &mut self,
        sql: &str,
        limits: RunLimits,
    ) -> Result<Value, ExecError> {
        self.usable()?;
        self.pin_timeout(limits.statement_timeout_ms).await?;
        self.queue_begin(limits)?;
        // A statement left by a call that broke off is replaced (closing a missing one is not
        // an error). A prepared statement holds one statement: the server refuses several.
        frontend::close(b'S', PLANNED, &mut self.write_buf).map_err(proto)?;
        frontend::parse(PLANNED, sql, std::iter::empty(), &mut self.write_buf).map_err(proto)?;
        self.push_statement(EXPLAIN_PLANNED, true, 2)?;
        frontend::sync(&mut self.write_buf);
        let mut reader = ResultReader::new(1, MAX_PLAN_BYTES, &NO_MASKS);
        let started = std::time::Instant::now();
        self.exchange(&mut reader).await?;
        if reader.ready != b'T' || reader.error.is_some() {
            if reader.ready != b'I' {
                self.abandon().await?;
            }
            self.broken = false;
            // The error is the statement's: the same one running it would have returned.
            return reader
                .finish(limits.statement_timeout_ms, started.elapsed())
                .and(Err(ExecError::Protocol(
                    "EXPLAIN did not leave its transaction open".into(),
                )));
        }
        let plan = reader
            .rows
            .as_mut()
            .and_then(|rows| rows.pop())
            .and_then(|mut row| row.values_mut().next().map(Value::take));
        plan.ok_or_else(|| {
            ExecError::Protocol(format!(
                "EXPLAIN returned no plan (or one over {} MB)",
                MAX_PLAN_BYTES >> 20
            ))
        })
    }

    /// Inside the open transaction: the catalog's description of `relations`
    /// (`[[schema, name], …]`), one row each, in one round trip.
    pub async fn describe_relations(
        &mut self,
        relations: &Value,
    ) -> Result<Vec<Map<String, Value>>, ExecError> {
        let param = relations.to_string();
        frontend::parse("", DESCRIBE_RELATIONS, [0u32], &mut self.write_buf).map_err(proto)?;
        frontend::bind(
            "",
            "",
            [0i16],
            [param.as_str()],
            |v, buf| {
                buf.extend_from_slice(v.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            std::iter::empty(),
            &mut self.write_buf,
        )
        .map_err(|_| ExecError::Protocol("cannot encode Bind".into()))?;
        frontend::describe(b'P', "", &mut self.write_buf).map_err(proto)?;
        frontend::execute("", 0, &mut self.write_buf).map_err(proto)?;
        frontend::sync(&mut self.write_buf);
        let mut reader = ResultReader::new(10_000, MAX_PLAN_BYTES, &NO_MASKS);
        self.exchange(&mut reader).await?;
        self.broken = false;
        if let Some(e) = reader.error.take() {
            if reader.ready != b'I' {
                self.abandon().await?;
            }
            return Err(ExecError::Postgres(Box::new(e)));
        }
        Ok(reader.rows.unwrap_or_default())
    }

    /// The second half of a planned execution: runs the statement
    /// [`Connection::begin_explain`] prepared and explained, with the plan it explained, in
    /// the transaction it opened, then rolls it back (one round trip).
    pub async fn finish_planned(
        &mut self,
        limits: RunLimits,
        masks: &MaskPlan,
    ) -> Result<QueryResult, ExecError> {
        let max_rows = usize::try_from(limits.max_rows.max(1))
            .unwrap_or(usize::MAX)
            .min(i32::MAX as usize - 1);
        frontend::bind(
            "",
            PLANNED,
            std::iter::empty(),
            std::iter::empty::<i32>(),
            |_, _| Ok(postgres_protocol::IsNull::No),
            std::iter::empty(), // every column in text format
            &mut self.write_buf,
        )
        .map_err(|_| ExecError::Protocol("cannot encode Bind".into()))?;
        frontend::describe(b'P', "", &mut self.write_buf).map_err(proto)?;
        frontend::execute("", max_rows as i32 + 1, &mut self.write_buf).map_err(proto)?;
        self.queue_rollback_closing_planned()?;
        self.read_guarded(max_rows, limits, masks).await
    }

    /// Queues `ROLLBACK` and the closing of [`PLANNED`] (a prepared statement outlives its
    /// transaction).
    fn queue_rollback_closing_planned(&mut self) -> Result<(), ExecError> {
        self.push_statement("ROLLBACK", false, 0)?;
        self.push_statement(RELEASE_SESSION_STATE, false, 0)?;
        frontend::close(b'S', PLANNED, &mut self.write_buf).map_err(proto)?;
        frontend::sync(&mut self.write_buf);
        Ok(())
    }

    /// Ends the open transaction without running anything more.
    pub async fn abandon(&mut self) -> Result<(), ExecError> {
        self.queue_rollback_closing_planned()?;
        self.broken = true;
        self.flush().await?;
        self.read_rollback().await?;
        self.broken = false;
        Ok(())
    }

    /// Sends what is queued and reads up to the next ReadyForQuery; the connection counts as
    /// broken until then.
    async fn exchange(&mut self, reader: &mut ResultReader<'_>) -> Result<(), ExecError> {
        self.broken = true;
        self.answered = !self.read_buf.is_empty();
        self.flush().await?;
        match self.read_statement(reader).await {
            Ok(()) => Ok(()),
            Err(e) => Err(reader.lost(e)),
        }
    }

    /// Reads up to the first ReadyForQuery: BEGIN, SET LOCAL, and the statement's rows.
    async fn read_statement(&mut self, r: &mut ResultReader<'_>) -> Result<(), ExecError> {
        loop {
            if r.in_statement && !r.done {
                // A row larger than what is left of the byte budget is skipped on the wire,
                // never buffered: memory per call stays O(max_result_bytes).
                if let Some((len, field, field_len)) =
                    self.skip_large_data_row(r.row_budget()).await?
                {
                    r.skipped(len, field, field_len);
                    continue;
                }
            }
            match self.read().await? {
                Message::ParseComplete | Message::BindComplete | Message::CloseComplete => {}
                Message::CommandComplete(c) => {
                    if r.in_statement && !r.done {
                        r.command_tag = c.tag().ok().map(str::to_string);
                        r.done = true;
                    }
                }
                Message::RowDescription(desc) => r.describe(&desc)?,
                Message::NoData => r.in_statement = true,
                Message::DataRow(row) if !r.done => r.row(&row)?,
                // The row of `RELEASE_SESSION_STATE`, after the statement's end.
                Message::DataRow(_) => {}
                // The server stopped at max_rows + 1 rows and produced no more.
                Message::PortalSuspended | Message::EmptyQueryResponse => r.done = r.in_statement,
                Message::ErrorResponse(e) => {
                    if r.error.is_none() {
                        r.error = Some(pg_error(e.fields()));
                    }
                }
                Message::ReadyForQuery(status) => {
                    r.ready = status.status();
                    return Ok(());
                }
                Message::CopyInResponse(_) | Message::CopyOutResponse(_) => {
                    // COPY never passes the policy; if it ever reached here, stop.
                    return Err(ExecError::Protocol("COPY is not supported".into()));
                }
                _ => {
                    return Err(ExecError::Protocol(
                        "unexpected message in a query response".into(),
                    ))
                }
            }
        }
    }

    /// Reads the ROLLBACK's answer: the session must be out of the transaction.
    async fn read_rollback(&mut self) -> Result<(), ExecError> {
        loop {
            match self.read().await? {
                Message::ReadyForQuery(r) if r.status() == b'I' => return Ok(()),
                Message::ReadyForQuery(_) => {
                    return Err(ExecError::Protocol(
                        "the transaction did not end after ROLLBACK".into(),
                    ))
                }
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => {}
            }
        }
    }

    /// Runs fixed, sqlguard-written SQL with the simple protocol (never model text).
    pub async fn simple(&mut self, sql: &'static str) -> Result<(), ExecError> {
        self.simple_status(sql).await.map(|_| ())
    }

    /// Runs `sql` (sqlguard's own, never model text) with the simple protocol; returns the
    /// transaction status of its ReadyForQuery.
    async fn simple_status(&mut self, sql: &str) -> Result<u8, ExecError> {
        frontend::query(sql, &mut self.write_buf).map_err(proto)?;
        self.flush().await?;
        let mut error = None;
        let status = loop {
            match self.read().await? {
                Message::ReadyForQuery(r) => break r.status(),
                Message::ErrorResponse(e) => error = Some(pg_error(e.fields())),
                _ => {}
            }
        };
        error.map_or(Ok(status), |e| Err(ExecError::Postgres(Box::new(e))))
    }

    /// Sends Terminate and closes the stream.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Sends a CancelRequest for `key` on a fresh stream.
pub async fn send_cancel(mut stream: BoxStream, key: (i32, i32)) -> Result<(), ExecError> {
    let mut buf = BytesMut::new();
    frontend::cancel_request(key.0, key.1, &mut buf);
    stream.write_all(&buf).await.map_err(io_lost)?;
    stream.flush().await.map_err(io_lost)?;
    // The server closes the stream when it has read the request.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut sink)).await;
    Ok(())
}
