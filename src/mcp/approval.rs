//! Asking the human: when the policy's decision is `ask`, the person at the MCP client approves
//! or declines the one call, through MCP elicitation (`elicitation/create`), before its query
//! is sent.
//!
//! - The request goes to the client (which shows it to its user), never into a tool result the
//!   agent reads: the agent cannot approve for itself.
//! - Only an explicit approval runs the query: the form's `decision` must be `approve` in an
//!   `accept` answer. Decline, cancel, a timeout, a client without the capability, a session
//!   on a protocol that forbids server-to-client requests, and any other answer are refusals.
//! - An approval belongs to the call that asked: it is awaited inside that call, and nothing
//!   about it is kept, so it cannot be replayed.

use std::time::{Duration, Instant};

use rmcp::model::{ElicitRequestParams, ElicitationAction, ElicitationSchema};
use rmcp::service::{ElicitationMode, Peer, ServiceError};
use rmcp::RoleServer;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::policy::Reason;

/// How long the person has to answer unless configured (`approval_timeout_s`).
pub const DEFAULT_APPROVAL_TIMEOUT_S: u64 = 120;

/// How long a person has to answer: `approval_timeout_s`, at least one second.
pub fn timeout(configured: Option<u64>) -> Duration {
    Duration::from_secs(configured.unwrap_or(DEFAULT_APPROVAL_TIMEOUT_S).max(1))
}

/// Query texts longer than this are not put before a person: they are refused instead.
const MAX_SHOWN_QUERY_BYTES: usize = 16 * 1024;

/// What the person (or their client) answered, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Approved,
    Declined,
    Cancelled,
    TimedOut,
    /// The client cannot be asked: no elicitation capability, or a protocol without
    /// server-to-client requests.
    Unsupported,
    /// The client answered something other than an approval or a refusal.
    Malformed,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Approved => "approved",
            Answer::Declined => "declined",
            Answer::Cancelled => "cancelled",
            Answer::TimedOut => "timed_out",
            Answer::Unsupported => "unsupported",
            Answer::Malformed => "malformed",
        }
    }
}

/// The outcome of one ask: the answer, how long it took, and the detail behind a refusal.
#[derive(Debug, Clone)]
pub struct Asked {
    pub answer: Answer,
    pub waited: Duration,
    pub detail: String,
}

impl Asked {
    pub fn approved(&self) -> bool {
        self.answer == Answer::Approved
    }

    /// The agent's message for a call that was not approved: why, and what to do.
    pub fn refusal(&self, asks: &[Reason], database: &str) -> String {
        let mut m = String::from("The sqlguard policy needs a person to approve this query");
        m.push_str(&format!(" on {database}, and it was not approved: "));
        m.push_str(&self.detail);
        m.push_str(". Nothing was run. Why approval is needed:");
        let mut m = crate::policy::listed(&m, asks);
        m.push_str(match self.answer {
            Answer::Declined | Answer::Cancelled => {
                "\nDo not retry it unchanged: ask the person what they want instead."
            }
            Answer::TimedOut => "\nAsk the person to be ready to answer, then call the tool again.",
            _ => "\nUse an MCP client that supports elicitation (forms), or ask the operator to allow this query without approval.",
        });
        m
    }
}

/// Who is asked and for how long: the session's client, within one call.
pub struct Approver {
    pub peer: Peer<RoleServer>,
    pub timeout: Duration,
    /// Cancelled when the client cancels the tool call.
    pub cancelled: CancellationToken,
}

/// The text the person reads.
fn prompt(database: &str, sql: &str, asks: &[Reason], step: &str) -> String {
    let mut m = format!(
        "An AI agent wants to run this query on {database}. The sqlguard policy asks you to approve it"
    );
    m.push_str(if step == "plan" {
        " (PostgreSQL has planned it; nothing has run yet):"
    } else {
        " (nothing has run yet):"
    });
    let mut m = crate::policy::listed(&m, asks);
    m.push_str("\n\nThe query, exactly as the agent wrote it (its comments are the agent's words, not sqlguard's):\n\n");
    m.push_str(sql);
    m.push_str("\n\nApprove runs it once, read-only; decline refuses it.");
    m
}

/// The form: one required choice.
fn form() -> Result<ElicitationSchema, String> {
    let schema = json!({
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Run this query?",
                "enum": ["approve", "decline"],
            }
        },
        "required": ["decision"],
    });
    let serde_json::Value::Object(map) = schema else {
        return Err("the approval form is not an object".into());
    };
    ElicitationSchema::from_json_schema(map).map_err(|e| format!("the approval form: {e}"))
}

impl Approver {
    /// Asks the person to approve `sql` on `database` for `asks`; `step` is `query` or `plan`.
    pub async fn ask(&self, database: &str, sql: &str, asks: &[Reason], step: &str) -> Asked {
        let started = Instant::now();
        let done = |answer, detail: String| Asked {
            answer,
            waited: started.elapsed(),
            detail,
        };
        if !self
            .peer
            .supported_elicitation_modes()
            .contains(&ElicitationMode::Form)
        {
            return done(
                Answer::Unsupported,
                "this MCP client did not declare the elicitation capability (forms) when it connected, so sqlguard cannot ask its user".into(),
            );
        }
        if sql.len() > MAX_SHOWN_QUERY_BYTES {
            return done(
                Answer::Unsupported,
                format!("the query is {} bytes, too long to show a person in full (at most {MAX_SHOWN_QUERY_BYTES}); send a shorter query", sql.len()),
            );
        }
        let requested_schema = match form() {
            Ok(s) => s,
            Err(e) => return done(Answer::Unsupported, e),
        };
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: prompt(database, sql, asks, step),
            requested_schema,
        };
        let request = self
            .peer
            .create_elicitation_with_timeout(params, Some(self.timeout));
        let answered = tokio::select! {
            r = request => r,
            () = self.cancelled.cancelled() => {
                return done(Answer::Cancelled, "the tool call was cancelled while waiting for the person".into());
            }
        };
        match answered {
            Ok(result) => {
                let (answer, detail) = read_answer(result);
                done(answer, detail)
            }
            Err(ServiceError::Timeout { .. }) => done(
                Answer::TimedOut,
                format!(
                    "nobody answered within {} s (approval_timeout_s)",
                    self.timeout.as_secs()
                ),
            ),
            Err(ServiceError::McpError(e)) => done(
                Answer::Unsupported,
                format!(
                    "the approval request could not be sent to this client: {}",
                    e.message
                ),
            ),
            Err(e) => done(
                Answer::Unsupported,
                format!("the request could not reach the person: {e}"),
            ),
        }
    }
}

/// What the client's answer means: only `accept` with `decision = approve` approves.
fn read_answer(result: rmcp::model::ElicitResult) -> (Answer, String) {
    match (result.action, result.content) {
        (ElicitationAction::Accept, Some(content)) => {
            match content.get("decision").and_then(|v| v.as_str()) {
                Some("approve") => (Answer::Approved, String::new()),
                Some("decline") => (Answer::Declined, "the person chose decline".into()),
                _ => (
                    Answer::Malformed,
                    format!("the client's answer {content} is neither approve nor decline"),
                ),
            }
        }
        (ElicitationAction::Accept, None) => (
            Answer::Malformed,
            "the client accepted without an answer to the form".into(),
        ),
        (ElicitationAction::Decline, _) => (Answer::Declined, "the person declined".into()),
        (ElicitationAction::Cancel, _) => (
            Answer::Cancelled,
            "the person dismissed the request without answering".into(),
        ),
        (other, _) => (Answer::Malformed, format!("the client answered {other:?}")),
    }
}
