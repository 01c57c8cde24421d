//! `sqlguard doctor`: one command that tells why a client shows "Server disconnected".
//! Each check says ✓ or ✗ and, when it fails, what to do.

use std::path::Path;

use serde::Serialize;

use crate::config::Mode;
use crate::mcp::ServeOptions;
use crate::mcp::State;
use crate::policy::{testing, Bundle, Policy};
use crate::teleport::identity::read_cert;
use crate::teleport::TshHome;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// What to do when it failed.
    pub fix: Option<String>,
}

fn pass(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check in order; later checks that depend on a failed one are reported failed.
pub async fn run(opts: &ServeOptions, exe: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match opts.load_config() {
        Ok(c) => {
            let what = opts
                .config
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "no file (command line only)".into());
            checks.push(pass("configuration", format!("parses: {what}")));
            c
        }
        Err(e) => {
            checks.push(fail(
                "configuration",
                e,
                "fix the file as the message says (see README: configuration)",
            ));
            return checks;
        }
    };
    let specs = match config.database_specs(&opts.uris) {
        Ok(s) => {
            checks.push(pass("databases", format!("{} configured", s.len())));
            s
        }
        Err(e) => {
            checks.push(fail(
                "databases",
                e,
                "list each database once, with full URIs, from one cluster",
            ));
            return checks;
        }
    };

    checks.push(analysis_check());
    checks.push(policy_check(&config));
    checks.extend(mask_check(&config));
    checks.extend(teleport_checks(&config, &specs));
    checks.extend(http_check(&config));
    checks.extend(database_checks(opts).await);
    // The MCP server answers `initialize` over stdio, as a client would start it.
    checks.push(mcp_check(opts, exe).await);
    checks
}

/// `[http]` (for `serve --listen`), when configured: the JWKS answers with keys.
fn http_check(config: &crate::config::Config) -> Option<Check> {
    let http = &config.http;
    if http.jwks_url.is_none() && http.audience.is_none() && !http.insecure_no_auth {
        return None;
    }
    Some(match crate::mcp::http::check_config(http) {
        Ok(detail) => pass("http tokens", detail),
        Err(e) => fail(
            "http tokens",
            e,
            "set [http] jwks_url to https://PROXY/.well-known/jwks.json and audience to the app's URI (docs/teleport-app.md)",
        ),
    })
}

/// The analysis reads libpg_query's raw parse tree as its JSON reads (else the slower JSON
/// path).
fn analysis_check() -> Check {
    let sample = crate::analysis::raw::AGREEMENT_SQL.len();
    match crate::analysis::raw::disagreement(crate::analysis::raw::AGREEMENT_SQL) {
        None => pass(
            "analysis",
            format!(
                "reads libpg_query's raw parse tree, which read {sample} sample statements \
                 exactly as libpg_query's JSON"
            ),
        ),
        Some(why) => fail(
            "analysis",
            format!(
                "libpg_query's raw parse tree differs from its JSON ({why}): sqlguard reads \
                 the JSON instead (same decisions, about 25 % slower analysis)"
            ),
            "rebuild sqlguard so that build.rs compiles src/analysis/raw_tree.c against the \
             pg_query crate it links (set SQLGUARD_LIBPG_QUERY_DIR to its libpg_query \
             directory), and report it",
        ),
    }
}

/// The policy bundle compiles, and its tests pass.
fn policy_check(config: &crate::config::Config) -> Check {
    match Bundle::load(&config.policy, &config.data)
        .map_err(|e| e.to_string())
        .and_then(|mut b| {
            b.evaluator = config.evaluator.unwrap_or_default();
            let policy = Policy::new(b.clone()).map_err(|e| e.to_string())?;
            let evaluator = match (policy.evaluator(), policy.interpreted_because()) {
                (crate::policy::Evaluator::Compiled, _) => {
                    "compiled (regorus' patched RVM, agreeing with the interpreter)".to_string()
                }
                (_, Some(why)) => format!("the interpreter, because {why}"),
                (_, None) => "the interpreter (evaluator = \"interpreter\")".to_string(),
            };
            Ok((b, evaluator))
        }) {
        Ok((bundle, evaluator)) => {
            let tests = if bundle.tests.is_empty() {
                Ok((0, 0))
            } else {
                testing::run(&bundle, false, None)
                    .map(|(r, _)| {
                        (
                            r.iter().filter(|t| t.passed).count(),
                            r.iter().filter(|t| !t.passed).count(),
                        )
                    })
                    .map_err(|e| e.to_string())
            };
            match tests {
                Ok((p, 0)) => pass(
                    "policy",
                    format!(
                        "bundle compiles (digest {}), {p} policy tests pass; evaluated by {evaluator}",
                        &bundle.digest[..12]
                    ),
                ),
                Ok((p, f)) => fail(
                    "policy",
                    format!("{f} policy tests fail, {p} pass"),
                    "run `sqlguard policy test` on the bundle and fix the failing rules",
                ),
                Err(e) => fail("policy", e, "run `sqlguard policy test` on the bundle"),
            }
        }
        Err(e) => fail(
            "policy",
            e,
            "fix what the message names (a Rego file and line, a data file's key, or two data files setting one key); `sqlguard policy test DIR` shows it too",
        ),
    }
}

/// `columns.mask`, when the policy masks columns: every mask is known, and `hash` masks have
/// their key.
fn mask_check(config: &crate::config::Config) -> Option<Check> {
    let bundle = Bundle::load(&config.policy, &config.data).ok()?;
    let columns = &bundle.data["sqlguard"]["columns"];
    let masks = columns["mask"].as_object().filter(|m| !m.is_empty())?;
    let formats = columns["mask_formats"].as_object();
    const BUILT_IN: &[&str] = &["redact", "null", "hash", "email", "last4"];
    let unknown: Vec<String> = masks
        .iter()
        .filter_map(|(column, m)| {
            let name = m.as_str().unwrap_or("");
            let known = BUILT_IN.contains(&name) || formats.is_some_and(|f| f.contains_key(name));
            (!known).then(|| format!("{column} ({name})"))
        })
        .collect();
    if !unknown.is_empty() {
        return Some(fail(
            "masks",
            format!(
                "unknown masks: {}; every call is refused",
                unknown.join(", ")
            ),
            "use redact, null, hash, email or last4, or define the mask in columns.mask_formats",
        ));
    }
    let hashed = masks.values().any(|m| m == "hash");
    let key = crate::audit::AuditKey {
        setting: "mask_key",
        file: config.mask_key_file.clone(),
        env: config.mask_key_env.clone(),
    }
    .load();
    Some(match (hashed, key) {
        (true, Ok(None)) => fail(
            "masks",
            "a column is masked with hash, and no mask key is configured: its calls are refused",
            "set mask_key_file (a file holding a secret key) or mask_key_env in the configuration",
        ),
        (_, Err(e)) => fail(
            "masks",
            e,
            "make the mask key readable, or remove the setting",
        ),
        _ => pass("masks", format!("{} masked columns", masks.len())),
    })
}

/// The Teleport profile, when a database goes through Teleport.
fn teleport_checks(
    config: &crate::config::Config,
    specs: &[crate::config::DatabaseSpec],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let teleport_needed = specs
        .iter()
        .any(|s| s.mode != Mode::Direct && s.dsn.is_none());
    if teleport_needed && config.teleport.insecure {
        checks.push(fail(
            "teleport proxy trust",
            "insecure = true: the proxy's certificate is not verified, so anyone on the path can read and change the traffic (like tsh --insecure)",
            "set [teleport] ca = \"FILE\" to the CA that signed the proxy's certificate and remove insecure, unless this is a test cluster",
        ));
    }
    if teleport_needed {
        let home = TshHome::locate(config.teleport.home.as_deref());
        match home.as_ref().map(|h| (h, h.current_profile())) {
            Some((h, Ok(p))) => match h.user_cert(&p).map(|c| read_cert(&c)) {
                Some(Ok(info)) if !info.expired() => checks.push(pass(
                    "teleport session",
                    format!("logged in to {} as {}", p.web_proxy_addr, p.user),
                )),
                Some(Ok(_)) => checks.push(fail(
                    "teleport session",
                    format!(
                        "the session for {} at {} has expired",
                        p.user, p.web_proxy_addr
                    ),
                    format!(
                        "run `{}`",
                        crate::teleport::native::tsh_login_hint(Some(&p))
                    ),
                )),
                Some(Err(e)) => checks.push(fail(
                    "teleport session",
                    e,
                    format!(
                        "run `{}`",
                        crate::teleport::native::tsh_login_hint(Some(&p))
                    ),
                )),
                None => checks.push(fail(
                    "teleport session",
                    "no user certificate",
                    format!(
                        "run `{}`",
                        crate::teleport::native::tsh_login_hint(Some(&p))
                    ),
                )),
            },
            Some((_, Err(e))) => checks.push(fail(
                "teleport session",
                e,
                "run `tsh login --proxy=<proxy address>`",
            )),
            None => checks.push(fail(
                "teleport session",
                "no home directory",
                "set [teleport] home in the configuration",
            )),
        }
    } else {
        checks.push(pass(
            "teleport session",
            "not needed: every database has a direct dsn",
        ));
    }
    checks
}

/// Each database: connect and run SELECT 1 under the guard, read its catalog, and compare the
/// policy's names with it.
async fn database_checks(opts: &ServeOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    match State::build(opts).await {
        Ok(state) => {
            // Per database read: the policy's entries that name nothing in its catalog.
            let mut unmatched: Vec<Vec<crate::policy::lint::Unmatched>> = Vec::new();
            for d in &state.databases {
                let name = format!("database {}", d.spec.uri.name);
                match &d.backend {
                    crate::mcp::state::Backend::Ready(db) => match db.ping().await {
                        Ok(()) => {
                            checks.push(pass(
                                &name,
                                format!(
                                    "{} answers SELECT 1 in a read-only transaction",
                                    db.target()
                                ),
                            ));
                            if d.catalog.is_some() {
                                let check = format!("catalog {}", d.spec.uri.name);
                                checks.push(match db.read_catalog().await {
                                    Ok(s) => {
                                        let policy = state.policy();
                                        unmatched.push(crate::policy::lint::unmatched(&policy.bundle().data, &s));
                                        pass(&check, format!("names resolve against {}", s.summary()))
                                    }
                                    Err(e) => fail(
                                        &check,
                                        format!("cannot read the database's catalog: {e}"),
                                        "grant the role read access to pg_catalog (the default), or set catalog = false to judge names against PostgreSQL 15's built-ins only",
                                    ),
                                });
                            }
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let fix = connection_fix(&msg);
                            checks.push(fail(&name, msg, fix));
                        }
                    },
                    crate::mcp::state::Backend::Unavailable(why) => {
                        checks.push(fail(&name, why.clone(), "fix its [[database]] entry"))
                    }
                }
            }
            checks.extend(names_check(&unmatched));
        }
        Err(e) => checks.push(fail(
            "server state",
            e,
            "fix the configuration as the message says",
        )),
    }
    checks
}

/// What to do when a database does not answer, from its error.
fn connection_fix(msg: &str) -> String {
    if msg.contains("password authentication failed") || msg.contains("asks for a password") {
        "check the user and password in the dsn".to_string()
    } else if msg.contains("mode = \"tsh-tunnel\"") {
        "set mode = \"tsh-tunnel\" for this database, or mode = \"auto\" with tsh installed: the proxy cannot be reached by native TLS routing".to_string()
    } else if msg.contains("[teleport] ca") {
        "set [teleport] ca = \"FILE\" to the CA that signed the proxy's certificate, or check the proxy address".to_string()
    } else if msg.contains("Not logged in") || msg.contains("session has expired") {
        "run `tsh login` with the tsh home sqlguard uses ([teleport] home, else $TELEPORT_HOME, else ~/.tsh); the tunnel's tsh is given that home".to_string()
    } else if msg.contains("refused this client's certificate") {
        "run `tsh login` (after a CA rotation, `tsh logout` first), then `tsh db login`, and check this machine's clock".to_string()
    } else if msg.contains("Connection refused") || msg.contains("connection refused") {
        "start the database server, or fix the host and port".to_string()
    } else if msg.contains("tsh") {
        msg.split('`')
            .nth(1)
            .map(|c| format!("run `{c}`"))
            .unwrap_or_else(|| "log in with tsh".into())
    } else {
        "check the address, credentials and TLS settings of this database".to_string()
    }
}

/// The policy's names against every catalog read: an entry one served database has is not a
/// typo, so only those that match nothing in any catalog fail.
fn names_check(unmatched: &[Vec<crate::policy::lint::Unmatched>]) -> Option<Check> {
    let (first, rest) = unmatched.split_first()?;
    let everywhere: Vec<&crate::policy::lint::Unmatched> = first
        .iter()
        .filter(|u| {
            rest.iter()
                .all(|other| other.iter().any(|o| o.list == u.list && o.entry == u.entry))
        })
        .collect();
    Some(if everywhere.is_empty() {
        pass(
                "policy names",
                "every table, column and function entry of the policy names an object of a served database",
            )
    } else {
        let lines: Vec<String> = everywhere.iter().map(|u| u.to_string()).collect();
        fail(
            "policy names",
            lines.join("; "),
            "fix each name in the data file (a misspelt deny entry protects nothing)",
        )
    })
}

async fn mcp_check(opts: &ServeOptions, exe: &Path) -> Check {
    use rmcp::ServiceExt;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .args(&opts.uris)
        .env("SQLGUARD_LOG", "error");
    if let Some(c) = &opts.config {
        cmd.arg("--config").arg(c);
    }
    for p in &opts.policy {
        cmd.arg("--policy").arg(p);
    }
    for d in &opts.data {
        cmd.arg("--data").arg(d);
    }
    let transport = match rmcp::transport::TokioChildProcess::new(cmd) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                "mcp server",
                format!("cannot start {}: {e}", exe.display()),
                "check that the sqlguard executable runs",
            )
        }
    };
    let started =
        tokio::time::timeout(std::time::Duration::from_secs(20), ().serve(transport)).await;
    match started {
        Ok(Ok(client)) => {
            let tools = client.list_all_tools().await.map(|t| t.len()).unwrap_or(0);
            let _ = client.cancel().await;
            pass(
                "mcp server",
                format!("`sqlguard serve` answers initialize over stdio; {tools} tools listed"),
            )
        }
        Ok(Err(e)) => fail(
            "mcp server",
            format!("`sqlguard serve` did not complete initialize: {e}"),
            "run `sqlguard serve …` by hand to see its error on stderr",
        ),
        Err(_) => fail(
            "mcp server",
            "`sqlguard serve` did not answer within 20 s",
            "run `sqlguard serve …` by hand to see its error on stderr",
        ),
    }
}

/// Renders the checks for a terminal.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{} {}: {}\n",
            if c.ok { "✓" } else { "✗" },
            c.name,
            c.detail
        ));
        if let Some(f) = &c.fix {
            out.push_str(&format!("    fix: {f}\n"));
        }
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    out.push_str(&if failed == 0 {
        "All checks passed.\n".to_string()
    } else {
        format!("{failed} check(s) failed.\n")
    });
    out
}
