//! Teleport: database resource URIs, the user's tsh credentials and identity, and the routes
//! to a database through the Teleport proxy (native TLS routing, or a `tsh proxy db` tunnel).

pub mod identity;
pub mod native;
pub mod ping;
pub mod profile;
pub mod tunnel;
pub mod uri;

pub use profile::{Profile, TshHome};
pub use uri::{DatabaseUri, UriError};

/// How a database is reached: `auto` (native TLS routing through the Teleport proxy, else a
/// `tsh proxy db --tunnel` child), `native`, `tsh-tunnel`, or `direct` (a `dsn`, no Teleport).
/// The configuration names it per database; it lives here, below the configuration, so that
/// the dependency runs one way.
#[derive(Debug, Clone, Copy, serde::Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Auto,
    Native,
    TshTunnel,
    Direct,
}

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use crate::execution::{BoxStream, Dial, ExecError};
use crate::policy::Identity;

/// Mode `auto`: native routing when it can work now (TLS routing on the proxy's web port, no
/// L7 connection upgrade needed, a valid `tsh db login` certificate), else the tsh tunnel when
/// tsh is installed (like `tsh mcp db start`, it needs only `tsh login`), else the native
/// route's own error. Decided again at every dial, so logging in later changes the route
/// without a restart.
pub struct AutoDialer {
    pub native: native::NativeDialer,
    pub tunnel: Option<tunnel::TunnelDialer>,
    pub uri: DatabaseUri,
}

impl AutoDialer {
    async fn connect(&self) -> Result<BoxStream, ExecError> {
        match (self.native.prepare(), &self.tunnel) {
            (Ok(prepared), _) => self.native.connect_prepared(prepared).await,
            (Err(why), Some(tunnel)) => {
                tracing::debug!(database = %self.uri.name, "native route unusable ({why}): using the tsh tunnel");
                tunnel.dial().await
            }
            (Err(ExecError::Credentials(m)), None) => Err(ExecError::Credentials(format!(
                "{m}; or install tsh, whose tunnel mode = \"auto\" then uses"
            ))),
            (Err(ExecError::Connect { target, reason }), None) => Err(ExecError::Connect {
                target,
                reason: format!("{reason}; tsh is not on PATH"),
            }),
            (Err(e), None) => Err(e),
        }
    }
}

impl Dial for AutoDialer {
    fn dial(&self) -> Pin<Box<dyn Future<Output = Result<BoxStream, ExecError>> + Send + '_>> {
        Box::pin(self.connect())
    }

    fn target(&self) -> String {
        format!("{} (auto)", self.uri.resource())
    }
}

/// `tsh` on PATH (or the configured path when it exists).
pub fn find_tsh(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tsh"))
            .find(|p| p.is_file())
    })
}

/// The caller's Teleport identity from the current profile's user certificate.
pub fn identity_from_profile(home: &TshHome) -> Result<Identity, String> {
    let profile = home.current_profile()?;
    let cert = home.user_cert(&profile).ok_or_else(|| {
        format!(
            "no user certificate in {}: run `{}`",
            home.keys_dir(&profile).display(),
            native::tsh_login_hint(Some(&profile))
        )
    })?;
    let info = identity::read_cert(&cert)?;
    Ok(info.identity)
}

/// The dialer for `mode` (`native`, `tsh-tunnel` or `auto`) of a Teleport database.
pub fn dialer(
    mode: Mode,
    home: TshHome,
    uri: &DatabaseUri,
    tsh: Option<&Path>,
    trust: native::ProxyTrust,
) -> Result<Arc<dyn Dial>, String> {
    let home_dir = home.dir.clone();
    let native = native::NativeDialer::new(home, uri.clone(), trust);
    let tunnel = || {
        find_tsh(tsh).map(|t| tunnel::TunnelDialer {
            tunnel: Arc::new(tunnel::Tunnel::new(t, uri.clone(), home_dir.clone())),
        })
    };
    Ok(match mode {
        Mode::Native => Arc::new(native),
        Mode::TshTunnel => Arc::new(tunnel().ok_or_else(|| {
            format!("database {} uses mode = \"tsh-tunnel\" but tsh is not found: install tsh or set [teleport] tsh = \"/path/to/tsh\"", uri.resource())
        })?),
        Mode::Auto => Arc::new(AutoDialer { native, tunnel: tunnel(), uri: uri.clone() }),
        Mode::Direct => return Err(format!("database {} uses mode = \"direct\" but has no dsn", uri.resource())),
    })
}
