//! `sqlguard audit query|summary`: a security team's questions of the log ("which queries did
//! agent X run against prod yesterday, and which were refused by which rule"), answered while
//! the chain is checked, in memory that does not grow with the log.
//!
//! A call is one row: its `decision` record, or its `intent` joined with its `outcome` by
//! `decision_id` (an intent whose outcome never came, because the server was killed with the
//! call in flight, is a row with verdict `pending` at the end).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ChainReader, VerifyError};

/// Intents waiting for their outcome beyond this many are given up as `pending` (a log of
/// a server killed many times mid-call; ordinary logs hold as many as calls in flight).
const MAX_PENDING: usize = 100_000;

/// Which calls to keep; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub user: Option<String>,
    /// A resource URI, or a database's name (its URI's last segment).
    pub database: Option<String>,
    pub labels: Vec<(String, String)>,
    /// RFC 3339 times (a prefix such as `2026-12-06` counts as its start); inclusive.
    pub since: Option<String>,
    /// Exclusive.
    pub until: Option<String>,
    pub verdict: Option<String>,
    pub rule: Option<String>,
}

/// One call, as `audit query` writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub time: String,
    pub decision_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    pub user: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub database: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The query text (or its prefix, or `sha256:…` when only the hash is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub verdict: String,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_digest: String,
    /// The person's answer when the policy asked for approval (`approved`, `declined`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

/// The fields of a record the rows are made of.
#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    time: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    decision_id: String,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    client: Option<Client>,
    #[serde(default)]
    policy_digest: String,
    #[serde(default)]
    database: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    identity: Option<Who>,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    query_prefix: Option<String>,
    #[serde(default)]
    query_hash: Option<String>,
    #[serde(default)]
    allow: Option<bool>,
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    reasons: Option<Vec<RuleOnly>>,
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    approval: Option<AnswerOnly>,
}

#[derive(Deserialize)]
struct AnswerOnly {
    #[serde(default)]
    answer: String,
}

#[derive(Deserialize)]
struct Client {
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
struct Who {
    #[serde(default)]
    user: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct RuleOnly {
    #[serde(default)]
    rule: String,
}

impl Record {
    /// The row of a `decision` or `intent` record. Records written before `verdict` existed
    /// get one from `allow`.
    fn row(self) -> Row {
        let verdict = match (self.verdict, self.event.as_str(), self.allow) {
            (Some(v), _, _) => v,
            (None, "intent", _) => super::verdict::PENDING.into(),
            (None, _, Some(true)) => super::verdict::ALLOWED.into(),
            (None, _, _) => super::verdict::DENIED.into(),
        };
        let rules = self.rules.unwrap_or_else(|| {
            self.reasons
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.rule)
                .collect()
        });
        let who = self.identity.unwrap_or(Who {
            user: String::new(),
            roles: Vec::new(),
        });
        Row {
            time: self.time,
            decision_id: self.decision_id,
            session_id: self.session_id,
            user: who.user,
            roles: who.roles,
            database: self.database,
            labels: self.labels,
            tool: self.tool,
            resource: self.resource,
            query: self.query.or(self.query_prefix).or(self.query_hash),
            verdict,
            rules,
            rows: self.rows,
            error: self.error,
            client: self.client.map(|c| format!("{} {}", c.name, c.version)),
            policy_digest: self.policy_digest,
            approval: self.approval.map(|a| a.answer),
        }
    }
}

/// `2026-12-06`, `2026-12-06T10:00:00Z` or a time ago (`30m`, `24h`, `7d`) as the log writes
/// times, for comparing.
pub fn parse_time(text: &str) -> Result<String, String> {
    let ago = |n: &str, unit: u64| -> Option<String> {
        let n: u64 = n.parse().ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(super::rfc3339_at(now.saturating_sub(n * unit)))
    };
    let relative = match text.char_indices().last() {
        Some((at, 'm')) => ago(&text[..at], 60),
        Some((at, 'h')) => ago(&text[..at], 3600),
        Some((at, 'd')) => ago(&text[..at], 86_400),
        _ => None,
    };
    if let Some(t) = relative {
        return Ok(t);
    }
    let b = text.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if date && (b.len() == 10 || b[10] == b'T') {
        Ok(text.trim_end_matches('Z').to_string())
    } else {
        Err(format!(
            "{text:?} is not a time: write 2026-12-06, 2026-12-06T10:00:00Z, or a time ago such as 30m, 24h, 7d"
        ))
    }
}

impl Filter {
    pub fn keeps(&self, row: &Row) -> bool {
        let name_of = |uri: &str| uri.rsplit('/').next().unwrap_or("").to_string();
        self.user.as_ref().is_none_or(|u| *u == row.user)
            && self
                .database
                .as_ref()
                .is_none_or(|d| *d == row.database || *d == name_of(&row.database))
            && self
                .labels
                .iter()
                .all(|(k, v)| row.labels.get(k) == Some(v))
            && self
                .since
                .as_ref()
                .is_none_or(|t| row.time.as_str() >= t.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|t| row.time.as_str() < t.as_str())
            && self.verdict.as_ref().is_none_or(|v| *v == row.verdict)
            && self
                .rule
                .as_ref()
                .is_none_or(|r| row.rules.iter().any(|x| x == r))
    }
}

/// What a read of the log found, besides the rows.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records read (every line of the chain).
    pub records: usize,
    /// Calls (rows) before filtering.
    pub calls: usize,
    /// The chain's first break, when it is broken (the rows before it were emitted).
    pub broken: Option<VerifyError>,
}

/// Calls being put together: intents wait for their outcome.
#[derive(Default)]
struct Joiner {
    pending: HashMap<String, Row>,
    order: std::collections::VecDeque<String>,
}

impl Joiner {
    /// Takes one record, and hands `done` the call it completes, if any.
    fn take(&mut self, record: Record, mut done: impl FnMut(Row)) {
        match record.event.as_str() {
            "decision" => done(record.row()),
            "intent" => {
                let id = record.decision_id.clone();
                self.pending.insert(id.clone(), record.row());
                self.order.push_back(id);
                while self.pending.len() > MAX_PENDING {
                    let Some(old) = self.order.pop_front() else {
                        break;
                    };
                    if let Some(row) = self.pending.remove(&old) {
                        done(row);
                    }
                }
            }
            "outcome" => {
                if let Some(mut row) = self.pending.remove(&record.decision_id) {
                    row.verdict = record.verdict.unwrap_or_else(|| match &record.error {
                        Some(_) => super::verdict::FAILED.into(),
                        None => super::verdict::ALLOWED.into(),
                    });
                    row.rules.extend(record.rules.unwrap_or_default());
                    row.rows = record.rows;
                    row.error = record.error;
                    if let Some(a) = record.approval {
                        row.approval = Some(a.answer);
                    }
                    done(row);
                }
            }
            _ => {}
        }
        if self.order.len() > 2 * MAX_PENDING.max(self.pending.len()) {
            let pending = &self.pending;
            self.order.retain(|id| pending.contains_key(id));
        }
    }

    /// The calls still waiting when the log ends (in flight: their query may have run).
    fn rest(mut self, mut done: impl FnMut(Row)) {
        for id in std::mem::take(&mut self.order) {
            if let Some(row) = self.pending.remove(&id) {
                done(row);
            }
        }
    }
}

/// Reads the log at `path`, checking its chain, and hands every call `filter` keeps to `emit`,
/// in the order their last record was written.
pub fn scan(
    path: &Path,
    key: Option<Vec<u8>>,
    filter: &Filter,
    mut emit: impl FnMut(Row) -> std::io::Result<()>,
) -> Result<Scan, String> {
    let mut reader = ChainReader::open(path, key).map_err(|e| match e {
        VerifyError::Broken(m) => m,
        VerifyError::NeedsKey => super::NEEDS_KEY.to_string(),
    })?;
    let mut result = Scan::default();
    let mut joiner = Joiner::default();
    // A write that fails (a closed pipe: `audit query … | head`) ends the read.
    let failed: std::cell::RefCell<Option<std::io::Error>> = std::cell::RefCell::new(None);
    let mut done = |row: Row, calls: &mut usize| {
        *calls += 1;
        if failed.borrow().is_none() && filter.keeps(&row) {
            if let Err(e) = emit(row) {
                *failed.borrow_mut() = Some(e);
            }
        }
    };
    while failed.borrow().is_none() {
        let line = match reader.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                result.broken = Some(e);
                break;
            }
        };
        result.records += 1;
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => joiner.take(record, |row| done(row, &mut result.calls)),
            Err(e) => {
                let at = reader.line_no();
                result.broken = Some(VerifyError::Broken(format!(
                    "line {at}: not a record sqlguard writes: {e}"
                )));
                break;
            }
        }
    }
    joiner.rest(|row| done(row, &mut result.calls));
    if let Some(e) = failed.into_inner() {
        return Err(format!("cannot write the answer: {e}"));
    }
    if result.broken.is_none() {
        if let Err(e) = reader.finish() {
            result.broken = Some(e);
        }
    }
    Ok(result)
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Jsonl,
    Csv,
}

/// Writes rows as they come.
pub struct Writer<W: Write> {
    out: W,
    format: Format,
    header: bool,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: Format) -> Writer<W> {
        Writer {
            out,
            format,
            header: false,
        }
    }

    pub fn row(&mut self, row: &Row) -> std::io::Result<()> {
        let name = row.database.rsplit('/').next().unwrap_or("");
        let what = row
            .query
            .as_deref()
            .or(row.resource.as_deref())
            .unwrap_or(row.tool.as_str());
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, row)?;
                self.out.write_all(b"\n")
            }
            Format::Csv => {
                if !self.header {
                    self.header = true;
                    writeln!(
                        self.out,
                        "time,decision_id,user,roles,database,tool,verdict,rules,rows,query,error"
                    )?;
                }
                let fields = [
                    row.time.clone(),
                    row.decision_id.clone(),
                    row.user.clone(),
                    row.roles.join(" "),
                    row.database.clone(),
                    row.tool.clone(),
                    row.verdict.clone(),
                    row.rules.join(" "),
                    row.rows.map(|r| r.to_string()).unwrap_or_default(),
                    what.to_string(),
                    row.error.clone().unwrap_or_default(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(self.out, "{}", line.join(","))
            }
            Format::Table => {
                if !self.header {
                    self.header = true;
                    writeln!(
                        self.out,
                        "{:<19}  {:<12}  {:<12}  {:<14}  {:<24}  QUERY",
                        "TIME", "USER", "DATABASE", "VERDICT", "RULES"
                    )?;
                }
                writeln!(
                    self.out,
                    "{:<19}  {:<12}  {:<12}  {:<14}  {:<24}  {}",
                    row.time.get(..19).unwrap_or(&row.time).replace('T', " "),
                    one_line(&row.user, 12),
                    one_line(name, 12),
                    row.verdict,
                    one_line(&row.rules.join(","), 24),
                    one_line(what, 80)
                )
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Counts for `audit summary`.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub calls: usize,
    pub by_user: BTreeMap<String, usize>,
    pub by_database: BTreeMap<String, usize>,
    pub by_verdict: BTreeMap<String, usize>,
    pub by_rule: BTreeMap<String, usize>,
    /// Calls the policy asked a person about, by the person's answer.
    pub by_approval: BTreeMap<String, usize>,
    pub first: Option<String>,
    pub last: Option<String>,
}

impl Summary {
    pub fn add(&mut self, row: &Row) {
        self.calls += 1;
        *self.by_user.entry(row.user.clone()).or_default() += 1;
        *self.by_database.entry(row.database.clone()).or_default() += 1;
        *self.by_verdict.entry(row.verdict.clone()).or_default() += 1;
        for r in &row.rules {
            *self.by_rule.entry(r.clone()).or_default() += 1;
        }
        if let Some(a) = &row.approval {
            *self.by_approval.entry(a.clone()).or_default() += 1;
        }
        if self.first.as_ref().is_none_or(|f| row.time < *f) {
            self.first = Some(row.time.clone());
        }
        if self.last.as_ref().is_none_or(|l| row.time > *l) {
            self.last = Some(row.time.clone());
        }
    }

    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} calls, {} to {}",
            self.calls,
            self.first.as_deref().unwrap_or("-"),
            self.last.as_deref().unwrap_or("-")
        )?;
        let sections = [
            ("verdict", &self.by_verdict),
            ("user", &self.by_user),
            ("database", &self.by_database),
            ("rule", &self.by_rule),
            ("approval", &self.by_approval),
        ];
        for (title, counts) in sections {
            if counts.is_empty() && title == "approval" {
                continue;
            }
            writeln!(out, "\nby {title}:")?;
            let mut sorted: Vec<(&String, &usize)> = counts.iter().collect();
            sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, n) in sorted {
                let k = if k.is_empty() { "(none)" } else { k.as_str() };
                writeln!(out, "  {n:>8}  {k}")?;
            }
        }
        Ok(())
    }
}
