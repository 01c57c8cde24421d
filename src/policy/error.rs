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

    #[error("{0} holds no .rego or .json file: point --policy at a layer (Rego rules, data files, or both) or a whole bundle such as one `sqlguard policy export` writes")]
    Empty(PathBuf),

    #[error("{first} and {second} both define data.sqlguard.decision: a bundle has one base; keep one, and make the other a layer (rules that add to `deny`, without `decision :=`)")]
    TwoBases { first: PathBuf, second: PathBuf },

    #[error("{first} and {second} both set {path}, to different values: data files are merged as OPA merges them, which refuses that; set it in one file (for a list, list every entry there)")]
    Conflict {
        path: String,
        first: String,
        second: String,
    },

    #[error("invalid Rego: {0}")]
    Rego(String),

    #[error("invalid data file {path}: {message}")]
    Data { path: PathBuf, message: String },

    #[error("the bundle defines no data.sqlguard.decision rule: {0}")]
    MissingDecision(String),
}
