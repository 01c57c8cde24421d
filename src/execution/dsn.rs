//! Direct connection strings: `postgres://user:password@host:port/db?sslmode=…&sslrootcert=…`.

use std::path::PathBuf;

use super::ExecError;

/// libpq's `sslmode`, as far as sqlguard implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A parsed direct connection string.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Host name, IP address, or a directory holding the Unix socket (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// CA certificates (PEM) to verify the server with; system roots when absent.
    pub sslrootcert: Option<PathBuf>,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())
    }
}

impl Dsn {
    /// Parses a `postgres://` or `postgresql://` URL. Query parameters `host` (a socket
    /// directory), `port`, `user`, `password`, `dbname`, `sslmode`, `sslrootcert` are honoured.
    pub fn parse(s: &str) -> Result<Dsn, ExecError> {
        let bad = |why: &str| {
            ExecError::Dsn(format!(
                "{why}; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]"
            ))
        };
        // libpq allows an empty host (`postgres://u@/db?host=/run/postgresql`); the URL parser
        // does not, so a placeholder stands in until the `host` parameter replaces it.
        let filled = s
            .replacen("@/", "@localhost/", 1)
            .replacen(":///", "://localhost/", 1);
        let url = url::Url::parse(&filled).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "postgres" && url.scheme() != "postgresql" {
            return Err(bad(&format!("scheme {:?} is not postgres", url.scheme())));
        }
        let decode = |v: &str| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut dsn = Dsn {
            host: url
                .host_str()
                .unwrap_or("")
                .trim_matches(['[', ']'])
                .to_string(),
            port: url.port().unwrap_or(5432),
            user: decode(url.username()),
            password: url.password().map(decode),
            dbname: decode(url.path().trim_start_matches('/')),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        };
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "host" => dsn.host = v.into_owned(),
                "port" => dsn.port = v.parse().map_err(|_| bad(&format!("port {v:?} is not a number")))?,
                "user" => dsn.user = v.into_owned(),
                "password" => dsn.password = Some(v.into_owned()),
                "dbname" => dsn.dbname = v.into_owned(),
                "sslrootcert" => dsn.sslrootcert = Some(PathBuf::from(v.as_ref())),
                "sslmode" => {
                    dsn.sslmode = match v.as_ref() {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => return Err(bad(&format!("sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"))),
                    }
                }
                // Session settings are pinned by sqlguard; other libpq options do not apply.
                _ => {}
            }
        }
        if dsn.host.is_empty() {
            dsn.host = "localhost".into();
        }
        if dsn.user.is_empty() {
            return Err(bad("no user name"));
        }
        if dsn.dbname.is_empty() {
            dsn.dbname = dsn.user.clone();
        }
        // libpq: a root certificate file with sslmode=require means verify-ca.
        if dsn.sslmode == SslMode::Require && dsn.sslrootcert.is_some() {
            dsn.sslmode = SslMode::VerifyCa;
        }
        Ok(dsn)
    }

    /// The DSN without its password, for messages.
    pub fn redacted(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }

    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let d = Dsn::parse(
            "postgres://agent:p%40ss@db.example:6432/shop?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.user.as_str()),
            ("db.example", 6432, "agent")
        );
        assert_eq!(d.password.as_deref(), Some("p@ss"));
        assert_eq!(d.dbname, "shop");
        assert_eq!(d.sslmode, SslMode::VerifyFull);
        assert!(!d.redacted().contains("p@ss"));
        let d = Dsn::parse("postgresql://u@/db?host=/tmp/sock&port=5433").unwrap();
        assert!(d.is_unix_socket());
        assert_eq!(d.port, 5433);
        assert!(Dsn::parse("mysql://u@h/db").is_err());
        assert!(Dsn::parse("postgres://h/db?sslmode=bogus").is_err());
        assert!(Dsn::parse("postgres://h/db").is_err());
    }
}
