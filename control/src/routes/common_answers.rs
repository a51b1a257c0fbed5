//! Answers that do not belong to one route but to the layers every request passes: the bearer
//! token (401), the store (503), the path and query extractors (400), the JSON body extractor
//! (400, 413, 415, 422) and the `Idempotency-Key` middleware (400, 409, 303, 413). They are
//! added here, once, to the document the routes generate, so that every operation documents
//! what it can answer without each `#[utoipa::path]` repeating it; and every refusal is said
//! to be `application/problem+json` (RFC 9457), which is what [`Problem`] sends.

use utoipa::openapi::content::Content;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{OpenApi, RefOr, Required};

use crate::idempotency;
use crate::problem::{CONTENT_TYPE, Problem, RETRY_AFTER_SECS};

const UNAUTHORIZED: &str = "no token, or not a valid one: send `Authorization: Bearer <token>`";
const UNAVAILABLE: &str =
    "the control plane's store is unreachable; nothing was done: retry after `Retry-After` seconds";
const BAD_PARAMETER: &str = "a path or query parameter is malformed (not a UUID, not an integer), \
     or the query names a parameter this operation does not take";
const BAD_BODY: &str = "the body is not JSON";
const NOT_JSON: &str = "the body is not sent as `Content-Type: application/json`";
const INVALID_BODY: &str = "the body does not have the documented shape, or a value is out of \
     range; `errors` names each field";
const BAD_KEY: &str = "the `Idempotency-Key` is not 1 to 255 visible ASCII characters";
const KEY_CONFLICT: &str = "this `Idempotency-Key` was used with a different request, its first \
     request is still in progress, or that request's answer showed a secret once and is not kept";
const KEY_SEE_OTHER: &str = "a retry with this `Idempotency-Key`: the first request succeeded, \
     its answer was too large to keep, and `Location` is where its resource is";
const KEY_RETRY: &str = "present when a retry with the same `Idempotency-Key` can pass: the \
     seconds until then (the first request is still in progress, or has just finished)";
const REPLAYED: &str =
    "`true` when this is the kept answer to an earlier request with the same `Idempotency-Key`";

/// Adds the common answers to every operation of `doc`, and makes every 3xx refusal, 4xx and
/// 5xx answer a problem+json body.
pub fn add(doc: &mut OpenApi) {
    let secured_by_default = doc.security.as_ref().is_some_and(|s| demands(s));
    let too_large = format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES);
    for item in doc.paths.paths.values_mut() {
        let shared = item.parameters.clone().unwrap_or_default();
        for (method, op) in operations(item) {
            let secured = op
                .security
                .as_ref()
                .map_or(secured_by_default, |s| demands(s));
            let parameters: Vec<&Parameter> = shared
                .iter()
                .chain(op.parameters.iter().flatten())
                .collect();
            let has_path_or_query = parameters
                .iter()
                .any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query));
            let has_body = op.request_body.is_some();
            let idempotent = matches!(method, "post" | "patch" | "delete");

            if secured {
                answer(op, "401", UNAUTHORIZED);
            }
            answer(op, "503", UNAVAILABLE);
            if let Some(RefOr::T(unavailable)) = op.responses.responses.get_mut("503") {
                unavailable.headers.insert(
                    "Retry-After".to_owned(),
                    header(
                        Type::Integer,
                        &format!("seconds to wait before retrying ({RETRY_AFTER_SECS})"),
                    ),
                );
            }
            if has_path_or_query {
                answer(op, "400", BAD_PARAMETER);
            }
            if has_body {
                answer(op, "400", BAD_BODY);
                answer(op, "413", &too_large);
                answer(op, "415", NOT_JSON);
                answer(op, "422", INVALID_BODY);
            }
            if idempotent {
                idempotency_key(op);
                answer(op, "400", BAD_KEY);
                answer(op, "409", KEY_CONFLICT);
                answer(op, "413", &too_large);
                answer(op, "303", KEY_SEE_OTHER);
                if let Some(RefOr::T(see_other)) = op.responses.responses.get_mut("303") {
                    see_other.headers.insert(
                        "Location".to_owned(),
                        header(Type::String, "where the first request's resource is"),
                    );
                }
                if let Some(RefOr::T(conflict)) = op.responses.responses.get_mut("409") {
                    conflict
                        .headers
                        .insert("Retry-After".to_owned(), header(Type::Integer, KEY_RETRY));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let (true, RefOr::T(r)) = (status.starts_with('2'), response) {
                        r.headers.insert(
                            "Idempotent-Replayed".to_owned(),
                            header(Type::String, REPLAYED),
                        );
                    }
                }
            }
            problem_bodies(op);
            described(op);
        }
    }
}

/// Whether `requirements` demand a credential: none of them is the empty ("optional") one.
fn demands(requirements: &[SecurityRequirement]) -> bool {
    !requirements.is_empty()
        && requirements
            .iter()
            .all(|r| *r != SecurityRequirement::default())
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// Documents `status` on `op` with `why`; an answer the route already documents keeps its own
/// description, with `why` added to it.
fn answer(op: &mut Operation, status: &str, why: &str) {
    let responses = &mut op.responses.responses;
    match responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            if existing.description.trim().is_empty() {
                existing.description = why.to_owned();
            } else if !existing.description.contains(why) {
                existing.description = format!("{}; or {why}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_owned(), RefOr::T(Response::new(why)));
        }
    }
}

/// Every refusal (3xx, 4xx, 5xx) has a problem+json body and nothing else.
fn problem_bodies(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with(['3', '4', '5']) {
            response.content.clear();
            response.content.insert(
                CONTENT_TYPE.to_owned(),
                Content::new(Some(Ref::from_schema_name(
                    <Problem as utoipa::ToSchema>::name(),
                ))),
            );
        }
    }
}

/// What a refusal a route documents without words means, said once for all routes: a 404 in
/// particular is also the answer for anything under an account the token cannot see.
fn described(op: &mut Operation) {
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !response.description.trim().is_empty() {
            continue;
        }
        response.description = match status.as_str() {
            "403" => "the token may not do this".to_owned(),
            "404" => "no such resource, or it is under an account the token cannot see".to_owned(),
            other => other
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned(),
        };
    }
}

/// The `Idempotency-Key` header, as the middleware accepts it.
fn idempotency_key(op: &mut Operation) {
    let parameters = op.parameters.get_or_insert_with(Vec::new);
    parameters.retain(|p| {
        !(p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case(idempotency::HEADER))
    });
    parameters.push(key_parameter());
}

fn key_parameter() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A key the client chooses for this request: a retry with the same key and the same \
             request gets the first answer again (kept 24 hours, per token) instead of acting \
             twice; the same key with a different request is refused with 409.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(idempotency::MAX_KEY_LEN))
                // Visible ASCII: `!` (0x21) to `~` (0x7e).
                .pattern(Some("^[!-~]+$")),
        ))
        .build()
}

fn header(kind: Type, description: &str) -> Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(kind))
        .description(Some(description))
        .build()
}
