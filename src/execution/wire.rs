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
}

/// Limits on one execution.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub max_rows: u64,
    pub max_result_bytes: u64,
    pub statement_timeout_ms: u64,
}

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
        };
        frontend::startup_message(
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &mut conn.write_buf,
        )
        .map_err(proto)?;
        conn.flush().await?;
        let need_password = || {
            password.ok_or_else(|| ExecError::Protocol("the server asks for a password and none is configured: add it to the connection string".into()))
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
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut scram = false;
                    while let Some(m) = mechs.next().map_err(proto)? {
                        scram |= m == sasl::SCRAM_SHA_256;
                    }
                    if !scram {
                        return Err(ExecError::Protocol(
                            "the server offers no SASL mechanism sqlguard supports (SCRAM-SHA-256)"
                                .into(),
                        ));
                    }
                    let mut client = sasl::ScramSha256::new(
                        need_password()?.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(
                        sasl::SCRAM_SHA_256,
                        client.message(),
                        &mut conn.write_buf,
                    )
                    .map_err(proto)?;
                    conn.flush().await?;
                    match conn.read().await? {
                        Message::AuthenticationSaslContinue(b) => {
                            client.update(b.data()).map_err(proto)?
                        }
                        Message::ErrorResponse(e) => {
                            return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                        }
                        _ => {
                            return Err(ExecError::Protocol(
                                "unexpected message during SCRAM".into(),
                            ))
                        }
                    }
                    frontend::sasl_response(client.message(), &mut conn.write_buf)
                        .map_err(proto)?;
                    conn.flush().await?;
                    match conn.read().await? {
                        Message::AuthenticationSaslFinal(b) => {
                            client.finish(b.data()).map_err(proto)?
                        }
                        Message::ErrorResponse(e) => {
                            return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                        }
                        _ => {
                            return Err(ExecError::Protocol(
                                "unexpected message during SCRAM".into(),
                            ))
                        }
                    }
                }
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => return Err(ExecError::Protocol(
                    "unsupported authentication method (use password, md5, scram-sha-256 or trust)"
                        .into(),
                )),
            }
        }
        loop {
            match conn.read().await? {
                Message::ReadyForQuery(_) => break,
                Message::BackendKeyData(k) => {
                    conn.backend_key = Some((k.process_id(), k.secret_key()))
                }
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => {}
            }
        }
        // The analysis parses with standard_conforming_strings on; a server that lexes
        // differently could read a string literal another way (threat model, class 14).
        if conn
            .parameters
            .get("standard_conforming_strings")
            .map(String::as_str)
            != Some("on")
        {
            return Err(ExecError::Protocol(
                "the server does not run with standard_conforming_strings=on, so its lexer could disagree with sqlguard's: the connection is refused".into(),
            ));
        }
        Ok(conn)
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
            Ok(_) => Ok(()),
            Err(e) => {
                self.broken = true;
                Err(io_lost(e))
            }
        }
    }

    /// Reads the next message that is not a notice or a parameter report.
    async fn read(&mut self) -> Result<Message, ExecError> {
        loop {
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

    /// Discards a DataRow longer than `budget` bytes without buffering it whole. Returns its
    /// length when one was skipped.
    async fn skip_large_data_row(&mut self, budget: usize) -> Result<Option<usize>, ExecError> {
        while self.read_buf.len() < 5 {
            self.fill().await?;
        }
        if self.read_buf[0] != b'D' {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.read_buf[1],
            self.read_buf[2],
            self.read_buf[3],
            self.read_buf[4],
        ]) as usize;
        if len <= budget {
            return Ok(None);
        }
        let mut remaining = len + 1;
        loop {
            let take = remaining.min(self.read_buf.len());
            self.read_buf.advance(take);
            remaining -= take;
            if remaining == 0 {
                return Ok(Some(len));
            }
            self.fill().await?;
        }
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

    /// Runs one statement of `sql` inside `BEGIN READ ONLY` … `ROLLBACK`, with a
    /// transaction-local `statement_timeout`, at most `max_rows` rows and `max_result_bytes`
    /// bytes kept, in one round trip. The extended protocol makes the server itself refuse
    /// a text holding several statements (threat model, class 1).
    pub async fn run_guarded(
        &mut self,
        sql: &str,
        limits: RunLimits,
    ) -> Result<QueryResult, ExecError> {
        if self.broken {
            return Err(ExecError::ConnectionLost(
                "the connection was left in an unknown state".into(),
            ));
        }
        // One row past the limit tells "more rows exist" from "exactly max_rows rows".
        let max_rows = usize::try_from(limits.max_rows.max(1))
            .unwrap_or(usize::MAX)
            .min(i32::MAX as usize - 1);
        let fetch = max_rows as i32 + 1;
        self.push_statement("BEGIN READ ONLY", false, 0)?;
        let timeout_sql = format!(
            "SET LOCAL statement_timeout = {}",
            limits.statement_timeout_ms.max(1)
        );
        self.push_statement(&timeout_sql, false, 0)?;
        self.push_statement(sql, true, fetch)?;
        frontend::sync(&mut self.write_buf);
        // Never committed: the transaction is rolled back whatever happened.
        self.push_statement("ROLLBACK", false, 0)?;
        frontend::sync(&mut self.write_buf);
        // From here until the last ReadyForQuery, an interruption leaves the protocol
        // mid-way: the connection must then be discarded.
        self.broken = true;
        self.flush().await?;

        let mut error: Option<PgError> = None;
        let mut columns: Vec<String> = Vec::new();
        let mut renders: Vec<Render> = Vec::new();
        let mut rows: Option<Vec<Map<String, Value>>> = None;
        let mut truncated_by = None;
        let mut command_tag = None;
        let mut bytes = 0usize;
        let mut in_user_statement = false;
        let byte_cap = usize::try_from(limits.max_result_bytes).unwrap_or(usize::MAX);

        // Part 1: up to the first ReadyForQuery (BEGIN, SET LOCAL, the statement).
        loop {
            if in_user_statement && truncated_by.is_some() {
                if let Some(len) = self.skip_large_data_row(4096).await? {
                    bytes += len;
                    continue;
                }
            }
            match self.read().await? {
                Message::ParseComplete | Message::BindComplete => {}
                Message::CommandComplete(c) => {
                    if in_user_statement {
                        command_tag = c.tag().ok().map(str::to_string);
                    }
                }
                Message::RowDescription(desc) => {
                    in_user_statement = true;
                    let mut fields = desc.fields();
                    while let Some(f) = fields.next().map_err(proto)? {
                        let mut name = f.name().to_string();
                        // Duplicate names stay distinguishable: a, a_2, a_3, …
                        if columns.contains(&name) {
                            let mut n = 2;
                            while columns.contains(&format!("{name}_{n}")) {
                                n += 1;
                            }
                            name = format!("{name}_{n}");
                        }
                        columns.push(name);
                        renders.push(render_for(f.type_oid()));
                    }
                    rows = Some(Vec::new());
                }
                Message::NoData => in_user_statement = true,
                Message::DataRow(row) => {
                    let size = row.buffer().len();
                    bytes += size;
                    if truncated_by.is_some() {
                        continue;
                    }
                    let Some(out) = rows.as_mut() else {
                        return Err(ExecError::Protocol(
                            "a row arrived without a row description".into(),
                        ));
                    };
                    if out.len() >= max_rows {
                        truncated_by = Some("max_rows");
                        continue;
                    }
                    let kept: usize = bytes;
                    if kept > byte_cap {
                        truncated_by = Some("max_result_bytes");
                        continue;
                    }
                    let buf = row.buffer();
                    let mut ranges = row.ranges();
                    let mut map = Map::with_capacity(columns.len());
                    let mut i = 0;
                    while let Some(range) = ranges.next().map_err(proto)? {
                        let text = match range {
                            Some(r) => Some(std::str::from_utf8(&buf[r]).map_err(proto)?),
                            None => None,
                        };
                        if let (Some(name), Some(render)) = (columns.get(i), renders.get(i)) {
                            map.insert(name.clone(), to_json(*render, text));
                        }
                        i += 1;
                    }
                    out.push(map);
                }
                // The server stopped at max_rows + 1 rows and produced no more.
                Message::PortalSuspended => {}
                Message::EmptyQueryResponse => {}
                Message::ErrorResponse(e) => {
                    if error.is_none() {
                        error = Some(pg_error(e.fields()));
                    }
                }
                Message::ReadyForQuery(_) => break,
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
        // Part 2: ROLLBACK.
        loop {
            match self.read().await? {
                Message::ReadyForQuery(r) => {
                    if r.status() != b'I' {
                        return Err(ExecError::Protocol(
                            "the transaction did not end after ROLLBACK".into(),
                        ));
                    }
                    break;
                }
                Message::ErrorResponse(e) => {
                    return Err(ExecError::Postgres(Box::new(pg_error(e.fields()))))
                }
                _ => {}
            }
        }
        self.broken = false;
        if self
            .parameters
            .get("standard_conforming_strings")
            .map(String::as_str)
            != Some("on")
        {
            self.broken = true;
        }
        if let Some(e) = error {
            if e.code == "57014" {
                return Err(ExecError::Timeout {
                    limit_ms: limits.statement_timeout_ms,
                });
            }
            return Err(ExecError::Postgres(Box::new(e)));
        }
        Ok(QueryResult {
            columns,
            rows,
            truncated: truncated_by.is_some(),
            truncated_by,
            command_tag,
            bytes,
        })
    }

    /// Runs fixed, sqlguard-written SQL with the simple protocol (never model text).
    pub async fn simple(&mut self, sql: &'static str) -> Result<(), ExecError> {
        frontend::query(sql, &mut self.write_buf).map_err(proto)?;
        self.flush().await?;
        let mut error = None;
        loop {
            match self.read().await? {
                Message::ReadyForQuery(_) => break,
                Message::ErrorResponse(e) => error = Some(pg_error(e.fields())),
                _ => {}
            }
        }
        error.map_or(Ok(()), |e| Err(ExecError::Postgres(Box::new(e))))
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
