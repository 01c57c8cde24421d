//! The decision: allow or deny, why, and the limits execution must enforce.

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
}

/// The policy's answer for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub reasons: Vec<Reason>,
    pub limits: Limits,
}

/// Limits used in a denial, where none were decided.
pub const DENIED_LIMITS: Limits = Limits {
    max_rows: 0,
    max_result_bytes: 0,
    statement_timeout_ms: 0,
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
            limits: DENIED_LIMITS,
        }
    }

    /// The reasons as one message for people, with what to change.
    pub fn message(&self) -> String {
        if self.allow {
            return "allowed".into();
        }
        let mut out = String::from("The query was denied by the sqlguard policy:");
        for r in &self.reasons {
            out.push_str("\n- ");
            out.push_str(&r.message);
            out.push_str(&format!(" [{}]", r.rule));
        }
        out
    }
}
