//! A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, a free port, TLS with
//! certificates generated now, started as an unprivileged account (PostgreSQL refuses
//! root), stopped when the test process exits — even after a panic or an abort, by a
//! watchdog that waits for this process to end.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The account the cluster runs as when the tests run as root.
const PG_ACCOUNT: &str = "postgres";
pub const WRITER: &str = "writer";
pub const WRITER_PASSWORD: &str = "writer-secret";
pub const DB: &str = "shop";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bindir: PathBuf,
    /// CA certificate (PEM) that signed the server certificate.
    pub ca_file: PathBuf,
    /// CA private key and certificate, for tests that issue more certificates.
    pub ca: (String, String),
}

fn bindir() -> PathBuf {
    if let Ok(d) = std::env::var("SQLGUARD_PG_BINDIR") {
        return PathBuf::from(d);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries under /usr/lib/postgresql: run scripts/test, which installs Debian's postgresql, or set SQLGUARD_PG_BINDIR")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// A command run as the cluster's account.
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_ACCOUNT, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Certificates: a CA, and a server certificate for `names`.
pub fn issue_cert(
    ca: &(String, String),
    names: &[&str],
    client_cn: Option<&str>,
) -> (String, String) {
    let ca_key = rcgen::KeyPair::from_pem(&ca.0).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.1, ca_key).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(cn) = client_cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (key.serialize_pem(), cert.pem())
}

pub fn new_ca(name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (key.serialize_pem(), cert.pem())
}

impl Cluster {
    /// The cluster shared by this test binary.
    pub fn shared() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| Cluster::start("shared"))
    }

    /// Starts a new cluster (seeded), stopped when this process exits.
    pub fn start(tag: &str) -> Cluster {
        let bindir = bindir();
        let dir = std::env::temp_dir().join(format!("sqlguard-pg-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("data");
        let root = is_root();
        if root {
            run(
                Command::new("chown").args([PG_ACCOUNT, dir.to_str().unwrap()]),
                "chown",
            );
            run(
                Command::new("chmod").args(["755", dir.to_str().unwrap()]),
                "chmod",
            );
        }
        // TLS material, readable by the server's account only.
        let ca = new_ca("sqlguard test CA");
        let (key, cert) = issue_cert(&ca, &["localhost"], None);
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, &ca.1).unwrap();
        std::fs::write(dir.join("server.crt"), &cert).unwrap();
        std::fs::write(dir.join("server.key"), &key).unwrap();
        std::fs::write(dir.join("pwfile"), "postgres-secret\n").unwrap();
        if root {
            for f in ["server.crt", "server.key", "pwfile"] {
                run(
                    Command::new("chown").args([PG_ACCOUNT, dir.join(f).to_str().unwrap()]),
                    "chown",
                );
            }
        }
        run(
            Command::new("chmod").args(["600", dir.join("server.key").to_str().unwrap()]),
            "chmod",
        );

        run(
            as_pg(&bindir.join("initdb"))
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ])
                .arg(format!("--pwfile={}", dir.join("pwfile").display())),
            "initdb",
        );
        let port = free_port();
        let cluster = Cluster {
            dir: dir.clone(),
            port,
            bindir,
            ca_file,
            ca,
        };
        cluster.pg_ctl_start();
        cluster.watchdog();
        cluster.seed();
        cluster
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display(),
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display()
        );
        run(
            as_pg(&self.bindir.join("pg_ctl"))
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    self.dir.join("log").to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ])
                .stdout(Stdio::null()),
            "pg_ctl start",
        );
    }

    /// Stops the server when this process ends, however it ends.
    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command(),
            dir = self.dir.display()
        );
        // Detached on purpose: it must outlive this process; `setsid -f` forks it away.
        let _ = Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start the cluster watchdog");
    }

    fn stop_command(&self) -> String {
        let pg_ctl = self.bindir.join("pg_ctl");
        let data = self.dir.join("data");
        if is_root() {
            format!(
                "runuser -u {PG_ACCOUNT} -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        }
    }

    /// Restarts the server (connections in pools break).
    pub fn restart(&self) {
        let data = self.dir.join("data");
        run(
            as_pg(&self.bindir.join("pg_ctl"))
                .args(["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"])
                .stdout(Stdio::null()),
            "pg_ctl stop",
        );
        self.pg_ctl_start();
    }

    /// psql as the superuser over the Unix socket (fixed SQL written by the tests).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = as_pg(&self.bindir.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.dir.to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `postgres://writer:…@127.0.0.1:PORT/shop` plus extra query parameters.
    pub fn dsn(&self, params: &str) -> String {
        format!(
            "postgres://{WRITER}:{WRITER_PASSWORD}@127.0.0.1:{}/{DB}{params}",
            self.port
        )
    }

    fn seed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test cluster did not start: see {}/log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.psql(
            "postgres",
            &format!("CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'"),
        );
        self.psql("postgres", &format!("CREATE DATABASE {DB} OWNER {WRITER}"));
        self.psql(DB, "CREATE EXTENSION IF NOT EXISTS hstore");
        // The writer owns everything, so only the guard and the READ ONLY transaction stop
        // its writes, never missing privileges.
        self.psql(DB, &format!("SET ROLE {WRITER}; {}", SEED_SQL));
    }
}

/// The sample schema: a few tables, and one row of every type the results must render.
pub const SEED_SQL: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a integer, b text);
CREATE SEQUENCE counter;
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, email text, ssn text);
INSERT INTO users (name, email, ssn) SELECT 'user' || g, 'user' || g || '@example.com', lpad(g::text, 9, '0') FROM generate_series(1, 100) g;
CREATE TABLE orders (id serial PRIMARY KEY, user_id integer REFERENCES users, total numeric(12, 2), placed_at timestamptz DEFAULT '2024-05-06 07:08:09+00');
INSERT INTO orders (user_id, total) SELECT 1 + g % 100, g * 1.25 FROM generate_series(1, 1000) g;
CREATE TABLE all_types (
  i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, f8_nan double precision,
  f8_inf double precision, num numeric, big_num numeric, b boolean, t text, vc varchar(10),
  ch char(3), js json, jsb jsonb, i4_arr integer[], t_arr text[], nested int[], d date, ts timestamp,
  tstz timestamptz, tm time, iv interval, u uuid, ip inet, cidr_ cidr, mac macaddr, by bytea,
  mood_ mood, pos positive, pr pair, hs hstore, nul text, tsv tsvector, pt point
);
INSERT INTO all_types VALUES (
  -32768, 2147483647, 9223372036854775807, 1.5, 2.25, 'NaN', '-Infinity',
  12345678901234567890.123456789, 1e40, true, 'héllo "world"', 'v', 'ab', '{"a": [1, 2]}',
  '{"k": {"n": null}}', '{1,NULL,3}', '{"a b","c\"d",NULL}', '{{1,2},{3,4}}', '2024-02-29',
  '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05+02', '13:14:15', '1 year 2 months 3 days 04:05:06',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
  '\xdeadbeef', 'happy', 7, ROW(1, 'x'), 'a=>1', NULL, 'fat cat', '(1,2)'
);
"#;
