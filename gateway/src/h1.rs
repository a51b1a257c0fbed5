//! The lean HTTP/1 path of the REST listener, on pingora-core beneath pingora-proxy.
//!
//! pingora-proxy serves a request as two tasks joined by channels, with a boxed future per
//! hook and copies of both headers; most of GateKeeper's CPU went there. An HTTP/1 request
//! needs none of it: read the request, admit it, write it to a pooled connection of a node,
//! stream the answer back, in order, on the connection's own task. Pingora still gives the
//! listeners, TLS with the SNI resolver, the HTTP/1 parser and its validation, the upstream
//! connection pool and graceful shutdown; a connection that negotiated h2 goes to
//! pingora-proxy (`proxy`), which keeps serving gRPC too.
//!
//! One request, step by step, each a plain function:
//! [`admission::admit`] → [`pick`](Route::pick) a node → [`hop::request_for_upstream`] (the
//! credential swapped) → [`exchange`] → [`account`]. A node that refuses the connection
//! makes the request move on to the next node. A pooled connection found closed is tried again, on another
//! connection, when the node cannot have acted on the request or acting twice is harmless
//! (idempotent methods and Qdrant's POST reads); the body is sent again from a copy.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::ErrorType;
use pingora::apps::ServerApp;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession as NodeSession;
use pingora::protocols::http::v1::server::HttpSession as ClientSession;
use pingora::protocols::{ALPN, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::upstreams::peer::Peer;

use crate::admission::{self, Admitted, Incoming, needs_raw_header};
use crate::answers::Refusal;
use crate::hop;
use crate::proxy::Gatekeeper;
use crate::route_table::{Route, tried_bit};
use crate::scope;
use crate::state::GatewayState;
use crate::tls;

/// How long an idle client connection is kept for its next request (seconds).
const CLIENT_KEEPALIVE_SECS: u64 = 60;

/// How many pooled connections of one node may be found closed for one request before it is
/// answered 502: the node restarted and every connection it had is gone.
pub(crate) const STALE_RETRIES: usize = 4;

/// The REST listener's application.
pub struct RestApp {
    state: Arc<GatewayState>,
    /// Connections that negotiated h2 (ALPN) are served by pingora-proxy.
    h2: Arc<HttpProxy<Gatekeeper>>,
    /// Pooled connections to the nodes.
    nodes: TransportConnector,
}

impl RestApp {
    pub fn new(
        state: Arc<GatewayState>,
        conf: &Arc<pingora::server::configuration::ServerConf>,
    ) -> Self {
        let h2 = pingora::proxy::http_proxy(
            conf,
            Gatekeeper {
                state: state.clone(),
                grpc: false,
            },
        );
        Self {
            state,
            h2: Arc::new(h2),
            nodes: TransportConnector::new(Some(
                pingora::connectors::ConnectorOptions::from_server_conf(conf),
            )),
        }
    }
}

#[async_trait]
impl ServerApp for RestApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.h2.process_new(stream, shutdown).await;
        }
        let mut held = None;
        self.serve_connection(stream, shutdown, &mut held).await;
        // The client has gone: its node connection serves other clients from the pool.
        if let Some(h) = held {
            self.put_back(h);
        }
        None
    }

    async fn cleanup(&self) {
        self.h2.cleanup().await;
    }
}

/// A node connection kept by the client connection that used it last, for its next request:
/// a keep-alive client talks to one node over one connection without going through the
/// pool each time. Balancing is per client connection while the node serves (as for h2 and
/// gRPC, whose streams share one connection).
struct Held {
    route: Arc<Route>,
    node: usize,
    stream: Stream,
}

/// Completes when a held node connection can no longer be used: the node closed it, or sent
/// something unasked. Pending for ever when nothing is held.
async fn node_closed(held: Option<&mut Held>) {
    match held {
        Some(h) => {
            let mut byte = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read(&mut h.stream, &mut byte).await;
        }
        None => std::future::pending().await,
    }
}

impl RestApp {
    /// The requests of one HTTP/1 connection, one after another on its own task: no future
    /// is boxed per request and nothing crosses a channel.
    async fn serve_connection(
        &self,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
        held: &mut Option<Held>,
    ) {
        let mut shutdown = shutdown.clone();
        loop {
            let mut client = ClientSession::new(stream);
            let stopping = *shutdown.borrow();
            client.set_server_keepalive((!stopping).then_some(CLIENT_KEEPALIVE_SECS));
            let read = {
                let mut read = std::pin::pin!(client.read_request());
                loop {
                    tokio::select! {
                        // Biased: a request already buffered is served before a shutdown is
                        // noticed.
                        biased;
                        read = &mut read => break read,
                        // Shutting down: a connection idle between requests is closed.
                        _ = shutdown.changed(), if !stopping => return,
                        // A node that closes the held connection meanwhile: let it go.
                        _ = node_closed(held.as_mut()), if held.is_some() => *held = None,
                    }
                }
            };
            match read {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(e) => {
                    if e.etype() == &ErrorType::InvalidHTTPHeader {
                        client.set_server_keepalive(None);
                        let _ = Refusal::BadRequest.send_h1(&mut client).await;
                    }
                    client.shutdown().await;
                    return;
                }
            }
            self.serve(&mut client, held).await;
            match client.reuse().await {
                Ok(Some(reusable)) => stream = reusable.into_parts().0,
                _ => return,
            }
        }
    }

    /// Gives a held node connection to the pool.
    fn put_back(&self, h: Held) {
        if let Some(peer) = h
            .route
            .peers
            .get(h.node)
            .and_then(|p| p.for_listener(false))
        {
            self.nodes
                .release_stream(h.stream, peer.reuse_hash(), peer.options.idle_timeout);
        }
    }

    /// A connection to `node`: the held one when it is for this node of this route, else one
    /// from the pool or a new one; and whether it was used before.
    async fn node_session(
        &self,
        route: &Arc<Route>,
        node: usize,
        peer: &HttpPeer,
        held: &mut Option<Held>,
    ) -> pingora::Result<(NodeSession, bool)> {
        if let Some(h) = held.take() {
            if h.node == node && Arc::ptr_eq(&h.route, route) {
                return Ok((NodeSession::new_with_options(h.stream, peer), true));
            }
            self.put_back(h);
        }
        let (stream, reused) = self.nodes.get_stream(peer).await?;
        Ok((NodeSession::new_with_options(stream, peer), reused))
    }
}

impl RestApp {
    /// One request: admitted and forwarded, or refused; then counted.
    async fn serve(&self, client: &mut ClientSession, held: &mut Option<Held>) {
        let started = Instant::now();
        let req = client.req_header();
        let incoming = Incoming {
            req,
            sni: tls::sni_of(client.digest()),
            raw: needs_raw_header(req).then(|| client.get_headers_raw_bytes()),
            grpc: false,
        };
        let route = match admission::admit(&self.state, incoming).await {
            Ok(admitted) => {
                self.forward(client, &admitted, held).await;
                Some(admitted.route)
            }
            Err(refusal) => {
                refuse(client, &refusal).await;
                None
            }
        };
        self.account(client, route.as_deref(), started);
    }

    /// Sends an admitted request to a node of its cluster and its answer back.
    async fn forward(
        &self,
        client: &mut ClientSession,
        admitted: &Admitted,
        held: &mut Option<Held>,
    ) {
        let has_body = !client.is_body_empty();
        let mut request = match upstream_request(client.req_header(), admitted, has_body) {
            Ok(request) => Some(request),
            Err(refusal) => return refuse(client, &refusal).await,
        };
        // The client waits for a 100 before its body: the gateway asks for the body itself,
        // since it is the gateway that reads it.
        if has_body && expects_continue(client.req_header()) {
            let _ = client.write_continue_response().await;
        }
        let route = &admitted.route;
        let start = route.start();
        let mut tried = 0u128;
        let mut stale = 0;
        loop {
            // The held connection's node while it serves, else the next in turn.
            let choice = held
                .as_ref()
                .filter(|h| Arc::ptr_eq(&h.route, route))
                .and_then(|h| route.serving(h.node, tried))
                .or_else(|| route.pick(start, tried, false));
            let Some((node, peer)) = choice else {
                return refuse(client, &Refusal::UpstreamDown).await;
            };
            let (mut upstream, reused) = match self.node_session(route, node, peer, held).await {
                Ok(session) => session,
                Err(e) => {
                    // Nothing reached the node: the next one is safe for any method.
                    tracing::debug!(node, error = %e, "node refused the connection");
                    route.mark_down(node);
                    tried |= tried_bit(node);
                    continue;
                }
            };
            upstream.read_timeout = peer.options.read_timeout;
            upstream.write_timeout = peer.options.write_timeout;
            // Only a pooled connection can turn out to be stale: keep a copy of the body (up
            // to pingora's 64 KiB) while it is read, so the request can be sent again.
            if reused && has_body && client.body_bytes_read() == 0 {
                client.enable_retry_buffering();
            }
            let body = if client.body_bytes_read() == 0 && !client.is_body_done() {
                Body::FromClient
            } else if !has_body {
                Body::Empty
            } else {
                match client.get_retry_buffer() {
                    Some(copy) if client.is_body_done() => Body::Replay(copy),
                    // The body is gone and cannot be sent again.
                    _ => return refuse(client, &Refusal::UpstreamDown).await,
                }
            };
            // Built again only for a retry after a dead pooled connection, which is rare.
            let this_try = match request.take() {
                Some(request) => request,
                None => match upstream_request(client.req_header(), admitted, has_body) {
                    Ok(request) => request,
                    Err(refusal) => return refuse(client, &refusal).await,
                },
            };
            match exchange(client, &mut upstream, this_try, body).await {
                Ok(()) => {
                    upstream.respect_keepalive();
                    if let Some(stream) = upstream.reuse().await {
                        *held = Some(Held {
                            route: route.clone(),
                            node,
                            stream,
                        });
                    }
                    return;
                }
                // A pooled connection the node had closed: the request goes again, on another
                // connection, when the node cannot have acted on it or acting twice is harmless.
                Err(Failure::Stale { delivered })
                    if reused
                        && stale < STALE_RETRIES
                        && (!delivered || scope::safe_to_repeat(client.req_header())) =>
                {
                    stale += 1;
                    self.state.metrics.upstream_stale.inc();
                }
                Err(Failure::Stale { .. }) => return refuse(client, &Refusal::UpstreamDown).await,
                Err(Failure::Answer(refusal)) => return refuse(client, &refusal).await,
                Err(Failure::Broken) => {
                    // Part of the answer may be out: the client's connection cannot go on.
                    client.set_server_keepalive(None);
                    return;
                }
            }
        }
    }

    /// Usage for the cluster, the request counters and the latency histogram.
    fn account(
        &self,
        client: &ClientSession,
        route: Option<&crate::route_table::Route>,
        started: Instant,
    ) {
        if let Some(route) = route {
            self.state.usage.record(
                route.record.cluster_id,
                client.body_bytes_read() as u64,
                client.body_bytes_sent() as u64,
            );
        }
        let status = client
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let m = &self.state.metrics;
        m.request(false, status);
        m.latency.observe(started.elapsed().as_secs_f64());
    }
}

/// How one exchange with a node went wrong.
enum Failure {
    /// The connection was found dead before any answer came. `delivered`: the whole request
    /// was written, so the node may have acted on it before the connection died.
    Stale { delivered: bool },
    /// Nothing was sent to the client yet: it gets this answer.
    Answer(Refusal),
    /// The client's side broke, or the node's answer broke after it had begun.
    Broken,
}

/// Where the request body sent upstream comes from.
enum Body {
    Empty,
    /// Read from the client as it is sent on.
    FromClient,
    /// Read already, on a try whose connection turned out stale: sent again from the copy.
    Replay(bytes::Bytes),
}

/// The request the node gets: hop fields out, the cluster's credential in.
fn upstream_request(
    req: &RequestHeader,
    admitted: &Admitted,
    has_body: bool,
) -> Result<Box<RequestHeader>, Refusal> {
    let mut upstream = Box::new(req.clone());
    hop::request_for_upstream(&mut upstream, has_body)?;
    let (name, value) = &admitted.upstream;
    upstream
        .insert_header(*name, value.clone())
        .map_err(|_| Refusal::Internal)?;
    Ok(upstream)
}

fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The failure of a node, as the client is told it.
fn node_failure(e: &pingora::Error) -> Refusal {
    match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => Refusal::UpstreamTimeout,
        _ => Refusal::UpstreamDown,
    }
}

/// Whether an error reading a pooled connection's first answer means the node had closed
/// it while it sat in the pool (rather than failing on this request).
fn closed_while_pooled(e: &pingora::Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
    )
}

/// One request and its answer over one node connection.
async fn exchange(
    client: &mut ClientSession,
    upstream: &mut NodeSession,
    request: Box<RequestHeader>,
    body: Body,
) -> Result<(), Failure> {
    if let Err(e) = upstream.write_request_header(request).await {
        return Err(if closed_while_pooled(&e) {
            Failure::Stale { delivered: false }
        } else {
            Failure::Answer(node_failure(&e))
        });
    }
    let written = match body {
        Body::Empty => Ok(()),
        Body::Replay(copy) => upstream.write_body(&copy).await.map(|_| ()),
        Body::FromClient => send_client_body(client, upstream).await?,
    };
    if let Err(e) = written {
        return Err(stale_or(&e, false));
    }
    if let Err(e) = upstream.finish_body().await {
        return Err(stale_or(&e, false));
    }
    // Informational answers (100, 103) are the node's business with this hop.
    loop {
        if let Err(e) = upstream.read_response().await {
            return Err(stale_or(&e, true));
        }
        match upstream.get_status() {
            Some(s) if s.is_informational() && s != http::StatusCode::SWITCHING_PROTOCOLS => {}
            _ => break,
        }
    }
    let Some(answer) = upstream.resp_header() else {
        return Err(Failure::Answer(Refusal::Internal));
    };
    // Upgrade was taken out of the request: a node that switches protocols anyway is broken.
    if answer.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(Failure::Answer(Refusal::UpstreamDown));
    }
    let mut answer = Box::new(answer.clone());
    hop::response_for_client(&mut answer);
    if client.write_response_header(answer).await.is_err() {
        return Err(Failure::Broken);
    }
    loop {
        match upstream.read_body_ref().await {
            Ok(Some(chunk)) => {
                if client.write_body(chunk).await.is_err() {
                    return Err(Failure::Broken);
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "node's answer broke off");
                return Err(Failure::Broken);
            }
        }
    }
    client.finish_body().await.map_err(|_| Failure::Broken)?;
    Ok(())
}

/// A failure writing or reading a node's connection: stale when the connection was found
/// closed, else the node's failure as the client is told it.
fn stale_or(e: &pingora::Error, delivered: bool) -> Failure {
    if closed_while_pooled(e) {
        Failure::Stale { delivered }
    } else {
        Failure::Answer(node_failure(e))
    }
}

/// Streams the client's body to the node. A node connection that breaks mid-body is reported
/// after the rest of the body has been read (into the retry copy, when one is kept), so the
/// request can still be sent again; the node cannot have acted on half a body.
async fn send_client_body(
    client: &mut ClientSession,
    upstream: &mut NodeSession,
) -> Result<pingora::Result<()>, Failure> {
    let mut broken = None;
    while !client.is_body_done() {
        match client.read_body_bytes().await {
            Ok(Some(chunk)) if broken.is_none() => {
                if let Err(e) = upstream.write_body(&chunk).await {
                    broken = Some(e);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            // The client's body is unreadable (bad chunking, cut short).
            Err(_) => return Err(Failure::Answer(Refusal::BadRequest)),
        }
    }
    Ok(broken.map_or(Ok(()), Err))
}

/// Answers a refusal. A request whose framing was refused, or whose body was not read, ends
/// its connection: the body is not read for a request that is not served.
async fn refuse(client: &mut ClientSession, refusal: &Refusal) {
    let framing = matches!(
        refusal,
        Refusal::BadRequest | Refusal::HeaderTooLarge | Refusal::MethodNotAllowed
    );
    if framing || !client.is_body_done() {
        client.set_server_keepalive(None);
    }
    if client.response_written().is_some() {
        return;
    }
    if let Err(e) = refusal.send_h1(client).await {
        tracing::debug!(error = %e, "could not answer the client");
    }
}
