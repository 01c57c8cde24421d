//! The decision: allow, ask a person, or deny; why; and the limits execution must enforce.

use serde::{Deserialize, Serialize};

/// One reason a call is denied, telling the agent what to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The rule that fired (`row_lock`, `function_risk`, …).
    pub rule: String,
    pub message: String,
    /// Index of the statement it concerns; -1 for the whole call.
    pub statement: i64,
}

/// Limits on one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_rows: u64,
    pub max_result_bytes: u64,
    pub statement_timeout_ms: u64,
    /// `work_mem` pinned for the transaction, in kB (only ever lowered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_mem_kb: Option<u64>,
    /// `temp_file_limit` pinned for the transaction, in kB (only ever lowered; only where
    /// the database role may set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_file_limit_kb: Option<u64>,
}

/// The policy's answer for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub reasons: Vec<Reason>,
    /// Allowed only once a person approves it: why each approval is needed. Empty when the
    /// call is denied (deny wins over ask).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask: Vec<Reason>,
    pub limits: Limits,
    /// The policy asks to see PostgreSQL's plan before the query runs: the query is
    /// explained and decided again with `input.plan` (`data.sqlguard.plan.explain`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub explain: bool,
    /// The masks execution applies to the values it returns (`columns.mask`).
    #[serde(default, skip_serializing_if = "no_masks")]
    pub mask: Box<MaskDecision>,
}

/// The policy's masks for one call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskDecision {
    /// `schema.table.column` → its mask, for every masked column of the caller's policy.
    #[serde(default)]
    pub columns: std::collections::BTreeMap<String, MaskSpec>,
    /// The masked columns the call selects as they are (`schema.table.column`): when there
    /// are any, a result column PostgreSQL does not attribute to a table column is masked
    /// too (`redact`), since the analysis cannot tell which it is.
    #[serde(default)]
    pub projected: Vec<String>,
}

fn no_masks(m: &MaskDecision) -> bool {
    m.is_empty()
}

impl MaskDecision {
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.projected.is_empty()
    }
}

/// How a masked column's values are returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MaskSpec {
    /// Every value becomes `text`.
    Redact { text: String },
    /// Every value becomes null.
    Null,
    /// A keyed HMAC-SHA-256 of the value: equal values stay equal under one key.
    Hash,
    /// `jane@example.com` → `j***@example.com`.
    Email,
    /// Keeps the first `keep_first` and last `keep_last` characters, each other one becomes
    /// `fill` (a value no longer than what would be kept is filled whole).
    Partial {
        keep_first: u32,
        keep_last: u32,
        fill: String,
    },
}

/// Limits used in a denial, where none were decided.
pub const DENIED_LIMITS: Limits = Limits {
    max_rows: 0,
    max_result_bytes: 0,
    statement_timeout_ms: 0,
    work_mem_kb: None,
    temp_file_limit_kb: None,
};

impl Decision {
    /// A denial for one reason (analysis failure, policy failure, …).
    pub fn deny(rule: &str, message: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            reasons: vec![Reason {
                rule: rule.to_string(),
                message: message.into(),
                statement: -1,
            }],
            ask: Vec::new(),
            limits: DENIED_LIMITS,
            explain: false,
            mask: Box::default(),
        }
    }

    /// Allowed, but only once a person approves it.
    pub fn asks(&self) -> bool {
        self.allow && !self.ask.is_empty()
    }

    /// Why a person must approve, one line each, for the person and the agent.
    pub fn ask_message(&self) -> String {
        listed(
            "The sqlguard policy asks a person to approve this query:",
            &self.ask,
        )
    }

    /// The reasons as one message for people, with what to change.
    pub fn message(&self) -> String {
        if self.allow {
            return "allowed".into();
        }
        listed(
            "The query was denied by the sqlguard policy:",
            &self.reasons,
        )
    }
}

/// `head`, then each reason on its own line with its rule.
pub fn listed(head: &str, reasons: &[Reason]) -> String {
    let mut out = String::from(head);
    for r in reasons {
        out.push_str("\n- ");
        out.push_str(&r.message);
        out.push_str(&format!(" [{}]", r.rule));
    }
    out
}
