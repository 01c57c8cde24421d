//! Through Teleport, without a real Teleport: a test double of the proxy (TLS demanding a
//! client certificate from a test CA, checking ALPN `teleport-postgres`, forwarding to the
//! test cluster), a generated tsh home (both key layouts, an expired set), and a stand-in
//! `tsh` for the tunnel.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sqlguard::config::Mode;
use sqlguard::execution::{Database, Endpoint, ExecError, RunLimits, SessionSettings};
use sqlguard::teleport::identity::read_cert;
use sqlguard::teleport::tunnel::{Tunnel, TunnelDialer};
use sqlguard::teleport::{dialer, DatabaseUri, TshHome};

use crate::support::cluster::{new_ca, sign, Cluster, DB, WRITER};

const LIMITS: RunLimits = RunLimits {
    max_rows: 100,
    max_result_bytes: 1 << 20,
    statement_timeout_ms: 10_000,
    work_mem_kb: None,
    temp_file_limit_kb: None,
};
const CLUSTER_NAME: &str = "acme";

/// `(key PEM, cert PEM)` signed by `ca`, with Teleport's subject fields.
fn teleport_cert(
    ca: &(String, String),
    user: &str,
    roles: &[&str],
    traits: &str,
    names: &[&str],
    expired: bool,
) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, user);
    // rcgen keeps one value per attribute type: the second role is written as O through its
    // raw OID, which is what a multi-valued O is on the wire.
    if let Some(first) = roles.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *first);
    }
    if let Some(second) = roles.get(1) {
        params
            .distinguished_name
            .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]), *second);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 17]), traits);
    params
        .distinguished_name
        .push(rcgen::DnType::CustomDnType(vec![1, 3, 9999, 2, 1]), "shop");
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    }
    sign(ca, params, None)
}

struct Pki {
    /// Signs the proxy's web certificate (trusted through `cas/`).
    host_ca: (String, String),
    /// Signs user and database certificates (the proxy demands them).
    user_ca: (String, String),
}

fn pki() -> Pki {
    Pki {
        host_ca: new_ca("acme host CA"),
        user_ca: new_ca("acme user CA"),
    }
}

/// A tsh home as tsh v17 writes it, plus a v16-layout database.
fn tsh_home(pki: &Pki, proxy_port: u16, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sqlguard-tsh-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.join("keys/localhost");
    let db_dir = keys.join(format!("alice-db/{CLUSTER_NAME}"));
    std::fs::create_dir_all(keys.join("cas")).unwrap();
    std::fs::create_dir_all(&db_dir).unwrap();
    std::fs::write(dir.join("current-profile"), "localhost\n").unwrap();
    std::fs::write(
        dir.join("localhost.yaml"),
        format!("web_proxy_addr: localhost:{proxy_port}\nssh_proxy_addr: localhost:3023\nuser: alice\ncluster: {CLUSTER_NAME}\ntls_routing_enabled: true\nauth_type: local\n"),
    )
    .unwrap();
    std::fs::write(keys.join(format!("cas/{CLUSTER_NAME}.pem")), &pki.host_ca.1).unwrap();
    let traits = r#"{"logins":["alice"],"db_users":["writer"]}"#;
    let (ukey, ucert) = teleport_cert(
        &pki.user_ca,
        "alice",
        &["dev", "analyst"],
        traits,
        &[],
        false,
    );
    std::fs::write(keys.join("alice.key"), &ukey).unwrap();
    std::fs::write(keys.join("alice.crt"), &ucert).unwrap();
    // v17 layout: <db>.crt + <db>.key.
    write_db_cert(pki, &db_dir, "shop", false);
    // v16 layout: <db>-x509.pem signed for the user's own key (file `alice`).
    std::fs::write(keys.join("alice"), &ukey).unwrap();
    let user_key = rcgen::KeyPair::from_pem(&ukey).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let (_, cert) = sign(&pki.user_ca, params, Some(user_key));
    std::fs::write(db_dir.join("legacy-x509.pem"), cert).unwrap();
    dir
}

fn write_db_cert(pki: &Pki, db_dir: &Path, db: &str, expired: bool) {
    let (key, cert) = teleport_cert(&pki.user_ca, "alice", &["dev"], "null", &[], expired);
    std::fs::write(db_dir.join(format!("{db}.key")), key).unwrap();
    std::fs::write(db_dir.join(format!("{db}.crt")), cert).unwrap();
}

/// The proxy double: TLS on 127.0.0.1 with a certificate for `localhost`, client
/// certificates from `client_ca` required, ALPN `alpn` only, then a byte pipe to `target`.
async fn proxy_double(
    server_ca: &(String, String),
    client_ca: &(String, String),
    alpn: &[u8],
    target: u16,
) -> u16 {
    let (key, cert) = crate::support::cluster::issue_cert(server_ca, &["localhost"], None);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.1.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                match tls.get_ref().1.alpn_protocol() {
                    Some(b"teleport-postgres") => serve_database(tls, target).await,
                    Some(b"teleport-postgres-ping") => serve_database(unping(tls), target).await,
                    other => panic!("the proxy double negotiated {other:?}"),
                }
            });
        }
    });
    port
}

/// What the database service does behind the proxy: check the startup user and database as
/// the role would, then relay to PostgreSQL.
async fn serve_database<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut tls: S,
    target: u16,
) {
    use tokio::io::AsyncWriteExt;
    // As Teleport's database service does: the startup user and database must be ones the
    // role allows, else an error with Teleport's message and no SQLSTATE.
    let Some(startup) = read_startup(&mut tls).await else {
        return;
    };
    let (user, database) = startup_user_and_database(&startup);
    if user != WRITER || database != DB {
        let msg =
            b"access to db denied. User does not have permissions. Confirm database user and name.";
        let mut e = vec![b'E'];
        e.extend_from_slice(&((4 + 1 + msg.len() + 1 + 1) as u32).to_be_bytes());
        e.push(b'M');
        e.extend_from_slice(msg);
        e.extend_from_slice(&[0, 0]);
        let _ = tls.write_all(&e).await;
        let _ = tls.shutdown().await;
        return;
    }
    let Ok(mut pg) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    if pg.write_all(&startup).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut pg).await;
}

/// The proxy's side of Teleport's ping protocol (RFD 81), written independently of sqlguard's:
/// packets are a big-endian u32 length and data; the proxy sends an empty packet (a ping)
/// before every data packet and every 50 ms. Returns the plain byte stream inside.
fn unping<S>(tls: S) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (plain, inner) = tokio::io::duplex(1 << 16);
    let (mut from_client, to_client) = tokio::io::split(tls);
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let (mut inner_read, mut inner_write) = tokio::io::split(inner);
    tokio::spawn(async move {
        loop {
            let mut header = [0u8; 4];
            if from_client.read_exact(&mut header).await.is_err() {
                return;
            }
            let n = u32::from_be_bytes(header) as usize;
            let mut data = vec![0u8; n];
            if from_client.read_exact(&mut data).await.is_err()
                || inner_write.write_all(&data).await.is_err()
            {
                return;
            }
        }
    });
    let writer = to_client.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        loop {
            let n = match inner_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut packet = vec![0, 0, 0, 0];
            packet.extend_from_slice(&(n as u32).to_be_bytes());
            packet.extend_from_slice(&buf[..n]);
            let mut w = writer.lock().await;
            if w.write_all(&packet).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut w = to_client.lock().await;
            if w.write_all(&[0, 0, 0, 0]).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    plain
}

/// The client's startup message, whole (length included).
async fn read_startup<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if !(8..=10_000).contains(&n) {
        return None;
    }
    let mut msg = len.to_vec();
    msg.resize(n, 0);
    s.read_exact(&mut msg[4..]).await.ok()?;
    Some(msg)
}

/// `user` and `database` of a startup message.
fn startup_user_and_database(msg: &[u8]) -> (String, String) {
    let body = &msg[8..];
    let parts: Vec<String> = body
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let get = |k: &str| {
        parts
            .chunks(2)
            .find(|kv| kv[0] == k)
            .and_then(|kv| kv.get(1).cloned())
            .unwrap_or_default()
    };
    (get("user"), get("database"))
}

fn uri(db: &str) -> DatabaseUri {
    DatabaseUri::new(CLUSTER_NAME, db, DB, WRITER)
}

fn teleport_db(home: &Path, db: &str, mode: Mode) -> Database {
    teleport_db_with_tsh(home, db, mode, None)
}

fn teleport_db_with_tsh(home: &Path, db: &str, mode: Mode, tsh: Option<&Path>) -> Database {
    let dialer = dialer(
        mode,
        TshHome {
            dir: home.to_path_buf(),
        },
        &uri(db),
        tsh,
        Default::default(),
    )
    .unwrap();
    Database::new(
        Endpoint {
            dialer,
            user: WRITER.into(),
            dbname: DB.into(),
            password: Some(crate::support::cluster::WRITER_PASSWORD.into()),
        },
        SessionSettings::default(),
        2,
    )
}

#[tokio::test]
async fn native_routing_through_the_proxy_double() {
    let cluster = Cluster::shared();
    let pki = pki();
    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let home = tsh_home(&pki, proxy, "native");
    let db = teleport_db(&home, "shop", Mode::Native);
    let r = db
        .execute("SELECT current_user AS u, count(*) AS n FROM users", LIMITS)
        .await
        .unwrap();
    assert_eq!(
        r.rows.unwrap()[0],
        *json!({"u": "writer", "n": 100}).as_object().unwrap()
    );

    // The identity policies see comes from the user's certificate.
    let id = sqlguard::teleport::identity_from_profile(&TshHome { dir: home.clone() }).unwrap();
    assert_eq!(id.user, "alice");
    assert_eq!(id.roles, ["dev", "analyst"]);
    assert_eq!(id.traits["db_users"], ["writer"]);
    let db_cert =
        read_cert(&home.join(format!("keys/localhost/alice-db/{CLUSTER_NAME}/shop.crt"))).unwrap();
    assert_eq!(db_cert.db_service.as_deref(), Some("shop"));

    // The older key layout: <db>-x509.pem with the user's key.
    let legacy = teleport_db(&home, "legacy", Mode::Native);
    legacy.execute("SELECT 1", LIMITS).await.unwrap();
}

#[tokio::test]
async fn wrong_alpn_wrong_ca_and_expired_certificates_fail_clearly() {
    let cluster = Cluster::shared();
    let pki = pki();

    let mysql_only =
        proxy_double(&pki.host_ca, &pki.user_ca, b"teleport-mysql", cluster.port).await;
    let home = tsh_home(&pki, mysql_only, "alpn");
    let e = teleport_db(&home, "shop", Mode::Native)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ALPN teleport-postgres"), "{e}");

    let other_ca = new_ca("some other CA");
    let untrusted = proxy_double(&other_ca, &pki.user_ca, b"teleport-postgres", cluster.port).await;
    let home = tsh_home(&pki, untrusted, "ca");
    let e = teleport_db(&home, "shop", Mode::Native)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not trusted"), "{e}");

    // The proxy trusts another user CA (rotated): TLS 1.3 lets the handshake finish and the
    // proxy's refusal arrives as an alert afterwards. Retrying cannot help: say what to run.
    let rotated = new_ca("acme user CA, rotated");
    let rejecting = proxy_double(&pki.host_ca, &rotated, b"teleport-postgres", cluster.port).await;
    let home = tsh_home(&pki, rejecting, "rotated");
    let e = teleport_db(&home, "shop", Mode::Native)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused this client's certificate")
            && e.contains("tsh login")
            && !e.contains("try again"),
        "{e}"
    );

    // Expired database certificate: detected before dialing, with the command to run; new
    // files make the next call work, with nothing restarted.
    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let home = tsh_home(&pki, proxy, "expired");
    let db_dir = home.join(format!("keys/localhost/alice-db/{CLUSTER_NAME}"));
    write_db_cert(&pki, &db_dir, "shop", true);
    let db = teleport_db(&home, "shop", Mode::Native);
    let e = db.execute("SELECT 1", LIMITS).await.unwrap_err();
    assert!(matches!(e, ExecError::Credentials(_)), "{e}");
    assert!(
        e.to_string()
            .contains("tsh db login --db-user=writer --db-name=shop shop"),
        "{e}"
    );
    write_db_cert(&pki, &db_dir, "shop", false);
    db.execute("SELECT 1", LIMITS).await.unwrap();

    // No database certificate at all; no profile at all.
    let e = teleport_db(&home, "other", Mode::Native)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tsh db login"), "{e}");
    std::fs::remove_file(home.join("current-profile")).unwrap();
    let e = db.execute("SELECT 1", LIMITS).await;
    // A pooled session may still serve; a new one needs the profile.
    if let Err(e) = e {
        assert!(e.to_string().contains("tsh login"), "{e}");
    }
}

fn fake_tsh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fake_tsh.py")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test]
async fn tsh_tunnel_is_supervised() {
    let cluster = Cluster::shared();
    std::env::set_var("FAKE_TSH_TARGET", format!("127.0.0.1:{}", cluster.port));
    let tunnel = Arc::new(Tunnel::new(fake_tsh(), uri("shop"), scratch_home("ok")));
    let db = Database::new(
        Endpoint {
            dialer: Arc::new(TunnelDialer {
                tunnel: tunnel.clone(),
            }),
            user: WRITER.into(),
            dbname: DB.into(),
            password: Some(crate::support::cluster::WRITER_PASSWORD.into()),
        },
        SessionSettings::default(),
        1,
    );
    // Started on first use, ready when its port accepts.
    db.execute("SELECT 1", LIMITS).await.unwrap();
    let pid = tunnel.pid().await.unwrap();
    assert!(alive(pid));
    assert_eq!(tunnel.starts(), 1);

    // Killed: the next call restarts it (the pooled session died with it).
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ok = db.execute("SELECT 2", LIMITS).await.is_ok();
    if !ok {
        ok = db.execute("SELECT 2", LIMITS).await.is_ok();
    }
    assert!(ok, "the tunnel was not restarted");
    assert_eq!(tunnel.starts(), 2);
    let pid2 = tunnel.pid().await.unwrap();
    assert_ne!(pid, pid2);

    // Shutdown leaves nothing running.
    tunnel.stop().await;
    drop(db);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(pid2), "tsh still runs after shutdown");
}

#[tokio::test]
async fn tsh_tunnel_errors_carry_its_stderr() {
    let failing = std::env::temp_dir().join(format!("sqlguard-failing-tsh-{}", std::process::id()));
    std::fs::write(
        &failing,
        format!(
            "#!/bin/sh\nFAKE_TSH_FAIL=1 exec {} \"$@\"\n",
            fake_tsh().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", failing.to_str().unwrap()])
        .status()
        .unwrap();
    let tunnel = Arc::new(Tunnel::new(failing, uri("shop"), scratch_home("expired")));
    let e = tunnel.ensure().await.unwrap_err();
    assert!(e.to_string().contains("session has expired"), "{e}");
}

/// An empty tsh home for a tunnel test.
fn scratch_home(tag: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("sqlguard-tsh-home-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// The tunnel child gets sqlguard's tsh home as TELEPORT_HOME (`[teleport] home` in the
/// configuration, not only the environment): with it, tsh sees the same login sqlguard does.
#[tokio::test]
async fn tsh_tunnel_sees_sqlguards_home() {
    let home = scratch_home("logged-out");
    std::fs::write(home.join("fake-tsh-not-logged-in"), "").unwrap();
    let tunnel = Arc::new(Tunnel::new(fake_tsh(), uri("shop"), home.clone()));
    let e = tunnel.ensure().await.unwrap_err();
    assert!(e.to_string().contains("Not logged in"), "{e}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn uri_rules_mirror_teleport() {
    let u = DatabaseUri::parse(
        "teleport://clusters/acme/databases/shop?dbUser=agent&dbName=shop&extra=1",
    )
    .unwrap();
    assert_eq!(
        u.to_string(),
        "teleport://clusters/acme/databases/shop?dbName=shop&dbUser=agent&extra=1"
    );
    assert!(DatabaseUri::parse("teleport://clusters/acme/databases/shop").is_err());
    // Written as tsh writes it: a proxy address as cluster name is not percent-encoded.
    let proxy = DatabaseUri::new(
        "teleport.example.com:443",
        "postgres-dev",
        "postgres",
        "alice@example.com",
    );
    assert_eq!(
        proxy.to_string(),
        "teleport://clusters/teleport.example.com:443/databases/postgres-dev?dbName=postgres&dbUser=alice%40example.com"
    );
    assert_eq!(DatabaseUri::parse(&proxy.to_string()).unwrap(), proxy);
    assert_eq!(
        DatabaseUri::new("a b", "x/y?#%", "d", "u").resource(),
        "teleport://clusters/a%20b/databases/x%2Fy%3F%23%25"
    );
    assert!(DatabaseUri::parse_resource("teleport://clusters/acme/databases/shop").is_ok());
}

proptest! {
    // Teleport resource names start with a letter or digit ("." and ".." are no names);
    // database and user names may hold anything but NUL.
    #[test]
    fn uri_print_parse_round_trip(cluster in "[a-zA-Z0-9][a-zA-Z0-9._ -]{0,19}", name in "[a-zA-Z0-9][a-zA-Z0-9._@ -]{0,19}", db in "[^\u{0}]{1,20}", user in "[^\u{0}]{1,20}") {
        let u = DatabaseUri::new(&cluster, &name, &db, &user);
        let printed = u.to_string();
        let back = DatabaseUri::parse(&printed).unwrap();
        prop_assert_eq!(&back, &u);
        prop_assert_eq!(back.to_string(), printed);
    }
}

/// A stand-in tsh whose tunnel leads to the PostgreSQL at `port`.
fn tunnel_tsh(port: u16, tag: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("sqlguard-tunnel-tsh-{tag}-{}", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nFAKE_TSH_TARGET=127.0.0.1:{port} exec {} \"$@\"\n",
            fake_tsh().display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .args(["+x", path.to_str().unwrap()])
        .status()
        .unwrap();
    path
}

/// Mode `auto` takes the tsh tunnel whenever native routing cannot work now, as
/// `tsh mcp db start` needs only `tsh login`: an expired database certificate on disk, a proxy
/// behind an L7 load balancer. Without tsh, the native route's own error says what to run;
/// with valid credentials, native routing needs no tsh.
#[tokio::test]
async fn auto_mode_falls_back_to_the_tunnel() {
    let cluster = Cluster::shared();
    let pki = pki();
    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let tsh = tunnel_tsh(cluster.port, "auto");
    let no_tsh = PathBuf::from("/nonexistent/tsh");

    let expired = tsh_home(&pki, proxy, "auto-expired");
    write_db_cert(
        &pki,
        &expired.join(format!("keys/localhost/alice-db/{CLUSTER_NAME}")),
        "shop",
        true,
    );
    teleport_db_with_tsh(&expired, "shop", Mode::Auto, Some(&tsh))
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap();
    let e = teleport_db_with_tsh(&expired, "shop", Mode::Auto, Some(&no_tsh))
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tsh db login") && e.contains("install tsh"),
        "{e}"
    );

    let l7 = tsh_home(&pki, proxy, "auto-l7");
    let profile = l7.join("localhost.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        format!("{text}tls_routing_conn_upgrade_required: true\n"),
    )
    .unwrap();
    teleport_db_with_tsh(&l7, "shop", Mode::Auto, Some(&tsh))
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap();
    let e = teleport_db_with_tsh(&l7, "shop", Mode::Native, None)
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("L7 load balancer") && e.contains("tsh-tunnel"),
        "{e}"
    );

    let valid = tsh_home(&pki, proxy, "auto-native");
    teleport_db_with_tsh(&valid, "shop", Mode::Auto, Some(&no_tsh))
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap();
}

/// A server started before `tsh login` sees the Teleport identity (user, roles) at the next
/// call after it, without a restart: the audit log shows who called.
#[tokio::test]
async fn the_identity_follows_tsh_login_without_a_restart() {
    let cluster = Cluster::shared();
    let tag = "late-login";
    let home = std::env::temp_dir().join(format!("sqlguard-tsh-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let dir = std::env::temp_dir().join(format!("sqlguard-late-login-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("audit.jsonl");
    let settings = format!(
        "audit_log = {:?}\n\n[teleport]\nhome = {:?}\n",
        log.display().to_string(),
        home.display().to_string()
    );
    let config = crate::mcp::shop_config(&dir, cluster, &settings);
    let (client, _) = crate::mcp::serve_config(&config).await;
    let last_caller = || {
        let text = std::fs::read_to_string(&log).unwrap();
        let last: serde_json::Value = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["event"] == "intent")
            .unwrap();
        last["identity"].clone()
    };
    let (e, _) = crate::mcp::query_shop(&client, "SELECT 1").await;
    assert!(!e);
    assert_ne!(last_caller()["user"], "alice");

    tsh_home(&pki(), 1, tag); // `tsh login` as alice (roles dev, analyst)
    let (e, _) = crate::mcp::query_shop(&client, "SELECT 2").await;
    assert!(!e);
    assert_eq!(
        last_caller(),
        serde_json::json!({"user": "alice", "roles": ["dev", "analyst"], "source": "teleport"})
    );
    let _ = client.cancel().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&home);
}

/// `sqlguard doctor` on a Teleport database names the fix for what is wrong with the route:
/// an untrusted proxy certificate, a proxy behind an L7 load balancer, a client certificate
/// the proxy refuses after the handshake; and warns about `insecure = true`.
#[tokio::test]
async fn doctor_names_the_teleport_fixes() {
    let cluster = Cluster::shared();
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("sqlguard-doctor-tp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sqlguard.toml");
    let doctor = |home: &Path, teleport_extra: &str| {
        let teleport = format!("home = {:?}\n{teleport_extra}", home.display().to_string());
        teleport_config(&config, &teleport, "native");
        doctor_checks(&config)
    };
    let fix_of = |checks: &[serde_json::Value], name: &str| {
        checks
            .iter()
            .find(|c| c["name"].as_str().unwrap_or("").starts_with(name))
            .map(|c| c["fix"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    };

    let other_ca = new_ca("some other CA");
    let untrusted = proxy_double(&other_ca, &pki.user_ca, b"teleport-postgres", cluster.port).await;
    let home = tsh_home(&pki, untrusted, "doctor-ca");
    let checks = doctor(&home, "").await;
    assert!(
        fix_of(&checks, "database shop").contains("[teleport] ca"),
        "{checks:?}"
    );
    // With the CA configured, the certificate is trusted (what fails next is not trust).
    let ca_file = dir.join("proxy-ca.pem");
    std::fs::write(&ca_file, &other_ca.1).unwrap();
    let checks = doctor(
        &home,
        &format!("ca = {:?}\n", ca_file.display().to_string()),
    )
    .await;
    assert!(
        !fix_of(&checks, "database shop").contains("[teleport] ca"),
        "{checks:?}"
    );
    // insecure = true skips the check, and doctor warns.
    let checks = doctor(&home, "insecure = true\n").await;
    assert!(
        fix_of(&checks, "teleport proxy trust").contains("[teleport] ca"),
        "{checks:?}"
    );
    assert!(
        !fix_of(&checks, "database shop").contains("[teleport] ca"),
        "{checks:?}"
    );

    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let l7 = tsh_home(&pki, proxy, "doctor-l7");
    let profile = l7.join("localhost.yaml");
    let text = std::fs::read_to_string(&profile).unwrap();
    std::fs::write(
        &profile,
        format!("{text}tls_routing_conn_upgrade_required: true\n"),
    )
    .unwrap();
    let fix = fix_of(&doctor(&l7, "").await, "database shop");
    assert!(fix.contains("tsh-tunnel"), "{fix}");

    let rotated = proxy_double(
        &pki.host_ca,
        &new_ca("rotated user CA"),
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let home = tsh_home(&pki, rotated, "doctor-rotated");
    let fix = fix_of(&doctor(&home, "").await, "database shop");
    assert!(fix.contains("tsh login") && fix.contains("clock"), "{fix}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database user the Teleport role does not allow: Teleport's own message, without empty
/// severity or SQLSTATE fields.
#[tokio::test]
async fn a_teleport_role_denial_reads_cleanly() {
    let cluster = Cluster::shared();
    let pki = pki();
    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres",
        cluster.port,
    )
    .await;
    let home = tsh_home(&pki, proxy, "role-denial");
    let intruder = DatabaseUri::new(CLUSTER_NAME, "shop", DB, "intruder");
    let dialer = dialer(
        Mode::Native,
        TshHome { dir: home.clone() },
        &intruder,
        None,
        Default::default(),
    )
    .unwrap();
    let db = Database::new(
        Endpoint {
            dialer,
            user: "intruder".into(),
            dbname: DB.into(),
            password: None,
        },
        SessionSettings::default(),
        1,
    );
    let e = db
        .execute("SELECT 1", LIMITS)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("access to db denied. User does not have permissions"),
        "{e}"
    );
    assert!(!e.contains("SQLSTATE") && !e.contains(": : "), "{e}");
}

/// Native mode offers `teleport-postgres-ping` first, as tsh does, and speaks its framing: a
/// proxy that pings every 50 ms keeps serving queries, also on a pooled connection that sat
/// idle through many pings.
#[tokio::test]
async fn native_routing_speaks_the_ping_protocol() {
    let cluster = Cluster::shared();
    let pki = pki();
    let proxy = proxy_double(
        &pki.host_ca,
        &pki.user_ca,
        b"teleport-postgres-ping",
        cluster.port,
    )
    .await;
    let home = tsh_home(&pki, proxy, "ping");
    let db = teleport_db(&home, "shop", Mode::Native);
    let r = db
        .execute(
            "SELECT string_agg(g::text, ',') AS s FROM generate_series(1, 20000) g",
            LIMITS,
        )
        .await
        .unwrap();
    assert!(r.bytes > 100_000);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = db.execute("SELECT 41 + 1 AS n", LIMITS).await.unwrap();
    assert_eq!(r.rows.unwrap()[0]["n"], serde_json::json!(42));
    assert_eq!(db.status().0, 1, "the idle connection survived the pings");
}

/// With the tsh home only in the configuration, the tunnel's tsh gets it too, so `doctor` does
/// not first find the session fine and then fail on "Not logged in"; when tsh itself is not
/// logged in, `doctor` says to run tsh login.
#[tokio::test]
async fn doctor_and_the_tunnel_use_the_same_tsh_home() {
    let cluster = Cluster::shared();
    let pki = pki();
    let home = tsh_home(&pki, 1, "doctor-tunnel");
    let tsh = tunnel_tsh(cluster.port, "doctor");
    let dir = std::env::temp_dir().join(format!("sqlguard-doctor-tunnel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sqlguard.toml");
    let teleport = format!(
        "home = {:?}\ntsh = {:?}\n",
        home.display().to_string(),
        tsh.display().to_string()
    );
    teleport_config(&config, &teleport, "tsh-tunnel");
    let database_check = || async {
        doctor_checks(&config)
            .await
            .into_iter()
            .find(|c| c["name"] == "database shop")
            .unwrap()
    };
    // The tunnel comes up and reaches PostgreSQL (which then wants a password this test
    // cluster requires and Teleport would not): tsh was logged in through the configured home.
    let c = database_check().await;
    let detail = c["detail"].as_str().unwrap();
    assert!(
        !detail.contains("Not logged in") && detail.contains("asks for a password"),
        "{c}"
    );

    std::fs::write(home.join("fake-tsh-not-logged-in"), "").unwrap();
    let c = database_check().await;
    assert!(
        c["fix"].as_str().unwrap().contains("run `tsh login`"),
        "{c}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `config`: the `[teleport]` table's `lines` and the `shop` database through Teleport
/// in `mode`.
fn teleport_config(config: &Path, lines: &str, mode: &str) {
    std::fs::write(
        config,
        format!(
            "[teleport]\n{lines}\n[[database]]\nuri = \"teleport://clusters/{CLUSTER_NAME}/databases/shop?dbName={DB}&dbUser={WRITER}\"\nmode = {mode:?}\n"
        ),
    )
    .unwrap();
}

/// `sqlguard doctor --config CONFIG`'s checks, with no TELEPORT_HOME in its environment. Run
/// with tokio, not std::process: a proxy double may be serving on this runtime meanwhile.
async fn doctor_checks(config: &Path) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlguard"))
        .args([
            "doctor",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ])
        .env_remove("TELEPORT_HOME")
        .output()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["checks"].as_array().unwrap().clone()
}
