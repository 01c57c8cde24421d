//! What the server holds: databases with their connection pools, the policy (swappable on
//! reload), the caller's identity and the audit log.

use std::path::Path;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::analysis::AnalysisOptions;
use crate::audit::{AuditKey, AuditLog};
use crate::config::{AuditQuery, Config, DatabaseSpec, Mode, DEFAULT_MAX_QUERY_BYTES};
use crate::execution::catalog::{CatalogRefresh, LiveCatalog};
use crate::execution::{Database, DirectDialer, Dsn, Endpoint, PoolOptions, SessionSettings};
use crate::policy::{Bundle, DatabaseContext, Identity, Policy};
use crate::teleport::TshHome;

/// `sqlguard serve` options (command line over configuration file).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub uris: Vec<String>,
    pub config: Option<PathBuf>,
    pub policy: Vec<PathBuf>,
    pub data: Vec<PathBuf>,
    pub audit_log: Option<PathBuf>,
    /// Start the decision-log shipper (`serve` does; `doctor` and the CLI's tools do not).
    pub ship: bool,
}

impl ServeOptions {
    pub fn load_config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if !self.policy.is_empty() {
            config.policy = self.policy.clone();
        }
        config.data.extend(self.data.iter().cloned());
        if self.audit_log.is_some() {
            config.audit_log = self.audit_log.clone();
        }
        Ok(config)
    }

    /// Files and directories whose change triggers a policy reload.
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        self.load_config()
            .map(|c| c.policy.iter().chain(c.data.iter()).cloned().collect())
            .unwrap_or_default()
    }
}

/// How a served database is reached (or why it cannot be).
pub enum Backend {
    Ready(Database),
    Unavailable(String),
}

impl Backend {
    /// The pool, or why the database cannot be reached.
    pub fn ready(&self) -> Result<&Database, &str> {
        match self {
            Backend::Ready(db) => Ok(db),
            Backend::Unavailable(why) => Err(why),
        }
    }
}

pub struct ServedDatabase {
    pub spec: DatabaseSpec,
    pub context: DatabaseContext,
    pub backend: Backend,
    /// Its own catalog, when `catalog` is on: names in its queries resolve against it.
    pub catalog: Option<LiveCatalog>,
    /// What the policy's names were last compared with ([`crate::policy::lint`]): the
    /// snapshot's address, the policy's digest, and the warnings said for that digest (each is
    /// said once per loaded policy, whatever snapshot finds it again).
    pub linted: std::sync::Mutex<Linted>,
}

/// See [`ServedDatabase::linted`].
#[derive(Default)]
pub struct Linted {
    snapshot: usize,
    digest: String,
    said: Vec<String>,
}

impl ServedDatabase {
    /// Warns (once per snapshot and policy) about the policy's entries that name nothing in
    /// this database's catalog.
    pub fn lint(&self, opts: &AnalysisOptions, policy: &Policy) {
        let Some(snapshot) = opts.shared_snapshot() else {
            return;
        };
        // Every call passes here: compared without allocating.
        let at = Arc::as_ptr(snapshot) as usize;
        if self
            .linted
            .lock()
            .is_ok_and(|l| l.snapshot == at && l.digest == policy.digest())
        {
            return;
        }
        self.lint_snapshot(snapshot, policy);
        if let Ok(mut l) = self.linted.lock() {
            l.snapshot = at;
        }
    }

    /// Warns about the policy's entries that name nothing in `snapshot`, each once per policy.
    pub fn lint_snapshot(&self, snapshot: &crate::analysis::snapshot::Snapshot, policy: &Policy) {
        let found = crate::policy::lint::unmatched(&policy.bundle().data, snapshot);
        let Ok(mut l) = self.linted.lock() else {
            return;
        };
        if l.digest != policy.digest() {
            l.digest = policy.digest().to_string();
            l.said.clear();
        }
        for u in found {
            let text = u.to_string();
            if !l.said.contains(&text) {
                tracing::warn!(database = %self.context.uri, "{text}");
                l.said.push(text);
            }
        }
    }

    /// The analysis options for a call on this database (its catalog read first if due).
    pub async fn analysis(&self, fallback: &Arc<AnalysisOptions>) -> Arc<AnalysisOptions> {
        match &self.catalog {
            Some(c) => c.options(self.backend.ready().ok()).await,
            None => fallback.clone(),
        }
    }
}

pub struct State {
    pub databases: Vec<ServedDatabase>,
    policy: RwLock<Arc<Policy>>,
    pub policy_dirs: Vec<PathBuf>,
    pub data_files: Vec<PathBuf>,
    /// The decision cache's size, for every policy loaded (a reload starts it empty).
    pub cache_entries: usize,
    /// The evaluator every loaded bundle asks for.
    pub evaluator: crate::policy::Evaluator,
    /// Analysis options without a catalog snapshot.
    pub analysis: Arc<AnalysisOptions>,
    /// Who is calling, as policies see it (re-read after `tsh login`).
    pub identity: CallerIdentity,
    pub audit: Option<AuditLog>,
    pub audit_query: AuditQuery,
    pub audit_query_max_bytes: usize,
    pub audit_fail_closed: bool,
    /// The key of `hash` masks, when configured.
    pub mask_key: Option<Arc<[u8]>>,
    pub max_query_bytes: usize,
    /// How long a person has to answer a policy's ask.
    pub approval_timeout: std::time::Duration,
    /// Per-identity limits, and the drain at shutdown.
    pub limiter: Arc<super::limits::Limiter>,
    /// Calls, refusals and latencies, for `/metrics`.
    pub metrics: super::metrics::Metrics,
    /// This server's session (one per process: one MCP client over stdio), on every record.
    pub session_id: String,
    /// Ships every audit record to the decision-log collector, when one is configured.
    pub shipper: Option<Arc<crate::audit::ship::Shipper>>,
}

fn local_identity() -> Identity {
    Identity {
        user: std::env::var("USER").unwrap_or_default(),
        roles: Vec::new(),
        traits: Default::default(),
        ..Default::default()
    }
}

/// What identifies the tsh login on disk: the modification times of `current-profile` and of
/// the user certificate last read.
type LoginStamp = (Option<SystemTime>, Option<SystemTime>);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The identity policies see: the Teleport user (name, roles, traits) from the current tsh
/// profile's user certificate, else the local user. Read again whenever the profile or the
/// certificate changes on disk, so a `tsh login` after sqlguard started is seen at the next
/// call (two `stat` calls per call; a full read only on change).
pub struct CallerIdentity {
    home: Option<TshHome>,
    /// Warn when there is no Teleport identity (some database goes through Teleport).
    expects_teleport: bool,
    cached: RwLock<(LoginStamp, Option<PathBuf>, Arc<Identity>)>,
}

impl CallerIdentity {
    fn new(home: Option<TshHome>, expects_teleport: bool) -> CallerIdentity {
        let me = CallerIdentity {
            home,
            expects_teleport,
            cached: RwLock::new(((None, None), None, Arc::new(local_identity()))),
        };
        me.reload(true);
        me
    }

    fn stamp(&self, cert: Option<&Path>) -> LoginStamp {
        let profile = self
            .home
            .as_ref()
            .and_then(|h| modified(&h.dir.join("current-profile")));
        (profile, cert.and_then(modified))
    }

    /// The identity as of now.
    pub fn current(&self) -> Arc<Identity> {
        if self.home.is_none() {
            return self.snapshot();
        }
        let (stamp, cert) = match self.cached.read() {
            Ok(c) => (c.0, c.1.clone()),
            Err(_) => return Arc::new(local_identity()),
        };
        if self.stamp(cert.as_deref()) != stamp {
            self.reload(false);
        }
        self.snapshot()
    }

    fn snapshot(&self) -> Arc<Identity> {
        self.cached
            .read()
            .map(|c| c.2.clone())
            .unwrap_or_else(|_| Arc::new(local_identity()))
    }

    fn reload(&self, at_start: bool) {
        let Some(home) = &self.home else { return };
        let cert = home.current_profile().ok().and_then(|p| home.user_cert(&p));
        let identity = match crate::teleport::identity_from_profile(home) {
            Ok(id) => {
                if !at_start {
                    tracing::info!(user = %id.user, roles = ?id.roles, "Teleport identity read again (the tsh login changed)");
                }
                id
            }
            Err(e) => {
                if self.expects_teleport {
                    tracing::warn!("no Teleport identity ({e}); policies see the local user");
                }
                local_identity()
            }
        };
        let stamp = self.stamp(cert.as_deref());
        if let Ok(mut c) = self.cached.write() {
            *c = (stamp, cert, Arc::new(identity));
        }
    }
}

/// The configured bundle, loaded and prepared.
fn load_policy(
    config: &Config,
    evaluator: crate::policy::Evaluator,
    cache_entries: usize,
) -> Result<Policy, String> {
    let mut bundle = Bundle::load(&config.policy, &config.data).map_err(|e| e.to_string())?;
    bundle.evaluator = evaluator;
    Policy::with_cache(bundle, cache_entries)
        .map_err(|e| format!("the policy bundle does not load: {e}"))
}

/// The connection pool's options, from the configuration or their defaults.
fn pool_options(config: &Config) -> PoolOptions {
    let defaults = PoolOptions::default();
    PoolOptions {
        size: config.pool_size.unwrap_or(defaults.size),
        connect_timeout: config
            .connect_timeout_ms
            .map_or(defaults.connect_timeout, Duration::from_millis),
        wait_timeout: config
            .pool_wait_ms
            .map_or(defaults.wait_timeout, Duration::from_millis),
        idle_timeout: config
            .idle_timeout_s
            .map_or(defaults.idle_timeout, Duration::from_secs),
    }
}

/// How a served database is reached: its dsn, or Teleport (native TLS routing or a tsh tunnel).
/// A Teleport route that cannot be set up now is `Unavailable`, said at each call.
fn backend(
    spec: &DatabaseSpec,
    config: &Config,
    home: Option<&TshHome>,
    settings: &SessionSettings,
    pool: PoolOptions,
) -> Result<Backend, String> {
    Ok(match (spec.mode, &spec.dsn) {
        (Mode::Direct, Some(dsn)) | (Mode::Auto, Some(dsn)) => {
            let dialer = Dsn::parse(dsn)
                .and_then(DirectDialer::new)
                .map_err(|e| format!("database {}: {e}", spec.uri.resource()))?;
            Backend::Ready(Database::with_options(
                dialer.endpoint(),
                settings.clone(),
                pool,
            ))
        }
        (mode, _) => match home
            .cloned()
            .ok_or_else(|| {
                "no home directory to find tsh's files in: set [teleport] home".to_string()
            })
            .and_then(|h| {
                crate::teleport::dialer(
                    mode,
                    h,
                    &spec.uri,
                    config.teleport.tsh.as_deref(),
                    crate::teleport::native::ProxyTrust {
                        ca: config.teleport.ca.clone(),
                        insecure: config.teleport.insecure,
                    },
                )
            }) {
            Ok(dialer) => Backend::Ready(Database::with_options(
                Endpoint {
                    dialer,
                    user: spec.uri.db_user().to_string(),
                    dbname: spec.uri.db_name().to_string(),
                    password: None,
                },
                settings.clone(),
                pool,
            )),
            Err(e) => Backend::Unavailable(e),
        },
    })
}

/// A database as served: its policy context, its route, its catalog (when read).
fn served(
    spec: DatabaseSpec,
    backend: Backend,
    catalog: Option<(Arc<AnalysisOptions>, CatalogRefresh)>,
) -> ServedDatabase {
    let context = DatabaseContext {
        uri: spec.uri.resource(),
        cluster: spec.uri.cluster.clone(),
        name: spec.uri.name.clone(),
        db_name: spec.uri.db_name().to_string(),
        db_user: spec.uri.db_user().to_string(),
        labels: spec.labels.clone(),
    };
    ServedDatabase {
        spec,
        context,
        backend,
        catalog: catalog.map(|(analysis, refresh)| LiveCatalog::new(analysis, refresh)),
        linted: std::sync::Mutex::new(Linted::default()),
    }
}

/// The key of `hash` masks, when configured.
fn mask_key(config: &Config) -> Result<Option<Arc<[u8]>>, String> {
    let key = AuditKey {
        setting: "mask_key",
        file: config.mask_key_file.clone(),
        env: config.mask_key_env.clone(),
    };
    Ok(key.load()?.map(Arc::from))
}

/// The audit log, opened (a torn last line moved aside, said on stderr), when configured.
fn open_audit(config: &Config) -> Result<Option<AuditLog>, String> {
    Ok(match &config.audit_log {
        Some(p) => {
            let key = AuditKey {
                setting: "audit_key",
                file: config.audit_key_file.clone(),
                env: config.audit_key_env.clone(),
            }
            .load()?;
            let (log, notice) = AuditLog::open(p, key)?;
            if let Some(n) = notice {
                tracing::warn!("{n}");
            }
            Some(log)
        }
        None => None,
    })
}

impl State {
    pub async fn build(opts: &ServeOptions) -> Result<Arc<State>, String> {
        let config = opts.load_config()?;
        let specs = config.database_specs(&opts.uris)?;
        let evaluator = config.evaluator.unwrap_or_default();
        let cache_entries = config
            .decision_cache_entries
            .unwrap_or(crate::policy::DEFAULT_CACHE_ENTRIES);
        let policy = load_policy(&config, evaluator, cache_entries)?;
        let search_path = config.search_path.clone().unwrap_or_else(|| {
            crate::analysis::DEFAULT_SEARCH_PATH
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let settings = SessionSettings {
            search_path: search_path.clone(),
            lock_timeout_ms: config.lock_timeout_ms.unwrap_or(5_000),
            ..SessionSettings::default()
        };
        let home = TshHome::locate(config.teleport.home.as_deref());
        let identity = CallerIdentity::new(home.clone(), specs.iter().any(|s| s.dsn.is_none()));
        let pool = pool_options(&config);
        let analysis = Arc::new(AnalysisOptions::new(search_path));
        let refresh = CatalogRefresh {
            max_age: config
                .catalog_refresh_s
                .map_or(CatalogRefresh::default().max_age, Duration::from_secs),
            ..CatalogRefresh::default()
        };
        let catalog = config
            .catalog
            .unwrap_or(true)
            .then(|| (analysis.clone(), refresh));
        let mut databases = Vec::new();
        for spec in specs {
            let backend = backend(&spec, &config, home.as_ref(), &settings, pool)?;
            databases.push(served(spec, backend, catalog.clone()));
        }
        let session_id = uuid::Uuid::new_v4().to_string();
        let shipper = match (&config.decision_log, opts.ship) {
            (Some(d), true) => Some(crate::audit::ship::Shipper::start(
                d.clone(),
                d.spool
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("decisions.spool")),
                &session_id,
            )?),
            _ => None,
        };
        let audit = open_audit(&config)?;
        let mask_key = mask_key(&config)?;
        Ok(Arc::new(State {
            mask_key,
            databases,
            policy: RwLock::new(Arc::new(policy)),
            policy_dirs: config.policy.clone(),
            data_files: config.data.clone(),
            cache_entries,
            evaluator,
            analysis,
            identity,
            audit,
            audit_query: config.audit_query,
            audit_query_max_bytes: config
                .audit_query_max_bytes
                .unwrap_or(crate::audit::DEFAULT_MAX_QUERY_BYTES),
            audit_fail_closed: config.audit_fail_closed.unwrap_or(true),
            max_query_bytes: config.max_query_bytes.unwrap_or(DEFAULT_MAX_QUERY_BYTES),
            approval_timeout: super::approval::timeout(config.approval_timeout_s),
            limiter: Arc::new(super::limits::Limiter::new(config.limits.per_user)),
            metrics: super::metrics::Metrics::new(),
            session_id,
            shipper,
        }))
    }

    /// The current policy (a cheap clone of the prepared engine's handle).
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Writes a `start`, `reload` or `stop` record (a failure is logged: the server goes on).
    pub fn lifecycle(
        &self,
        event: &'static str,
        reload: Option<Result<(), (String, Option<String>)>>,
    ) {
        if self.audit.is_none() && self.shipper.is_none() {
            return;
        }
        let policy = self.policy();
        let (accepted, reason, refused_digest) = match reload {
            None => (None, None, None),
            Some(Ok(())) => (Some(true), None, None),
            Some(Err((why, digest))) => (Some(false), Some(why), digest),
        };
        let record = crate::audit::LifecycleRecord {
            time: crate::audit::now_rfc3339(),
            event,
            session_id: self.session_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            policy_digest: policy.digest().to_string(),
            bundle_revision: policy.bundle().revision.clone(),
            sources: policy.bundle().sources.clone(),
            accepted,
            reason,
            refused_digest,
        };
        self.ship(&record);
        let Some(log) = &self.audit else {
            return;
        };
        if let Err(e) = log.append(&record) {
            tracing::error!("AUDIT LOG WRITE FAILED for the {event} record: {e}");
        }
    }

    /// Records an HTTP request refused before it reached MCP (no or a bad token): a `decision`
    /// record of tool `http`, verdict `denied`, with the rule and the reason.
    pub fn audit_refused_request(&self, rule: &str, message: &str) {
        self.metrics.refused_request(rule);
        let policy = self.policy();
        let record = serde_json::json!({
            "time": crate::audit::now_rfc3339(),
            "event": "decision",
            "decision_id": uuid::Uuid::new_v4().to_string(),
            "session_id": self.session_id,
            "policy_digest": policy.digest(),
            "database": "",
            "identity": {"user": "", "roles": [], "source": "teleport"},
            "tool": "http",
            "allow": false,
            "verdict": crate::audit::verdict::DENIED,
            "rules": [rule],
            "reasons": [{"rule": rule, "message": message, "statement": -1}],
        });
        self.ship(&record);
        if let Some(log) = &self.audit {
            if let Err(e) = log.append(&record) {
                tracing::error!("AUDIT LOG WRITE FAILED for a refused request: {e}");
            }
        }
    }

    /// Reads each database's catalog and warns about the policy's entries that name nothing in
    /// it: at start and after a reload, not only at a database's first call.
    pub async fn lint_all(&self) {
        let policy = self.policy();
        for d in &self.databases {
            // A snapshot of its own: the one calls use is read at the first call, as always,
            // so that what is created before it is seen.
            if let (Some(_), Ok(db)) = (&d.catalog, d.backend.ready()) {
                if let Ok(snapshot) = db.read_catalog().await {
                    d.lint_snapshot(&snapshot, &policy);
                }
            }
        }
    }

    /// Hands a record to the decision-log shipper, when there is one.
    pub fn ship<T: serde::Serialize>(&self, record: &T) {
        if let Some(s) = &self.shipper {
            match serde_json::to_value(record) {
                Ok(v) => s.enqueue(&v),
                Err(e) => tracing::error!("a decision-log event could not be built: {e}"),
            }
        }
    }

    /// Loads the bundle again; on failure the old policy stays. Either way the audit log gets
    /// a `reload` record.
    pub fn reload_policy(&self) -> Result<String, String> {
        let result = self.load_new_policy();
        self.lifecycle(
            "reload",
            Some(match &result {
                Ok(_) => Ok(()),
                Err((why, digest)) => Err((why.clone(), digest.clone())),
            }),
        );
        result.map_err(|(why, _)| why)
    }

    /// The new policy's digest, or why it was refused (and the refused files' digest, when
    /// they loaded).
    fn load_new_policy(&self) -> Result<String, (String, Option<String>)> {
        let mut bundle =
            Bundle::load(&self.policy_dirs, &self.data_files).map_err(|e| (e.to_string(), None))?;
        let refused = Some(bundle.digest.clone());
        bundle.evaluator = self.evaluator;
        let policy = Policy::with_cache(bundle, self.cache_entries)
            .map_err(|e| (e.to_string(), refused.clone()))?;
        policy.smoke_test().map_err(|e| {
            (format!("the new bundle fails to evaluate an ordinary query ({e}), so it would deny such calls"), refused.clone())
        })?;
        let digest = policy.digest().to_string();
        // A reload also reads each database's catalog again at its next call.
        for d in &self.databases {
            if let Some(c) = &d.catalog {
                c.invalidate();
            }
        }
        match self.policy.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
        Ok(digest)
    }

    /// The served database whose resource URI is `resource`.
    pub fn database(&self, resource: &str) -> Option<&ServedDatabase> {
        self.databases.iter().find(|d| d.context.uri == resource)
    }
}
