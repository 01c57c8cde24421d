//! tsh's files: `~/.tsh` (or `$TELEPORT_HOME`), the current profile, the user's and the
//! databases' certificates, in both key layouts (v17+ and v16-).

use std::path::{Path, PathBuf};

/// The tsh home directory.
#[derive(Debug, Clone)]
pub struct TshHome {
    pub dir: PathBuf,
}

/// The fields of a profile YAML sqlguard uses (tsh writes more; unknown keys are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The profile name: the proxy's host (names `<name>.yaml` and `keys/<name>/`).
    pub name: String,
    pub web_proxy_addr: String,
    pub user: String,
    pub cluster: String,
    pub tls_routing_enabled: bool,
    pub tls_routing_conn_upgrade_required: bool,
}

/// Where a database's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCredentials {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `v17` (`<db>.crt` + `<db>.key`) or `v16` (`<db>-x509.pem` + the user's key).
    pub layout: &'static str,
}

impl Profile {
    /// The proxy host without port (TLS SNI and certificate name).
    pub fn proxy_host(&self) -> &str {
        host_of(&self.web_proxy_addr)
    }

    /// `host:port` of the proxy's web address (port 443 when not written).
    pub fn proxy_addr(&self) -> String {
        if self
            .web_proxy_addr
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !self.web_proxy_addr.ends_with(']')
        {
            self.web_proxy_addr.clone()
        } else {
            format!("{}:443", self.web_proxy_addr)
        }
    }
}

fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h.trim_matches(['[', ']']),
        _ => addr,
    }
}

/// Reads the top-level `key: value` scalars of a YAML document (what tsh's profile holds).
fn yaml_scalars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with([' ', '\t', '-', '#']))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

impl TshHome {
    /// `$TELEPORT_HOME` (it replaces `~/.tsh`), else `~/.tsh`; `explicit` wins over both.
    pub fn locate(explicit: Option<&Path>) -> Option<TshHome> {
        if let Some(p) = explicit {
            return Some(TshHome {
                dir: p.to_path_buf(),
            });
        }
        if let Some(h) = std::env::var_os("TELEPORT_HOME").filter(|h| !h.is_empty()) {
            return Some(TshHome {
                dir: PathBuf::from(h),
            });
        }
        std::env::var_os("HOME").map(|h| TshHome {
            dir: PathBuf::from(h).join(".tsh"),
        })
    }

    /// The current profile (`current-profile`), or a clear error.
    pub fn current_profile(&self) -> Result<Profile, String> {
        let current = self.dir.join("current-profile");
        let name = std::fs::read_to_string(&current)
            .map(|s| s.trim().to_string())
            .map_err(|_| format!("no Teleport profile in {} (no current-profile): run `tsh login --proxy=<proxy address>`", self.dir.display()))?;
        self.profile(&name)
    }

    pub fn profile(&self, name: &str) -> Result<Profile, String> {
        let path = self.dir.join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read the Teleport profile {}: {e}: run `tsh login --proxy={name}`",
                path.display()
            )
        })?;
        let mut p = Profile {
            name: name.to_string(),
            ..Default::default()
        };
        for (k, v) in yaml_scalars(&text) {
            match k.as_str() {
                "web_proxy_addr" => p.web_proxy_addr = v,
                "user" => p.user = v,
                "cluster" => p.cluster = v,
                "tls_routing_enabled" => p.tls_routing_enabled = v == "true",
                "tls_routing_conn_upgrade_required" => {
                    p.tls_routing_conn_upgrade_required = v == "true"
                }
                _ => {}
            }
        }
        if p.web_proxy_addr.is_empty() {
            p.web_proxy_addr = name.to_string();
        }
        if p.cluster.is_empty() {
            p.cluster = name.to_string();
        }
        if p.user.is_empty() {
            return Err(format!(
                "the Teleport profile {} names no user: run `tsh login --proxy={name}`",
                path.display()
            ));
        }
        Ok(p)
    }

    pub fn keys_dir(&self, p: &Profile) -> PathBuf {
        self.dir.join("keys").join(&p.name)
    }

    /// The user's TLS certificate (v17+ `<user>.crt`, v16- `<user>-x509.pem`).
    pub fn user_cert(&self, p: &Profile) -> Option<PathBuf> {
        let keys = self.keys_dir(p);
        [
            keys.join(format!("{}.crt", p.user)),
            keys.join(format!("{}-x509.pem", p.user)),
        ]
        .into_iter()
        .find(|f| f.exists())
    }

    /// The cluster's host CA certificates (`cas/<cluster>.pem`, and `certs.pem`).
    pub fn cluster_cas(&self, p: &Profile) -> Vec<PathBuf> {
        let keys = self.keys_dir(p);
        let mut out: Vec<PathBuf> = std::fs::read_dir(keys.join("cas"))
            .map(|r| {
                r.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.extension().is_some_and(|e| e == "pem"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        let certs = keys.join("certs.pem");
        if certs.exists() {
            out.push(certs);
        }
        out
    }

    /// The database's credentials from `tsh db login`, in either layout.
    pub fn db_credentials(&self, p: &Profile, cluster: &str, db: &str) -> Option<DbCredentials> {
        let dir = self
            .keys_dir(p)
            .join(format!("{}-db", p.user))
            .join(cluster);
        let (crt, key) = (dir.join(format!("{db}.crt")), dir.join(format!("{db}.key")));
        if crt.exists() && key.exists() {
            return Some(DbCredentials {
                cert: crt,
                key,
                layout: "v17",
            });
        }
        let x509 = dir.join(format!("{db}-x509.pem"));
        let user_key = self.keys_dir(p).join(&p.user);
        if x509.exists() && user_key.exists() {
            return Some(DbCredentials {
                cert: x509,
                key: user_key,
                layout: "v16",
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profile_yaml() {
        let text = "web_proxy_addr: teleport.example.com:443\nssh_proxy_addr: teleport.example.com:3023\nuser: alice@example.com\ncluster: \"\"\ntls_routing_enabled: true\ndynamic_forward_ports:\n  - 1\nauth_type: local\n";
        let dir = std::env::temp_dir().join(format!("sqlguard-tsh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("teleport.example.com.yaml"), text).unwrap();
        std::fs::write(dir.join("current-profile"), "teleport.example.com\n").unwrap();
        let p = TshHome { dir: dir.clone() }.current_profile().unwrap();
        assert_eq!(p.user, "alice@example.com");
        assert_eq!(p.cluster, "teleport.example.com");
        assert_eq!(p.proxy_host(), "teleport.example.com");
        assert_eq!(p.proxy_addr(), "teleport.example.com:443");
        assert!(p.tls_routing_enabled);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(TshHome {
            dir: "/nonexistent".into()
        }
        .current_profile()
        .unwrap_err()
        .contains("tsh login"));
    }
}
