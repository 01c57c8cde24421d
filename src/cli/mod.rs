//! The command line: `analyze`, `check`, `policy test|eval`, and the server's commands.

mod catalog;
pub mod check;
mod policy;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::analysis::AnalysisOptions;
use crate::policy::{Bundle, DatabaseContext, Identity, Policy};

#[derive(Parser)]
#[command(
    name = "sqlguard",
    version,
    about = "Policy-checked, read-only PostgreSQL access for AI agents (a drop-in for `tsh mcp db start`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the facts the analysis finds in SQL as JSON.
    Analyze {
        /// The SQL; `-` or nothing reads stdin.
        sql: Option<String>,
        #[command(flatten)]
        analysis: AnalysisArgs,
    },
    /// Decide whether SQL may run: exit 0 allowed, 1 denied, 3 allowed once a person approves
    /// it (the policy asks), 2 usage or policy error.
    Check(check::CheckArgs),
    /// Work on policy bundles.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Serve the databases over MCP on stdio (what an MCP client runs), or over streamable
    /// HTTP with `--listen` (a team server behind Teleport's app access).
    Serve(ServeArgs),
    /// Work on audit logs.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Work with a database's own catalog (extensions, functions, operators, relations).
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Write the MCP client configuration (like `tsh mcp db config`), or print it.
    Config(ConfigArgs),
    /// Check the configuration, policy, Teleport session, databases and MCP server.
    Doctor {
        #[command(flatten)]
        serve: ServeArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: check::Format,
    },
    /// Start a throwaway PostgreSQL with a sample database and tour sqlguard over real MCP.
    Demo {
        /// Keep serving the demo database on stdio for a real MCP client.
        #[arg(long)]
        serve: bool,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Database resource URIs, as for `tsh mcp db start`
    /// (teleport://clusters/<cluster>/databases/<name>?dbName=<db>&dbUser=<user>).
    uris: Vec<String>,
    /// Configuration file (TOML); also from $SQLGUARD_CONFIG, for MCP tools whose own
    /// `--config` flag would take this one (MCP Inspector).
    #[arg(long, env = "SQLGUARD_CONFIG")]
    config: Option<PathBuf>,
    /// A layer over the built-in bundle (Rego, data, or both), or a whole bundle such as
    /// `policy export` writes (repeatable; overrides the configuration).
    #[arg(long = "policy", value_name = "DIR")]
    policy: Vec<PathBuf>,
    /// Data file merged over the bundle's data (repeatable).
    #[arg(long = "data", value_name = "FILE")]
    data: Vec<PathBuf>,
    /// Audit log file (JSON lines, hash-chained).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Serve MCP over streamable HTTP at ADDR (`/mcp`), verifying Teleport's JWT on every
    /// request (`[http]` of the configuration), instead of stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Args)]
pub struct ConfigArgs {
    /// Database URIs, or one database name with --db-user and --db-name.
    targets: Vec<String>,
    /// claude, cursor, vscode, claude-code, or the path of a client's JSON file.
    #[arg(long)]
    client_config: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    json_format: JsonFormatArg,
    /// Replace the entry's env too.
    #[arg(long)]
    overwrite: bool,
    /// Entry name (default teleport-databases, which takes over tsh's entry).
    #[arg(long, default_value = crate::clientconfig::DEFAULT_ENTRY)]
    name: String,
    #[arg(long, short = 'u')]
    db_user: Option<String>,
    #[arg(long, short = 'n')]
    db_name: Option<String>,
    /// Teleport cluster (default: the tsh profile's).
    #[arg(long)]
    cluster: Option<String>,
    /// The server configuration the client's sqlguard runs with (written into the entry as
    /// `serve --config PATH`); also from $SQLGUARD_CONFIG.
    #[arg(long, env = "SQLGUARD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum JsonFormatArg {
    Pretty,
    Compact,
    Auto,
    None,
}

/// Which audit log, and its key.
#[derive(Args)]
struct AuditFile {
    file: PathBuf,
    /// The key of a keyed (HMAC) chain, from a file.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// The key of a keyed (HMAC) chain, from this environment variable.
    #[arg(long)]
    key_env: Option<String>,
}

/// Which calls `audit query` and `audit summary` look at.
#[derive(Args)]
struct AuditFilter {
    /// The Teleport (or configured) user.
    #[arg(long)]
    user: Option<String>,
    /// A database's resource URI or name.
    #[arg(long)]
    database: Option<String>,
    /// A database label KEY=VALUE (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// From this time (2026-12-06, 2026-12-06T10:00:00Z, or a time ago: 30m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms).
    #[arg(long)]
    until: Option<String>,
    /// allowed, denied, denied_by_plan, failed or pending.
    #[arg(long)]
    verdict: Option<String>,
    /// Calls one of whose reasons is this rule.
    #[arg(long)]
    rule: Option<String>,
}

impl AuditFilter {
    fn filter(self) -> Result<crate::audit::query::Filter, String> {
        use crate::audit::query::parse_time;
        if let Some(v) = &self.verdict {
            if !crate::audit::verdict::ALL.contains(&v.as_str()) {
                return Err(format!(
                    "--verdict {v} is not one of {}",
                    crate::audit::verdict::ALL.join(", ")
                ));
            }
        }
        Ok(crate::audit::query::Filter {
            user: self.user,
            database: self.database,
            labels: self.labels,
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            verdict: self.verdict,
            rule: self.rule,
        })
    }
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Calls from an audit log, one row each (its decision, or its intent joined with its
    /// outcome), filtered, while the chain is checked: exit 1 when it is broken.
    Query {
        #[command(flatten)]
        log: AuditFile,
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long, value_enum, default_value = "table")]
        format: crate::audit::query::Format,
    },
    /// Counts of calls per verdict, user, database and rule, while the chain is checked.
    Summary {
        #[command(flatten)]
        log: AuditFile,
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long, value_enum, default_value = "text")]
        format: check::Format,
    },
    /// Check an audit log's chain and head anchor: exit 0 when intact, 1 when not.
    Verify {
        file: PathBuf,
        /// The key of a keyed (HMAC) chain, from a file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The key of a keyed (HMAC) chain, from this environment variable.
        #[arg(long)]
        key_env: Option<String>,
    },
}

/// Options that change how SQL is analyzed.
#[derive(Args, Clone)]
pub struct AnalysisArgs {
    /// search_path that unqualified names resolve through (comma-separated), as pinned on
    /// the connection.
    #[arg(long, default_value = "pg_catalog,public")]
    pub search_path: String,
    /// Resolve names against this catalog snapshot (`sqlguard catalog dump DATABASE > FILE`),
    /// as the server does against each database's own catalog.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

impl AnalysisArgs {
    pub fn options(&self) -> Result<AnalysisOptions, String> {
        let opts = AnalysisOptions::new(self.search_path.split(',').map(str::to_string).collect());
        let Some(path) = &self.catalog else {
            return Ok(opts);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the catalog snapshot {}: {e}", path.display()))?;
        let snapshot = crate::analysis::snapshot::Snapshot::from_json(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(opts.with_snapshot(Some(std::sync::Arc::new(snapshot))))
    }
}

/// Which policy bundle to use.
#[derive(Args, Clone)]
pub struct PolicyArgs {
    /// A layer over the built-in bundle (Rego, data, or both), or a whole bundle such as
    /// `policy export` writes (repeatable).
    #[arg(long = "policy", value_name = "DIR")]
    pub policy: Vec<PathBuf>,
    /// JSON data file, checked against the schema and merged as OPA merges data files
    /// (repeatable).
    #[arg(long = "data", value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// compiled (regorus' patched RVM, checked against the interpreter at load) or
    /// interpreter (the reference).
    #[arg(long, env = "SQLGUARD_EVALUATOR", default_value = "compiled")]
    pub evaluator: crate::policy::Evaluator,
}

impl PolicyArgs {
    pub fn bundle(&self) -> Result<Bundle, String> {
        let mut bundle = Bundle::load(&self.policy, &self.data).map_err(|e| e.to_string())?;
        bundle.evaluator = self.evaluator;
        Ok(bundle)
    }

    pub fn load(&self) -> Result<Policy, String> {
        Policy::new(self.bundle()?).map_err(|e| e.to_string())
    }
}

/// Who calls, and on which database, for `check`.
#[derive(Args, Clone)]
pub struct ContextArgs {
    /// Teleport user name of the caller.
    #[arg(long, default_value = "")]
    pub user: String,
    /// Teleport role of the caller (repeatable).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Database label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Database resource name.
    #[arg(long, default_value = "")]
    pub database: String,
    /// MCP tool the query arrives through.
    #[arg(long, default_value = "teleport_postgres_query")]
    pub tool: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

impl ContextArgs {
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone(),
            roles: self.roles.clone(),
            traits: Default::default(),
            ..Default::default()
        }
    }

    pub fn database(&self) -> DatabaseContext {
        DatabaseContext {
            name: self.database.clone(),
            labels: self.labels.iter().cloned().collect(),
            ..Default::default()
        }
    }
}

/// Reads the SQL argument, or stdin for `-`/nothing.
pub fn read_sql(arg: Option<&str>) -> Result<String, String> {
    match arg {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the SQL from stdin: {e}"))?;
            Ok(s)
        }
        Some(s) => Ok(s.to_string()),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs its work; the other commands speak only when something is wrong.
    let default_level = if matches!(
        cli.command,
        Command::Serve(_) | Command::Demo { serve: true }
    ) {
        // rmcp reports every session's start and end at INFO: noise for a stdio server.
        "info,rmcp=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQLGUARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match cli.command {
        Command::Analyze { sql, analysis } => analyze(sql.as_deref(), &analysis),
        Command::Check(args) => check::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Catalog(cmd) => catalog::run(cmd),
        Command::Serve(args) => serve(args),
        Command::Demo { serve } => demo(serve),
        Command::Config(args) => config(args),
        Command::Doctor { serve, format } => doctor(serve, format),
        Command::Audit(AuditCommand::Query {
            log,
            filter,
            format,
        }) => audit_scan(log, filter, AuditOutput::Rows(format)),
        Command::Audit(AuditCommand::Summary {
            log,
            filter,
            format,
        }) => audit_scan(log, filter, AuditOutput::Summary(format)),
        Command::Audit(AuditCommand::Verify {
            file,
            key_file,
            key_env,
        }) => audit_verify(&file, key_file, key_env),
    }
}

/// `sqlguard analyze`: the facts of a SQL text.
fn analyze(sql: Option<&str>, analysis: &AnalysisArgs) -> ExitCode {
    let sql = match read_sql(sql) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let opts = match analysis.options() {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    match crate::analysis::analyze_with(&sql, &opts) {
        Ok(facts) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&facts).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sqlguard audit verify`: 0 intact, 1 broken, 2 not checked (a keyed log without its key).
fn audit_verify(file: &Path, key_file: Option<PathBuf>, key_env: Option<String>) -> ExitCode {
    match (crate::audit::AuditKey {
        setting: "audit_key",
        file: key_file,
        env: key_env,
    })
    .load()
    .map_err(crate::audit::VerifyError::Broken)
    .and_then(|key| crate::audit::verify_log(file, key))
    {
        Ok(n) => {
            println!("{}: intact, {n} records", file.display());
            ExitCode::SUCCESS
        }
        Err(crate::audit::VerifyError::NeedsKey) => {
            println!(
                "{}: NOT CHECKED: {}",
                file.display(),
                crate::audit::NEEDS_KEY
            );
            ExitCode::from(2)
        }
        Err(crate::audit::VerifyError::Broken(e)) => {
            println!("{}: BROKEN: {e}", file.display());
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn demo(serve: bool) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let result = if serve {
        rt.block_on(crate::demo::serve())
    } else {
        match std::env::current_exe() {
            Ok(exe) => rt.block_on(crate::demo::tour(&exe)),
            Err(e) => Err(format!("cannot find the sqlguard executable: {e}")),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sqlguard demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// The databases `sqlguard config` names: URIs, or one name with --db-user and --db-name (the
/// cluster from --cluster or the tsh profile), checked as Teleport checks its list.
fn config_uris(args: &ConfigArgs) -> Result<Vec<crate::teleport::DatabaseUri>, String> {
    use crate::teleport::DatabaseUri;
    let uris: Vec<DatabaseUri> = match (&args.db_user, &args.db_name) {
        (Some(user), Some(db)) => {
            let [name] = args.targets.as_slice() else {
                return Err("with --db-user and --db-name, name exactly one database".into());
            };
            let cluster = match &args.cluster {
                Some(c) => c.clone(),
                None => crate::teleport::TshHome::locate(None)
                    .ok_or_else(|| "no home directory".to_string())
                    .and_then(|h| h.current_profile())
                    .map(|p| p.cluster)
                    .map_err(|e| format!("cannot tell the cluster ({e}): pass --cluster"))?,
            };
            vec![DatabaseUri::new(&cluster, name, db, user)]
        }
        (None, None) => args
            .targets
            .iter()
            .map(|t| DatabaseUri::parse(t).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
        _ => return Err("--db-user and --db-name go together".into()),
    };
    if uris.is_empty() {
        return Err(
            "name at least one database (a URI, or NAME with --db-user and --db-name)".into(),
        );
    }
    crate::teleport::uri::check_set(uris.iter())?;
    Ok(uris)
}

/// The server configuration the client's sqlguard is to run with, as an absolute path, after
/// checking that it loads.
fn server_config(path: Option<&Path>) -> Result<Option<String>, String> {
    let Some(p) = path else {
        return Ok(None);
    };
    let abs = p
        .canonicalize()
        .map_err(|e| format!("cannot find the configuration {}: {e}", p.display()))?;
    crate::config::Config::load(&abs)?;
    Ok(Some(abs.display().to_string()))
}

fn config(args: ConfigArgs) -> ExitCode {
    use crate::clientconfig::{merge, update_file, Client, Entry, JsonFormat};
    let uris = match config_uris(&args) {
        Ok(u) => u,
        Err(e) => return usage_error(&e),
    };
    let command = match std::env::current_exe().and_then(|p| p.canonicalize()) {
        Ok(p) => p.display().to_string(),
        Err(e) => return usage_error(&format!("cannot find the sqlguard executable: {e}")),
    };
    let format = match args.json_format {
        JsonFormatArg::Pretty => JsonFormat::Pretty,
        JsonFormatArg::Compact => JsonFormat::Compact,
        JsonFormatArg::Auto => JsonFormat::Auto,
        JsonFormatArg::None => JsonFormat::None,
    };
    let config = match server_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let Some(target) = args.client_config else {
        let entry = Entry {
            name: args.name,
            command,
            uris,
            overwrite: args.overwrite,
            vscode: false,
            env: teleport_home_env(),
            config: config.clone(),
        };
        return match merge(serde_json::Value::Null, "mcpServers", &entry) {
            Ok(doc) => {
                print!(
                    "{}",
                    crate::clientconfig::render(&doc, JsonFormat::Pretty, false)
                );
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        };
    };
    let client = Client::parse(&target);
    let path = match client.path() {
        Ok(p) => p,
        Err(e) => return usage_error(&e.to_string()),
    };
    let key = client.servers_key(&path);
    let entry = Entry {
        name: args.name,
        command,
        uris,
        overwrite: args.overwrite,
        vscode: key == "servers",
        env: teleport_home_env(),
        config,
    };
    match update_file(&path, key, &entry, format) {
        Ok(_) => {
            println!(
                "Updated {} (entry {key}.{}). Restart the client to use sqlguard.",
                path.display(),
                entry.name
            );
            match &entry.config {
                Some(c) => println!("The client's sqlguard runs with --config {c}."),
                None => println!("The client's sqlguard runs the built-in policy: pass --config FILE (or set SQLGUARD_CONFIG) to run a team's."),
            }
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(&e.to_string()),
    }
}

fn doctor(args: ServeArgs, format: check::Format) -> ExitCode {
    let opts = serve_options(args);
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return usage_error(&format!("cannot find the sqlguard executable: {e}")),
    };
    let checks = rt.block_on(crate::doctor::run(&opts, &exe));
    match format {
        check::Format::Text => print!("{}", crate::doctor::render_text(&checks)),
        check::Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"ok": checks.iter().all(|c| c.ok), "checks": checks})
            )
            .unwrap_or_default()
        ),
    }
    if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn serve_options(args: ServeArgs) -> crate::mcp::ServeOptions {
    crate::mcp::ServeOptions {
        uris: args.uris,
        config: args.config,
        policy: args.policy,
        data: args.data,
        audit_log: args.audit_log,
        ship: false,
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let listen = args.listen.clone();
    let opts = serve_options(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return usage_error(&format!("cannot start the async runtime: {e}")),
    };
    let served = match listen {
        Some(addr) => runtime.block_on(crate::mcp::http::serve(opts, addr)),
        None => runtime.block_on(crate::mcp::serve(opts)),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sqlguard serve: {e}");
            ExitCode::from(2)
        }
    }
}

/// What `audit_scan` writes.
enum AuditOutput {
    Rows(crate::audit::query::Format),
    Summary(check::Format),
}

/// `audit query` and `audit summary`: one pass over the log, the chain checked as it is read.
fn audit_scan(log: AuditFile, filter: AuditFilter, output: AuditOutput) -> ExitCode {
    use crate::audit::query::{scan, Summary, Writer};
    let key = match (crate::audit::AuditKey {
        setting: "audit_key",
        file: log.key_file,
        env: log.key_env,
    })
    .load()
    {
        Ok(k) => k,
        Err(e) => return usage_error(&e),
    };
    let filter = match filter.filter() {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    let stdout = std::io::stdout().lock();
    let mut summary = Summary::default();
    let mut writer = match output {
        AuditOutput::Rows(format) => Some(Writer::new(
            std::io::BufWriter::with_capacity(1 << 16, stdout),
            format,
        )),
        AuditOutput::Summary(_) => None,
    };
    let scanned = scan(&log.file, key, &filter, |row| match writer.as_mut() {
        Some(w) => w.row(&row),
        None => {
            summary.add(&row);
            Ok(())
        }
    });
    let flushed = writer.as_mut().map_or(Ok(()), |w| w.flush());
    let scanned = match (scanned, flushed) {
        (Ok(s), Ok(())) => s,
        (Err(e), _) => return usage_error(&e),
        (_, Err(e)) => return usage_error(&format!("cannot write the answer: {e}")),
    };
    if let AuditOutput::Summary(format) = output {
        let mut out = std::io::stdout().lock();
        let written = match format {
            check::Format::Text => summary.print(&mut out),
            check::Format::Json => serde_json::to_writer_pretty(&mut out, &summary)
                .map_err(std::io::Error::from)
                .and_then(|()| std::io::Write::write_all(&mut out, b"\n")),
        };
        if let Err(e) = written {
            return usage_error(&format!("cannot write the answer: {e}"));
        }
    }
    match scanned.broken {
        None => ExitCode::SUCCESS,
        Some(crate::audit::VerifyError::NeedsKey) => {
            eprintln!(
                "{}: NOT CHECKED: {}",
                log.file.display(),
                crate::audit::NEEDS_KEY
            );
            ExitCode::from(2)
        }
        Some(crate::audit::VerifyError::Broken(e)) => {
            eprintln!(
                "{}: BROKEN: {e}; the calls above are those before the break",
                log.file.display()
            );
            ExitCode::from(1)
        }
    }
}

pub fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// `TELEPORT_HOME` for a client configuration entry, when it is set (as tsh writes it).
fn teleport_home_env() -> Vec<(String, String)> {
    match std::env::var("TELEPORT_HOME") {
        Ok(home) if !home.is_empty() => vec![("TELEPORT_HOME".to_string(), home)],
        _ => Vec::new(),
    }
}
