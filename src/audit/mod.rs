//! The audit log: one JSON line per event, tamper-evident, written before a query reaches the
//! database.
//!
//! - Every allowed call writes an `intent` record (flushed) *before* its query is sent, then an
//!   `outcome` record; a denied call writes one `decision` record. A process killed with calls
//!   in flight leaves a record of every query the database saw.
//! - Each line carries `prev`, the link of the line before it. A link is the line's SHA-256, or
//!   its HMAC-SHA256 under a key kept outside the log (`audit_key_file` / `audit_key_env`): without
//!   the key an edited line cannot be re-chained unnoticed.
//! - A head anchor beside the log (`FILE.head`: record count and last link, MACed when keyed)
//!   makes removing records from the end detectable.
//! - A line torn by a crash or a full disk is moved aside (`FILE.torn-SECONDS`) on the next
//!   start, and the chain goes on from the last good record with a `recovered` record.
//! - The files are created 0600; query texts over `audit_query_max_bytes` are stored as a prefix
//!   and a hash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod query;
pub mod ship;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Query texts longer than this are stored as prefix + hash unless configured otherwise.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 4096;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn query_hash(sql: &str) -> String {
    format!("sha256:{}", sha256_hex(sql.as_bytes()))
}

/// How lines are linked: with a key, HMAC-SHA256; without, SHA-256.
#[derive(Clone)]
struct Chain {
    key: Option<Vec<u8>>,
}

impl Chain {
    fn link(&self, data: &[u8]) -> String {
        match &self.key {
            Some(key) => {
                // HMAC accepts keys of any length.
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
                    return sha256_hex(data);
                };
                mac.update(data);
                hex(&mac.finalize().into_bytes())
            }
            None => sha256_hex(data),
        }
    }

    fn name(&self) -> &'static str {
        if self.key.is_some() {
            "hmac-sha256"
        } else {
            "sha256"
        }
    }
}

/// Where the key of a keyed chain comes from (never from the log itself).
#[derive(Debug, Clone, Default)]
pub struct AuditKey {
    /// What the key is for, as the configuration names it (`audit_key`, `mask_key`).
    pub setting: &'static str,
    pub file: Option<PathBuf>,
    /// The name of an environment variable holding the key.
    pub env: Option<String>,
}

impl AuditKey {
    /// The key's bytes, `None` when none is configured.
    pub fn load(&self) -> Result<Option<Vec<u8>>, String> {
        if let Some(f) = &self.file {
            let text = std::fs::read(f).map_err(|e| {
                format!("cannot read the {} file {}: {e}", self.setting, f.display())
            })?;
            let key = text.trim_ascii().to_vec();
            if key.is_empty() {
                return Err(format!(
                    "the {} file {} is empty",
                    self.setting,
                    f.display()
                ));
            }
            return Ok(Some(key));
        }
        if let Some(var) = &self.env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().as_bytes().to_vec())),
                _ => Err(format!(
                    "the {0} variable {var} is not set ({0}_env): set it, or remove {0}_env",
                    self.setting
                )),
            };
        }
        Ok(None)
    }
}

/// The query text as the log keeps it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum QueryText {
    Text {
        query: String,
    },
    Hash {
        query_hash: String,
    },
    /// A long text: its first bytes, its hash and its size.
    Prefix {
        query_prefix: String,
        query_hash: String,
        query_bytes: usize,
    },
}

impl QueryText {
    pub fn new(sql: &str, hash_only: bool, max_bytes: usize) -> QueryText {
        if hash_only {
            return QueryText::Hash {
                query_hash: query_hash(sql),
            };
        }
        if sql.len() <= max_bytes {
            return QueryText::Text {
                query: sql.to_string(),
            };
        }
        let mut end = max_bytes;
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        QueryText::Prefix {
            query_prefix: sql[..end].to_string(),
            query_hash: query_hash(sql),
            query_bytes: sql.len(),
        }
    }
}

/// Who called.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub user: String,
    pub roles: Vec<String>,
    /// `teleport`, `configuration` or `local` ([`crate::policy::IdentitySource`]).
    pub source: crate::policy::IdentitySource,
}

impl Caller {
    pub fn of(identity: &crate::policy::Identity) -> Caller {
        Caller {
            user: identity.user.clone(),
            roles: identity.roles.clone(),
            source: identity.source,
        }
    }
}

/// The MCP client, from its `initialize` request's `clientInfo`.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRecord {
    pub name: String,
    pub version: String,
}

/// What every call record says about the server session and the policy that decided.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRecord {
    /// One per server process (one MCP session over stdio).
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRecord>,
    pub policy_digest: String,
    /// The bundles' `.manifest` revisions, base first, when they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_revision: Option<String>,
}

/// The final verdict of a call, one field a filter can trust: on a `decision` record (a call
/// refused or failed before anything ran) and on an `outcome` record (what became of an
/// allowed call); an `intent` record says `pending`.
pub mod verdict {
    pub const ALLOWED: &str = "allowed";
    pub const DENIED: &str = "denied";
    pub const DENIED_BY_PLAN: &str = "denied_by_plan";
    pub const FAILED: &str = "failed";
    pub const PENDING: &str = "pending";
    /// The policy asked a person to approve the call, and it was not approved (declined,
    /// cancelled, timed out, or the client could not be asked): nothing ran.
    pub const UNAPPROVED: &str = "unapproved";
    pub const ALL: [&str; 6] = [ALLOWED, DENIED, DENIED_BY_PLAN, FAILED, PENDING, UNAPPROVED];
}

/// A server's start, policy reload (accepted or refused) or stop.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleRecord {
    pub time: String,
    /// `start`, `reload` or `stop`.
    pub event: &'static str,
    pub session_id: String,
    pub version: &'static str,
    /// The policy deciding from now on (the old one when a reload is refused).
    pub policy_digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_revision: Option<String>,
    /// What the bundle was built from, base first.
    pub sources: Vec<String>,
    /// For a reload: whether the new bundle was taken, and why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a reload: the digest of the files that were refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_digest: Option<String>,
}

/// Time spent, in µs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_us: Option<u64>,
    /// The decision came from the decision cache (the bundle was not evaluated again).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// The facts and the decision came from the shape cache (the text was not parsed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shape_cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_us: Option<u64>,
}

/// What a call was and what the policy decided: the `decision` record of a refused call, the
/// `intent` record of an allowed one (written before its query is sent).
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub time: String,
    pub event: &'static str,
    pub decision_id: String,
    #[serde(flatten)]
    pub session: SessionRecord,
    /// The database's resource URI (as the call named it when it names none served).
    pub database: String,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub identity: Caller,
    /// The tool called, or `resources/read`.
    pub tool: &'static str,
    /// The resource read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub query: Option<QueryText>,
    pub allow: bool,
    /// [`verdict`]: final on a `decision` record, `pending` on an `intent`.
    pub verdict: &'static str,
    /// The names of the rules that refused (every reason's `rule`).
    pub rules: Vec<String>,
    pub reasons: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<Value>,
    /// Why an allowed call could not run (no route to the database).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The person's answer, when the policy asked for approval before the query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    pub timings: Timings,
}

/// A policy's ask and the person's answer.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalRecord {
    /// `query` (before anything ran) or `plan` (after PostgreSQL planned it).
    pub step: &'static str,
    /// `approved`, `declined`, `cancelled`, `timed_out`, `unsupported` or `malformed`.
    pub answer: &'static str,
    /// The rules that asked.
    pub rules: Vec<String>,
    /// How long the answer took, in ms.
    pub wait_ms: u64,
    /// Why it was not approved.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What happened to an allowed call's query.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeRecord {
    pub time: String,
    pub event: &'static str,
    pub decision_id: String,
    pub session_id: String,
    /// [`verdict`]: `allowed`, `denied_by_plan`, `unapproved` or `failed`; final.
    pub verdict: &'static str,
    /// The plan rules that refused, when the plan step refused.
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// The result columns whose values were masked: `{column, source}` (the masked table
    /// column, absent for a column PostgreSQL does not attribute to one). Never their values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<MaskedRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The plan step, when the policy asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRecord>,
    /// The person's answer, when the plan step asked for approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    pub timings: Timings,
}

/// A result column whose values were masked.
#[derive(Debug, Clone, Serialize)]
pub struct MaskedRecord {
    pub column: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// What the plan step saw and decided (the plan's estimates, not its text).
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    pub allow: bool,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub reasons: serde_json::Value,
    pub total_cost: f64,
    pub rows: f64,
    pub nodes: usize,
    /// The second decision's time, in microseconds.
    pub policy_us: u64,
}

impl PlanRecord {
    pub fn of(
        plan: &crate::analysis::plan::PlanFacts,
        allow: bool,
        reasons: serde_json::Value,
        policy_us: u64,
    ) -> PlanRecord {
        PlanRecord {
            allow,
            reasons,
            total_cost: plan.total_cost,
            rows: plan.rows,
            nodes: plan.nodes.len(),
            policy_us,
        }
    }
}

/// The start-up repair of a torn last line.
#[derive(Debug, Clone, Serialize)]
struct RecoveredRecord {
    time: String,
    event: &'static str,
    torn_bytes: usize,
    kept_in: String,
}

struct Writer {
    file: File,
    /// Length of the file up to its last whole line.
    len: u64,
    prev: String,
    records: u64,
}

pub struct AuditLog {
    path: PathBuf,
    chain: Chain,
    inner: Mutex<Writer>,
}

fn anchor_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn create_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).read(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// Links of every whole line of `text`, in order.
fn links(chain: &Chain, text: &[u8]) -> Vec<String> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| chain.link(l))
        .collect()
}

impl AuditLog {
    /// Opens (or creates) the log for appending, continuing its chain. A torn last line is
    /// moved aside and recorded; the returned message says so (for stderr).
    pub fn open(path: &Path, key: Option<Vec<u8>>) -> Result<(AuditLog, Option<String>), String> {
        let chain = Chain { key };
        let fail = |what: &str, e: std::io::Error| {
            format!("cannot {what} the audit log {}: {e}", path.display())
        };
        let mut file = create_private(path).map_err(|e| fail("open", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut text = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(|e| fail("read", e))?;
        file.read_to_end(&mut text).map_err(|e| fail("read", e))?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut notice = None;
        let torn = text.len() - whole;
        if torn > 0 {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let mut aside = path.as_os_str().to_owned();
            aside.push(format!(".torn-{secs}"));
            let aside = PathBuf::from(aside);
            let mut f = create_private(&aside).map_err(|e| fail("keep the torn line of", e))?;
            f.write_all(&text[whole..])
                .and_then(|_| f.sync_all())
                .map_err(|e| fail("keep the torn line of", e))?;
            file.set_len(whole as u64).map_err(|e| fail("repair", e))?;
            notice = Some(format!(
                "the audit log {} ended in a torn line ({torn} bytes, from a crash or a full disk): it was moved to {} and the chain continues from the last whole record",
                path.display(),
                aside.display()
            ));
            text.truncate(whole);
            let all = links(&chain, &text);
            let log = AuditLog {
                path: path.to_path_buf(),
                chain: chain.clone(),
                inner: Mutex::new(Writer {
                    file,
                    len: whole as u64,
                    prev: all.last().cloned().unwrap_or_else(|| GENESIS.into()),
                    records: all.len() as u64,
                }),
            };
            log.append(&RecoveredRecord {
                time: now_rfc3339(),
                event: "recovered",
                torn_bytes: torn,
                kept_in: aside.display().to_string(),
            })?;
            return Ok((log, notice));
        }
        let all = links(&chain, &text);
        Ok((
            AuditLog {
                path: path.to_path_buf(),
                chain,
                inner: Mutex::new(Writer {
                    file,
                    len: whole as u64,
                    prev: all.last().cloned().unwrap_or_else(|| GENESIS.into()),
                    records: all.len() as u64,
                }),
            },
            notice,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` (serialized as an object) with `prev` and `chain` set; the line is
    /// written and flushed whole, or not at all (a failed write is cut off again), then the
    /// head anchor is moved.
    pub fn append<T: Serialize>(&self, record: &T) -> Result<(), String> {
        let mut value = serde_json::to_value(record).map_err(|e| e.to_string())?;
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| "the audit log lock is poisoned".to_string())?;
        let w = &mut *guard;
        value["prev"] = Value::String(w.prev.clone());
        value["chain"] = Value::from(self.chain.name());
        let mut line = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
        let link = self.chain.link(&line);
        line.push(b'\n');
        if let Err(e) = w.file.write_all(&line).and_then(|_| w.file.flush()) {
            let _ = w.file.set_len(w.len);
            return Err(format!(
                "cannot write the audit log {}: {e}",
                self.path.display()
            ));
        }
        w.len += line.len() as u64;
        w.prev = link;
        w.records += 1;
        self.write_anchor(w.records, &w.prev)
    }

    fn write_anchor(&self, records: u64, last: &str) -> Result<(), String> {
        let anchor = anchor_path(&self.path);
        let mut tmp = anchor.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::json!({
            "records": records,
            "last": last,
            "mac": self.chain.link(format!("{records}:{last}").as_bytes()),
        })
        .to_string();
        let _ = std::fs::remove_file(&tmp);
        create_private(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, &anchor))
            .map_err(|e| {
                format!(
                    "cannot write the audit head anchor {}: {e}",
                    anchor.display()
                )
            })
    }
}

/// Checks the log at `path` (with the key if the chain is keyed): returns the number of
/// records, or the first problem with its line number.
pub fn verify(path: &Path, key: Option<Vec<u8>>) -> Result<usize, String> {
    verify_log(path, key).map_err(|e| match e {
        VerifyError::NeedsKey => NEEDS_KEY.to_string(),
        VerifyError::Broken(m) => m,
    })
}

/// What `verify` says of a keyed log checked without its key.
pub const NEEDS_KEY: &str = "the chain is keyed (HMAC) and no key was given, so it cannot be checked: pass the key with --key-file FILE or --key-env VARIABLE";

/// Why a log does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The chain is keyed and no key was given: nothing is known to be wrong.
    NeedsKey,
    /// The log, or its head anchor, is not what sqlguard wrote.
    Broken(String),
}

/// Like [`verify`], telling a missing key from a broken log. Reads the log as a stream: the
/// memory it needs does not grow with the log.
pub fn verify_log(path: &Path, key: Option<Vec<u8>>) -> Result<usize, VerifyError> {
    let mut reader = ChainReader::open(path, key)?;
    while reader.next_line()?.is_some() {}
    reader.finish()
}

/// The head anchor as read (its MAC is checked by [`ChainReader::finish`]).
struct Anchor {
    records: usize,
    last: String,
    mac: Option<String>,
}

/// Reads an audit log line by line, checking each line's link to the one before it; the head
/// anchor is checked at the end ([`ChainReader::finish`]).
pub struct ChainReader {
    input: std::io::BufReader<File>,
    chain: Chain,
    prev: String,
    line_no: usize,
    records: usize,
    line: Vec<u8>,
    anchor_path: PathBuf,
    anchor: Option<Result<Anchor, String>>,
    /// The link of record `anchor.records`, once read.
    anchored_link: Option<String>,
}

/// The two fields of a line the chain needs.
#[derive(serde::Deserialize)]
struct Links<'a> {
    #[serde(borrow, default)]
    prev: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    chain: Option<std::borrow::Cow<'a, str>>,
}

impl ChainReader {
    pub fn open(path: &Path, key: Option<Vec<u8>>) -> Result<ChainReader, VerifyError> {
        let file = File::open(path)
            .map_err(|e| VerifyError::Broken(format!("cannot open {}: {e}", path.display())))?;
        let anchor_path = anchor_path(path);
        let anchor = std::fs::read_to_string(&anchor_path).ok().map(|a| {
            let v: Value = serde_json::from_str(&a).map_err(|e| {
                format!("the head anchor {} is not JSON: {e}", anchor_path.display())
            })?;
            Ok(Anchor {
                records: v["records"].as_u64().unwrap_or(0) as usize,
                last: v["last"].as_str().unwrap_or("").to_string(),
                mac: v["mac"].as_str().map(str::to_string),
            })
        });
        Ok(ChainReader {
            input: std::io::BufReader::with_capacity(1 << 20, file),
            chain: Chain { key },
            prev: GENESIS.to_string(),
            line_no: 0,
            records: 0,
            line: Vec::with_capacity(4096),
            anchor_path,
            anchor,
            anchored_link: None,
        })
    }

    /// The number of the line last returned (1-based).
    pub fn line_no(&self) -> usize {
        self.line_no
    }

    /// The next record's line (without its line end), its link checked; `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, VerifyError> {
        let broken = VerifyError::Broken;
        loop {
            self.line.clear();
            let n = std::io::BufRead::read_until(&mut self.input, b'\n', &mut self.line)
                .map_err(|e| broken(format!("cannot read the log: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let line_no = self.line_no;
            if self.line.pop() != Some(b'\n') {
                return Err(broken(format!(
                    "line {line_no}: torn (no line end): the writer crashed or the disk filled; the next start of sqlguard moves it aside"
                )));
            }
            if !self.line.is_empty() {
                break;
            }
        }
        let line_no = self.line_no;
        let links: Links<'_> = serde_json::from_slice(&self.line)
            .map_err(|e| broken(format!("line {line_no}: not JSON: {e}")))?;
        match (links.chain.as_deref(), self.chain.key.is_some()) {
            (Some("hmac-sha256"), false) => return Err(VerifyError::NeedsKey),
            (Some("hmac-sha256"), true) => {}
            (_, true) => {
                return Err(broken(format!(
                    "line {line_no}: not keyed, but a key was given: the line was rewritten without the key"
                )))
            }
            _ => {}
        }
        if links.prev.as_deref() != Some(self.prev.as_str()) {
            return Err(broken(format!(
                "line {line_no}: the chain is broken: the line before it was changed, removed or inserted{}",
                if self.chain.key.is_some() { ", or this line was re-chained without the key" } else { "" }
            )));
        }
        self.prev = self.chain.link(&self.line);
        self.records += 1;
        if let Some(Ok(a)) = &self.anchor {
            if a.records == self.records {
                self.anchored_link = Some(self.prev.clone());
            }
        }
        Ok(Some(&self.line))
    }

    /// Checks the head anchor against what was read: the number of records.
    pub fn finish(self) -> Result<usize, VerifyError> {
        let broken = VerifyError::Broken;
        let n = self.records;
        match self.anchor {
            Some(Err(e)) => return Err(broken(e)),
            Some(Ok(a)) => {
                let records = a.records;
                if a.mac.as_deref()
                    != Some(
                        self.chain
                            .link(format!("{records}:{}", a.last).as_bytes())
                            .as_str(),
                    )
                {
                    return Err(broken(format!(
                        "the head anchor {} does not match its MAC: it was forged or the key is wrong",
                        self.anchor_path.display()
                    )));
                }
                if n < records {
                    return Err(broken(format!(
                        "line {}: the log ends after {n} records, but its head anchor says {records}: records were removed from the end",
                        self.line_no + 1
                    )));
                }
                // The log may be one record ahead (a crash between the line and the anchor).
                if records > 0 && self.anchored_link.as_deref() != Some(a.last.as_str()) {
                    return Err(broken(format!(
                        "line {records}: does not match the head anchor: the log was rewritten"
                    )));
                }
            }
            None if self.chain.key.is_some() => {
                return Err(broken(format!(
                    "no head anchor {}: removal of records from the end cannot be ruled out",
                    self.anchor_path.display()
                )))
            }
            None => {}
        }
        Ok(n)
    }
}

/// The current time as RFC 3339 in UTC, with microseconds.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}Z", rfc3339_at(d.as_secs()), d.subsec_micros())
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time: the log's times without fraction and zone.
pub fn rfc3339_at(secs: u64) -> String {
    let secs = secs as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_queries_keep_a_prefix_on_a_char_boundary() {
        match QueryText::new("SELECT 'ééé'", false, 11) {
            QueryText::Prefix {
                query_prefix,
                query_bytes,
                ..
            } => assert_eq!((query_prefix.as_str(), query_bytes), ("SELECT 'é", 15)),
            other => panic!("{other:?}"),
        }
    }
}
