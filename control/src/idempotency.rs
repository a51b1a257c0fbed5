//! `Idempotency-Key` on POST, PATCH and DELETE: the first answer is kept for 24 hours and
//! replayed for a retry of the same request; the same key with a different request is 409.
//!
//! Keys are scoped to the caller's credential, so two callers never see each other's
//! answers. A key is claimed before the handler runs (`SET NX`), so two concurrent requests
//! with one key cannot both act: the second is told the first is in progress.
//!
//! An answer larger than the configured limit is not kept; the client still gets it in full,
//! since the action has happened. What is kept is where the resource is: a retry is answered
//! `303 See Other` with that `Location`.

use axum::body::{Body, HttpBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contract::keyspace;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::{Problem, RETRY_AFTER_SECS};
use crate::{AppState, MAX_BODY_BYTES};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const KEEP_SECS: u64 = 24 * 60 * 60;
/// How long a claim lasts if the request never finishes (the process died mid-request) or its
/// outcome is unknown (a 5xx: a write may have been sent before Redis stalled).
const CLAIM_SECS: u64 = 60;
pub const MAX_KEY_LEN: usize = 255;

/// Request extension: the Idempotency-Key this request holds. A handler whose effect must
/// not happen twice (a create) stores [`Claim::reference`] in the same atomic step as the
/// effect: if Redis is lost right after it, before the answer is recorded, the claim would
/// otherwise expire and a retry with the same key would do it again.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The Redis key the claim lives at.
    pub redis_key: String,
    fingerprint: String,
}

impl Claim {
    /// How long the reference is kept: as long as any recorded answer.
    pub const KEEP_SECS: u64 = KEEP_SECS;

    /// What the claim becomes once the effect happened: its status and where the resource is
    /// (a retry gets 303 to it until the full answer replaces this).
    pub fn reference(
        &self,
        status: StatusCode,
        location: &str,
    ) -> Result<String, serde_json::Error> {
        serde_json::to_string(&Stored::Reference {
            fingerprint: self.fingerprint.clone(),
            status: status.as_u16(),
            location: Some(location.to_owned()),
        })
    }
}

/// Response extension: this answer shows a secret once and must not be kept for replay.
#[derive(Debug, Clone, Copy)]
pub struct SecretBearing;

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Stored {
    /// The request succeeded with an answer that showed a secret once; it is not kept.
    Withheld {
        fingerprint: String,
        status: u16,
    },
    InProgress {
        fingerprint: String,
    },
    /// The request succeeded with an answer too large to keep: only where it points is kept.
    Reference {
        fingerprint: String,
        status: u16,
        location: Option<String>,
    },
    Done {
        fingerprint: String,
        status: u16,
        location: Option<String>,
        content_type: Option<String>,
        body: String,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers worth replaying: successes and deterministic refusals of the request itself.
fn keep(status: StatusCode) -> bool {
    status.is_success()
        || status == StatusCode::BAD_REQUEST
        || status == StatusCode::UNPROCESSABLE_ENTITY
}

fn header_string(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => {
            return Problem::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
            .into_response();
        }
    };
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let scope = hex(&Sha256::digest(&credential)[..16]);

    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint = hex(&hasher.finalize());

    let redis_key = keyspace::idempotency(&scope, &key);
    let claim = match serde_json::to_string(&Stored::InProgress {
        fingerprint: fingerprint.clone(),
    }) {
        Ok(c) => c,
        Err(_) => return Problem::internal().into_response(),
    };
    let claim_key = redis_key.clone();
    let claimed = state
        .store
        .run(|mut c| async move {
            redis::cmd("SET")
                .arg(claim_key)
                .arg(claim)
                .arg("NX")
                .arg("EX")
                .arg(CLAIM_SECS)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await;
    match claimed {
        Err(e) => Problem::from(e).into_response(),
        Ok(Some(_)) => {
            parts.extensions.insert(Claim {
                redis_key: redis_key.clone(),
                fingerprint: fingerprint.clone(),
            });
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            remember(&state, redis_key, fingerprint, response).await
        }
        Ok(None) => replay(&state, redis_key, &fingerprint).await,
    }
}

async fn remember(
    state: &AppState,
    key: String,
    fingerprint: String,
    response: Response,
) -> Response {
    let status = response.status();
    if status.is_server_error() {
        // The outcome is unknown: a write that timed out (Redis stalled) may still run when
        // Redis resumes, after anything sent now. The claim is left to expire: a retry meets
        // "in progress" (Retry-After) meanwhile, or, if the create did run, the reference its
        // script stored with the cluster; never a second cluster.
        return response;
    }
    if !keep(status) {
        forget(state, key).await;
        return response;
    }
    if response.extensions().get::<SecretBearing>().is_some() {
        let stored = Stored::Withheld {
            fingerprint,
            status: status.as_u16(),
        };
        save(state, key, &stored).await;
        return response;
    }
    let (parts, body) = response.into_parts();
    let limit = state.idempotent_answer_max;
    let reference = Stored::Reference {
        fingerprint: fingerprint.clone(),
        status: status.as_u16(),
        location: header_string(&parts.headers, header::LOCATION),
    };
    // Decided from the size the body declares, before any of it is read: an answer too large
    // to keep goes to the client untouched, whatever its size.
    let fits = body
        .size_hint()
        .upper()
        .is_some_and(|n| u64::try_from(limit).is_ok_and(|limit| n <= limit));
    if !fits {
        if status.is_success() {
            save(state, key, &reference).await;
        } else {
            // A refusal changed nothing: without its record a retry is simply refused again.
            forget(state, key).await;
        }
        return Response::from_parts(parts, body);
    }
    let bytes = match to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // Only the handler's own body failing gets here: there is no answer to give, but
            // the action may have happened, so a retry must not do it again.
            tracing::error!(error = %e, "cannot read the answer to keep it");
            if status.is_success() {
                save(state, key, &reference).await;
            } else {
                forget(state, key).await;
            }
            return Problem::internal().into_response();
        }
    };
    let stored = Stored::Done {
        fingerprint,
        status: status.as_u16(),
        location: header_string(&parts.headers, header::LOCATION),
        content_type: header_string(&parts.headers, header::CONTENT_TYPE),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    save(state, key, &stored).await;
    Response::from_parts(parts, Body::from(bytes))
}

async fn forget(state: &AppState, key: String) {
    let _ = state
        .store
        .run(|mut c| async move { c.del::<_, ()>(key).await })
        .await;
}

async fn save(state: &AppState, key: String, stored: &Stored) {
    let Ok(json) = serde_json::to_string(stored) else {
        return;
    };
    let saved = state
        .store
        .run(|mut c| async move { c.set_ex::<_, _, ()>(key, json, KEEP_SECS).await })
        .await;
    if let Err(e) = saved {
        // The action happened; only its replay is lost. Say so, do not fail the request.
        tracing::warn!(error = %e, "could not store the idempotent answer");
    }
}

async fn replay(state: &AppState, key: String, fingerprint: &str) -> Response {
    let stored: Option<String> = match state
        .store
        .run(|mut c| async move { c.get(key).await })
        .await
    {
        Ok(s) => s,
        Err(e) => return Problem::from(e).into_response(),
    };
    let stored: Option<Stored> = stored.and_then(|s| serde_json::from_str(&s).ok());
    match stored {
        None => {
            Problem::conflict("a request with this Idempotency-Key has just finished; retry it")
                .retry_after(1)
                .into_response()
        }
        Some(Stored::InProgress { fingerprint: f })
        | Some(Stored::Done { fingerprint: f, .. })
        | Some(Stored::Withheld { fingerprint: f, .. })
        | Some(Stored::Reference { fingerprint: f, .. })
            if f != fingerprint =>
        {
            Problem::conflict("this Idempotency-Key was already used with a different request")
                .into_response()
        }
        // Held until the first request ends, or for CLAIM_SECS when its end could not be
        // recorded (Redis lost mid-request): a retry with the same key goes through then.
        Some(Stored::InProgress { .. }) => {
            Problem::conflict("a request with this Idempotency-Key is still in progress")
                .retry_after(RETRY_AFTER_SECS)
                .into_response()
        }
        Some(Stored::Withheld { status, .. }) => Problem::conflict(format!(
            "the first request with this Idempotency-Key succeeded ({status}); the secret it \
             returned is shown only once and is not kept: list the resource to see it, or \
             create another"
        ))
        .into_response(),
        Some(Stored::Reference {
            status, location, ..
        }) => match location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            Some(location) => {
                let mut response = Problem::new(
                    StatusCode::SEE_OTHER,
                    "see-other",
                    "See other",
                    format!(
                        "the first request with this Idempotency-Key succeeded ({status}); its \
                         answer was too large to keep for a replay: the resource it acted on \
                         is at the Location"
                    ),
                )
                .into_response();
                let headers = response.headers_mut();
                headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
                headers.insert(header::LOCATION, location);
                response
            }
            None => Problem::conflict(format!(
                "the first request with this Idempotency-Key succeeded ({status}); its answer \
                 was too large to keep for a replay"
            ))
            .into_response(),
        },
        Some(Stored::Done {
            status,
            location,
            content_type,
            body,
            ..
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            for (name, value) in [
                (header::LOCATION, location),
                (header::CONTENT_TYPE, content_type),
            ] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    headers.insert(name, v);
                }
            }
            response
        }
    }
}
