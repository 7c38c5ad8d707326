//! TLS fixtures: a CA and certificates made with rcgen, an nginx TLS terminator
//! started on loopback from a config in a temp dir, and a relay serving TLS itself.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use crate::common::{BIN, Bg, DEADLINE, Relay};

/// A test CA that writes its certificate to `ca.pem` in `dir`.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub(crate) pem: PathBuf,
}

/// A leaf certificate and key, as PEM files.
pub(crate) struct Leaf {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl Ca {
    pub(crate) fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("agentroom test CA {name}"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        Self { issuer, pem }
    }

    /// A certificate for `names`, valid now unless `expired`.
    pub(crate) fn leaf(&self, dir: &Path, file: &str, names: &[&str], expired: bool) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "agentroom test relay");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf =
            Leaf { cert: dir.join(format!("{file}.pem")), key: dir.join(format!("{file}.key")) };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// A free loopback port (bound and released: good enough for a test).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll until something accepts TCP on `port`.
pub(crate) fn wait_listening(port: u16) {
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The nginx binary, or a failure that says how to get it (CI installs it).
fn nginx_bin() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("nginx");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "nginx is not installed: the wss tests need a real TLS terminator. Install it with \
         `apt-get install -y nginx-light` (.ci/run does this in CI)."
    );
}

/// nginx terminating TLS on 127.0.0.1:`port` in front of a plain relay.
pub(crate) struct Nginx {
    dir: PathBuf,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Nginx {
    pub(crate) fn start(dir: &Path, upstream: u16, leaf: &Leaf) -> Self {
        Self::start_on(dir, free_port(), upstream, leaf)
    }

    /// Like [`Self::start`] on a given port (one named in a URL before nginx runs).
    pub(crate) fn start_on(dir: &Path, port: u16, upstream: u16, leaf: &Leaf) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $http_host;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"#,
            cert = leaf.cert.display(),
            key = leaf.key.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut n = Self { dir: dir.to_path_buf(), port, child: None };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Kill the proxy (every connection through it drops) and start it again.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A relay process serving TLS itself with `leaf`, its files in `dir`.
pub(crate) fn tls_relay(dir: &Path, leaf: &Leaf) -> Relay {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["relay", "--json", "--port", "0", "--db"])
        .arg(dir.join("relay.db"))
        .arg("--tls-cert")
        .arg(&leaf.cert)
        .arg("--tls-key")
        .arg(&leaf.key)
        .env("LOG_LEVEL", "warn")
        .env("RATE_LIMIT_DISABLED", "1")
        .env_remove("HMAC_SECRET");
    let mut bg = Bg::spawn(cmd);
    let v = bg.wait_event("listening");
    let url = v["url"].as_str().unwrap().to_owned();
    let port = u16::try_from(v["port"].as_u64().unwrap()).unwrap();
    Relay { bg, url, port, dir: dir.to_path_buf() }
}
