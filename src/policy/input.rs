//! The policy input document: `{query, database, identity, tool}`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::plan::PlanFacts;
use crate::analysis::Facts;

/// The database a call targets, as policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DatabaseContext {
    /// Resource URI without query (`teleport://clusters/c/databases/d`).
    pub uri: String,
    pub cluster: String,
    pub name: String,
    pub db_name: String,
    pub db_user: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Who is calling: the Teleport identity from the user's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub traits: BTreeMap<String, Vec<String>>,
    /// Where the identity comes from: `teleport` (the user's certificate, verified by
    /// Teleport), `configuration` (an `identity` entry of the configuration, for databases
    /// reached without Teleport: not verified by anyone), or `local` (the operating system's
    /// user, no roles).
    #[serde(default)]
    pub source: IdentitySource,
}

/// Who vouches for an [`Identity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    Teleport,
    Configuration,
    #[default]
    Local,
}

/// Everything a decision is made on.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput<'a> {
    /// The facts of the SQL text (absent for tools that carry no query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a Facts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'a DatabaseContext>,
    pub identity: &'a Identity,
    pub tool: &'a str,
    /// PostgreSQL's plan of the query, when the policy asked for it and the static decision
    /// allowed the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<&'a PlanFacts>,
}
