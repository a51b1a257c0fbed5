//! The proxy: one `ProxyHttp` whose hooks each do one job.
//!
//! - `request_filter` admits or refuses: host → route → phase → key → scope. Nothing reaches
//!   a cluster before it has passed.
//! - `upstream_peer` picks a node, round-robin; a node that refuses the connection makes the
//!   request move to the next one (`fail_to_connect`: nothing was sent, so any method is safe).
//! - `upstream_request_filter` swaps the client's credential for the cluster's own.
//! - `fail_to_proxy` answers upstream failures in Qdrant's JSON shape; `logging` counts.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use contract::api_key::CollectionRule;
use contract::host::EndpointHost;
use contract::keyscheme::KeyAccess;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, Result};

use crate::answers::Refusal;
use crate::credential::presented;
use crate::route_table::Route;
use crate::scope;
use crate::state::GatewayState;
use crate::tls;
use crate::upstream::Resolved;

pub struct Gatekeeper {
    pub state: Arc<GatewayState>,
    /// This listener serves gRPC (h2) rather than REST.
    pub grpc: bool,
}

/// What one request carries between hooks.
pub struct Ctx {
    route: Option<Arc<Route>>,
    /// The header GateKeeper sends upstream in place of the client's credential.
    upstream: Option<(&'static str, http::HeaderValue)>,
    tries: usize,
    /// Where this request started in the route's round-robin order.
    start: Option<usize>,
    /// The nodes tried so far (bit `i` for node `i`): a retry goes to another one.
    tried: u128,
    /// The node of the current try.
    node: Option<usize>,
    started: Instant,
    /// Held while the request is in flight; given back on drop.
    in_flight: Option<crate::limits::InFlight>,
}

fn host_of(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Headers that belong to one hop, or carry the client's credential: never forwarded.
const STRIPPED: &[&str] = &[
    "api-key",
    "authorization",
    "proxy-authorization",
    "proxy-connection",
    "keep-alive",
    "upgrade",
];

/// Whether the HTTP/1 request arrived with both Content-Length and Transfer-Encoding. Pingora
/// follows RFC 9112 (Transfer-Encoding wins, Content-Length is dropped, the connection closes),
/// so the parsed header no longer shows it: look at the bytes as they came.
fn sent_both_lengths(session: &Session) -> bool {
    // Only a request that still shows Transfer-Encoding can have lost a Content-Length: the
    // bytes are scanned for those alone, not on every request.
    if !session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
    {
        return false;
    }
    let pingora::protocols::http::server::Session::H1(h1) = session.as_downstream() else {
        return false;
    };
    let raw = h1.get_headers_raw_bytes();
    let (mut lengths, mut encodings) = (0, 0);
    for line in raw.split(|b| *b == b'\n') {
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encodings += 1;
        }
    }
    lengths > 0 && encodings > 0
}

/// The size of the request line and header block as sent on HTTP/1.1: `METHOD URI HTTP/1.1`,
/// then `name: value` and CRLF per field.
fn header_bytes(req: &RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 11;
    req.headers.iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// A request whose body length could be read two ways: the shape of request smuggling.
fn ambiguous_framing(req: &RequestHeader) -> bool {
    let lengths = req
        .headers
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .count();
    let encodings: Vec<_> = req
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .collect();
    lengths > 1
        || (lengths == 1 && !encodings.is_empty())
        || encodings.len() > 1
        || encodings.first().is_some_and(|te| {
            !te.to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
        })
}

impl Gatekeeper {
    async fn admit(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<(), Refusal> {
        let s = &self.state;
        let req = session.req_header();
        if header_bytes(req) > s.config.max_header_bytes {
            return Err(Refusal::HeaderTooLarge);
        }
        if ambiguous_framing(req) || sent_both_lengths(session) {
            return Err(Refusal::BadRequest);
        }
        let host = host_of(req).ok_or(Refusal::UnknownHost)?;
        let endpoint = EndpointHost::parse(host, &s.tld).map_err(|_| Refusal::UnknownHost)?;
        // Over TLS, the name the client asked the handshake for must be this host.
        let sni_mismatch = tls::sni(session)
            .is_some_and(|sni| EndpointHost::parse(sni, &s.tld).ok().as_ref() != Some(&endpoint));
        if sni_mismatch {
            return Err(Refusal::Misdirected);
        }
        let route = match s.routes.get(&endpoint.cluster_id) {
            Some(r) => {
                s.metrics.route_hit.inc();
                r
            }
            None => self
                .look_up(endpoint.cluster_id)
                .await
                .ok_or(Refusal::UnknownHost)?,
        };
        if route.endpoint.as_ref() != Some(&endpoint) {
            return Err(Refusal::UnknownHost);
        }
        if !route.record.phase.serves_traffic() {
            return Err(Refusal::NotReady);
        }
        if s.config.bench_without_auth {
            // Benchmarks only (loopback, enforced at start): the cost of what follows.
            ctx.upstream = Some(("api-key", route.read_write_header.clone()));
            ctx.route = Some(route);
            return Ok(());
        }
        let fail = |reason: &str| {
            s.metrics.auth_failures.with_label_values(&[reason]).inc();
            Refusal::Unauthenticated
        };
        let key = presented(req).ok_or_else(|| fail("missing"))?;
        let claims = route
            .signer
            .verify(key, route.record.cluster_id, jiff::Timestamp::now())
            .map_err(|r| fail(r.as_str()))?;
        if s.revoked.is_revoked(&claims.key_id) {
            return Err(fail("revoked"));
        }
        let rules = match claims.access {
            KeyAccess::Collections => Some(
                s.rules
                    .get(&s.redis, route.record.cluster_id, claims.key_id)
                    .await
                    .ok_or_else(|| fail("no_rules"))?,
            ),
            KeyAccess::Manage | KeyAccess::ReadOnly => None,
        };
        let rules: &[CollectionRule] = rules.as_ref().map_or(&[], |r| r.as_slice());
        // A manage key may do anything. On the gRPC port the collection is inside the
        // message: Qdrant checks it there against the credential sent below.
        if !self.grpc && claims.access != KeyAccess::Manage {
            let need = scope::need(&req.method, req.uri.path());
            scope::allows(claims.access, rules, need).map_err(Refusal::Forbidden)?;
        }
        let upstream = match claims.access {
            KeyAccess::Manage => ("api-key", route.read_write_header.clone()),
            KeyAccess::ReadOnly => ("api-key", route.read_only_header.clone()),
            KeyAccess::Collections => {
                let bearer = s
                    .jwt
                    .token(claims.key_id, &route, rules)
                    .ok_or_else(|| fail("jwt"))?;
                ("authorization", bearer)
            }
        };
        let limited = |secs: u64| {
            s.metrics.rate_limited.inc();
            Refusal::RateLimited {
                retry_after_secs: secs.max(1),
            }
        };
        s.key_limits
            .check(claims.key_id, route.limits.effective.key)
            .map_err(limited)?;
        route.limits.check_rate().map_err(limited)?;
        ctx.in_flight = Some(route.limits.enter().ok_or_else(|| {
            s.metrics.rate_limited.inc();
            Refusal::Overloaded
        })?);
        ctx.upstream = Some(upstream);
        ctx.route = Some(route);
        Ok(())
    }

    /// A host not in the table: asked of Redis once, then remembered as missing for a while,
    /// so random hosts cost one lookup each and cannot flood Redis.
    async fn look_up(&self, id: contract::ids::ClusterId) -> Option<Arc<Route>> {
        let s = &self.state;
        if s.routes.known_missing(&id) {
            s.metrics.route_cache.with_label_values(&["negative"]).inc();
            return None;
        }
        s.metrics.route_cache.with_label_values(&["miss"]).inc();
        // Concurrent misses for one host wait for one lookup.
        s.routes
            .lookups
            .get_with(id, async {
                let found = s
                    .redis
                    .hget(contract::keyspace::routes(), id.to_string())
                    .await
                    .ok()
                    .flatten()
                    .and_then(|json| {
                        serde_json::from_str::<contract::route::RouteRecord>(&json).ok()
                    });
                let found = match found {
                    Some(record) => {
                        let resolved = Resolved::of([&record]).await;
                        Route::from_record(record, &s.keyring, &s.config, &resolved).ok()
                    }
                    None => None,
                };
                match found {
                    Some(route) => {
                        s.routes.upsert(route);
                        s.routes.get(&id)
                    }
                    None => {
                        s.routes.mark_missing(id);
                        None
                    }
                }
            })
            .await
    }
}

#[async_trait]
impl ProxyHttp for Gatekeeper {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            route: None,
            upstream: None,
            tries: 0,
            start: None,
            tried: 0,
            node: None,
            started: Instant::now(),
            in_flight: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        match self.admit(session, ctx).await {
            Ok(()) => Ok(false),
            Err(refusal) => {
                refusal.send(session, self.grpc).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx.route.as_ref().ok_or_else(|| {
            Error::explain(pingora::ErrorType::InternalError, "no route admitted")
        })?;
        ctx.tries += 1;
        let start = *ctx.start.get_or_insert_with(|| route.start());
        let (index, peer) = route.pick(start, ctx.tried, self.grpc).ok_or_else(|| {
            Error::explain(
                pingora::ErrorType::ConnectNoRoute,
                "no node of the cluster is left to try",
            )
        })?;
        ctx.node = Some(index);
        if index < 128 {
            ctx.tried |= 1 << index;
        }
        Ok(Box::new(peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for h in STRIPPED {
            upstream.remove_header(*h);
        }
        // Cloned, not taken: a retry on the next node sends it again.
        if let Some((name, value)) = &ctx.upstream {
            upstream.insert_header(*name, value.clone())?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the node: trying the next one is safe for any method.
        if let (Some(route), Some(node)) = (&ctx.route, ctx.node) {
            route.mark_down(node);
        }
        let nodes = ctx
            .route
            .as_ref()
            .map(|r| r.record.nodes.len())
            .unwrap_or(0);
        if ctx.tries < nodes {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let refusal = match e.esource() {
            ErrorSource::Upstream
                if matches!(
                    e.etype(),
                    pingora::ErrorType::ReadTimedout | pingora::ErrorType::WriteTimedout
                ) =>
            {
                Some(Refusal::UpstreamTimeout)
            }
            ErrorSource::Upstream => Some(Refusal::UpstreamDown),
            // The client sent something unreadable (bad chunking, a broken body).
            ErrorSource::Downstream => Some(Refusal::BadRequest),
            _ => None,
        };
        let refusal = refusal.unwrap_or(Refusal::Internal);
        let _ = refusal.send(session, self.grpc).await;
        let code = refusal.status();
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        ctx.in_flight = None;
        if let Some(route) = &ctx.route {
            let bytes_in = session.body_bytes_read() as u64;
            let bytes_out = session.body_bytes_sent() as u64;
            self.state
                .usage
                .record(route.record.cluster_id, bytes_in, bytes_out);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let m = &self.state.metrics;
        m.request(self.grpc, status);
        m.latency.observe(ctx.started.elapsed().as_secs_f64());
    }
}
