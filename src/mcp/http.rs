//! The team shape: `sqlguard serve --listen ADDR`, MCP over streamable HTTP behind Teleport's
//! Application Service (an `mcp+http://` app), where every request carries the caller's
//! identity in a JWT signed by the cluster's JWT CA (`docs/teleport-app.md`).
//!
//! - Every `/mcp` request must carry a valid token (`Teleport-Jwt-Assertion`, or
//!   `Authorization: Bearer`): RS256, verified against the cluster's JWKS (fetched over TLS,
//!   cached, fetched again for an unknown `kid`), `exp`/`nbf` within 60 s of skew, the
//!   configured audience (and issuer, when set). Anything else is 401 with the reason, and
//!   audited.
//! - The token's `username`, `roles` and `traits` are the identity the policy sees for that
//!   request's calls (`input.identity`, `source: teleport`).
//! - `/healthz` (the process answers) and `/readyz` (every database has a route) are open.
//! - `insecure_no_auth = true` serves without tokens, for local tests only, said loudly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxumState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;

use super::state::{ServeOptions, State};
use super::Sqlguard;
use crate::config::HttpConfig;
use crate::policy::{Identity, IdentitySource};

/// The claims of Teleport's app JWT that sqlguard reads.
#[derive(Debug, Deserialize)]
struct Claims {
    username: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    traits: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    #[serde(default)]
    kid: String,
    kty: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

#[derive(Debug, Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// A JWKS fetched less than this long ago is not fetched again for an unknown `kid`.
const REFETCH_MIN: Duration = Duration::from_secs(1);
/// Keys are fetched again after this long anyway (a rotation that removed a key).
const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// How long a stopping server waits for running calls.
const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_S: u64 = 60;

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Verifies tokens against the cluster's JWKS.
pub struct Verifier {
    url: String,
    agent: ureq::Agent,
    validation: Validation,
    keys: Mutex<Keys>,
}

impl Verifier {
    fn new(config: &HttpConfig) -> Result<Verifier, String> {
        let url = config.jwks_url.clone().ok_or(
            "[http] needs jwks_url (https://PROXY/.well-known/jwks.json) to verify Teleport's tokens, or insecure_no_auth = true for a local test",
        )?;
        crate::audit::ship::https_only(
            &url,
            "[http] jwks_url",
            "the keys that decide who calls must not be replaceable on the way",
        )?;
        let audience = config.audience.clone().ok_or(
            "[http] needs audience: the app's URI Teleport puts in the tokens' aud (see docs/teleport-app.md)",
        )?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
        }
        let agent = crate::audit::ship::https_agent(config.jwks_ca.as_deref(), "[http] jwks_ca")?;
        Ok(Verifier {
            url,
            agent,
            validation,
            keys: Mutex::new(Keys {
                by_kid: HashMap::new(),
                fetched: None,
            }),
        })
    }

    /// The cluster's keys, by `kid`.
    fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let mut response = self
            .agent
            .get(&self.url)
            .call()
            .map_err(|e| format!("the JWKS {} could not be fetched: {e}", self.url))?;
        if response.status() != 200 {
            return Err(format!(
                "the JWKS {} answered {}",
                self.url,
                response.status()
            ));
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("the JWKS {} could not be read: {e}", self.url))?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("the JWKS {} is not a key set: {e}", self.url))?;
        let mut out = HashMap::new();
        for k in set.keys.iter().filter(|k| k.kty == "RSA") {
            if let Ok(key) = DecodingKey::from_rsa_components(&k.n, &k.e) {
                out.insert(k.kid.clone(), key);
            }
        }
        Ok(out)
    }

    /// The key for `kid` (any key's attempt when the token names none), fetching the set
    /// again when it is unknown or old.
    async fn keys_for(self: &Arc<Self>, kid: &str) -> Result<Vec<DecodingKey>, String> {
        let pick = |keys: &Keys| -> Vec<DecodingKey> {
            if kid.is_empty() {
                keys.by_kid.values().cloned().collect()
            } else {
                keys.by_kid.get(kid).cloned().into_iter().collect()
            }
        };
        let stale = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            let found = pick(&keys);
            let age = keys.fetched.map(|t| t.elapsed());
            let old = age.is_none_or(|a| a > KEYS_MAX_AGE);
            let may_refetch = age.is_none_or(|a| a > REFETCH_MIN);
            if !found.is_empty() && !old {
                return Ok(found);
            }
            may_refetch
        };
        if stale {
            let me = self.clone();
            let fetched = tokio::task::spawn_blocking(move || me.fetch())
                .await
                .map_err(|e| e.to_string())??;
            let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.by_kid = fetched;
            keys.fetched = Some(Instant::now());
        }
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let found = pick(&keys);
        if found.is_empty() {
            return Err(format!(
                "the token is signed with key {kid:?}, which the cluster's JWKS does not hold"
            ));
        }
        Ok(found)
    }

    /// The identity a token carries, or why it is refused: `(rule, message)`.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Identity, (&'static str, String)> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ("jwt_malformed", format!("the token is not a JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err((
                "jwt_bad_signature",
                format!(
                    "the token is signed with {:?}; Teleport signs with RS256",
                    header.alg
                ),
            ));
        }
        let keys = self
            .keys_for(header.kid.as_deref().unwrap_or(""))
            .await
            .map_err(|m| ("jwt_unknown_key", m))?;
        let mut last = None;
        for key in &keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    let c = data.claims;
                    return Ok(Identity {
                        user: c.username,
                        roles: c.roles,
                        traits: c.traits,
                        source: IdentitySource::Teleport,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(e) = last else {
            return Err(("jwt_unknown_key", "the cluster's JWKS holds no key".into()));
        };
        use jsonwebtoken::errors::ErrorKind;
        let (rule, message) = match e.kind() {
            ErrorKind::ExpiredSignature => (
                "jwt_expired",
                "the token has expired: Teleport issues a fresh one per request; check the clocks",
            ),
            ErrorKind::ImmatureSignature => (
                "jwt_not_yet_valid",
                "the token is not valid yet (nbf): check the clocks",
            ),
            ErrorKind::InvalidAudience => (
                "jwt_wrong_audience",
                "the token is for another app (aud): check [http] audience against the app's URI",
            ),
            ErrorKind::InvalidIssuer => (
                "jwt_wrong_issuer",
                "the token is from another cluster (iss): check [http] issuer",
            ),
            ErrorKind::InvalidSignature => (
                "jwt_bad_signature",
                "the token's signature does not verify with the cluster's keys",
            ),
            _ => return Err(("jwt_invalid", format!("the token is not valid: {e}"))),
        };
        Err((rule, message.to_string()))
    }
}

/// For `doctor`: whether `[http]` can verify tokens (its JWKS fetched now), or why not.
pub fn check_config(config: &HttpConfig) -> Result<String, String> {
    if config.insecure_no_auth {
        return Err("insecure_no_auth = true: every caller of serve --listen is served as this machine's user, unauthenticated".into());
    }
    let verifier = Verifier::new(config)?;
    let keys = verifier.fetch()?;
    if keys.is_empty() {
        return Err(format!("the JWKS {} holds no RSA key", verifier.url));
    }
    Ok(format!(
        "{} RSA key(s) at {}; tokens must name aud {}",
        keys.len(),
        verifier.url,
        config.audience.as_deref().unwrap_or("")
    ))
}

/// How requests are authenticated.
#[derive(Clone)]
enum Auth {
    Teleport(Arc<Verifier>),
    None,
}

#[derive(Clone)]
struct Shared {
    auth: Auth,
    state: Arc<State>,
}

/// The token a request carries.
fn token_of(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(v) = headers.get("teleport-jwt-assertion") {
        return v.to_str().ok();
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unauthorized(rule: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": message, "rule": rule});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Verifies the request's token and hands its identity to the MCP handler; 401 otherwise.
async fn authenticate(
    AxumState(shared): AxumState<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    let Auth::Teleport(verifier) = &shared.auth else {
        return next.run(request).await;
    };
    let verified = match token_of(&request) {
        None => Err((
            "jwt_missing",
            "the request carries no Teleport token (Teleport-Jwt-Assertion or Authorization: Bearer): reach this server through Teleport's app access".to_string(),
        )),
        Some(token) => verifier.verify(token).await,
    };
    match verified {
        Ok(identity) => {
            request.extensions_mut().insert(Arc::new(identity));
            next.run(request).await
        }
        Err((rule, message)) => {
            shared.state.audit_refused_request(rule, &message);
            unauthorized(rule, &message)
        }
    }
}

async fn readyz(AxumState(shared): AxumState<Shared>) -> Response {
    let down: Vec<String> = shared
        .state
        .databases
        .iter()
        .filter_map(|d| {
            d.backend
                .ready()
                .err()
                .map(|why| format!("{}: {why}", d.context.uri))
        })
        .collect();
    if down.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, down.join("\n") + "\n").into_response()
    }
}

async fn metrics(AxumState(shared): AxumState<Shared>) -> Response {
    let text = shared.state.metrics.render(&shared.state);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// Serves MCP over streamable HTTP on `listen` until SIGINT or SIGTERM.
pub async fn serve(mut opts: ServeOptions, listen: String) -> Result<(), String> {
    let config = opts.load_config()?.http;
    let auth = if config.insecure_no_auth {
        eprintln!("!!!!! sqlguard serves {listen} WITHOUT AUTHENTICATION (insecure_no_auth = true): every caller gets this machine's identity. Local tests only. !!!!!");
        Auth::None
    } else {
        Auth::Teleport(Arc::new(Verifier::new(&config)?))
    };
    let (state, _reloader) = super::start(&mut opts, "streamable HTTP").await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(config.allowed_hosts.iter().cloned());
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(config.max_body_bytes.unwrap_or(1 << 20))
        .with_cancellation_token(shutdown.child_token());
    let for_sessions = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Sqlguard::new(for_sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_config,
    );
    let shared = Shared {
        auth,
        state: state.clone(),
    };
    let guarded = axum::Router::new().route_service("/mcp", mcp).route_layer(
        axum::middleware::from_fn_with_state(shared.clone(), authenticate),
    );
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(shared)
        .merge(guarded);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "sqlguard serving MCP at http://{}/mcp",
        listener
            .local_addr()
            .map_or(listen.clone(), |a| a.to_string())
    );
    let stop = shutdown.clone();
    let drain = state.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            // Running calls finish and write their outcomes; new ones are refused.
            let left = drain.limiter.drain(DRAIN_GRACE).await;
            if left > 0 {
                tracing::warn!(left, "calls still running after the drain: cancelled");
            }
            stop.cancel();
        })
        .await
        .map_err(|e| e.to_string());
    state.lifecycle("stop", None);
    served
}
