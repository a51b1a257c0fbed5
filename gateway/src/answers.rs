//! Every refusal GateKeeper makes, with its status, Qdrant-style JSON body on REST, and
//! trailers-only gRPC status on the gRPC port. Bodies name no key and no secret, and every
//! kind of bad credential gets the same answer, so refusals are no oracle.

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::protocols::http::v1::server::HttpSession as H1Session;
use pingora::proxy::Session;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request's framing is ambiguous or broken (a smuggling attempt, or a bad client).
    BadRequest,
    /// The request line and header fields are larger than the gateway accepts.
    HeaderTooLarge,
    /// A method no Qdrant API has and the gateway does not tunnel (CONNECT).
    MethodNotAllowed,
    /// No key, a malformed or forged key, an expired or revoked key, a key of another cluster.
    Unauthenticated,
    /// The key is genuine but its scope does not allow this request.
    Forbidden(String),
    /// The host is not a cluster endpoint this platform knows.
    UnknownHost,
    /// TLS SNI names another host than `Host` / `:authority`.
    Misdirected,
    /// The cluster exists but is not serving (creating, resizing from nothing, failed...).
    NotReady,
    /// Over a rate limit.
    RateLimited { retry_after_secs: u64 },
    /// Too many requests in flight for the cluster.
    Overloaded,
    /// No node of the cluster could be reached.
    UpstreamDown,
    /// The node took the request and did not answer in time.
    UpstreamTimeout,
    /// Something failed inside the gateway itself.
    Internal,
}

/// The single message every credential failure shares.
pub const UNAUTHENTICATED: &str = "Must provide a valid API key or an Authorization bearer token";

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::HeaderTooLarge => 431,
            Refusal::MethodNotAllowed => 405,
            Refusal::Unauthenticated => 401,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownHost => 404,
            Refusal::Misdirected => 421,
            Refusal::RateLimited { .. } => 429,
            Refusal::NotReady | Refusal::Overloaded => 503,
            Refusal::UpstreamDown => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::Internal => 500,
        }
    }

    /// gRPC status: 16 UNAUTHENTICATED, 7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED (also for
    /// oversized metadata, as gRPC's own servers answer it), 5 NOT_FOUND, 14 UNAVAILABLE,
    /// 13 INTERNAL.
    pub fn grpc_code(&self) -> u8 {
        match self {
            Refusal::BadRequest => 3,
            Refusal::MethodNotAllowed => 12,
            Refusal::Unauthenticated => 16,
            Refusal::Forbidden(_) => 7,
            Refusal::RateLimited { .. } | Refusal::Overloaded | Refusal::HeaderTooLarge => 8,
            Refusal::UnknownHost => 5,
            Refusal::Misdirected
            | Refusal::NotReady
            | Refusal::UpstreamDown
            | Refusal::UpstreamTimeout => 14,
            Refusal::Internal => 13,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::BadRequest => "Bad request: ambiguous or malformed message framing".to_owned(),
            Refusal::HeaderTooLarge => {
                "Request header fields too large: the request line and headers exceed the \
                 gateway's limit"
                    .to_owned()
            }
            Refusal::MethodNotAllowed => "Method not allowed".to_owned(),
            Refusal::Unauthenticated => UNAUTHENTICATED.to_owned(),
            Refusal::Forbidden(m) => m.clone(),
            Refusal::UnknownHost => "Not found: no cluster is served at this host".to_owned(),
            Refusal::Misdirected => {
                "Misdirected request: TLS server name and Host differ".to_owned()
            }
            Refusal::NotReady => {
                "Service unavailable: the cluster is not ready; retry later".to_owned()
            }
            Refusal::RateLimited { .. } => "Too many requests: rate limit exceeded".to_owned(),
            Refusal::Overloaded => "Service unavailable: too many requests in flight".to_owned(),
            Refusal::UpstreamDown => "Bad gateway: no node of the cluster answered".to_owned(),
            Refusal::UpstreamTimeout => {
                "Gateway timeout: the cluster's node did not answer in time".to_owned()
            }
            Refusal::Internal => "Internal error in the gateway".to_owned(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Refusal::NotReady | Refusal::Overloaded => Some(2),
            _ => None,
        }
    }

    /// `{"status":{"error":"…"},"time":0}`, as Qdrant answers.
    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({"status": {"error": self.message()}, "time": 0.0});
        Bytes::from(body.to_string())
    }

    /// The gRPC answer: a trailers-only response, i.e. one HEADERS frame with `:status 200`,
    /// `content-type`, `grpc-status` and `grpc-message`, which ends the stream itself.
    pub fn grpc_header(&self) -> pingora::Result<ResponseHeader> {
        let mut header = ResponseHeader::build(200, Some(3))?;
        header.insert_header("content-type", "application/grpc")?;
        header.insert_header("grpc-status", self.grpc_code().to_string())?;
        header.insert_header(
            "grpc-message",
            utf8_percent_encode(&self.message(), GRPC_MESSAGE).to_string(),
        )?;
        Ok(header)
    }

    /// Writes the refusal to the client: JSON on REST, trailers-only on gRPC.
    pub async fn send(&self, session: &mut Session, grpc: bool) -> pingora::Result<()> {
        if grpc {
            // `Session::write_response_header` drops its end-of-stream flag on h2 and a later
            // finish() closes the stream with an empty DATA frame, which gRPC clients (grpcio,
            // tonic) read as a broken stream instead of a status. A header task marked as the
            // end goes to the h2 stream as HEADERS with END_STREAM, and nothing after it.
            let header = Box::new(self.grpc_header()?);
            session
                .as_downstream_mut()
                .response_duplex_vec(vec![HttpTask::Header(header, true)])
                .await?;
            return Ok(());
        }
        let (header, body) = self.rest_answer()?;
        session.write_response_header(header, false).await?;
        session.write_response_body(Some(body), true).await
    }

    /// The REST answer: its header and its JSON body.
    pub fn rest_answer(&self) -> pingora::Result<(Box<ResponseHeader>, Bytes)> {
        let body = self.body();
        let mut header = ResponseHeader::build(self.status(), Some(4))?;
        header.insert_header("content-type", "application/json")?;
        header.insert_header("content-length", body.len().to_string())?;
        if let Some(secs) = self.retry_after() {
            header.insert_header("retry-after", secs.to_string())?;
        }
        Ok((Box::new(header), body))
    }

    /// Writes the REST answer on the lean HTTP/1 path.
    pub async fn send_h1(&self, session: &mut H1Session) -> pingora::Result<()> {
        let (header, body) = self.rest_answer()?;
        session.write_response_header(header).await?;
        session.write_body(&body).await?;
        session.finish_body().await.map(|_| ())
    }
}

/// What gRPC's `grpc-message` must percent-encode: everything outside printable ASCII, and `%`.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');
