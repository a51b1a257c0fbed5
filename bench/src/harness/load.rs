//! The load generator: hyper on its own connections, so that each mode controls exactly what
//! crosses the wire.
//!
//! - `Closed`: N keep-alive connections, each sends its next request when the last answer is
//!   in. Measures maximum throughput.
//! - `Open`: a fixed total rate spread over N connections, each request scheduled in advance
//!   (wrk2's method). A request held back by a slow answer is timed from when it *should*
//!   have been sent, so a stall is charged to every request it delayed (coordinated omission
//!   corrected); one sent on a free connection is timed from when it was sent.
//! - `NewConnection`: every request on a fresh connection (TCP, then TLS 1.3, resumed when the
//!   target's TLS configuration keeps sessions), closed afterwards: handshakes per second.
//! - `H2`: N HTTP/2 connections with M concurrent streams each (gRPC).
//!
//! Latencies are recorded in microseconds in HDR histograms; a warm-up is not recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What every request of a run looks like and where it goes.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// TLS: the client configuration and the SNI name; `None` for plain TCP.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    /// The Host header (or h2 :authority).
    pub authority: String,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// HTTP/2 (with prior knowledge on plain TCP, ALPN h2 on TLS).
    pub h2: bool,
    /// Judge answers as gRPC: OK only with grpc-status 0.
    pub grpc: bool,
}

impl Target {
    /// `GET path` to `addr` on plain TCP over HTTP/1.1, naming `authority`, with no headers.
    pub fn get(addr: SocketAddr, authority: &str, path: &str) -> Self {
        Self {
            addr,
            tls: None,
            authority: authority.to_owned(),
            method: Method::GET,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            h2: false,
            grpc: false,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), v);
        }
        self
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed { connections: usize },
    Open { connections: usize, rate: f64 },
    NewConnection { concurrency: usize },
    H2 { connections: usize, streams: usize },
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Answers judged correct (2xx; grpc-status 0 for gRPC) inside the measured window.
    pub ok: u64,
    /// Answers with another status.
    pub rejected: u64,
    /// Connection or protocol failures.
    pub errors: u64,
    pub measured: Duration,
    pub latency_us: Histogram<u64>,
    /// The first failure seen, to say why a run is not valid.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// Whether every answer was correct: a refusal is not throughput.
    pub fn clean(&self) -> bool {
        self.rejected == 0 && self.errors == 0 && self.ok > 0
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

fn histogram() -> Histogram<u64> {
    // 1 us to 60 s at 3 significant digits: constant, valid bounds.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

async fn open_io(target: &Target) -> Result<Box<dyn Io>, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect {}: {e}", target.addr))?;
    let _ = tcp.set_nodelay(true);
    match &target.tls {
        None => Ok(Box::new(tcp)),
        Some((config, sni)) => {
            let name = rustls::pki_types::ServerName::try_from(sni.clone())
                .map_err(|e| format!("SNI {sni}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            HANDSHAKES[usize::from(resumed)].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Box::new(tls))
        }
    }
}

async fn connect(target: &Target) -> Result<Sender, String> {
    let io = TokioIo::new(open_io(target).await?);
    if target.h2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| format!("http/1.1 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

fn request(target: &Target, close: bool) -> Result<Request<Full<Bytes>>, String> {
    let uri = if target.h2 {
        let scheme = if target.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{}", target.authority, target.path)
    } else {
        target.path.clone()
    };
    let mut builder = Request::builder().method(target.method.clone()).uri(uri);
    if !target.h2 {
        builder = builder.header(http::header::HOST, &target.authority);
    }
    if close {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    let mut req = builder
        .body(Full::new(target.body.clone()))
        .map_err(|e| e.to_string())?;
    req.headers_mut()
        .extend(target.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(req)
}

enum Answer {
    Ok,
    Rejected(String),
}

/// A request the server never received: it had closed the connection (an idle keep-alive
/// timeout, a request cap). Any HTTP client sends it again on a new connection; so do we,
/// without counting a failure.
const NOT_SENT: &str = "not sent: the connection was closed";

fn sent_or_not(e: hyper::Error) -> String {
    if e.is_canceled() || e.is_closed() {
        NOT_SENT.to_owned()
    } else {
        e.to_string()
    }
}

async fn exchange(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    grpc: bool,
) -> Result<Answer, String> {
    let response = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(sent_or_not)?;
            s.send_request(req).await
        }
        Sender::H2(s) => {
            s.ready().await.map_err(sent_or_not)?;
            s.send_request(req).await
        }
    }
    .map_err(sent_or_not)?;
    let status = response.status();
    let header_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Ok(Answer::Rejected(format!("HTTP {status}")));
    }
    if grpc {
        let code = header_status.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        if code.as_deref() != Some("0") {
            return Ok(Answer::Rejected(format!("grpc-status {code:?}")));
        }
    }
    Ok(Answer::Ok)
}

/// One worker's tally.
struct Tally {
    ok: u64,
    rejected: u64,
    errors: u64,
    latency: Histogram<u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            ok: 0,
            rejected: 0,
            errors: 0,
            latency: histogram(),
            first_error: None,
        }
    }

    fn note(&mut self, measured: bool, answer: Result<Answer, String>, latency: Duration) {
        if !measured {
            return;
        }
        match answer {
            Ok(Answer::Ok) => {
                self.ok += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = self.latency.record(us.min(60_000_000));
            }
            Ok(Answer::Rejected(why)) => {
                self.rejected += 1;
                self.first_error.get_or_insert(why);
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Runs `mode` against `target` for `warmup` (not recorded) plus `duration`.
pub async fn run(target: Target, mode: Mode, warmup: Duration, duration: Duration) -> Outcome {
    let start = Instant::now();
    let window_start = start + warmup;
    let end = window_start + duration;
    let target = Arc::new(target);
    let mut tasks = Vec::new();
    match mode {
        Mode::Closed { connections } => {
            for _ in 0..connections.max(1) {
                let t = target.clone();
                tasks.push(tokio::spawn(
                    async move { closed(&t, window_start, end).await },
                ));
            }
        }
        Mode::Open { connections, rate } => {
            let n = connections.max(1);
            let interval = Duration::from_secs_f64(n as f64 / rate.max(1.0));
            for i in 0..n {
                let t = target.clone();
                // Spread the connections' schedules evenly over one interval.
                let first = start + interval.mul_f64(i as f64 / n as f64);
                tasks.push(tokio::spawn(async move {
                    open(&t, first, interval, window_start, end).await
                }));
            }
        }
        Mode::NewConnection { concurrency } => {
            for _ in 0..concurrency.max(1) {
                let t = target.clone();
                tasks.push(tokio::spawn(
                    async move { fresh(&t, window_start, end).await },
                ));
            }
        }
        Mode::H2 {
            connections,
            streams,
        } => {
            for _ in 0..connections.max(1) {
                let t = target.clone();
                match connect(&t).await {
                    Ok(Sender::H2(sender)) => {
                        for _ in 0..streams.max(1) {
                            let (t, s) = (t.clone(), sender.clone());
                            tasks.push(tokio::spawn(async move {
                                h2_stream(&t, s, window_start, end).await
                            }));
                        }
                    }
                    Ok(Sender::H1(_)) | Err(_) => {
                        let e = "cannot open an h2 connection".to_owned();
                        tasks.push(tokio::spawn(async move {
                            let mut t = Tally::new();
                            t.note(true, Err(e), Duration::ZERO);
                            t
                        }));
                    }
                }
            }
        }
    }
    let mut total = Tally::new();
    for task in tasks {
        if let Ok(t) = task.await {
            total.ok += t.ok;
            total.rejected += t.rejected;
            total.errors += t.errors;
            let _ = total.latency.add(&t.latency);
            if total.first_error.is_none() {
                total.first_error = t.first_error;
            }
        }
    }
    Outcome {
        ok: total.ok,
        rejected: total.rejected,
        errors: total.errors,
        measured: duration,
        latency_us: total.latency,
        first_error: total.first_error,
    }
}

async fn closed(target: &Target, window_start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut sender = None;
    while Instant::now() < end {
        if sender.is_none() {
            match connect(target).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.note(Instant::now() >= window_start, Err(e), Duration::ZERO);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let sent = Instant::now();
        let answer = match request(target, false) {
            Ok(req) => exchange(s, req, target.grpc).await,
            Err(e) => Err(e),
        };
        if answer.is_err() {
            sender = None;
        }
        if matches!(&answer, Err(e) if e == NOT_SENT) {
            continue;
        }
        let done = Instant::now();
        tally.note(sent >= window_start && done <= end, answer, done - sent);
    }
    tally
}

async fn open(
    target: &Target,
    first: Instant,
    interval: Duration,
    window_start: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender = None;
    let mut intended = first;
    // When the previous answer on this connection came in.
    let mut free_at = first;
    while intended < end {
        tokio::time::sleep_until(intended.into()).await;
        // A request whose connection was free at its intended time is late only by the
        // timer's own granularity (1 ms in tokio): not the server's doing, so it is timed from
        // when it was sent. One that waited behind a slow answer is timed from when it should
        // have been sent: that wait is the server's (coordinated omission corrected).
        let start = if free_at <= intended {
            Instant::now()
        } else {
            intended
        };
        if sender.is_none() {
            match connect(target).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    tally.note(intended >= window_start, Err(e), Duration::ZERO);
                    intended += interval;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let mut answer = match request(target, false) {
            Ok(req) => exchange(s, req, target.grpc).await,
            Err(e) => Err(e),
        };
        if matches!(&answer, Err(e) if e == NOT_SENT) {
            // Again on a new connection; the time that takes still counts.
            answer = async {
                let mut fresh = connect(target).await?;
                let a = exchange(&mut fresh, request(target, false)?, target.grpc).await;
                sender = Some(fresh);
                a
            }
            .await;
        }
        if answer.is_err() {
            sender = None;
        }
        free_at = Instant::now();
        tally.note(
            intended >= window_start,
            answer,
            free_at.saturating_duration_since(start),
        );
        intended += interval;
    }
    tally
}

async fn fresh(target: &Target, window_start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < end {
        let sent = Instant::now();
        let answer = async {
            let mut s = connect(target).await?;
            exchange(&mut s, request(target, true)?, target.grpc).await
        }
        .await;
        let done = Instant::now();
        tally.note(sent >= window_start && done <= end, answer, done - sent);
    }
    tally
}

async fn h2_stream(
    target: &Target,
    sender: http2::SendRequest<Full<Bytes>>,
    window_start: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender = Sender::H2(sender);
    while Instant::now() < end {
        let sent = Instant::now();
        let answer = match request(target, false) {
            Ok(req) => exchange(&mut sender, req, target.grpc).await,
            Err(e) => Err(e),
        };
        let failed = answer.is_err();
        let done = Instant::now();
        tally.note(sent >= window_start && done <= end, answer, done - sent);
        if failed {
            break;
        }
    }
    tally
}

/// TLS handshakes made by this process: `[full, resumed]`.
pub static HANDSHAKES: [std::sync::atomic::AtomicU64; 2] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

/// Takes the handshake counts since the last call: `(full, resumed)`.
pub fn take_handshakes() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (
        HANDSHAKES[0].swap(0, Relaxed),
        HANDSHAKES[1].swap(0, Relaxed),
    )
}

/// A TLS client configuration trusting only `ca_pem`, without session resumption (each new
/// connection is a full handshake), offering `alpn`.
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
    tls_client_with(ca_pem, alpn, false)
}

/// The same, resuming sessions when `resume`: the configuration keeps the tickets servers
/// send (rustls's in-memory store), so a new connection to the same name resumes (TLS 1.3
/// PSK). One configuration per server: tickets are only good where they were issued.
pub fn tls_client_with(
    ca_pem: &str,
    alpn: &[&[u8]],
    resume: bool,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = if resume {
        rustls::client::Resumption::in_memory_sessions(1024)
    } else {
        rustls::client::Resumption::disabled()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// One request on a fresh connection: the status and the body (for correctness checks).
pub async fn once(target: &Target) -> Result<(u16, String), String> {
    let mut sender = connect(target).await?;
    let req = request(target, true)?;
    let response = match &mut sender {
        Sender::H1(s) => s.send_request(req).await,
        Sender::H2(s) => s.send_request(req).await,
    }
    .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// One keep-alive connection driven request by request (for scenarios that watch each
/// answer, like revocation).
pub struct Connection {
    sender: Sender,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Self, String> {
        Ok(Self {
            sender: connect(target).await?,
        })
    }

    /// Sends one request: `Ok(true)` for a correct answer, `Ok(false)` for a refusal.
    pub async fn send(&mut self, target: &Target) -> Result<bool, String> {
        match exchange(&mut self.sender, request(target, false)?, target.grpc).await? {
            Answer::Ok => Ok(true),
            Answer::Rejected(_) => Ok(false),
        }
    }
}
