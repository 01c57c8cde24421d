//! `sqlguard config`: writes the MCP client configuration, the way `tsh mcp db config` does,
//! so that switching from Teleport's server is one command.
//!
//! The entry (`mcpServers.teleport-databases` by default, `servers.…` in VS Code files) gets
//! `command` = this executable and `args` = `["serve", <uri>…]`. Other servers and keys keep
//! their content and order; a URI for the same database is replaced, a new one appended;
//! `env` is kept unless `--overwrite`. Writes are atomic and serialized by a lock file in the
//! temporary directory.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::teleport::DatabaseUri;

pub const DEFAULT_ENTRY: &str = "teleport-databases";

#[derive(Debug, Error)]
pub enum ClientConfigError {
    #[error("{path} is not valid JSON ({message}); it was left untouched: fix or remove it, then run this again")]
    NotJson { path: String, message: String },
    #[error("{path}: {message}; it was left untouched")]
    Shape { path: String, message: String },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// Which client's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Claude,
    Cursor,
    VsCode,
    ClaudeCode,
    Path(PathBuf),
}

impl Client {
    pub fn parse(s: &str) -> Client {
        match s {
            "claude" => Client::Claude,
            "cursor" => Client::Cursor,
            "vscode" => Client::VsCode,
            "claude-code" => Client::ClaudeCode,
            other => Client::Path(PathBuf::from(other)),
        }
    }

    /// The file this client reads, or why there is none here.
    pub fn path(&self) -> Result<PathBuf, ClientConfigError> {
        let home = || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
        };
        match self {
            Client::Claude => {
                if cfg!(target_os = "macos") {
                    Ok(
                        home()
                            .join("Library/Application Support/Claude/claude_desktop_config.json"),
                    )
                } else if cfg!(windows) {
                    Ok(
                        PathBuf::from(std::env::var_os("APPDATA").unwrap_or_default())
                            .join("Claude/claude_desktop_config.json"),
                    )
                } else {
                    Err(ClientConfigError::Unsupported(
                        "Claude Desktop is not available on Linux, so it has no configuration file here: pass the path of the file to update with --client-config PATH, or run without --client-config to print the entry".into(),
                    ))
                }
            }
            Client::Cursor => Ok(home().join(".cursor/mcp.json")),
            Client::ClaudeCode => Ok(PathBuf::from(".mcp.json")),
            Client::VsCode => Ok(PathBuf::from(".vscode/mcp.json")),
            Client::Path(p) => Ok(p.clone()),
        }
    }

    /// The key holding the servers: `servers` for VS Code files, else `mcpServers`.
    pub fn servers_key(&self, path: &Path) -> &'static str {
        let vscode = *self == Client::VsCode
            || path
                .parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == ".vscode");
        if vscode {
            "servers"
        } else {
            "mcpServers"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFormat {
    Pretty,
    Compact,
    /// Keep a compact file compact, else pretty.
    Auto,
    /// Compact, as the serializer writes it.
    None,
}

/// What to write into the entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub command: String,
    pub uris: Vec<DatabaseUri>,
    pub overwrite: bool,
    /// VS Code entries name their transport.
    pub vscode: bool,
    /// Environment the client must start the server with (`TELEPORT_HOME` when it is set,
    /// as `tsh mcp db config` writes it: a client with a minimal environment would otherwise
    /// look in `~/.tsh`).
    pub env: Vec<(String, String)>,
    /// The server's configuration file (`--config`, an absolute path), written into the
    /// entry's arguments so that the client's server runs the team's policy, not the
    /// built-in one.
    pub config: Option<String>,
}

/// Arguments of an existing entry that name databases.
fn uri_of(arg: &Value) -> Option<DatabaseUri> {
    arg.as_str().and_then(|s| DatabaseUri::parse(s).ok())
}

/// The entry's new arguments: `serve`, the extra arguments of a sqlguard entry kept (its
/// `--config` replaced by the entry's), then the databases already served (the same database
/// replaced, new ones appended). tsh's own `mcp db start` arguments go with tsh.
fn merged_args(old_args: &[Value], entry: &Entry) -> Vec<Value> {
    let mut uris: Vec<DatabaseUri> = old_args.iter().filter_map(uri_of).collect();
    let mut extra: Vec<Value> = Vec::new();
    let rest = old_args.iter().filter(|a| uri_of(a).is_none());
    let tsh_prefix = ["mcp", "db", "start"];
    let mut skipped_prefix = 0;
    for a in rest {
        let s = a.as_str().unwrap_or("");
        if (skipped_prefix < 3 && s == tsh_prefix[skipped_prefix])
            || (s == "serve" && extra.is_empty())
        {
            skipped_prefix += 1;
            continue;
        }
        extra.push(a.clone());
    }
    for u in &entry.uris {
        match uris.iter_mut().find(|x| x.resource() == u.resource()) {
            Some(slot) => *slot = u.clone(),
            None => uris.push(u.clone()),
        }
    }
    if let Some(config) = &entry.config {
        match extra.iter().position(|a| a.as_str() == Some("--config")) {
            Some(i) if i + 1 < extra.len() => extra[i + 1] = Value::from(config.clone()),
            _ => {
                extra.retain(|a| !a.as_str().is_some_and(|s| s.starts_with("--config")));
                extra.splice(0..0, [Value::from("--config"), Value::from(config.clone())]);
            }
        }
    }
    let mut args = vec![Value::from("serve")];
    args.extend(extra);
    args.extend(uris.iter().map(|u| Value::from(u.to_string())));
    args
}

/// Merges `entry` into the configuration document `doc` under `servers_key`.
pub fn merge(doc: Value, servers_key: &str, entry: &Entry) -> Result<Value, String> {
    let mut doc = match doc {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(format!(
                "the file holds {}, not a JSON object",
                kind(&other)
            ))
        }
    };
    let servers = doc
        .entry(servers_key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err(format!("\"{servers_key}\" is not a JSON object"));
    };
    let existing = servers.get(&entry.name).cloned();
    let mut server = match existing {
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "\"{servers_key}.{}\" holds {}, not an object",
                entry.name,
                kind(&other)
            ))
        }
        None => Map::new(),
    };
    let old_args: Vec<Value> = server
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let args = merged_args(&old_args, entry);
    if entry.vscode && !server.contains_key("type") {
        server.insert("type".into(), Value::from("stdio"));
    }
    server.insert("command".into(), Value::from(entry.command.clone()));
    server.insert("args".into(), Value::Array(args));
    if entry.overwrite {
        server.remove("env");
    }
    if !entry.env.is_empty() {
        let env = server
            .entry("env")
            .or_insert_with(|| Value::Object(Map::new()));
        if !env.is_object() {
            *env = Value::Object(Map::new());
        }
        if let Some(env) = env.as_object_mut() {
            for (k, v) in &entry.env {
                env.insert(k.clone(), Value::from(v.clone()));
            }
        }
    }
    servers.insert(entry.name.clone(), Value::Object(server));
    Ok(Value::Object(doc))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Renders the document in the requested format (`was_compact`: the existing file's style).
pub fn render(doc: &Value, format: JsonFormat, was_compact: bool) -> String {
    let compact = match format {
        JsonFormat::Pretty => false,
        JsonFormat::Compact | JsonFormat::None => true,
        JsonFormat::Auto => was_compact,
    };
    let mut s = if compact {
        serde_json::to_string(doc)
    } else {
        serde_json::to_string_pretty(doc)
    }
    .unwrap_or_default();
    s.push('\n');
    s
}

/// Updates the file at `path`: read, merge, write atomically (temp file + rename, same
/// permissions), serialized with other runs by an exclusive lock.
pub fn update_file(
    path: &Path,
    servers_key: &str,
    entry: &Entry,
    format: JsonFormat,
) -> Result<Value, ClientConfigError> {
    let shown = path.display().to_string();
    let write_err = |message: String| ClientConfigError::Write {
        path: shown.clone(),
        message,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| write_err(format!("cannot create {}: {e}", dir.display())))?;
    }
    // The lock lives in the temporary directory, keyed by the file's path: nothing is left
    // beside the client's own file, and removing it would race with a waiting writer.
    let lock_path = {
        use sha2::Digest;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let key = sha2::Sha256::digest(absolute.to_string_lossy().as_bytes());
        let hex: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("sqlguard-config-{hex}.lock"))
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| write_err(e.to_string()))?;
    lock.lock()
        .map_err(|e| write_err(format!("cannot lock {}: {e}", lock_path.display())))?;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(write_err(format!("cannot read it: {e}"))),
    };
    let (doc, was_compact) = match text.as_deref().map(str::trim) {
        None | Some("") => (Value::Null, false),
        Some(t) => {
            let doc = serde_json::from_str(t).map_err(|e| ClientConfigError::NotJson {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            (doc, !t.contains('\n'))
        }
    };
    let merged = merge(doc, servers_key, entry).map_err(|message| ClientConfigError::Shape {
        path: shown.clone(),
        message,
    })?;
    let out = render(&merged, format, was_compact);
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| write_err(e.to_string()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_err(e.to_string())
    })?;
    drop(lock);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(uris: &[&str]) -> Entry {
        Entry {
            name: DEFAULT_ENTRY.into(),
            command: "/usr/local/bin/sqlguard".into(),
            uris: uris
                .iter()
                .map(|u| DatabaseUri::parse(u).unwrap())
                .collect(),
            overwrite: false,
            vscode: false,
            env: Vec::new(),
            config: None,
        }
    }

    #[test]
    fn takes_over_tsh_entry_keeping_databases_and_env() {
        let doc = json!({"mcpServers": {
            "other": {"command": "x"},
            "teleport-databases": {"command": "/usr/bin/tsh", "args": ["mcp", "db", "start", "teleport://clusters/c/databases/a?dbName=a&dbUser=u"], "env": {"K": "V"}}
        }, "theme": "dark"});
        let out = merge(
            doc,
            "mcpServers",
            &entry(&[
                "teleport://clusters/c/databases/a?dbName=a2&dbUser=u",
                "teleport://clusters/c/databases/b?dbName=b&dbUser=u",
            ]),
        )
        .unwrap();
        let e = &out["mcpServers"]["teleport-databases"];
        assert_eq!(e["command"], json!("/usr/local/bin/sqlguard"));
        assert_eq!(
            e["args"],
            json!([
                "serve",
                "teleport://clusters/c/databases/a?dbName=a2&dbUser=u",
                "teleport://clusters/c/databases/b?dbName=b&dbUser=u"
            ])
        );
        assert_eq!(e["env"], json!({"K": "V"}));
        assert_eq!(out["mcpServers"]["other"], json!({"command": "x"}));
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["mcpServers", "theme"]);
    }

    #[test]
    fn overwrite_drops_env_and_keeps_extra_args() {
        let doc = json!({"mcpServers": {"teleport-databases": {"command": "old", "args": ["serve", "--config", "c.toml"], "env": {"A": "1"}}}});
        let mut e = entry(&["teleport://clusters/c/databases/a?dbName=a&dbUser=u"]);
        e.overwrite = true;
        let out = merge(doc, "mcpServers", &e).unwrap();
        assert_eq!(
            out["mcpServers"]["teleport-databases"]["args"],
            json!([
                "serve",
                "--config",
                "c.toml",
                "teleport://clusters/c/databases/a?dbName=a&dbUser=u"
            ])
        );
        assert!(out["mcpServers"]["teleport-databases"].get("env").is_none());
    }

    #[test]
    fn refuses_shapes_it_cannot_merge() {
        assert!(merge(json!([1]), "mcpServers", &entry(&[])).is_err());
        assert!(merge(json!({"mcpServers": 3}), "mcpServers", &entry(&[])).is_err());
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Numbers in a client's file survive the rewrite exactly (serde_json float_roundtrip).
    #[test]
    fn fuzz_crash_25f7a128() {
        let doc: Value = serde_json::from_str(r#"{"mcpServe":9999990668520184933983 }"#).unwrap();
        let e = Entry {
            name: DEFAULT_ENTRY.into(),
            command: "x".into(),
            uris: vec![],
            overwrite: false,
            vscode: false,
            env: Vec::new(),
            config: None,
        };
        let out = merge(doc, "mcpServers", &e).unwrap();
        let text = render(&out, JsonFormat::Auto, true);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), out);
    }
}
