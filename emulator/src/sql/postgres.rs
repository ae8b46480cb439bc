//! Real PostgreSQL servers behind Cloud SQL instances (Cloud SQL, API floor; an extension of the
//! `App`): `initdb`, `pg_ctl start/stop/restart`, and administrative SQL over the server's unix
//! socket. Each server serves TLS itself (`ssl=on`, a certificate from the emulator's CA) and
//! takes its `pg_hba.conf` from the caller ([`Setup`], [`PgServer::set_hba`]: who may connect is
//! [`super::network`]'s business).
//!
//! PostgreSQL refuses to run as root, so when the emulator runs as root the servers run as
//! `nobody` (through the safe `CommandExt::uid/gid`), in directories chowned to it. The internal
//! superuser is `cloudsqladmin`, as on Cloud SQL; `postgres` is an ordinary role with CREATEDB and
//! CREATEROLE, a member of `cloudsqlsuperuser`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::process::Command;

use crate::error::EmulatorError;

/// The superuser created by initdb (Cloud SQL's own administrative role has this name).
pub const ADMIN_ROLE: &str = "cloudsqladmin";

/// The highest installed PostgreSQL's `bin` directory under `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, EmulatorError> {
    let missing = || {
        EmulatorError::Postgres(
            "no PostgreSQL server found under /usr/lib/postgresql/*/bin; \
             install it with `apt-get install postgresql`"
                .into(),
        )
    };
    let entries = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    let mut best: Option<(u32, PathBuf)> = None;
    for e in entries.flatten() {
        let Some(version) = e.file_name().to_str().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let bin = e.path().join("bin");
        if bin.join("initdb").exists() && bin.join("pg_ctl").exists() && best.as_ref().is_none_or(|b| b.0 < version) {
            best = Some((version, bin));
        }
    }
    best.map(|b| b.1).ok_or_else(missing)
}

/// The user to run servers as: `Some((uid, gid))` of `nobody` when the emulator runs as root.
pub fn run_as() -> Result<Option<(u32, u32)>, EmulatorError> {
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| EmulatorError::Postgres(format!("cannot read /etc/passwd: {e}")))?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == "nobody" {
            if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                return Ok(Some((uid, gid)));
            }
        }
    }
    Err(EmulatorError::Postgres(
        "running as root, and PostgreSQL refuses root, but there is no `nobody` user in /etc/passwd".into(),
    ))
}

/// Where servers live and as whom they run; keeps the running servers.
#[derive(Debug)]
pub struct PgManager {
    root: PathBuf,
    run_as: Option<(u32, u32)>,
    bin_dir: Mutex<Option<PathBuf>>,
    servers: Mutex<HashMap<String, Arc<PgServer>>>,
    _temp: Option<tempfile::TempDir>,
}

impl PgManager {
    /// Servers under `root` (e.g. `<state-dir>/postgres`), or under a temporary directory removed
    /// when the manager is dropped.
    pub fn new(root: Option<PathBuf>) -> Result<Self, EmulatorError> {
        let io = |path: &Path, source| EmulatorError::StateDir { path: path.to_path_buf(), source };
        let (root, temp) = match root {
            Some(r) => {
                std::fs::create_dir_all(&r).map_err(|e| io(&r, e))?;
                (r, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("gcp-emulator-pg")
                    .tempdir()
                    .map_err(|e| io(Path::new("/tmp"), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let run_as = run_as()?;
        if run_as.is_some() {
            use std::os::unix::fs::PermissionsExt;
            // `nobody` must be able to traverse to its directories; nothing in here is secret
            // beyond the data directories themselves, which stay 0700.
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).map_err(|e| io(&root, e))?;
            check_traversable(&root)?;
        }
        Ok(PgManager { root, run_as, bin_dir: Mutex::new(None), servers: Mutex::new(HashMap::new()), _temp: temp })
    }

    fn bin_dir(&self) -> Result<PathBuf, String> {
        let mut b = self.bin_dir.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_none() {
            *b = Some(find_bin_dir().map_err(|e| e.to_string())?);
        }
        Ok(b.clone().unwrap_or_default())
    }

    /// A fresh directory for a new instance's server.
    pub fn new_dir(&self, key: &str) -> PathBuf {
        let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        self.root.join(format!("{safe}-{}", crate::util::random_hex(6)))
    }

    /// Creates (initdb) and starts a server in `dir` listening on `host:port`, configured with
    /// `setup`; registers it under `key`.
    pub async fn create(
        &self,
        key: &str,
        dir: &Path,
        host: IpAddr,
        port: u16,
        setup: &Setup,
    ) -> Result<Arc<PgServer>, String> {
        let server = Arc::new(PgServer {
            dir: dir.to_path_buf(),
            host,
            port,
            bin_dir: self.bin_dir()?,
            run_as: self.run_as,
            child: Mutex::new(None),
        });
        server.init().await?;
        server.configure(setup)?;
        server.start().await?;
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), server.clone());
        Ok(server)
    }

    /// Starts an existing server (after an emulator restart), configured with `setup` (a new
    /// certificate: the CA is new), and registers it under `key`.
    pub async fn resume(
        &self,
        key: &str,
        dir: &Path,
        host: IpAddr,
        port: u16,
        setup: &Setup,
    ) -> Result<Arc<PgServer>, String> {
        let server = Arc::new(PgServer {
            dir: dir.to_path_buf(),
            host,
            port,
            bin_dir: self.bin_dir()?,
            run_as: self.run_as,
            child: Mutex::new(None),
        });
        server.configure(setup)?;
        server.start().await?;
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), server.clone());
        Ok(server)
    }

    /// The running server registered under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<PgServer>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Unregisters, stops and deletes the server under `key`.
    pub async fn destroy(&self, key: &str) {
        let server = self.servers.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        if let Some(s) = server {
            s.stop().await;
            let _ = tokio::fs::remove_dir_all(&s.dir).await;
        }
    }

    /// Stops every server (data kept); used on shutdown.
    pub fn stop_all(&self) {
        let servers: Vec<_> = self.servers.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (_, s) in servers {
            s.stop_blocking();
        }
    }

    /// Stops and deletes every server; used by the admin reset.
    pub async fn destroy_all(&self) {
        let keys: Vec<String> = self.servers.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        for k in keys {
            self.destroy(&k).await;
        }
    }
}

impl Drop for PgManager {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn check_traversable(dir: &Path) -> Result<(), EmulatorError> {
    use std::os::unix::fs::PermissionsExt;
    for a in dir.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(a) {
            if m.permissions().mode() & 0o001 == 0 {
                return Err(EmulatorError::Postgres(format!(
                    "PostgreSQL runs as `nobody` (the emulator runs as root), which cannot enter {}; \
                     choose a state directory elsewhere (e.g. under /tmp or /var/lib)",
                    a.display()
                )));
            }
        }
    }
    Ok(())
}

/// What a server is configured with before it starts: its `pg_hba.conf`, and the TLS it serves.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The whole `pg_hba.conf`.
    pub hba: String,
    /// TLS (`ssl=on`), or none.
    pub tls: Option<Tls>,
}

/// The TLS a server serves.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The server certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// The CA that client certificates must chain to (`clientcert=verify-ca`), PEM.
    pub ca_pem: String,
}

impl Setup {
    /// A plain server for tests: the unix socket trusted, passwords over TCP from 127.0.0.1, no TLS.
    pub fn loopback_passwords() -> Setup {
        Setup { hba: "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n".into(), tls: None }
    }
}

/// One PostgreSQL server: data in `dir/data`, log in `dir/postgres.log`, socket in a short
/// directory of its own (see [`PgServer::socket_dir`]).
#[derive(Debug)]
pub struct PgServer {
    dir: PathBuf,
    host: IpAddr,
    port: u16,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    child: Mutex<Option<tokio::process::Child>>,
}

impl PgServer {
    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn host(&self) -> IpAddr {
        self.host
    }

    /// Directory of the unix socket. Kept short and outside the (possibly deep)
    /// data directory: a unix socket path may not exceed 107 bytes, which long
    /// project and instance names would otherwise break. The address and port make it unique.
    pub fn socket_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("skyform-pg-{}-{}", self.host, self.port))
    }

    fn make_socket_dir(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let d = self.socket_dir();
        std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", d.display()))?;
        self.chown(&d)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(program));
        c.current_dir(&self.dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        c.env("LC_ALL", "C.UTF-8").env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn chown(&self, p: &Path) -> Result<(), String> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", p.display()))?;
        }
        Ok(())
    }

    async fn init(&self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        for d in [self.dir.clone(), self.socket_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("chmod {}: {e}", d.display()))?;
            self.chown(&d)?;
        }
        let out = self
            .command("initdb")
            .args(["-D", "data", "-U", ADMIN_ROLE, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .await
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }

    /// The files of [`Setup`], in the server's directory, owned by the server's user (PostgreSQL
    /// refuses a key others can read).
    fn tls_file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_owned(&self, path: &Path, text: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        self.chown(path)
    }

    /// Writes `pg_hba.conf` and the TLS files (read at the next start or reload).
    fn configure(&self, setup: &Setup) -> Result<(), String> {
        self.write_owned(&self.dir.join("data/pg_hba.conf"), &setup.hba, 0o600)?;
        match &setup.tls {
            Some(tls) => {
                self.write_owned(&self.tls_file("server.crt"), &tls.cert_pem, 0o644)?;
                self.write_owned(&self.tls_file("server.key"), &tls.key_pem, 0o600)?;
                self.write_owned(&self.tls_file("ca.crt"), &tls.ca_pem, 0o644)
            }
            None => {
                let _ = std::fs::remove_file(self.tls_file("server.crt"));
                Ok(())
            }
        }
    }

    /// Replaces `pg_hba.conf` and reloads it; returns once new sessions see it (the postmaster
    /// reloads on a signal, so this waits for `pg_conf_load_time()` to move).
    pub async fn set_hba(&self, text: &str) -> Result<(), String> {
        let loaded = "SELECT extract(epoch FROM pg_conf_load_time())::float8";
        let load_time = |c: tokio_postgres::Client| async move {
            c.query_one(loaded, &[]).await.map(|r| r.get::<_, f64>(0)).map_err(|e| pg_message(&e))
        };
        let before = load_time(self.connect("postgres").await?).await?;
        self.write_owned(&self.dir.join("data/pg_hba.conf"), text, 0o600)?;
        let c = self.connect("postgres").await?;
        let ok: bool = c.query_one("SELECT pg_reload_conf()", &[]).await.map_err(|e| pg_message(&e))?.get(0);
        if !ok {
            return Err("pg_reload_conf() failed".into());
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while load_time(self.connect("postgres").await?).await? <= before {
            if tokio::time::Instant::now() > deadline {
                return Err("PostgreSQL did not reload pg_hba.conf within 10 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// The postmaster is this process's child (not daemonised by `pg_ctl start`), spawned with
    /// kill-on-drop: if the emulator's task or handle is dropped without a clean stop (a test that
    /// panics mid-create, say), the postmaster is killed and its backends exit on noticing it.
    pub async fn start(&self) -> Result<(), String> {
        let log_path = self.dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        self.chown(&log_path)?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let port = self.port.to_string();
        self.make_socket_dir()?;
        let sock = self.socket_dir();
        let mut cmd = self.command("postgres");
        if self.tls_file("server.crt").exists() {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", self.tls_file("server.crt").display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", self.tls_file("server.key").display()))
                .arg("-c")
                .arg(format!("ssl_ca_file={}", self.tls_file("ca.crt").display()));
        }
        cmd.args(["-D", "data", "-p", &port, "-k"])
            .arg(&sock)
            .arg("-c")
            .arg(format!("listen_addresses={}", self.host))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=40"])
            .args(["-c", "password_encryption=scram-sha-256"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("cannot run postgres: {e}"))?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("postgres exited at start ({status}): {}", log_tail(&log_path)));
            }
            if self.connect("postgres").await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                return Err(format!("postgres not ready after 60 s: {}", log_tail(&log_path)));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    fn pg_ctl_stop(&self) -> std::process::Command {
        let mut c = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        c.current_dir(&self.dir)
            .args(["stop", "-D", "data", "-m", "fast", "-w", "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut c, uid);
            std::os::unix::process::CommandExt::gid(&mut c, gid);
        }
        c
    }

    /// Stops the server (fast mode: sessions are disconnected, data is kept).
    pub async fn stop(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut child) = child else { return };
        let _ = Command::from(self.pg_ctl_stop()).status().await;
        // pg_ctl waited for the shutdown; reap the child, or kill it if it is somehow still there.
        if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// Restarts the server.
    pub async fn restart(&self) -> Result<(), String> {
        self.stop().await;
        self.start().await
    }

    fn stop_blocking(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(child) = child {
            let _ = self.pg_ctl_stop().status();
            // Dropping the handle kills the postmaster if the fast shutdown did not end it.
            drop(child);
        }
    }

    /// Runs `sql` (one or more statements) in database `db` as the internal superuser.
    pub async fn exec(&self, db: &str, sql: &str) -> Result<(), String> {
        let client = self.connect(db).await?;
        client.batch_execute(sql).await.map_err(|e| pg_message(&e))
    }

    /// A client connected to `db` as the internal superuser over the unix socket.
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, String> {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(self.socket_dir())
            .port(self.port)
            .user(ADMIN_ROLE)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| pg_message(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

/// The last lines of a server log, for error messages.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The server's own message for a failed statement, else the client error.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// `name` as a quoted SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a quoted SQL string literal (standard_conforming_strings is on by default).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A free loopback TCP port (bound and released; a small race is accepted).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("sa@p.iam"), "\"sa@p.iam\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
