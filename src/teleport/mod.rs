//! Teleport: database resource URIs, the user's tsh credentials and identity, and the routes
//! to a database through the Teleport proxy (native TLS routing, or a `tsh proxy db` tunnel).

pub mod identity;
pub mod native;
pub mod profile;
pub mod tunnel;
pub mod uri;

pub use profile::{Profile, TshHome};
pub use uri::{DatabaseUri, UriError};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use crate::execution::{BoxStream, Dial, ExecError};
use crate::policy::Identity;

/// Mode `auto`: native routing when `tsh db login` credentials exist, else the tsh tunnel
/// when tsh is installed, else a clear error. Decided again at every dial, so logging in
/// later changes the route without a restart.
pub struct AutoDialer {
    pub native: native::NativeDialer,
    pub tunnel: Option<tunnel::TunnelDialer>,
    pub uri: DatabaseUri,
}

impl AutoDialer {
    async fn connect(&self) -> Result<BoxStream, ExecError> {
        if self.native.has_credentials() {
            return self.native.dial().await;
        }
        match &self.tunnel {
            Some(t) => t.dial().await,
            None => Err(ExecError::Credentials(format!(
                "no Teleport database certificate for {} and no tsh on PATH: run `{}`, or install tsh",
                self.uri.name,
                native::tsh_db_login_hint(&self.uri)
            ))),
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
    mode: crate::config::Mode,
    home: TshHome,
    uri: &DatabaseUri,
    tsh: Option<&Path>,
) -> Result<Arc<dyn Dial>, String> {
    use crate::config::Mode;
    let home_dir = home.dir.clone();
    let native = native::NativeDialer::new(home, uri.clone(), Vec::new());
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
