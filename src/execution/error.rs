use thiserror::Error;

/// An error PostgreSQL reported, with every field a user needs to fix the query.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PgError {
    pub severity: String,
    /// SQLSTATE, e.g. `42P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the query.
    pub position: Option<u32>,
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity, self.message, self.code
        )?;
        if let Some(p) = self.position {
            write!(f, " at character {p}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

/// Why a guarded execution did not return rows.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("PostgreSQL error: {0}")]
    Postgres(Box<PgError>),

    #[error("the query ran longer than its limit of {limit_ms} ms (statement_timeout_ms) and was cancelled: add a WHERE clause or a LIMIT, or ask for less data")]
    Timeout { limit_ms: u64 },

    #[error("cannot connect to the database {target}: {reason}")]
    Connect { target: String, reason: String },

    #[error("the database connection was lost ({0}): try again")]
    ConnectionLost(String),

    #[error("the database server spoke unexpectedly ({0}): try again; if it persists, report it")]
    Protocol(String),

    #[error("no database connection became free within {waited_ms} ms (the pool holds {size}): try again")]
    PoolExhausted { waited_ms: u64, size: usize },

    #[error("invalid database connection string: {0}")]
    Dsn(String),

    /// Missing or expired Teleport credentials; the message names the tsh command to run.
    #[error("{0}")]
    Credentials(String),
}

impl ExecError {
    pub fn pg(&self) -> Option<&PgError> {
        match self {
            ExecError::Postgres(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
