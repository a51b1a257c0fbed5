//! The peers GateKeeper is compared with: nginx and HAProxy from Debian's packages, each
//! configured as the same reverse proxy. Host routing (unknown hosts 404), a request without
//! the expected `api-key` refused (nginx `map`, HAProxy `acl`), the header replaced by the
//! upstream's key, keep-alive to the upstream, no access logs, one worker / one thread, TLS 1.3
//! with a certificate from the same CA and key type as GateKeeper's (ECDSA P-256).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use testkit::free_port;

use super::HarnessError;
use super::platform::Upstream;
use super::procs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    fn package(self) -> &'static str {
        self.name()
    }
}

/// A running peer proxy.
pub struct Peer {
    pub kind: Kind,
    pub plain: u16,
    pub tls: u16,
    child: Child,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    /// A graceful stop first: nginx's master stops its workers on SIGTERM, while a SIGKILLed
    /// master leaves them running.
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = testkit::supervised::kill(&mut self.child);
    }
}

/// What the peers route, check and send.
pub struct Route<'a> {
    pub host: &'a str,
    pub client_key: &'a str,
    pub upstream: &'a Upstream,
    /// The region certificate chain and key (PEM files).
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Where the peer's binary is; installs the Debian package when missing and allowed (root),
/// else says exactly how.
pub fn binary(kind: Kind) -> Result<PathBuf, HarnessError> {
    let find = || {
        ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .map(|d| Path::new(d).join(kind.name()))
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let how = format!("apt-get install -y {}", kind.package());
    if !root {
        return Err(HarnessError::Setup(format!(
            "{} is not installed: run `sudo {how}`",
            kind.name()
        )));
    }
    eprintln!("installing {} ({how})", kind.name());
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-qq", kind.package()])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| HarnessError::Setup(format!("{how}: {e}")))?;
    if !installed.success() {
        return Err(HarnessError::Setup(format!(
            "{how} failed; try `apt-get update` first"
        )));
    }
    find()
        .ok_or_else(|| HarnessError::Setup(format!("{} still not found after {how}", kind.name())))
}

/// A JSON string safe inside the peers' configs: the keys are base64url and hex, so this only
/// guards against a future change of format.
fn config_safe(s: &str) -> Result<&str, HarnessError> {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(s)
    } else {
        Err(HarnessError::Setup(
            "a key has characters the peer configs cannot quote".into(),
        ))
    }
}

fn nginx_conf(dir: &Path, plain: u16, tls: u16, r: &Route<'_>) -> Result<String, HarnessError> {
    let (host, key, upstream_key) = (
        config_safe(r.host)?,
        config_safe(r.client_key)?,
        config_safe(&r.upstream.api_key)?,
    );
    let d = dir.display();
    Ok(format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  # API keys and cluster hosts are longer than the default buckets allow.
  map_hash_bucket_size 128;
  server_names_hash_bucket_size 128;
  # At http level: the default server's settings govern the handshake, before SNI picks one.
  ssl_protocols TLSv1.3;
  # Sessions resume, as on a production server (and as GateKeeper's rustls does by default).
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  # Connections are kept however many requests they carry, as GateKeeper and HAProxy do.
  keepalive_requests 1000000;
  upstream qdrant {{ server {up}; keepalive 1024; keepalive_requests 1000000; }}
  map $http_api_key $key_ok {{ "{key}" 1; default 0; }}
  server {{
    listen 127.0.0.1:{plain} default_server;
    listen 127.0.0.1:{tls} ssl default_server;
    ssl_certificate {cert};
    ssl_certificate_key {tls_key};
    return 404;
  }}
  server {{
    listen 127.0.0.1:{plain};
    listen 127.0.0.1:{tls} ssl;
    server_name {host};
    ssl_certificate {cert};
    ssl_certificate_key {tls_key};
    location / {{
      if ($key_ok = 0) {{ return 401 '{{"status":{{"error":"Unauthorized"}},"time":0}}'; }}
      proxy_pass http://qdrant;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header api-key "{upstream_key}";
    }}
  }}
}}
"#,
        up = r.upstream.rest,
        cert = r.cert.display(),
        tls_key = r.key.display(),
    ))
}

fn haproxy_cfg(plain: u16, tls: u16, pem: &Path, r: &Route<'_>) -> Result<String, HarnessError> {
    let (host, key, upstream_key) = (
        config_safe(r.host)?,
        config_safe(r.client_key)?,
        config_safe(&r.upstream.api_key)?,
    );
    Ok(format!(
        r#"global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend proxy
  bind 127.0.0.1:{plain}
  bind 127.0.0.1:{tls} ssl crt {pem} alpn http/1.1
  acl host_ok req.hdr(host),field(1,:) -i {host}
  acl key_ok req.hdr(api-key) -m str {key}
  http-request return status 404 if !host_ok
  http-request return status 401 content-type application/json string '{{"status":{{"error":"Unauthorized"}},"time":0}}' if !key_ok
  http-request set-header api-key {upstream_key}
  default_backend qdrant
backend qdrant
  server node {up} maxconn 10000
"#,
        pem = pem.display(),
        up = r.upstream.rest,
    ))
}

/// Writes the peer's configuration under `dir` and starts it pinned to `cpu`.
pub fn start(
    kind: Kind,
    dir: &Path,
    cpu: Option<usize>,
    route: &Route<'_>,
) -> Result<Peer, HarnessError> {
    let bin = binary(kind)?;
    let io = |e: std::io::Error| HarnessError::Setup(format!("{}: {e}", kind.name()));
    let dir = dir.join(kind.name());
    std::fs::create_dir_all(&dir).map_err(io)?;
    let port = || free_port().map_err(io);
    let (plain, tls) = (port()?, port()?);
    let mut cmd = Command::new(&bin);
    match kind {
        Kind::Nginx => {
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&dir, plain, tls, route)?).map_err(io)?;
            cmd.arg("-p").arg(&dir).arg("-c").arg(&conf);
        }
        Kind::Haproxy => {
            // HAProxy wants the chain and the key in one file.
            let pem = dir.join("cert.pem");
            let mut both = std::fs::read_to_string(route.cert).map_err(io)?;
            both.push_str(&std::fs::read_to_string(route.key).map_err(io)?);
            std::fs::write(&pem, both).map_err(io)?;
            let cfg = dir.join("haproxy.cfg");
            std::fs::write(&cfg, haproxy_cfg(plain, tls, &pem, route)?).map_err(io)?;
            cmd.arg("-db").arg("-f").arg(&cfg);
        }
    }
    let child = procs::spawn(cmd, cpu, &dir.join("out.log"))?;
    let mut peer = Peer {
        kind,
        plain,
        tls,
        child,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    while !(up(plain) && up(tls)) {
        let exited = matches!(peer.child.try_wait(), Ok(Some(_)));
        if exited || std::time::Instant::now() > deadline {
            // Say why: the last lines the peer wrote.
            let said: Vec<String> = ["out.log", "nginx-error.log"]
                .iter()
                .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
                .flat_map(|t| {
                    t.lines()
                        .rev()
                        .take(5)
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect();
            let what = if exited {
                "exited"
            } else {
                "did not listen within 30 s"
            };
            return Err(HarnessError::Setup(format!(
                "{} {what}: {}",
                kind.name(),
                said.join(" | ")
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(peer)
}
