//! What belongs to one hop and must not cross the gateway (RFC 9110 §7.6.1): the standard
//! hop-by-hop fields, every field the `Connection` header nominates, and the client's own
//! credential. The lean HTTP/1 path applies this to both directions; pingora-proxy does the
//! same for the h2 and gRPC listeners.

use http::HeaderName;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::answers::Refusal;

/// Fields that describe one connection (RFC 9110 §7.6.1, plus the legacy ones still seen).
/// `Transfer-Encoding` is one too: the request body is framed again for the upstream hop.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// The client's credential: replaced by the cluster's own, never forwarded.
pub const CREDENTIALS: &[&str] = &["api-key", "authorization"];

/// Whether a field of a request is dropped on its way to the node: hop-by-hop, the client's
/// credential, the client's framing (framed again for the next hop) and `Expect` (the gateway
/// answers it). A comparison per field present: a request carries a handful of fields and
/// rarely any of these but its key, so looking each of a dozen names up in the map would
/// cost more.
fn dropped_upstream(name: &HeaderName) -> bool {
    hop_by_hop(name)
        || matches!(
            *name,
            header::AUTHORIZATION | header::TRANSFER_ENCODING | header::EXPECT
        )
        || name.as_str() == "api-key"
}

/// Whether a field is hop-by-hop ([`HOP_BY_HOP`]); also what leaves a node's answer on its
/// way to the client.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::CONNECTION
            | header::TE
            | header::TRAILER
            | header::UPGRADE
            | header::PROXY_AUTHENTICATE
            | header::PROXY_AUTHORIZATION
    ) || matches!(
        name.as_str(),
        "keep-alive" | "proxy-connection" | "http2-settings"
    )
}

/// The names in `headers` that `drop` selects; usually none or one, so no allocation.
fn selected(
    headers: &http::HeaderMap,
    drop: fn(&HeaderName) -> bool,
) -> smallvec::SmallVec<[HeaderName; 2]> {
    headers.keys().filter(|n| drop(n)).cloned().collect()
}

/// More options than a real client sends; a bound so a header cannot cost unbounded work.
const MAX_NOMINATIONS: usize = 16;

/// Fields a client must not ask a hop to drop: the routing and framing of the message itself.
const PROTECTED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The field names `Connection` nominates, checked: a token that is not one, a protected
/// field or too many of them make the request a bad one.
fn nominations(headers: &http::HeaderMap) -> Result<Vec<HeaderName>, Refusal> {
    let mut names = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
            {
                continue;
            }
            if names.len() == MAX_NOMINATIONS || !token.iter().all(|b| is_tchar(*b)) {
                return Err(Refusal::BadRequest);
            }
            let name = HeaderName::from_bytes(token).map_err(|_| Refusal::BadRequest)?;
            if PROTECTED.contains(&name.as_str()) {
                return Err(Refusal::BadRequest);
            }
            names.push(name);
        }
    }
    Ok(names)
}

/// The request as the next hop gets it: hop-by-hop and nominated fields and the client's
/// credential removed, HTTP/1.1, and a body without a length sent chunked.
pub fn request_for_upstream(req: &mut RequestHeader, has_body: bool) -> Result<(), Refusal> {
    // `close` and `keep-alive` are options, not field names: nominations only matter when
    // `Connection` says more, which is rare, so the common case allocates nothing.
    if req.headers.contains_key(header::CONNECTION) {
        for name in nominations(&req.headers)? {
            req.remove_header(&name);
        }
    }
    // `Expect` goes too: the gateway reads the body before the node answers, so the client
    // waits for the gateway's 100.
    for name in selected(&req.headers, dropped_upstream) {
        req.remove_header(&name);
    }
    req.set_version(http::Version::HTTP_11);
    if has_body && !req.headers.contains_key(header::CONTENT_LENGTH) {
        req.insert_header(header::TRANSFER_ENCODING, "chunked")
            .map_err(|_| Refusal::Internal)?;
    }
    Ok(())
}

/// The answer as the client gets it: the node's hop-by-hop and nominated fields removed. Its
/// framing (`Content-Length`, `Transfer-Encoding`) stays: the client's hop is framed by it.
pub fn response_for_client(resp: &mut ResponseHeader) {
    if resp.headers.contains_key(header::CONNECTION) {
        // A node's malformed `Connection` names nothing we must keep; drop what parses.
        let named: Vec<HeaderName> = resp
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .filter(|n| !PROTECTED.contains(&n.as_str()))
            .collect();
        for name in named {
            resp.remove_header(&name);
        }
    }
    for name in selected(&resp.headers, hop_by_hop) {
        resp.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fields: &[(&str, &str)]) -> RequestHeader {
        let mut r =
            RequestHeader::build("POST", b"/collections", None).unwrap_or_else(|_| unreachable!());
        for (n, v) in fields {
            r.append_header(n.to_string(), *v)
                .unwrap_or_else(|_| unreachable!());
        }
        r
    }

    #[test]
    fn hop_by_hop_nominated_and_credentials_are_removed() {
        let mut r = req(&[
            ("host", "c.example"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("api-key", "client-key"),
            ("authorization", "Bearer client"),
            ("expect", "100-continue"),
            ("content-length", "2"),
            ("x-kept", "yes"),
        ]);
        request_for_upstream(&mut r, true).unwrap_or_else(|_| unreachable!());
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["host", "content-length", "x-kept"], "{names:?}");
    }

    #[test]
    fn the_one_pass_drops_exactly_the_listed_fields() {
        // Every listed hop-by-hop field and credential, and no other, is dropped.
        for name in HOP_BY_HOP.iter().chain(CREDENTIALS) {
            let name = HeaderName::from_static(name);
            assert!(dropped_upstream(&name), "{name}");
        }
        for name in HOP_BY_HOP {
            assert!(hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for kept in [
            "host",
            "content-length",
            "content-type",
            "x-api-key",
            "api-keys",
        ] {
            let name = HeaderName::from_static(kept);
            assert!(!dropped_upstream(&name) && !hop_by_hop(&name), "{kept}");
        }
        assert!(!hop_by_hop(&header::TRANSFER_ENCODING));
        assert!(!hop_by_hop(&HeaderName::from_static("api-key")));
    }

    #[test]
    fn a_body_without_length_is_sent_chunked() {
        let mut r = req(&[("transfer-encoding", "chunked")]);
        request_for_upstream(&mut r, true).unwrap_or_else(|_| unreachable!());
        assert_eq!(
            r.headers
                .get(header::TRANSFER_ENCODING)
                .map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
        let mut r = req(&[]);
        request_for_upstream(&mut r, false).unwrap_or_else(|_| unreachable!());
        assert!(r.headers.is_empty());
    }

    #[test]
    fn nominating_framing_or_routing_is_refused() {
        for bad in [
            "host",
            "Content-Length",
            "\"x\"",
            ":authority",
            "transfer-encoding",
        ] {
            let mut r = req(&[("connection", bad)]);
            assert_eq!(
                request_for_upstream(&mut r, false),
                Err(Refusal::BadRequest),
                "{bad}"
            );
        }
        let many = (0..17)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut r = req(&[("connection", many.as_str())]);
        assert_eq!(
            request_for_upstream(&mut r, false),
            Err(Refusal::BadRequest)
        );
    }

    #[test]
    fn answers_lose_hop_fields_and_keep_framing() {
        let mut resp = ResponseHeader::build(200, None).unwrap_or_else(|_| unreachable!());
        for (n, v) in [
            ("connection", "close, x-node-hop"),
            ("x-node-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
        ] {
            resp.append_header(n, v).unwrap_or_else(|_| unreachable!());
        }
        response_for_client(&mut resp);
        let names: Vec<&str> = resp.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["transfer-encoding", "content-type"], "{names:?}");
    }
}
