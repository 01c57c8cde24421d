use thiserror::Error;

/// Why a SQL text could not be analyzed. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnalysisError {
    #[error(
        "the query is {bytes} bytes long, over the limit of {limit} bytes: send a shorter query"
    )]
    TooLarge { bytes: usize, limit: usize },

    #[error("the query contains a NUL byte at byte {position}: remove it")]
    NulByte { position: usize },

    #[error("syntax error: {message}{}: fix the SQL so that PostgreSQL can parse it", position.map(|p| format!(" (at character {p})")).unwrap_or_default())]
    Syntax {
        message: String,
        /// 1-based character position in the text, as PostgreSQL reports it.
        position: Option<usize>,
    },

    #[error("PostgreSQL's parser gave up on the query ({message}): it nests parentheses, expressions or subqueries too deeply; flatten it")]
    ParserLimit { message: String },

    #[error("the query nests expressions or subqueries more than {limit} levels deep: flatten it")]
    TooDeep { limit: usize },

    #[error("the query's escapes (E'\\377', U&'\\d800', chr codes in a string) make text that is not valid UTF-8, which sqlguard cannot read: write the bytes as a bytea literal ('\\xff'::bytea) or remove them")]
    NotUtf8,

    #[error("the analysis failed ({0}): this is a bug in sqlguard; the query is denied")]
    Internal(String),
}

impl AnalysisError {
    /// A stable name for policies and audit logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NulByte { .. } => "nul_byte",
            Self::Syntax { .. } => "syntax_error",
            Self::TooDeep { .. } | Self::ParserLimit { .. } => "too_deep",
            Self::NotUtf8 => "not_utf8",
            Self::Internal(_) => "internal",
        }
    }
}
