//! The tests' PostgreSQL cluster: sqlguard's throwaway [`LocalCluster`] (unprivileged
//! account, free port, stopped when the test process ends however it ends), with TLS
//! certificates generated now, SCRAM passwords, and the sample schema.

use std::path::PathBuf;
use std::sync::OnceLock;

use sqlguard::demo::cluster::{ClusterOptions, LocalCluster};

pub const WRITER: &str = "writer";
pub const WRITER_PASSWORD: &str = "writer-secret";
pub const DB: &str = "shop";

pub struct Cluster {
    pub local: LocalCluster,
    pub port: u16,
    /// CA certificate (PEM) that signed the server certificate.
    pub ca_file: PathBuf,
    /// CA private key and certificate, for tests that issue more certificates.
    pub ca: (String, String),
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Signs `params` with `ca` (`(key PEM, cert PEM)`), for `key` or a new key pair.
pub fn sign(
    ca: &(String, String),
    params: rcgen::CertificateParams,
    key: Option<rcgen::KeyPair>,
) -> (String, String) {
    let ca_key = rcgen::KeyPair::from_pem(&ca.0).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.1, ca_key).unwrap();
    let key = key.unwrap_or_else(|| rcgen::KeyPair::generate().unwrap());
    let cert = params.signed_by(&key, &issuer).unwrap();
    (key.serialize_pem(), cert.pem())
}

/// Issues a certificate for `names` signed by `ca`.
pub fn issue_cert(
    ca: &(String, String),
    names: &[&str],
    client_cn: Option<&str>,
) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some(cn) = client_cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    sign(ca, params, None)
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

    /// Starts a new seeded cluster with TLS (certificate for `localhost` only) and SCRAM
    /// passwords on TCP; stopped when this process exits.
    pub fn start(tag: &str) -> Cluster {
        let certs =
            std::env::temp_dir().join(format!("sqlguard-certs-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&certs).unwrap();
        let ca = new_ca("sqlguard test CA");
        let (key, cert) = issue_cert(&ca, &["localhost"], None);
        let ca_file = certs.join("ca.crt");
        std::fs::write(&ca_file, &ca.1).unwrap();
        std::fs::write(certs.join("server.crt"), &cert).unwrap();
        std::fs::write(certs.join("server.key"), &key).unwrap();
        let local = LocalCluster::start(&ClusterOptions {
            tag: tag.to_string(),
            host_auth: "scram-sha-256".into(),
            superuser_password: Some("postgres-secret".into()),
            tls: Some((certs.join("server.crt"), certs.join("server.key"))),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let cluster = Cluster {
            port: local.port,
            local,
            ca_file,
            ca,
        };
        cluster.seed();
        cluster
    }

    /// Restarts the server (connections in pools break).
    pub fn restart(&self) {
        self.local.restart().unwrap();
    }

    /// psql as the superuser over the Unix socket (fixed SQL written by the tests).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.local.psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `postgres://writer:…@127.0.0.1:PORT/shop` plus extra query parameters.
    pub fn dsn(&self, params: &str) -> String {
        format!(
            "postgres://{WRITER}:{WRITER_PASSWORD}@127.0.0.1:{}/{DB}{params}",
            self.port
        )
    }

    fn seed(&self) {
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
