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
        if !self.severity.is_empty() {
            write!(f, "{}: ", self.severity)?;
        }
        f.write_str(&self.message)?;
        if !self.code.is_empty() {
            write!(f, " (SQLSTATE {})", self.code)?;
        }
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

    #[error("PostgreSQL cancelled the query after {ran_ms} ms, before its time limit ({pg}): someone stopped it (pg_cancel_backend, a DBA); it was not run again, so ask before retrying")]
    Cancelled { pg: Box<PgError>, ran_ms: u64 },

    #[error("the database ended the session while the query ran ({0}); the query was not sent again: if an administrator stopped it, ask before retrying")]
    Terminated(Box<PgError>),

    #[error("cannot connect to the database {target}: {reason}")]
    Connect { target: String, reason: String },

    #[error("the database {target} did not answer within {limit_ms} ms ({step}; connect_timeout_ms): check that it is up and that the route to it works, or raise connect_timeout_ms")]
    ConnectTimeout {
        target: String,
        limit_ms: u64,
        step: &'static str,
    },

    #[error("the database {target} did not answer at all within {waited_ms} ms, not even to BEGIN: the route to it (Teleport proxy, tunnel, network) stalled, this is not a slow query; check the route (`sqlguard doctor`) and try again")]
    NoAnswer { target: String, waited_ms: u64 },

    #[error("the database connection was lost ({0}); the query was not sent again, as it may have run: try again if that is safe")]
    ConnectionLost(String),

    #[error("the database server spoke unexpectedly ({0}): try again; if it persists, report it")]
    Protocol(String),

    /// The policy asks for the plan and it could not be read: nothing ran (fail closed).
    #[error("{0}, so the query was not run: this policy judges queries by their plan; simplify the query, or ask the operator to turn the plan step off for it")]
    Plan(String),

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
            ExecError::Postgres(e) | ExecError::Terminated(e) => Some(e.as_ref()),
            ExecError::Cancelled { pg, .. } => Some(pg.as_ref()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PgError;

    /// A message without severity or SQLSTATE (Teleport's role denial) shows no empty fields.
    #[test]
    fn messages_without_sqlstate_have_no_empty_fields() {
        let teleport = PgError {
            message: "access to db denied. User does not have permissions".into(),
            ..PgError::default()
        };
        assert_eq!(
            teleport.to_string(),
            "access to db denied. User does not have permissions"
        );
        let pg = PgError {
            severity: "ERROR".into(),
            code: "42P01".into(),
            message: "relation \"x\" does not exist".into(),
            ..PgError::default()
        };
        assert_eq!(
            pg.to_string(),
            "ERROR: relation \"x\" does not exist (SQLSTATE 42P01)"
        );
    }
}
