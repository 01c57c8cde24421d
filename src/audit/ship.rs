//! Decision logs that leave the machine: every audit record, as an event in OPA's decision-log
//! format, POSTed in gzip JSON batches to a collector (`[decision_log] url`), the way OPA's
//! decision-log plugin ships to a logging service — so any receiver of OPA decision logs takes
//! sqlguard's.
//!
//! A call never waits for the collector: an event is appended to a local spool file (a line,
//! like the audit log's) and a thread ships the spool from a committed offset
//! (`SPOOL.offset`, written after the collector accepted a batch). A collector outage costs
//! disk, not memory, and loses nothing; a server killed with `kill -9` ships what its spool
//! holds at the next start. A batch the collector took just before a crash may arrive twice
//! (at least once); `decision_id` tells them apart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// A batch holds at most this many events…
const BATCH_EVENTS: usize = 500;
/// …and about this many bytes of them (before compression).
const BATCH_BYTES: usize = 1 << 20;
/// A spool shipped to its end and larger than this is emptied.
const COMPACT_BYTES: u64 = 16 << 20;
/// Retries back off from the first delay to the last, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_LAST: Duration = Duration::from_secs(10);

/// `[decision_log]` in the configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLogConfig {
    /// Where batches are POSTed (`https://…`, or `http://` on loopback).
    pub url: String,
    /// The spool file (default: beside the audit log, or the configuration, as
    /// `decisions.spool`).
    pub spool: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for the collector, besides the system's roots.
    pub ca: Option<PathBuf>,
    /// An environment variable holding a bearer token for the collector.
    pub token_env: Option<String>,
    /// Labels every event carries (OPA's `labels`), besides `app`, `id` and `version`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The spool and the thread that ships it.
pub struct Shipper {
    spool: Mutex<File>,
    /// Rung when an event is spooled.
    wake: (Mutex<bool>, Condvar),
    labels: Value,
}

/// The OPA decision-log event of an audit record (a `decision`, `intent` or `outcome` of a
/// call, or a server's `start`, `reload` or `stop`).
pub fn event_of(record: &Value, labels: &Value) -> Value {
    let event = record["event"].as_str().unwrap_or("");
    let path = match event {
        "decision" | "intent" | "outcome" => "sqlguard/decision",
        _ => "sqlguard/lifecycle",
    };
    let mut input = serde_json::Map::new();
    for k in [
        "tool",
        "database",
        "labels",
        "identity",
        "resource",
        "query",
        "query_prefix",
        "query_hash",
        "query_bytes",
        "client",
    ] {
        if let Some(v) = record.get(k) {
            input.insert(k.into(), v.clone());
        }
    }
    let mut result = serde_json::Map::new();
    for k in [
        "allow",
        "verdict",
        "rules",
        "reasons",
        "kinds",
        "limits",
        "error",
        "rows",
        "truncated",
        "plan",
        "accepted",
        "reason",
        "sources",
    ] {
        if let Some(v) = record.get(k) {
            result.insert(k.into(), v.clone());
        }
    }
    let us = |k: &str| record["timings"][k].as_u64().map(|v| v * 1000);
    let mut metrics = serde_json::Map::new();
    for (k, name) in [
        ("analysis_us", "timer_sqlguard_analysis_ns"),
        ("policy_us", "timer_rego_query_eval_ns"),
        ("execution_us", "timer_sqlguard_execution_ns"),
        ("total_us", "timer_server_handler_ns"),
    ] {
        if let Some(ns) = us(k) {
            metrics.insert(name.into(), ns.into());
        }
    }
    json!({
        "decision_id": record["decision_id"].as_str().map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
        "labels": labels,
        "bundles": {"sqlguard": {"revision": record["bundle_revision"]}},
        "path": path,
        "event": event,
        "session_id": record["session_id"],
        "policy_digest": record["policy_digest"],
        "input": input,
        "result": result,
        "timestamp": record["time"],
        "metrics": metrics,
    })
}

fn offset_path(spool: &Path) -> PathBuf {
    let mut p = spool.as_os_str().to_owned();
    p.push(".offset");
    PathBuf::from(p)
}

fn read_offset(spool: &Path) -> u64 {
    std::fs::read_to_string(offset_path(spool))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn write_offset(spool: &Path, offset: u64) -> std::io::Result<()> {
    let target = offset_path(spool);
    let tmp = target.with_extension("offset.tmp");
    std::fs::write(&tmp, offset.to_string())?;
    std::fs::rename(tmp, target)
}

/// The HTTP client: rustls over ring, trusting the system's roots and the configured CA.
fn agent(config: &DecisionLogConfig) -> Result<ureq::Agent, String> {
    https_agent(config.ca.as_deref(), "[decision_log] ca")
}

/// `url` if it is `https://`, or `http://` on loopback; else why not (`what` names the setting,
/// `why` says what TLS protects).
pub fn https_only(url: &str, what: &str, why: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{what} {url:?}: {e}"))?;
    let loopback = parsed
        .host_str()
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(format!(
            "{what} {url:?} must be https:// (http:// only on loopback): {why}"
        ));
    }
    Ok(parsed)
}

/// An HTTPS client (rustls over ring) trusting the system's roots and `ca` (a PEM file; `what`
/// names its setting in errors).
pub fn https_agent(ca: Option<&std::path::Path>, what: &str) -> Result<ureq::Agent, String> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{what} {}: {e}", ca.display()))?;
        roots.push(
            Certificate::from_pem(&pem)
                .map_err(|e| format!("{what} {} is not a PEM certificate: {e}", ca.display()))?,
        );
    }
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

impl Shipper {
    /// Opens the spool and starts shipping it to `config.url`.
    pub fn start(
        config: DecisionLogConfig,
        spool_path: PathBuf,
        session_id: &str,
    ) -> Result<Arc<Shipper>, String> {
        https_only(
            &config.url,
            "[decision_log] url",
            "decision logs carry query texts and identities",
        )?;
        let token =
            match &config.token_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    format!("[decision_log] token_env names {var}, which is not set")
                })?),
                None => None,
            };
        let agent = agent(&config)?;
        let spool = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&spool_path)
            .map_err(|e| {
                format!(
                    "cannot open the decision-log spool {}: {e}",
                    spool_path.display()
                )
            })?;
        let mut labels =
            json!({"app": "sqlguard", "id": session_id, "version": env!("CARGO_PKG_VERSION")});
        for (k, v) in &config.labels {
            labels[k] = json!(v);
        }
        let shipper = Arc::new(Shipper {
            spool: Mutex::new(spool),
            wake: (Mutex::new(false), Condvar::new()),
            labels,
        });
        let worker = shipper.clone();
        let url = config.url.clone();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || worker.run(&agent, &url, token.as_deref(), &spool_path))
            .map_err(|e| format!("cannot start the decision-log thread: {e}"))?;
        Ok(shipper)
    }

    /// Spools the event of one audit record (already serialized); never waits for the network.
    pub fn enqueue(&self, record: &Value) {
        let mut line = event_of(record, &self.labels).to_string();
        line.push('\n');
        let written = match self.spool.lock() {
            Ok(mut f) => f.write_all(line.as_bytes()),
            Err(_) => Err(std::io::Error::other("the spool's lock is poisoned")),
        };
        if let Err(e) = written {
            tracing::error!("DECISION LOG SPOOL WRITE FAILED: {e}");
            return;
        }
        let (lock, cv) = &self.wake;
        if let Ok(mut rung) = lock.lock() {
            *rung = true;
            cv.notify_one();
        }
    }

    fn wait(&self, timeout: Duration) {
        let (lock, cv) = &self.wake;
        if let Ok(rung) = lock.lock() {
            if let Ok((mut rung, _)) = cv.wait_timeout_while(rung, timeout, |r| !*r) {
                *rung = false;
            }
        }
    }

    /// The complete lines of the spool from `offset`, up to a batch: `(lines, bytes)`.
    fn batch(spool: &Path, offset: u64) -> std::io::Result<(Vec<String>, u64)> {
        let mut f = File::open(spool)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.take(BATCH_BYTES as u64).read_to_end(&mut buf)?;
        let mut lines = Vec::new();
        let mut used = 0usize;
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") || lines.len() == BATCH_EVENTS {
                break;
            }
            used += line.len();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if !text.trim().is_empty() {
                lines.push(text);
            }
        }
        // One event longer than a batch: shipped alone.
        if used == 0 && buf.len() == BATCH_BYTES {
            let mut f = std::io::BufReader::new(File::open(spool)?);
            f.seek(SeekFrom::Start(offset))?;
            let mut rest = Vec::new();
            std::io::BufRead::read_until(&mut f, b'\n', &mut rest)?;
            if rest.ends_with(b"\n") {
                used = rest.len();
                lines.push(String::from_utf8_lossy(&rest[..rest.len() - 1]).into_owned());
            }
        }
        Ok((lines, used as u64))
    }

    fn post(
        agent: &ureq::Agent,
        url: &str,
        token: Option<&str>,
        lines: &[String],
    ) -> Result<(), String> {
        let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(l.as_bytes());
        }
        body.push(b']');
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).map_err(|e| e.to_string())?;
        let gz = gz.finish().map_err(|e| e.to_string())?;
        let mut request = agent
            .post(url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip");
        if let Some(t) = token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        let response = request.send(&gz[..]).map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the collector answered {status}"))
        }
    }

    fn run(&self, agent: &ureq::Agent, url: &str, token: Option<&str>, spool: &Path) {
        let mut offset = read_offset(spool);
        let mut backoff = BACKOFF_FIRST;
        let mut failing = false;
        loop {
            let len = std::fs::metadata(spool).map(|m| m.len()).unwrap_or(0);
            if offset > len {
                offset = 0;
            }
            let (lines, used) = match Self::batch(spool, offset) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(
                        "cannot read the decision-log spool {}: {e}",
                        spool.display()
                    );
                    std::thread::sleep(BACKOFF_LAST);
                    continue;
                }
            };
            if used == 0 {
                if offset == len && len > COMPACT_BYTES {
                    self.compact(spool, &mut offset);
                }
                self.wait(Duration::from_millis(500));
                continue;
            }
            match Self::post(agent, url, token, &lines) {
                Ok(()) => {
                    offset += used;
                    if let Err(e) = write_offset(spool, offset) {
                        tracing::error!("cannot write the decision-log offset: {e}");
                    }
                    if failing {
                        tracing::info!("the decision-log collector at {url} takes events again");
                        failing = false;
                    }
                    backoff = BACKOFF_FIRST;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            "the decision-log collector at {url} does not take events ({e}): they wait in {} and are sent when it does",
                            spool.display()
                        );
                        failing = true;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                }
            }
        }
    }

    /// Empties a spool shipped to its end (under the writers' lock, so nothing is lost).
    fn compact(&self, spool: &Path, offset: &mut u64) {
        let Ok(f) = self.spool.lock() else { return };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len == *offset && f.set_len(0).is_ok() {
            *offset = 0;
            let _ = write_offset(spool, 0);
        }
    }
}
