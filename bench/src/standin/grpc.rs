//! The gRPC port (h2c): every authorised unary call is echoed back with `grpc-status: 0` in
//! the trailers; refusals are trailers-only responses with Qdrant's status codes.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use super::auth::{Need, Refusal, credential};
use super::state::Node;

pub const OK: u8 = 0;
pub const PERMISSION_DENIED: u8 = 7;
pub const UNAUTHENTICATED: u8 = 16;
const MAX_MESSAGE: usize = 32 << 20;

type Answer = Response<BoxBody<Bytes, Infallible>>;

/// A trailers-only answer: status in the headers, no body.
pub fn trailers_only(code: u8, message: &str) -> Answer {
    let mut r = Response::new(Empty::new().boxed());
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    r
}

/// The first field of a protobuf message, when it is a string (field 1, length-delimited):
/// in Qdrant's requests that is the collection name.
fn first_string_field(message: &[u8]) -> Option<&str> {
    // gRPC frame: 1 byte compression flag, 4 bytes length, then the message.
    let msg = message.get(5..)?;
    if *msg.first()? != 0x0a {
        return None;
    }
    let (mut len, mut shift, mut i) = (0usize, 0u32, 1usize);
    loop {
        let b = *msg.get(i)?;
        len |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    std::str::from_utf8(msg.get(i..i.checked_add(len)?)?).ok()
}

const WRITE_PREFIXES: &[&str] = &[
    "Upsert",
    "Delete",
    "Update",
    "Create",
    "Set",
    "Overwrite",
    "Clear",
    "Recreate",
    "Sync",
];

fn need<'a>(path: &str, collection: Option<&'a str>) -> Need<'a> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("");
    let writes = WRITE_PREFIXES.iter().any(|p| method.starts_with(p));
    match (service, collection) {
        ("qdrant.Collections", _) if writes => Need::Manage,
        (_, Some(c)) if writes => Need::Write(c),
        (_, Some(c)) => Need::Read(c),
        (_, None) if writes => Need::Manage,
        (_, None) => Need::GlobalRead,
    }
}

fn refusal(r: Refusal) -> Answer {
    let code = if r.status() == 401 {
        UNAUTHENTICATED
    } else {
        PERMISSION_DENIED
    };
    trailers_only(code, &r.message())
}

pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Answer {
    node.count_request();
    let path = req.uri().path().to_owned();
    let public = path == "/qdrant.Qdrant/HealthCheck";
    let grant = if public {
        None
    } else {
        match node.keys.authenticate(credential(req.headers())) {
            Ok(g) => Some(g),
            Err(r) => return refusal(r),
        }
    };
    let message = match Limited::new(req.into_body(), MAX_MESSAGE).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return trailers_only(3, "message too large or broken"),
    };
    if let Some(grant) = grant {
        if let Err(r) = grant.allows(need(&path, first_string_field(&message))) {
            return refusal(r);
        }
        node.count_authorized();
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(u16::from(OK)));
    let frames = stream::iter([
        Ok::<_, Infallible>(Frame::data(message)),
        Ok(Frame::trailers(trailers)),
    ]);
    let mut r = Response::new(StreamBody::new(frames).boxed());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collection_name_is_read_from_field_one() {
        let mut frame = vec![0, 0, 0, 0, 5, 0x0a, 3];
        frame.extend_from_slice(b"abc");
        assert_eq!(first_string_field(&frame), Some("abc"));
        assert_eq!(first_string_field(&[0, 0, 0, 0, 0]), None);
        assert_eq!(first_string_field(&[0, 0, 0, 0, 2, 0x0a, 9]), None);
    }

    #[test]
    fn methods_map_to_needs() {
        assert_eq!(need("/qdrant.Points/Search", Some("a")), Need::Read("a"));
        assert_eq!(need("/qdrant.Points/Upsert", Some("a")), Need::Write("a"));
        assert_eq!(need("/qdrant.Collections/Create", Some("a")), Need::Manage);
        assert_eq!(need("/qdrant.Collections/List", None), Need::GlobalRead);
    }
}
