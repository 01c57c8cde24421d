//! The audit log: one JSON line per decision, each carrying the SHA-256 of the line before
//! it, so that an edited or removed line breaks the chain (`sqlguard audit verify`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn query_hash(sql: &str) -> String {
    format!("sha256:{}", sha256_hex(sql.as_bytes()))
}

pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<(File, String)>,
}

impl AuditLog {
    /// Opens (or creates) the log for appending, continuing the chain of what it holds.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        let mut prev = GENESIS.to_string();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line =
                    line.map_err(|e| format!("cannot read the audit log {}: {e}", path.display()))?;
                if !line.is_empty() {
                    prev = sha256_hex(line.as_bytes());
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                format!(
                    "cannot open the audit log {} for appending: {e}",
                    path.display()
                )
            })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            inner: Mutex::new((file, prev)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` (an object) with `prev` set; the line is written and flushed whole.
    pub fn append(&self, mut record: Value) -> Result<(), String> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| "the audit log lock is poisoned".to_string())?;
        let (file, prev) = &mut *guard;
        record["prev"] = Value::String(prev.clone());
        let line = serde_json::to_string(&record).map_err(|e| e.to_string())?;
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| format!("cannot write the audit log {}: {e}", self.path.display()))?;
        *prev = sha256_hex(line.as_bytes());
        Ok(())
    }
}

/// Checks the chain of the log at `path`: returns the number of lines, or the first broken
/// line (1-based) and why.
pub fn verify(path: &Path) -> Result<usize, String> {
    let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: unreadable: {e}", i + 1))?;
        if line.is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        if v.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(format!("line {}: the chain is broken (the line before it was changed, removed or inserted)", i + 1));
        }
        prev = sha256_hex(line.as_bytes());
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_edits() {
        let path =
            std::env::temp_dir().join(format!("sqlguard-audit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let log = AuditLog::open(&path).unwrap();
        for i in 0..3 {
            log.append(serde_json::json!({"n": i, "allow": true}))
                .unwrap();
        }
        drop(log);
        // Reopening continues the chain.
        AuditLog::open(&path)
            .unwrap()
            .append(serde_json::json!({"n": 3}))
            .unwrap();
        assert_eq!(verify(&path), Ok(4));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"allow\":true", "\"allow\":false", 1)).unwrap();
        assert!(verify(&path).unwrap_err().starts_with("line 2"));
        let _ = std::fs::remove_file(&path);
    }
}
