//! Teleport database resource URIs:
//! `teleport://clusters/<cluster>/databases/<name>?dbName=<database>&dbUser=<user>`.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

pub const EXPECTED_FORMAT: &str =
    "teleport://clusters/<cluster>/databases/<name>?dbName=<database>&dbUser=<user>";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed database URI {uri:?}: {why}; expected {EXPECTED_FORMAT}")]
pub struct UriError {
    pub uri: String,
    pub why: String,
}

/// A database served through Teleport, named the way `tsh mcp db` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatabaseUri {
    pub cluster: String,
    pub name: String,
    /// Query parameters; `dbName` and `dbUser` are required for PostgreSQL.
    pub params: BTreeMap<String, String>,
}

fn esc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A path segment (cluster or database name) escaped as tsh writes it (Go's URL path
/// escaping): `teleport.example.com:443` stays as it is, so configurations written by tsh and
/// by sqlguard diff cleanly. `/`, `?`, `#`, `%`, spaces and the rest are percent-encoded.
fn esc_segment(s: &str) -> String {
    const KEEP: &[u8] = b"-_.~$&+,:;=@";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl DatabaseUri {
    /// Parses a full URI with its required parameters.
    pub fn parse(s: &str) -> Result<DatabaseUri, UriError> {
        let uri = Self::parse_resource(s)?;
        for p in ["dbName", "dbUser"] {
            if uri.params.get(p).is_none_or(|v| v.is_empty()) {
                return Err(UriError {
                    uri: s.into(),
                    why: format!("the {p} parameter is required"),
                });
            }
        }
        Ok(uri)
    }

    /// Parses a URI whose parameters are optional (a resource identity).
    pub fn parse_resource(s: &str) -> Result<DatabaseUri, UriError> {
        let err = |why: &str| UriError {
            uri: s.into(),
            why: why.into(),
        };
        let url = url::Url::parse(s).map_err(|e| err(&e.to_string()))?;
        if url.scheme() != "teleport" {
            return Err(err("the scheme must be teleport://"));
        }
        if url.host_str() != Some("clusters") {
            return Err(err("the host must be \"clusters\""));
        }
        let segments: Vec<String> = url
            .path_segments()
            .map(|p| {
                p.map(|s| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .collect()
            })
            .unwrap_or_default();
        match segments.as_slice() {
            [cluster, kind, name]
                if kind == "databases" && !cluster.is_empty() && !name.is_empty() =>
            {
                Ok(DatabaseUri {
                    cluster: cluster.clone(),
                    name: name.clone(),
                    params: url
                        .query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                })
            }
            [_, kind, ..] if kind != "databases" => Err(err("this is not a database resource")),
            _ => Err(err("the path must be /<cluster>/databases/<name>")),
        }
    }

    pub fn db_name(&self) -> &str {
        self.params.get("dbName").map(String::as_str).unwrap_or("")
    }

    pub fn db_user(&self) -> &str {
        self.params.get("dbUser").map(String::as_str).unwrap_or("")
    }

    /// The URI without parameters: the MCP resource URI and the database's identity.
    pub fn resource(&self) -> String {
        format!(
            "teleport://clusters/{}/databases/{}",
            esc_segment(&self.cluster),
            esc_segment(&self.name)
        )
    }

    pub fn new(cluster: &str, name: &str, db_name: &str, db_user: &str) -> DatabaseUri {
        let mut params = BTreeMap::new();
        params.insert("dbName".to_string(), db_name.to_string());
        params.insert("dbUser".to_string(), db_user.to_string());
        DatabaseUri {
            cluster: cluster.into(),
            name: name.into(),
            params,
        }
    }
}

impl fmt::Display for DatabaseUri {
    /// The full URI, parameters sorted (`dbName` before `dbUser`), as Teleport prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource())?;
        for (i, (k, v)) in self.params.iter().enumerate() {
            write!(f, "{}{}={}", if i == 0 { '?' } else { '&' }, esc(k), esc(v))?;
        }
        Ok(())
    }
}

/// Checks a server's database list like Teleport does: one cluster, no duplicates.
pub fn check_set<'a>(uris: impl IntoIterator<Item = &'a DatabaseUri>) -> Result<(), String> {
    let mut seen: Vec<&DatabaseUri> = Vec::new();
    for u in uris {
        if let Some(first) = seen.first() {
            if first.cluster != u.cluster {
                return Err(format!(
                    "databases from two clusters ({} and {}): serve one cluster per sqlguard server",
                    first.cluster, u.cluster
                ));
            }
        }
        if seen.iter().any(|s| s.name == u.name) {
            return Err(format!(
                "the database {} is listed twice: list it once",
                u.resource()
            ));
        }
        seen.push(u);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_like_teleport() {
        let u =
            DatabaseUri::parse("teleport://clusters/acme/databases/shop?dbUser=agent&dbName=shop")
                .unwrap();
        assert_eq!(
            (
                u.cluster.as_str(),
                u.name.as_str(),
                u.db_name(),
                u.db_user()
            ),
            ("acme", "shop", "shop", "agent")
        );
        assert_eq!(
            u.to_string(),
            "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent"
        );
        assert_eq!(u.resource(), "teleport://clusters/acme/databases/shop");
        assert_eq!(DatabaseUri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn rejects_what_teleport_rejects() {
        for bad in [
            "teleport://clusters/acme/databases/shop?dbName=shop",
            "teleport://clusters/acme/databases/shop?dbUser=a",
            "teleport://clusters/acme/apps/shop?dbName=a&dbUser=b",
            "teleport://clusters/acme/databases?dbName=a&dbUser=b",
            "teleport://nodes/acme/databases/shop?dbName=a&dbUser=b",
            "postgres://clusters/acme/databases/shop?dbName=a&dbUser=b",
            "shop",
            "",
        ] {
            let e = DatabaseUri::parse(bad).unwrap_err();
            assert!(e.to_string().contains(EXPECTED_FORMAT), "{e}");
        }
        assert!(DatabaseUri::parse_resource("teleport://clusters/acme/databases/shop").is_ok());
    }

    #[test]
    fn a_set_has_one_cluster_and_no_duplicates() {
        let a = DatabaseUri::new("c1", "a", "a", "u");
        let b = DatabaseUri::new("c1", "b", "b", "u");
        assert!(check_set([&a, &b]).is_ok());
        assert!(check_set([&a, &DatabaseUri::new("c2", "x", "x", "u")])
            .unwrap_err()
            .contains("two clusters"));
        assert!(check_set([&a, &DatabaseUri::new("c1", "a", "other", "u")])
            .unwrap_err()
            .contains("twice"));
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Path segments are percent-decoded, not form-decoded: `&` and `+` are literal there.
    #[test]
    fn fuzz_crash_3b93cd5d() {
        let bytes: Vec<u8> = vec![
            116, 101, 108, 101, 112, 111, 114, 116, 58, 47, 47, 99, 108, 117, 115, 116, 101, 114,
            115, 47, 98, 50, 37, 47, 100, 97, 116, 97, 98, 97, 115, 101, 115, 47, 46, 38, 63, 100,
            98, 85, 115, 101, 114, 61, 117, 61, 115, 47, 97, 98, 37, 65, 61, 47, 100, 97, 116, 97,
            98, 97, 115, 101, 115, 38, 100, 98, 78, 97, 109, 101, 61, 61, 58, 47, 47,
        ];
        let s = String::from_utf8(bytes).unwrap();
        let u = DatabaseUri::parse(&s).unwrap();
        let printed = u.to_string();
        assert_eq!(u.name, ".&");
        assert_eq!(DatabaseUri::parse(&printed).unwrap(), u);
    }
}
