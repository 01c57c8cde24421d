//! A throwaway local PostgreSQL cluster (for `sqlguard demo` and the tests): initdb in a temp
//! dir, a free port, started as an unprivileged account (PostgreSQL refuses root), stopped
//! when this process ends — however it ends — by a watchdog that waits for it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The account the cluster runs as when sqlguard runs as root (Debian's postgresql package
/// creates it).
pub const PG_ACCOUNT: &str = "postgres";

#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Part of the directory name.
    pub tag: String,
    /// `pg_hba` method for TCP connections: `trust` or `scram-sha-256`.
    pub host_auth: String,
    /// Superuser password (needed with scram-sha-256).
    pub superuser_password: Option<String>,
    /// Server certificate and key (PEM) to enable TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub port: u16,
    pub bindir: PathBuf,
    stop_on_drop: bool,
}

/// The newest PostgreSQL server binaries installed (or `$SQLGUARD_PG_BINDIR`).
pub fn bindir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("SQLGUARD_PG_BINDIR") {
        return Ok(PathBuf::from(d));
    }
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().map(|(_, p)| p).ok_or_else(|| {
        "no PostgreSQL server under /usr/lib/postgresql: install it (sudo apt-get install -y postgresql) or set SQLGUARD_PG_BINDIR".to_string()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port: {e}"))
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl LocalCluster {
    /// A command run as the cluster's account.
    fn as_pg(&self, program: &str) -> Command {
        as_pg(&self.bindir.join(program))
    }

    /// Hands `path` to the cluster's account (when running as root).
    fn give(&self, path: &Path) -> Result<(), String> {
        if is_root() {
            run(Command::new("chown").arg(PG_ACCOUNT).arg(path), "chown")?;
        }
        Ok(())
    }

    /// Creates, starts and watches a new cluster.
    pub fn start(opts: &ClusterOptions) -> Result<LocalCluster, String> {
        let bindir = bindir()?;
        ensure_pg_account()?;
        let dir =
            std::env::temp_dir().join(format!("sqlguard-pg-{}-{}", std::process::id(), opts.tag));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cluster = LocalCluster {
            dir: dir.clone(),
            port: free_port()?,
            bindir,
            stop_on_drop: true,
        };
        cluster.give(&dir)?;
        let _ = run(Command::new("chmod").arg("755").arg(&dir), "chmod");
        cluster.initdb(opts)?;
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            cluster.port,
            dir.display()
        );
        if let Some((cert, key)) = &opts.tls {
            conf.push_str(&cluster.install_tls(cert, key)?);
        }
        let conf_file = dir.join("data/postgresql.auto.conf");
        std::fs::write(&conf_file, conf)
            .map_err(|e| format!("cannot write {}: {e}", conf_file.display()))?;
        cluster.give(&conf_file)?;
        cluster.watchdog()?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    /// Runs `initdb` with trusted local access, the host authentication asked for and the
    /// superuser's password when one is set.
    fn initdb(&self, opts: &ClusterOptions) -> Result<(), String> {
        let mut initdb = self.as_pg("initdb");
        initdb
            .arg("-D")
            .arg(self.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .arg(format!(
                "--auth-host={}",
                if opts.host_auth.is_empty() {
                    "trust"
                } else {
                    &opts.host_auth
                }
            ));
        if let Some(pw) = &opts.superuser_password {
            let pwfile = self.dir.join("pwfile");
            std::fs::write(&pwfile, format!("{pw}\n")).map_err(|e| e.to_string())?;
            self.give(&pwfile)?;
            initdb.arg(format!("--pwfile={}", pwfile.display()));
        }
        run(&mut initdb, "initdb").map(drop)
    }

    /// Copies the server certificate and key into the cluster directory; returns the
    /// settings that turn TLS on.
    fn install_tls(&self, cert: &Path, key: &Path) -> Result<String, String> {
        for (src, name) in [(cert, "server.crt"), (key, "server.key")] {
            let dest = self.dir.join(name);
            std::fs::copy(src, &dest).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
            self.give(&dest)?;
        }
        run(
            Command::new("chmod")
                .arg("600")
                .arg(self.dir.join("server.key")),
            "chmod",
        )?;
        Ok(format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display()
        ))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        run(
            self.as_pg("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-w", "-t", "60", "start"])
                .stdout(Stdio::null()),
            "pg_ctl start",
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the local PostgreSQL did not start: see {}/log",
                    self.dir.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn stop_command(&self) -> String {
        let cmd = format!(
            "{} -D {} -m immediate stop",
            self.bindir.join("pg_ctl").display(),
            self.dir.join("data").display()
        );
        if is_root() {
            format!("runuser -u {PG_ACCOUNT} -- {cmd}")
        } else {
            cmd
        }
    }

    /// Stops the server and removes its directory when this process ends, however it ends.
    fn watchdog(&self) -> Result<(), String> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.stop_command(),
            dir = self.dir.display()
        );
        // `setsid -f` detaches it, so that it outlives this process.
        run(
            Command::new("setsid")
                .args(["-f", "sh", "-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "start the cluster watchdog",
        )
        .map(|_| ())
    }

    /// Restarts the server (open sessions break).
    pub fn restart(&self) -> Result<(), String> {
        run(
            self.as_pg("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null()),
            "pg_ctl stop",
        )?;
        self.pg_ctl_start()
    }

    /// Stops the server now.
    pub fn stop(&self) {
        let _ = Command::new("sh")
            .args(["-c", &self.stop_command()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Keeps the server running when this value is dropped (the watchdog still stops it
    /// when the process ends).
    pub fn keep_running(mut self) -> Self {
        self.stop_on_drop = false;
        self
    }

    /// Runs fixed SQL as the superuser over the Unix socket with psql.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        run(
            self.as_pg("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    db,
                    "-c",
                    sql,
                ]),
            "psql",
        )
    }
}

fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_ACCOUNT, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Creates the unprivileged account the cluster runs as, when running as root and it is missing
/// (`initdb` and `postgres` refuse to run as root).
fn ensure_pg_account() -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let missing = Command::new("id")
        .arg(PG_ACCOUNT)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true);
    if missing {
        run(
            Command::new("useradd").args(["--system", "--no-create-home", PG_ACCOUNT]),
            "useradd postgres",
        )?;
    }
    Ok(())
}
