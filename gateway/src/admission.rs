//! Admission: whether a request may reach its cluster, and with which upstream credential.
//! host → route → phase → key → scope → limits, in that order. Nothing reaches a cluster
//! before it has passed. Shared by both ways a request is served: the lean HTTP/1 path
//! (`h1`) and the pingora-proxy hooks (`proxy`, for h2 and gRPC).

use std::sync::Arc;

use bytes::Bytes;
use contract::api_key::CollectionRule;
use contract::host::HostRef;
use contract::ids::ClusterId;
use contract::keyscheme::KeyAccess;
use pingora::http::RequestHeader;

use crate::answers::Refusal;
use crate::credential::presented;
use crate::limits::InFlight;
use crate::route_table::Route;
use crate::scope;
use crate::state::GatewayState;
use crate::upstream::Resolved;

/// What a request is judged on.
pub struct Incoming<'a> {
    pub req: &'a RequestHeader,
    /// The server name of the TLS handshake; `None` on a plain connection.
    pub sni: Option<&'a str>,
    /// The HTTP/1 header block as received, when the parsed header may hide something (see
    /// [`needs_raw_header`]); `None` otherwise and on h2.
    pub raw: Option<Bytes>,
    /// The request came to the gRPC listener.
    pub grpc: bool,
}

/// A request let through.
pub struct Admitted {
    pub route: Arc<Route>,
    /// The header sent upstream in place of the client's credential.
    pub upstream: (&'static str, http::HeaderValue),
    /// Held while the request is in flight; given back on drop.
    pub in_flight: Option<InFlight>,
}

/// Whether the raw HTTP/1 header block must be looked at: only a request that still shows
/// Transfer-Encoding can have lost a Content-Length to the parser.
pub fn needs_raw_header(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// Whether the HTTP/1 request arrived with both Content-Length and Transfer-Encoding. Pingora
/// follows RFC 9112 (Transfer-Encoding wins, Content-Length is dropped, the connection closes),
/// so the parsed header no longer shows it: look at the bytes as they came.
fn sent_both_lengths(raw: &[u8]) -> bool {
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
    let mut encodings = req.headers.get_all(http::header::TRANSFER_ENCODING).iter();
    let first = encodings.next();
    let more = encodings.next().is_some();
    lengths > 1
        || (lengths == 1 && first.is_some())
        || more
        || first.is_some_and(|te| {
            !te.to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"))
        })
}

fn host_of(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Judges one request.
pub async fn admit(s: &GatewayState, incoming: Incoming<'_>) -> Result<Admitted, Refusal> {
    let req = incoming.req;
    if header_bytes(req) > s.config.max_header_bytes {
        return Err(Refusal::HeaderTooLarge);
    }
    if ambiguous_framing(req) || incoming.raw.as_deref().is_some_and(sent_both_lengths) {
        return Err(Refusal::BadRequest);
    }
    // A tunnel is not a Qdrant request; its framing is not a request's either.
    if req.method == http::Method::CONNECT {
        return Err(Refusal::MethodNotAllowed);
    }
    let host = host_of(req).ok_or(Refusal::UnknownHost)?;
    let endpoint = HostRef::parse(host, &s.tld).map_err(|_| Refusal::UnknownHost)?;
    // Over TLS, the name the client asked the handshake for must be this host.
    let sni_mismatch = incoming
        .sni
        .is_some_and(|sni| HostRef::parse(sni, &s.tld).ok() != Some(endpoint));
    if sni_mismatch {
        return Err(Refusal::Misdirected);
    }
    let route = match s.routes.get(&endpoint.cluster_id) {
        Some(r) => {
            s.metrics.route_hit.inc();
            r
        }
        None => look_up(s, endpoint.cluster_id)
            .await
            .ok_or(Refusal::UnknownHost)?,
    };
    if !route
        .endpoint
        .as_ref()
        .is_some_and(|e| e.matches(&endpoint))
    {
        return Err(Refusal::UnknownHost);
    }
    if !route.record.phase.serves_traffic() {
        return Err(Refusal::NotReady);
    }
    if s.config.bench_without_auth {
        // Benchmarks only (loopback, enforced at start): the cost of what follows.
        return Ok(Admitted {
            upstream: ("api-key", route.read_write_header.clone()),
            route,
            in_flight: None,
        });
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
    if !incoming.grpc && claims.access != KeyAccess::Manage {
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
    let in_flight = route.limits.enter().ok_or_else(|| {
        s.metrics.rate_limited.inc();
        Refusal::Overloaded
    })?;
    Ok(Admitted {
        route,
        upstream,
        in_flight: Some(in_flight),
    })
}

/// A host not in the table: asked of Redis once, then remembered as missing for a while,
/// so random hosts cost one lookup each and cannot flood Redis.
async fn look_up(s: &GatewayState, id: ClusterId) -> Option<Arc<Route>> {
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
                .and_then(|json| serde_json::from_str::<contract::route::RouteRecord>(&json).ok());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/collections/a/points", None)
            .unwrap_or_else(|_| unreachable!());
        for (n, v) in lines {
            r.append_header(n.to_string(), *v)
                .unwrap_or_else(|_| unreachable!());
        }
        r
    }

    #[test]
    fn framing_read_two_ways_is_ambiguous() {
        assert!(!ambiguous_framing(&req(&[("content-length", "3")])));
        assert!(!ambiguous_framing(&req(&[(
            "transfer-encoding",
            "chunked"
        )])));
        assert!(ambiguous_framing(&req(&[
            ("content-length", "3"),
            ("content-length", "4")
        ])));
        assert!(ambiguous_framing(&req(&[
            ("content-length", "3"),
            ("transfer-encoding", "chunked")
        ])));
        assert!(ambiguous_framing(&req(&[("transfer-encoding", "gzip")])));
        assert!(ambiguous_framing(&req(&[
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked")
        ])));
    }

    #[test]
    fn both_lengths_are_seen_in_the_raw_block() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(sent_both_lengths(raw));
        assert!(!sent_both_lengths(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
    }

    #[test]
    fn header_size_counts_line_and_fields() {
        let r = req(&[("host", "abc")]);
        // "POST /collections/a/points HTTP/1.1" + "host: abc\r\n" (CRLFs on the line counted
        // in the 11).
        assert_eq!(header_bytes(&r), 4 + 21 + 11 + 4 + 3 + 4);
    }
}
