//! The scenarios. Each builds what it needs from [`Ctx`], runs its peers interleaved and
//! returns a [`Report`].

mod answers;
mod auth;
mod control;
mod grpc;
mod latency;
mod revocation;
mod scale;
mod throughput;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::load::{self, Mode, Outcome, Target};
use super::peers::{self, Kind, Peer};
use super::platform::{Gatekeeper, Lyra};
use super::procs::{self, Pinning};
use super::report::{Report, Run};
use super::{HarnessError, Options};

/// Every scenario, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// (1) Maximum throughput, HTTP/1.1 keep-alive: GateKeeper, nginx, HAProxy, direct.
    Throughput,
    /// (2) Latency at 25/50/75% of the slowest peer's maximum, open loop.
    Latency,
    /// (3) TLS 1.3: new connection per request, and keep-alive.
    Tls,
    /// (4) gRPC over h2 through GateKeeper vs direct.
    Grpc,
    /// (5) GateKeeper with auth and limits on vs off.
    Auth,
    /// (6) Revocation propagation under load.
    Revocation,
    /// (7) Control plane: POST /clusters, and 202 -> HEALTHY.
    Control,
    /// (8) Scale: 100k clusters and 1M revoked keys in one gateway.
    Scale,
    /// (9) Qdrant-sized answers (4 KiB and 64 KiB searches), 256 connections.
    Answers,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Tls,
        Scenario::Grpc,
        Scenario::Auth,
        Scenario::Revocation,
        Scenario::Control,
        Scenario::Scale,
        Scenario::Answers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Tls => "tls",
            Scenario::Grpc => "grpc",
            Scenario::Auth => "auth",
            Scenario::Revocation => "revocation",
            Scenario::Control => "control",
            Scenario::Scale => "scale",
            Scenario::Answers => "answers",
        }
    }
}

/// What every scenario shares: the options, Lyra itself, and the region certificate the
/// peers serve.
pub struct Ctx {
    pub opts: Options,
    pub lyra: Lyra,
    pub pinning: Pinning,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
}

impl Ctx {
    pub async fn new(opts: Options, pinning: Pinning) -> Result<Self, HarnessError> {
        let lyra = Lyra::start(pinning).await?;
        let ca_pem = lyra.ca_pem()?;
        let key_pem = std::fs::read_to_string(&lyra.ca_key)
            .map_err(|e| HarnessError::Setup(format!("ca.key: {e}")))?;
        let ca = certs::ca::PlatformCa::from_pem(&ca_pem, &key_pem)
            .map_err(|e| HarnessError::Setup(format!("CA: {e}")))?;
        let tld = contract::host::Tld::new("localhost")
            .map_err(|e| HarnessError::Setup(e.to_string()))?;
        let region = ca
            .issue_region("local", "dev", &tld)
            .map_err(|e| HarnessError::Setup(format!("region certificate: {e}")))?;
        let (cert, key) = (
            lyra.work_dir().join("region.pem"),
            lyra.work_dir().join("region.key"),
        );
        let io = |e: std::io::Error| HarnessError::Setup(format!("region certificate: {e}"));
        std::fs::write(&cert, &region.chain_pem).map_err(io)?;
        std::fs::write(&key, region.key_pem.as_bytes()).map_err(io)?;
        Ok(Self {
            opts,
            lyra,
            pinning,
            cert,
            key,
            ca_pem,
        })
    }

    pub fn report(&self, scenario: Scenario, title: &str) -> Report {
        Report::new(scenario.name(), title, self.pinning.describe())
    }

    pub fn peer(&self, kind: Kind) -> Result<Peer, HarnessError> {
        let route = peers::Route {
            host: &self.lyra.host,
            client_key: &self.lyra.key,
            upstream: &self.lyra.upstream,
            cert: &self.cert,
            key: &self.key,
        };
        peers::start(kind, self.lyra.work_dir(), self.pinning.proxy, &route)
    }

    pub async fn gatekeeper(
        &self,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<Gatekeeper, HarnessError> {
        self.lyra.gatekeeper(name, extra).await
    }

    /// GET /collections through a proxy on `port` (plain HTTP/1.1), with the client's key.
    pub fn plain(&self, port: u16) -> Target {
        self.base(port).header("api-key", &self.lyra.key)
    }

    fn base(&self, port: u16) -> Target {
        Target::get(
            ([127, 0, 0, 1], port).into(),
            &self.lyra.host,
            "/collections",
        )
    }

    /// The same request over TLS 1.3 (SNI = the cluster's host, ALPN http/1.1).
    pub fn tls(&self, port: u16) -> Result<Target, HarnessError> {
        let config = load::tls_client(&self.ca_pem, &[b"http/1.1"]).map_err(HarnessError::Setup)?;
        let mut t = self.plain(port);
        t.tls = Some((config, self.lyra.host.clone()));
        Ok(t)
    }

    /// Straight to the upstream node with its own key: no proxy at all.
    pub fn direct(&self) -> Target {
        let up = &self.lyra.upstream;
        let mut t = self.base(up.rest.port()).header("api-key", &up.api_key);
        t.addr = up.rest;
        t.authority = up.rest.to_string();
        t
    }

    pub fn duration(&self) -> Duration {
        self.opts.duration()
    }
}

/// Checks that a proxy answers like the reverse proxy it is meant to be: 200 with the key,
/// 401 without it, 404 for another host. Before any timing, and in the smoke test.
pub async fn verify_proxy(peer: &str, target: &Target) -> Result<(), HarnessError> {
    let invalid = |reason: String| HarnessError::Invalid {
        peer: peer.to_owned(),
        reason,
    };
    let (status, body) = load::once(target).await.map_err(invalid)?;
    if status != 200 || !body.contains("collections") {
        return Err(invalid(format!("with the key: HTTP {status} {body}")));
    }
    let mut keyless = target.clone();
    keyless.headers.remove("api-key");
    let (status, _) = load::once(&keyless).await.map_err(invalid)?;
    if status != 401 {
        return Err(invalid(format!(
            "without a key: HTTP {status}, expected 401"
        )));
    }
    let mut stranger = target.clone();
    stranger.authority = "00000000-0000-4000-8000-000000000000.dev.local.localhost".to_owned();
    if let Some((config, _)) = &target.tls {
        // Same SNI as the host asked for, as a client would send.
        stranger.tls = Some((config.clone(), stranger.authority.clone()));
    }
    let (status, _) = load::once(&stranger).await.map_err(invalid)?;
    if status != 404 {
        return Err(invalid(format!(
            "for an unknown host: HTTP {status}, expected 404"
        )));
    }
    Ok(())
}

/// What is measured: a peer's name, the requests it gets, and its process (for CPU time).
pub struct Subject {
    pub name: String,
    pub target: Target,
    pub pid: Option<u32>,
}

impl Subject {
    pub fn new(name: &str, target: Target, pid: Option<u32>) -> Self {
        Self {
            name: name.to_owned(),
            target,
            pid,
        }
    }
}

/// The three proxies, started and checked; they stop when this is dropped.
pub struct Proxies {
    pub subjects: Vec<Subject>,
    _gatekeeper: Gatekeeper,
    _nginx: Peer,
    _haproxy: Peer,
}

impl Ctx {
    /// GateKeeper, nginx and HAProxy, each checked to behave as the same reverse proxy, with
    /// the request each gets: plain HTTP/1.1, or over TLS 1.3 when `tls`.
    pub async fn proxies(&self, tls: bool) -> Result<Proxies, HarnessError> {
        let gk = self.gatekeeper("gatekeeper", &[]).await?;
        let nginx = self.peer(Kind::Nginx)?;
        let haproxy = self.peer(Kind::Haproxy)?;
        let target = |plain: u16, secure: u16| {
            if tls {
                self.tls(secure)
            } else {
                Ok(self.plain(plain))
            }
        };
        let subjects = vec![
            Subject::new("gatekeeper", target(gk.plain, gk.rest)?, Some(gk.pid())),
            Subject::new("nginx", target(nginx.plain, nginx.tls)?, Some(nginx.pid())),
            Subject::new(
                "haproxy",
                target(haproxy.plain, haproxy.tls)?,
                Some(haproxy.pid()),
            ),
        ];
        for s in &subjects {
            verify_proxy(&s.name, &s.target).await?;
        }
        Ok(Proxies {
            subjects,
            _gatekeeper: gk,
            _nginx: nginx,
            _haproxy: haproxy,
        })
    }
}

/// Every subject once per round, interleaved (A B C A B C ...).
pub async fn interleave(
    report: &mut Report,
    subjects: &[Subject],
    mode: Mode,
    label: &str,
    opts: &Options,
) -> Result<(), HarnessError> {
    for round in 0..opts.rounds {
        for s in subjects {
            measure(report, s, mode, label, round, opts).await?;
        }
    }
    Ok(())
}

/// One measured run: CPU seconds of the subject's process around it, the run recorded, void
/// if any answer was wrong.
pub async fn measure(
    report: &mut Report,
    subject: &Subject,
    mode: Mode,
    mode_label: &str,
    round: usize,
    opts: &Options,
) -> Result<Outcome, HarnessError> {
    let Subject {
        name: peer,
        target,
        pid,
    } = subject;
    let (peer, pid) = (peer.as_str(), *pid);
    let before = pid.map(procs::cpu_seconds);
    let outcome = load::run(target.clone(), mode, opts.warmup(), opts.duration()).await;
    let cpu = pid.zip(before).map(|(p, b)| procs::cpu_seconds(p) - b);
    if !outcome.clean() {
        return Err(HarnessError::Invalid {
            peer: peer.to_owned(),
            reason: format!(
                "{} correct, {} refused, {} failed answers in {mode_label}: {}",
                outcome.ok,
                outcome.rejected,
                outcome.errors,
                outcome.first_error.clone().unwrap_or_default()
            ),
        });
    }
    // The CPU figure covers warm-up too: scale it to the measured share of the answers.
    let share = opts.seconds / (opts.seconds + opts.warmup).max(1e-9);
    report.runs.push(Run::new(
        peer,
        mode_label,
        round,
        &outcome,
        cpu.map(|c| c * share),
    ));
    eprintln!(
        "  {peer:<12} {mode_label:<28} round {round}: {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms",
        outcome.rate(),
        outcome.percentile_ms(0.5),
        outcome.percentile_ms(0.99)
    );
    Ok(outcome)
}

/// Runs one scenario.
pub async fn run(scenario: Scenario, ctx: &Ctx) -> Result<Report, HarnessError> {
    eprintln!("== {}", scenario.name());
    match scenario {
        Scenario::Throughput => throughput::run(ctx).await,
        Scenario::Latency => latency::run(ctx).await,
        Scenario::Tls => tls::run(ctx).await,
        Scenario::Grpc => grpc::run(ctx).await,
        Scenario::Auth => auth::run(ctx).await,
        Scenario::Revocation => revocation::run(ctx).await,
        Scenario::Control => control::run(ctx).await,
        Scenario::Scale => scale::run(ctx).await,
        Scenario::Answers => answers::run(ctx).await,
    }
}
