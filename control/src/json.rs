//! The JSON body extractor: like axum's, but every rejection is a problem+json with the exact
//! field that was wrong (via `serde_path_to_error`), and nothing is written on a bad body.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::Problem;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Serialize,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!("the body exceeds {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                Problem::bad_request("the body could not be read")
            }
        })?;
        decode(&bytes).map(ApiJson)
    }
}

/// Decodes `bytes`, naming the failing field: syntax errors are 400, shape errors 422.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, Problem> {
    let bytes = whole_numbers_as_integers(bytes);
    let value: T = read(&bytes)?;
    if bytes.contains(&b'[') {
        // Valid JSON: `read` accepted it.
        let sent: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
        let understood = serde_json::to_value(&value).map_err(|e| {
            tracing::error!(error = %e, "a decoded body does not serialize");
            Problem::internal()
        })?;
        no_objects_as_arrays(&sent, &understood, "")?;
    }
    Ok(value)
}

/// serde reads a struct from an array of its fields' values too (`{"min": 1, "max": 2}` from
/// `[1, 2]`), which the API's schemas do not allow and no client means. Wherever the body has
/// an array, what it was read as must be an array too: `sent` is the body, `understood` the
/// value read from it, serialized again.
fn no_objects_as_arrays(sent: &Value, understood: &Value, path: &str) -> Result<(), Problem> {
    match (sent, understood) {
        (Value::Array(sent), Value::Array(understood)) => {
            for (i, (s, u)) in sent.iter().zip(understood).enumerate() {
                no_objects_as_arrays(s, u, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Array(_), _) => Err(Problem::field(
            if path.is_empty() { "body" } else { path },
            "must be an object, not an array",
        )),
        (Value::Object(sent), Value::Object(understood)) => {
            for (name, s) in sent {
                if let Some(u) = understood.get(name) {
                    let field = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    no_objects_as_arrays(s, u, &field)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn read<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return Problem::bad_request(format!("the body is not valid JSON: {inner}"));
        }
        let message = strip_position(&inner.to_string());
        Problem::field(&field_of(&path, &message), message)
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The largest magnitude up to which every whole number has one exact `f64`: beyond it, a
/// number spelled with a fraction or exponent may not be the integer the client meant.
const EXACT_WHOLE: f64 = 9_007_199_254_740_992.0; // 2^53

/// JSON has one number type: `2.0` and `2e3` are the integers 2 and 2000 (JSON Schema counts
/// them as `integer`), but serde reads only `2` into an integer field. Rewrites each number
/// outside strings that is a whole number spelled with a fraction or an exponent (and no larger
/// than 2^53) as a plain integer, so integer fields accept every spelling of their values;
/// anything else, strings and invalid JSON included, is left exactly as it was.
pub fn whole_numbers_as_integers(bytes: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Vec<u8> = Vec::new();
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b != b'-' && !b.is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        {
            i += 1;
        }
        let token = &bytes[start..i];
        if !token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
            continue;
        }
        // serde_json, not `str::parse`, decides what a number is: `1.` is not JSON.
        let Some(whole) = serde_json::from_slice::<serde_json::Number>(token)
            .ok()
            .and_then(|n| n.as_f64())
            .filter(|x| x.fract() == 0.0 && x.abs() <= EXACT_WHOLE)
        else {
            continue;
        };
        out.extend_from_slice(&bytes[copied..start]);
        // Exact: a whole f64 no larger than 2^53 converts to i64 without loss.
        out.extend_from_slice((whole as i64).to_string().as_bytes());
        copied = i;
    }
    if copied == 0 {
        return Cow::Borrowed(bytes);
    }
    out.extend_from_slice(&bytes[copied..]);
    Cow::Owned(out)
}

/// serde reports a missing or unknown field at its parent's path; name the field itself.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// serde_json appends " at line L column C", which means nothing to an API client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(json: &str) -> String {
        String::from_utf8(whole_numbers_as_integers(json.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn whole_numbers_in_any_spelling_become_integers() {
        assert_eq!(
            rewritten(r#"{"a": 910.0, "b": [1e3, -2.50e1, 0.0, -0.0], "c": 7}"#),
            r#"{"a": 910, "b": [1000, -25, 0, 0], "c": 7}"#
        );
        assert_eq!(rewritten("9007199254740992.0"), "9007199254740992");
    }

    #[test]
    fn everything_else_is_left_as_it_was() {
        for same in [
            r#"{"a": 1.5, "b": 2, "c": 1e400, "d": 9007199254740994.0}"#,
            r#"{"s": "2.0", "t": "say \"3.0\" \\", "u": 4}"#,
            "1. 01.0 1.0.0 -e1 1e",
            "",
        ] {
            assert_eq!(rewritten(same), same);
        }
        assert!(matches!(
            whole_numbers_as_integers(b"{\"a\": 1}"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn integer_fields_read_whole_floats_and_refuse_fractions() {
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct Shape {
            n: u32,
        }
        assert_eq!(decode::<Shape>(br#"{"n": 3.0}"#).unwrap().n, 3);
        assert_eq!(decode::<Shape>(br#"{"n": 3e0}"#).unwrap().n, 3);
        let refused = decode::<Shape>(br#"{"n": 3.5}"#).unwrap_err();
        assert_eq!(refused.status, 422);
        assert_eq!(refused.errors[0].field, "n");
    }
}

#[cfg(test)]
mod arrays {
    use serde::{Deserialize, Serialize};

    use super::decode;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Bounds {
        min: Option<u64>,
        max: Option<u64>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        bounds: Option<Bounds>,
        #[serde(default)]
        list: Vec<Bounds>,
    }

    fn refused_at(json: &str) -> String {
        let p = decode::<Outer>(json.as_bytes()).unwrap_err();
        assert_eq!(p.status, 422, "{json}");
        p.errors[0].field.clone()
    }

    #[test]
    fn a_struct_is_never_read_from_an_array() {
        assert_eq!(refused_at(r#"{"bounds": [null, null]}"#), "bounds");
        assert_eq!(refused_at(r#"{"bounds": []}"#), "bounds");
        assert_eq!(refused_at(r#"{"list": [{"min": 1}, [2, 3]]}"#), "list[1]");
        assert_eq!(refused_at(r#"[{"min": 1}, []]"#), "body");
    }

    #[test]
    fn arrays_where_the_type_has_a_list_are_fine() {
        let read = decode::<Outer>(br#"{"bounds": {"min": 1}, "list": [{"max": 2}, {}]}"#).unwrap();
        assert_eq!(read.list.len(), 2);
        assert_eq!(read.bounds.unwrap().min, Some(1));
    }
}
