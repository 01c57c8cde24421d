//! The server's configuration file (TOML) and command-line databases.
//!
//! ```toml
//! policy = ["team"]                # layers over the built-in bundle (or one whole bundle)
//! data = ["tables.json"]           # more data: schema-checked, merged as OPA merges data
//! search_path = ["pg_catalog", "public"]
//! audit_log = "/var/log/sqlguard/audit.jsonl"
//! audit_query = "text"             # or "hash"
//! audit_fail_closed = true
//! mask_key_file = "mask.key"   # the key of `hash` masks (or mask_key_env = "VAR")
//! max_query_bytes = 65536
//! approval_timeout_s = 120     # how long a person has to answer a policy's ask
//! pool_size = 4
//! connect_timeout_ms = 10000   # opening a connection and starting its session
//! pool_wait_ms = 15000         # waiting for a connection other calls hold
//! idle_timeout_s = 300         # an unused connection is closed after this long
//! decision_cache_entries = 4096  # decisions kept per loaded policy; 0 turns the cache off
//! evaluator = "compiled"       # or "interpreter": regorus' reference evaluator, 3–5× slower
//! catalog = true               # resolve names against each database's own catalog
//! catalog_refresh_s = 300      # read it again when older than this (and on reload)
//!
//! [decision_log]               # every audit record to a collector, in OPA's format
//! url = "https://logs.example.com/logs"
//! ca = "collector-ca.pem"      # spool = "decisions.spool", token_env = "VAR", labels = {…}
//!
//! [http]                     # serve --listen ADDR: MCP over HTTP behind Teleport's app access
//! jwks_url = "https://teleport.example.com/.well-known/jwks.json"
//! audience = "http://sqlguard:8080"   # the aud Teleport signs for the app
//!
//! [limits.per_user]           # per identity; over either, a call is refused, never queued
//! concurrent = 4
//! per_minute = 120
//!
//! [identity]                   # who calls dsn databases (no Teleport): NOT verified
//! user = "alice"
//! roles = ["contractor"]
//!
//! [[database]]
//! uri = "teleport://clusters/local/databases/shop?dbName=shop&dbUser=agent"
//! dsn = "postgres://agent@127.0.0.1:5432/shop"   # optional: a direct connection
//! labels = { env = "dev" }
//! identity = { user = "bob", roles = ["auditor"] }  # this dsn database's, over [identity]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::teleport::DatabaseUri;
pub use crate::teleport::Mode;

/// The default cap on one query's text: larger texts are refused before analysis.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub policy: Vec<PathBuf>,
    #[serde(default)]
    pub data: Vec<PathBuf>,
    pub search_path: Option<Vec<String>>,
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub audit_query: AuditQuery,
    /// When the audit log cannot be written, deny the call (default true).
    pub audit_fail_closed: Option<bool>,
    /// A file holding the key of the audit log's HMAC chain (never stored in the log).
    pub audit_key_file: Option<PathBuf>,
    /// The name of an environment variable holding that key.
    pub audit_key_env: Option<String>,
    /// A file holding the key of `hash` masks (columns.mask): equal values hash alike under
    /// one key, and without it nobody can try short values against the hashes.
    pub mask_key_file: Option<PathBuf>,
    /// The name of an environment variable holding that key.
    pub mask_key_env: Option<String>,
    /// Query texts longer than this are logged as a prefix and a hash (default 4096).
    pub audit_query_max_bytes: Option<usize>,
    pub max_query_bytes: Option<usize>,
    /// How long the person at the MCP client has to approve a call the policy asks about, in
    /// seconds (default 120); no answer in time is a refusal.
    pub approval_timeout_s: Option<u64>,
    pub pool_size: Option<usize>,
    /// Opening a database connection and starting its session, in ms (default 10000).
    pub connect_timeout_ms: Option<u64>,
    /// Waiting for a pooled connection another call holds, in ms (default 15000).
    pub pool_wait_ms: Option<u64>,
    /// An unused database connection is closed after this many seconds (default 300).
    pub idle_timeout_s: Option<u64>,
    /// Lock timeout pinned on every session, in ms.
    pub lock_timeout_ms: Option<u64>,
    /// Decisions kept for equal policy inputs (default 4096; 0: off).
    pub decision_cache_entries: Option<usize>,
    /// Which evaluator decides (default compiled: regorus' patched RVM, when the bundle
    /// compiles and agrees with the interpreter at load).
    pub evaluator: Option<crate::policy::Evaluator>,
    /// Resolve names against each database's own catalog (default true).
    pub catalog: Option<bool>,
    /// A catalog snapshot older than this is read again at the next call (default 300 s).
    pub catalog_refresh_s: Option<u64>,
    #[serde(default)]
    pub teleport: TeleportConfig,
    /// Ship every audit record to a decision-log collector, in OPA's format.
    pub decision_log: Option<crate::audit::ship::DecisionLogConfig>,
    /// The identity policies see on databases reached without Teleport (a `dsn`), where no
    /// certificate says who calls. Not verified: policy input marks it
    /// `"source": "configuration"`.
    pub identity: Option<IdentityConfig>,
    /// Limits on the server's callers.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `serve --listen`: MCP over streamable HTTP with Teleport's JWT.
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseConfig>,
}

/// `[http]` of the configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The cluster's JWKS: `https://PROXY/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// A CA certificate (PEM) to trust for the JWKS endpoint, besides the system's roots.
    pub jwks_ca: Option<PathBuf>,
    /// The `aud` the tokens must name: the app's URI as Teleport sees it.
    pub audience: Option<String>,
    /// The `iss` the tokens must name (the Teleport cluster's name), when set.
    pub issuer: Option<String>,
    /// Host names the server answers to (the `Host` header), besides localhost.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Serve without tokens: every caller is this machine's user. Local tests only.
    #[serde(default)]
    pub insecure_no_auth: bool,
    /// The largest request body, in bytes (default 1 MiB).
    pub max_body_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditQuery {
    #[default]
    Text,
    Hash,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TeleportConfig {
    /// `$TELEPORT_HOME` (default `~/.tsh`).
    pub home: Option<PathBuf>,
    /// Path of the `tsh` executable for tunnel mode.
    pub tsh: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the proxy's web certificate, besides the system's
    /// roots and the cluster's CAs in the tsh home (like `tsh --cacert`'s role for the proxy).
    pub ca: Option<PathBuf>,
    /// Do not verify the proxy's certificate at all, like `tsh --insecure`: for test clusters
    /// only; `doctor` warns about it.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub uri: String,
    pub dsn: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub description: String,
    /// This dsn database's caller identity, over the top-level `[identity]`.
    pub identity: Option<IdentityConfig>,
}

/// A configured caller identity (for databases reached without Teleport).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub user: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub traits: BTreeMap<String, Vec<String>>,
}

impl IdentityConfig {
    fn identity(&self) -> crate::policy::Identity {
        crate::policy::Identity {
            user: self.user.clone(),
            roles: self.roles.clone(),
            traits: self.traits.clone(),
            source: crate::policy::IdentitySource::Configuration,
        }
    }
}

/// A database the server serves, checked.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    pub uri: DatabaseUri,
    pub dsn: Option<String>,
    pub mode: Mode,
    pub labels: BTreeMap<String, String>,
    pub description: String,
    /// The configured caller identity, for a dsn database (Teleport's otherwise).
    pub identity: Option<crate::policy::Identity>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| format!("invalid configuration {}: {e}", path.display()))?;
        // Relative paths are relative to the configuration file.
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.policy.iter_mut().for_each(fix);
        config.data.iter_mut().for_each(fix);
        if let Some(p) = config.audit_log.as_mut() {
            fix(p);
        }
        if let Some(p) = config.audit_key_file.as_mut() {
            fix(p);
        }
        if let Some(p) = config.mask_key_file.as_mut() {
            fix(p);
        }
        if let Some(p) = config.teleport.ca.as_mut() {
            fix(p);
        }
        if let Some(d) = config.decision_log.as_mut() {
            d.spool.iter_mut().for_each(fix);
            d.ca.iter_mut().for_each(fix);
            if d.spool.is_none() {
                let dir = config
                    .audit_log
                    .as_ref()
                    .and_then(|a| a.parent())
                    .unwrap_or(base);
                d.spool = Some(dir.join("decisions.spool"));
            }
        }
        Ok(config)
    }

    /// The configured databases plus `uris` from the command line, checked like Teleport
    /// checks its list: full URIs, one cluster, no duplicates.
    pub fn database_specs(&self, uris: &[String]) -> Result<Vec<DatabaseSpec>, String> {
        let mut specs = Vec::new();
        for d in &self.databases {
            let uri = DatabaseUri::parse(&d.uri).map_err(|e| e.to_string())?;
            let mode = match (d.mode, &d.dsn) {
                (Mode::Direct, None) => {
                    return Err(format!(
                        "database {} has mode = \"direct\" but no dsn: add dsn = \"postgres://…\"",
                        uri.resource()
                    ))
                }
                (Mode::Auto, Some(_)) => Mode::Direct,
                (m, _) => m,
            };
            if d.identity.is_some() && d.dsn.is_none() {
                return Err(format!(
                    "database {} sets identity but has no dsn: through Teleport the caller is \
                     the user of the tsh certificate; set identity only on dsn databases",
                    uri.resource()
                ));
            }
            let identity = d.dsn.as_ref().and_then(|_| {
                d.identity
                    .as_ref()
                    .or(self.identity.as_ref())
                    .map(IdentityConfig::identity)
            });
            specs.push(DatabaseSpec {
                uri,
                dsn: d.dsn.clone(),
                mode,
                labels: d.labels.clone(),
                description: d.description.clone(),
                identity,
            });
        }
        for s in uris {
            let uri = DatabaseUri::parse(s).map_err(|e| e.to_string())?;
            specs.push(DatabaseSpec {
                uri,
                dsn: None,
                mode: Mode::Auto,
                labels: BTreeMap::new(),
                description: String::new(),
                identity: None,
            });
        }
        crate::teleport::uri::check_set(specs.iter().map(|s| &s.uri))?;
        Ok(specs)
    }
}

/// `[limits]` of the configuration.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default)]
    pub per_user: PerUser,
}

/// `[limits.per_user]`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PerUser {
    /// Queries one user may have running at once (absent: no limit).
    pub concurrent: Option<usize>,
    /// Queries one user may start per minute (absent: no limit).
    pub per_minute: Option<usize>,
}
