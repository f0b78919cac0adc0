//! Database servers a test starts itself: a private PostgreSQL cluster (to stop and start
//! under load, never the machine's shared server) and PgBouncer in front of the shared one.
//!
//! Both refuse to run as root, so when the tests run as root they are started as the
//! `postgres` account. Missing programs skip the test with a `SKIPPED` line, unless the
//! run requires them (`TENANTRY_TEST_REQUIRE_POSTGRES=1` for the cluster,
//! `TENANTRY_TEST_REQUIRE_PGBOUNCER=1` for PgBouncer), as CI does.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1" || v == "true")
}

/// Skips (`None`) or fails, as the run requires.
fn unavailable<T>(what: &str, var: &str, why: &str) -> Option<T> {
    assert!(!required(var), "{what} is required ({var}) but {why}");
    eprintln!("SKIPPED {what} test: {why}");
    None
}

/// Runs `cmd` as the `postgres` account when this process is root.
fn as_server_user(cmd: &mut Command) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(out.status.success(), "the postgres account exists");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    cmd.uid(id("-u")).gid(id("-g"));
}

/// A directory the server account may write, removed afterwards.
fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let status = Command::new("chown")
            .args(["postgres:postgres", dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    dir
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A PostgreSQL cluster of this test's own, on a port of its own, trust authentication.
pub struct PgCluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// Creates and starts a cluster, or `None` (skipped) without the server programs.
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bindir() else {
            return unavailable(
                "PostgreSQL cluster",
                "TENANTRY_TEST_REQUIRE_POSTGRES",
                "no initdb/pg_ctl found (TENANTRY_TEST_PG_BINDIR or /usr/lib/postgresql/*/bin)",
            );
        };
        let dir = server_dir();
        let data = dir.path().join("data");
        let out = run(Command::new(bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&data));
        assert!(out.status.success(), "initdb: {}", stderr(&out));
        let cluster = Self {
            port: free_port(),
            bin,
            dir,
        };
        cluster.start_server();
        Some(cluster)
    }

    /// `postgres://postgres@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=on -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let out = run(Command::new(self.bin.join("pg_ctl"))
            .args(["start", "-w", "-t", "30", "-D"])
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(&log));
        assert!(
            out.status.success(),
            "pg_ctl start: {} {}",
            stderr(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server the way a crash or a failover does: `immediate` (no checkpoint,
    /// every connection cut; the next start replays the WAL) or `fast`.
    pub fn stop_server(&self, mode: &str) {
        let out = run(Command::new(self.bin.join("pg_ctl"))
            .args(["stop", "-w", "-m", mode, "-D"])
            .arg(self.data()));
        assert!(out.status.success(), "pg_ctl stop: {}", stderr(&out));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run(Command::new(self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data()));
    }
}

/// The PostgreSQL server programs: `TENANTRY_TEST_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` with `initdb`.
pub fn postgres_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("TENANTRY_TEST_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// PgBouncer in transaction mode in front of the test PostgreSQL server, every database
/// passed through under its own name, `pool_size` server connections per database and
/// user, trust authentication for `users`.
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer, or `None` (skipped) without a PgBouncer that keeps prepared
    /// statements in transaction mode (1.21 or later).
    pub fn start(users: &[&str], pool_size: u32) -> Option<Self> {
        let bin = match pgbouncer_binary() {
            Ok(bin) => bin,
            Err(why) => return unavailable("PgBouncer", "TENANTRY_TEST_REQUIRE_PGBOUNCER", &why),
        };
        let server = url::Url::parse(&tenantry::testing::postgres_admin_url()).unwrap();
        let dir = server_dir();
        let port = free_port();
        let users_file = dir.path().join("users.txt");
        let listed: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(&users_file, listed).unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
                 max_client_conn = 200\nmax_prepared_statements = 200\n\
                 server_check_delay = 1\nserver_login_retry = 1\n\
                 logfile = {log}\n",
                host = server.host_str().unwrap(),
                pg_port = server.port().unwrap_or(5432),
                users = users_file.display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
        as_server_user(&mut cmd);
        let log = dir.path().join("pgbouncer.log");
        // In its guard before anything can fail, so it is stopped whatever happens.
        let bouncer = Self {
            port,
            child: cmd.spawn().unwrap(),
            _dir: dir,
        };
        assert!(
            wait_listening(port, Duration::from_secs(10)),
            "PgBouncer listens: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Some(bouncer)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `TENANTRY_TEST_PGBOUNCER`, else `pgbouncer` on the `PATH` or in `/usr/sbin`, if it is
/// 1.21 or later (protocol-level prepared statements in transaction mode).
fn pgbouncer_binary() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var("TENANTRY_TEST_PGBOUNCER") {
        Ok(path) => vec![PathBuf::from(path)],
        Err(_) => std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/opt/pgbouncer/bin"])
            .map(|dir| Path::new(dir).join("pgbouncer"))
            .collect(),
    };
    let Some(bin) = candidates.into_iter().find(|p| p.exists()) else {
        return Err("no pgbouncer found (TENANTRY_TEST_PGBOUNCER, PATH)".to_owned());
    };
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let version: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect();
    match version.as_slice() {
        [major, minor, ..] if (*major, *minor) >= (1, 21) => Ok(bin),
        _ => Err(format!(
            "{} is `{}`; 1.21 or later is needed (prepared statements in transaction mode)",
            bin.display(),
            text.lines().next().unwrap_or_default()
        )),
    }
}

/// Runs a server program to completion, as the server account.
fn run(cmd: &mut Command) -> std::process::Output {
    as_server_user(cmd);
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}
