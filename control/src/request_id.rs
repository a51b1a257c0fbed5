//! The request id every answer carries (`x-request-id`), set by the tower-http layer and
//! recorded in the audit log so a person can match an audit entry to a request.
//!
//! A client may choose its own id, so that its logs and Orion's name a request alike, but the
//! id lands in the audit log and in Orion's logs: only ids of 1 to [`MAX_LEN`] characters
//! from `A-Z a-z 0-9 . _ : -` are kept (a UUID, a ULID, a trace id, `host:1234`...). Anything
//! else is replaced by a fresh UUID, so neither ever carries arbitrary client text.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;

pub const HEADER: &str = "x-request-id";
/// Longest client id kept: room for any common id format, with a prefix.
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether a client's id may be kept as it is.
pub fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Drops a client's id that is not [`acceptable`], so that the layer after this one gives the
/// request a fresh UUID instead. Several ids in one request are dropped too: which one a
/// layer would read is not worth guessing.
pub async fn screen(mut req: Request) -> Request {
    let mut ids = req.headers().get_all(HEADER).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => acceptable(id.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(HEADER);
    }
    req
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(RequestId(
            parts
                .headers
                .get(HEADER)
                // The screen has already run; checking again keeps the audit log clean even
                // for a router assembled without it.
                .filter(|v| acceptable(v.as_bytes()))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        ))
    }
}
