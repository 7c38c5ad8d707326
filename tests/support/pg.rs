//! A throwaway PostgreSQL server for tests: `initdb` in a temp dir, `pg_ctl start`
//! on a free loopback port, one fresh database per relay, and a watchdog that
//! stops the server and removes the directory when the test process exits.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the `postgres`
//! user the distribution's package creates (`runuser -u postgres`). Without
//! PostgreSQL the tests fail and say how to install it; they are skipped only when
//! `AGENTROOM_PG_TESTS=skip` is set explicitly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Which store a test binary runs the relay suite on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) struct Server {
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// The CA of the server's TLS certificate (for 127.0.0.1).
    ca: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static DATABASES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);

/// `AGENTROOM_PG_TESTS=skip`: the caller returns without testing.
#[allow(clippy::print_stderr)] // says once, on the test's stderr, that PostgreSQL is skipped
pub(crate) fn skipped() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| {
        let skip = std::env::var("AGENTROOM_PG_TESTS").is_ok_and(|v| v == "skip");
        if skip {
            eprintln!("AGENTROOM_PG_TESTS=skip: the PostgreSQL tests do not use PostgreSQL");
        }
        skip
    })
}

fn bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("AGENTROOM_PG_BIN") {
        return Some(PathBuf::from(d)).filter(|d| d.join("initdb").exists());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some(b) = versions.pop() {
        return Some(b);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
}

impl Server {
    fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, mut c: Command, what: &str) {
        let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Server {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed: these tests run a real PostgreSQL server \
                 (initdb, pg_ctl). Install it (Debian/Ubuntu: `apt-get update && apt-get \
                 install -y postgresql`; or point AGENTROOM_PG_BIN at its bin directory), \
                 or set AGENTROOM_PG_TESTS=skip to skip them."
            )
        });
        let as_postgres_user = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new().prefix("agentroom-pg-").tempdir().unwrap().keep();
        if as_postgres_user {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ca = tls_files(&dir, as_postgres_user);
        let s = Server { bin, port, as_postgres_user, ca };
        let data = dir.join("data");
        let mut c = s.cmd("initdb");
        c.arg("-D").arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        s.run(c, "initdb");
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
             -c ssl=on -c ssl_cert_file={d}/server.pem -c ssl_key_file={d}/server.key",
            dir.display(),
            d = dir.display(),
        );
        let mut c = s.cmd("pg_ctl");
        c.arg("-D").arg(&data).arg("-l").arg(dir.join("log")).args(["-w", "-t", "120", "-o"]);
        c.arg(&opts).arg("start").stdout(Stdio::null());
        s.run(c, "pg_ctl start");
        s.watchdog(&dir, &data);
        s
    }

    /// Stop the server once this process is gone (statics are never dropped).
    /// The watchdog outlives this process by design, so it is never waited for.
    #[allow(clippy::zombie_processes)]
    fn watchdog(&self, dir: &Path, data: &Path) {
        use std::os::unix::process::CommandExt;
        let runas = if self.as_postgres_user { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {runas}'{pg_ctl}' -D '{data}' stop -m immediate; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
    }
}

/// A CA and a server certificate for 127.0.0.1 in `dir` (the key readable by the
/// server's user only, as PostgreSQL demands); returns the CA's PEM file.
fn tls_files(dir: &Path, as_postgres_user: bool) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::os::unix::fs::PermissionsExt;
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), leaf.pem()).unwrap();
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    if as_postgres_user {
        let pg = nix::unistd::User::from_name("postgres").unwrap().expect("a postgres user");
        for f in ["server.pem", "server.key"] {
            nix::unistd::chown(&dir.join(f), Some(pg.uid), Some(pg.gid)).unwrap();
        }
    }
    ca_pem
}

/// The CA file that verifies the test server's certificate.
pub(crate) fn ca_file() -> PathBuf {
    server().ca.clone()
}

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// A new, empty database on the test server.
pub(crate) fn fresh_url() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let s = server();
    let name = format!("t_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    psql(&format!("CREATE DATABASE {name}"), "postgres");
    format!("postgres://postgres@127.0.0.1:{}/{name}", s.port)
}

/// The database of the relay whose files live in `dir` (the same one on restart).
pub(crate) fn url_for(dir: &Path) -> String {
    let mut g = DATABASES.lock().unwrap();
    g.get_or_insert_with(HashMap::new).entry(dir.to_path_buf()).or_insert_with(fresh_url).clone()
}

/// Run SQL on the test server, as the superuser; stdout (unaligned, tuples only).
pub(crate) fn psql(sql: &str, db: &str) -> String {
    let s = server();
    let out = Command::new(s.bin.join("psql"))
        .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-p", &s.port.to_string(), "-d", db, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("psql");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The database name in a URL from [`fresh_url`].
pub(crate) fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap()
}
