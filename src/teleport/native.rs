//! Native TLS routing: TLS to the Teleport proxy's web address with ALPN `teleport-postgres`,
//! SNI the proxy host, the database certificate from `tsh db login` as client certificate;
//! inside, plain PostgreSQL. Credentials are read again for every new connection, so a
//! `tsh login` / `tsh db login` takes effect on the next call without a restart.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;

use super::identity::read_cert;
use super::profile::DbCredentials;
use super::{DatabaseUri, Profile, TshHome};
use crate::execution::{tls, BoxStream, Dial, ExecError};

pub const ALPN_POSTGRES: &[u8] = b"teleport-postgres";
/// The same with Teleport's ping framing (keeps idle connections open behind load balancers).
pub const ALPN_POSTGRES_PING: &[u8] = b"teleport-postgres-ping";

pub struct NativeDialer {
    home: TshHome,
    uri: DatabaseUri,
    trust: ProxyTrust,
}

/// What the proxy's web certificate is checked against, beyond the system's roots and the
/// cluster's CAs in the tsh home.
#[derive(Debug, Clone, Default)]
pub struct ProxyTrust {
    /// `[teleport] ca`.
    pub ca: Option<PathBuf>,
    /// `[teleport] insecure`: no verification (tests only).
    pub insecure: bool,
}

/// The `tsh` commands that fix missing or expired credentials.
pub fn tsh_login_hint(p: Option<&Profile>) -> String {
    match p {
        Some(p) => format!("tsh login --proxy={} --user={}", p.web_proxy_addr, p.user),
        None => "tsh login --proxy=<proxy address>".into(),
    }
}

pub fn tsh_db_login_hint(uri: &DatabaseUri) -> String {
    format!(
        "tsh db login --db-user={} --db-name={} {}",
        uri.db_user(),
        uri.db_name(),
        uri.name
    )
}

/// Native mode needs a proxy that routes by ALPN on its web port without a connection upgrade.
fn check_routing(profile: &Profile) -> Result<(), ExecError> {
    let unroutable = |why: &str| {
        ExecError::Connect {
        target: format!("Teleport proxy {}", profile.proxy_addr()),
        reason: format!("{why}: use mode = \"tsh-tunnel\" (mode = \"auto\" does so by itself when tsh is installed)"),
    }
    };
    if !profile.tls_routing_enabled {
        return Err(unroutable(
            "the proxy does not use TLS routing (tls_routing_enabled is not true in the tsh profile), which sqlguard's native mode needs",
        ));
    }
    if profile.tls_routing_conn_upgrade_required {
        return Err(unroutable(
            "the proxy sits behind an L7 load balancer (tls_routing_conn_upgrade_required in the tsh profile), and sqlguard's native mode does not do the connection upgrade yet",
        ));
    }
    Ok(())
}

impl NativeDialer {
    pub fn new(home: TshHome, uri: DatabaseUri, trust: ProxyTrust) -> NativeDialer {
        NativeDialer { home, uri, trust }
    }

    /// Checks that this route can work now (the proxy routes by ALPN on its web port, the
    /// session and the database certificate are valid) and builds the TLS configuration.
    pub fn prepare(&self) -> Result<(Profile, rustls::ClientConfig), ExecError> {
        let cred = ExecError::Credentials;
        let profile = self.home.current_profile().map_err(cred)?;
        check_routing(&profile)?;
        if let Some(user_cert) = self.home.user_cert(&profile) {
            if read_cert(&user_cert).map(|c| c.expired()).unwrap_or(false) {
                return Err(cred(format!(
                    "your Teleport session expired: run `{}` (no restart of sqlguard or the client is needed)",
                    tsh_login_hint(Some(&profile))
                )));
            }
        }
        let creds = self
            .home
            .db_credentials(&profile, &self.uri.cluster, &self.uri.name)
            .ok_or_else(|| {
                cred(format!(
                    "no database certificate for {} in {}: run `{}`",
                    self.uri.name,
                    self.home.dir.display(),
                    tsh_db_login_hint(&self.uri)
                ))
            })?;
        let info = read_cert(&creds.cert).map_err(cred)?;
        if info.expired() {
            return Err(cred(format!(
                "your database certificate for {} has expired: run `{}` (no restart needed)",
                self.uri.name,
                tsh_db_login_hint(&self.uri)
            )));
        }
        let config = self.tls_config(&profile, &creds)?;
        Ok((profile, config))
    }

    /// The client TLS configuration: the database certificate as client identity, ALPN as
    /// tsh's local proxy sends it.
    fn tls_config(
        &self,
        profile: &Profile,
        creds: &DbCredentials,
    ) -> Result<rustls::ClientConfig, ExecError> {
        let cred = ExecError::Credentials;
        let certs = tls::load_certs(&creds.cert).map_err(cred)?;
        let key = tls::load_key(&creds.key).map_err(cred)?;
        // The web port presents a public, configured or self-signed certificate: system roots
        // plus the cluster's CAs plus any configured CA.
        let mut roots = tls::roots(&[]).unwrap_or_else(|_| rustls::RootCertStore::empty());
        for ca in self
            .home
            .cluster_cas(profile)
            .iter()
            .chain(self.trust.ca.iter())
        {
            if let Ok(certs) = tls::load_certs(ca) {
                for c in certs {
                    let _ = roots.add(c);
                }
            }
        }
        let verify = if self.trust.insecure {
            tls::Verify::None
        } else {
            tls::Verify::Full
        };
        tls::client_config(
            verify,
            roots,
            Some((certs, key)),
            // As tsh's local proxy: the ping variant first.
            vec![ALPN_POSTGRES_PING.to_vec(), ALPN_POSTGRES.to_vec()],
        )
        .map_err(|e| {
            cred(format!(
                "cannot use the database certificate {}: {e}",
                creds.cert.display()
            ))
        })
    }

    async fn connect(&self) -> Result<BoxStream, ExecError> {
        let prepared = self.prepare()?;
        self.connect_prepared(prepared).await
    }

    /// Dials the proxy with what [`Self::prepare`] built.
    pub async fn connect_prepared(
        &self,
        (profile, config): (Profile, rustls::ClientConfig),
    ) -> Result<BoxStream, ExecError> {
        let target = profile.proxy_addr();
        let fail = |reason: String| ExecError::Connect {
            target: format!("Teleport proxy {target}"),
            reason,
        };
        let tcp = TcpStream::connect(&target)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(profile.proxy_host().to_string())
            .map_err(|e| fail(format!("bad proxy host name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| {
            let m = e.to_string();
            if m.contains("NoApplicationProtocol") || m.contains("no_application_protocol") {
                fail(format!(
                    "the proxy does not route ALPN teleport-postgres ({m}): check that TLS routing is enabled, or use mode = \"tsh-tunnel\" behind an L7 load balancer"
                ))
            } else if m.contains("UnknownIssuer") || m.contains("invalid peer certificate") {
                fail(format!("the proxy's certificate is not trusted ({m}): check the proxy address, or set [teleport] ca = \"FILE\" to the CA that signed it (insecure = true skips the check, for test clusters only)"))
            } else if m.contains("CertificateExpired") || m.contains("certificate_expired") || m.contains("BadCertificate") || m.contains("bad_certificate") || m.contains("UnknownCA") || m.contains("unknown_ca") {
                fail(format!("the proxy refused the database certificate ({m}): run `{}`", tsh_db_login_hint(&self.uri)))
            } else {
                fail(format!("TLS handshake failed: {m}"))
            }
        })?;
        if stream.get_ref().1.alpn_protocol() == Some(ALPN_POSTGRES_PING) {
            return Ok(Box::new(super::ping::PingStream::new(stream)));
        }
        Ok(Box::new(stream))
    }
}

impl Dial for NativeDialer {
    fn dial(&self) -> Pin<Box<dyn Future<Output = Result<BoxStream, ExecError>> + Send + '_>> {
        Box::pin(self.connect())
    }

    fn target(&self) -> String {
        format!("{} (Teleport TLS routing)", self.uri.resource())
    }
}
