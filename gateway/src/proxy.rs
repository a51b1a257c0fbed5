//! The pingora-proxy path, for h2 (REST over h2, and gRPC): one `ProxyHttp` whose hooks
//! each do one job. HTTP/1 REST takes the lean path of `h1` instead.
//!
//! - `request_filter` admits or refuses (`admission`).
//! - `upstream_peer` picks a node, round-robin; a node that refuses the connection makes the
//!   request move to the next one (`fail_to_connect`: nothing was sent, so any method is safe).
//! - `upstream_request_filter` swaps the client's credential for the cluster's own.
//! - `fail_to_proxy` answers upstream failures in Qdrant's JSON shape; `logging` counts.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, Result};

use crate::admission::{self, Incoming, needs_raw_header};
use crate::answers::Refusal;
use crate::route_table::{Route, tried_bit};
use crate::scope;
use crate::state::GatewayState;
use crate::tls;

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
    /// Pooled connections found closed so far: each is tried again on a new connection.
    stale: usize,
    started: Instant,
    /// Held while the request is in flight; given back on drop.
    in_flight: Option<crate::limits::InFlight>,
}

impl Gatekeeper {
    async fn admit(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<(), Refusal> {
        let req = session.req_header();
        let raw = match session.as_downstream() {
            pingora::protocols::http::server::Session::H1(h1) if needs_raw_header(req) => {
                Some(h1.get_headers_raw_bytes())
            }
            _ => None,
        };
        let incoming = Incoming {
            req,
            sni: tls::sni(session),
            raw,
            grpc: self.grpc,
        };
        let admitted = admission::admit(&self.state, incoming).await?;
        ctx.upstream = Some(admitted.upstream);
        ctx.in_flight = admitted.in_flight;
        ctx.route = Some(admitted.route);
        Ok(())
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
            stale: 0,
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
        ctx.tried |= tried_bit(index);
        Ok(Box::new(peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // pingora-proxy takes out hop-by-hop fields too; the client's credential is ours.
        for h in crate::hop::HOP_BY_HOP.iter().chain(crate::hop::CREDENTIALS) {
            upstream.remove_header(*h);
        }
        // Cloned, not taken: a retry on the next node sends it again.
        if let Some((name, value)) = &ctx.upstream {
            upstream.insert_header(*name, value.clone())?;
        }
        Ok(())
    }

    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        // A pooled connection found closed: sent again on a new connection to the same node
        // when the request is safe to repeat (as on the HTTP/1 path), a bounded number of times.
        let again = scope::safe_to_repeat(session.req_header())
            && !session.as_ref().retry_buffer_truncated()
            && ctx.stale < crate::h1::STALE_RETRIES;
        if again {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        if e.retry() {
            ctx.stale += 1;
            self.state.metrics.upstream_stale.inc();
            if let Some(node) = ctx.node {
                ctx.tried &= !tried_bit(node);
            }
        }
        e
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
