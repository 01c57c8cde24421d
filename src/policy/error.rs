use std::path::PathBuf;

use thiserror::Error;

/// Why a policy bundle could not be loaded.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read the policy directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("no .rego file in {0}: point --policy at a bundle directory such as policies/")]
    Empty(PathBuf),

    #[error("invalid Rego: {0}")]
    Rego(String),

    #[error("invalid data file {path}: {message}")]
    Data { path: PathBuf, message: String },

    #[error("the bundle defines no data.sqlguard.decision rule: {0}")]
    MissingDecision(String),
}
