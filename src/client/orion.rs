//! The HTTP client for Orion: http or https (rustls, the system's roots plus an optional CA),
//! a deadline on every answer, retries only where a retry cannot do a thing twice, and
//! problem+json turned into one line that names the field that was wrong.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use control::api::Problem;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CliError;

/// Tries for a request that is safe to repeat (a GET, or a change sent with an
/// Idempotency-Key), when Orion is unreachable or answers 503.
const ATTEMPTS: u32 = 3;
/// The longest pause between two tries, whatever Retry-After says.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A decoded answer, with the JSON it came from (printed as is by `--json`).
pub struct Answer<T> {
    pub value: T,
    pub json: serde_json::Value,
}

pub struct Orion {
    base: String,
    bearer: HeaderValue,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Orion {
    pub fn new(
        url: &str,
        token: String,
        cacert: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let https = match base
            .parse::<http::Uri>()
            .ok()
            .as_ref()
            .and_then(|u| u.scheme_str())
        {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(CliError::Usage(format!(
                    "Orion's URL {base:?} is not an http:// or https:// URL"
                )));
            }
        };
        let mut bearer =
            HeaderValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
                CliError::Usage("the token contains characters a header cannot carry".into())
            })?;
        bearer.set_sensitive(true);
        let tls = tls_client_config(https, cacert)?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            base,
            bearer,
            http,
            timeout,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, CliError> {
        self.call(Method::GET, path, None::<&()>, None).await
    }

    /// A change Orion may see twice without doing it twice: sent with a fresh Idempotency-Key
    /// and retried when Orion is unreachable or busy.
    pub async fn change<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer<T>, CliError> {
        let key = uuid::Uuid::new_v4().to_string();
        self.call(method, path, body, Some(&key)).await
    }

    /// A change that is sent once: creating a key or a token (a secret shown once cannot be
    /// replayed, so there is nothing a retry could safely return).
    pub async fn once<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer<T>, CliError> {
        self.call_once(&method, path, body, None)
            .await
            .and_then(|(status, bytes)| decode(status, &bytes))
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer<T>, CliError> {
        let mut attempt = 1;
        loop {
            let outcome = self.call_once(&method, path, body, idempotency_key).await;
            let pause = match &outcome {
                Err(CliError::Unreachable { .. }) => Some(Duration::from_secs(1)),
                // Orion's Retry-After for a store outage is 2 s.
                Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => Some(Duration::from_secs(2)),
                _ => None,
            };
            match pause {
                Some(pause) if attempt < ATTEMPTS => {
                    tokio::time::sleep(pause.min(MAX_PAUSE)).await;
                    attempt += 1;
                }
                _ => return outcome.and_then(|(status, bytes)| decode(status, &bytes)),
            }
        }
    }

    async fn call_once<B: Serialize>(
        &self,
        method: &Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, Bytes), CliError> {
        let url = format!("{}{path}", self.base);
        let payload = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| CliError::BadAnswer(format!("cannot encode the request: {e}")))?,
            None => Vec::new(),
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(AUTHORIZATION, self.bearer.clone())
            .header(
                "user-agent",
                concat!("lyra-cli/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| CliError::Usage(format!("cannot build a request for {url}: {e}")))?;
        let unreachable = |reason: String| CliError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", self.timeout.as_secs())))?
    }
}

/// The rustls client configuration: ring, the system's roots for https, and the given CA.
pub fn tls_client_config(
    https: bool,
    cacert: Option<&Path>,
) -> Result<rustls::ClientConfig, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        // Unreadable system certificates are skipped, as browsers and curl do.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = cacert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| CliError::Usage(format!("cannot read the CA {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(CliError::Usage(format!(
                "{} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                CliError::Usage(format!("the CA {} is not usable: {e}", path.display()))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The innermost causes of a transport error, which say what actually happened
/// ("Connection refused"), joined into one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.last().cloned().unwrap_or_default()
}

fn decode<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<Answer<T>, CliError> {
    if !status.is_success() {
        return Err(CliError::Api {
            status: status.as_u16(),
            message: problem_line(status, body),
        });
    }
    let json: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| CliError::BadAnswer(format!("Orion's answer is not JSON: {e}")))?
    };
    let value = serde_json::from_value(json.clone()).map_err(|e| {
        CliError::BadAnswer(format!(
            "Orion's answer is not what this CLI expects ({e}); are `lyra` and Orion the same version?"
        ))
    })?;
    Ok(Answer { value, json })
}

/// One line for a refusal: the fields that were wrong with their reasons, else the detail.
pub fn problem_line(status: StatusCode, body: &[u8]) -> String {
    if status == StatusCode::UNAUTHORIZED {
        return "Orion refused the token: check LYRA_TOKEN or --token".to_owned();
    }
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) if !p.errors.is_empty() => p
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.reason))
            .collect::<Vec<_>>()
            .join("; "),
        Ok(p) if !p.detail.is_empty() => p.detail,
        Ok(p) => p.title,
        // Not Orion's (a proxy in between?): its body may be anything, so only the status.
        Err(_) => status
            .canonical_reason()
            .unwrap_or("unexpected answer")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_problem_becomes_its_fields() {
        let body = br#"{"type":"/problems/validation","title":"Invalid request","status":422,
            "detail":"2 fields are invalid","errors":[{"field":"configuration.num_nodes","reason":"must be between 1 and 100"},
            {"field":"name","reason":"must be 2 to 64 characters"}]}"#;
        assert_eq!(
            problem_line(StatusCode::UNPROCESSABLE_ENTITY, body),
            "configuration.num_nodes: must be between 1 and 100; name: must be 2 to 64 characters"
        );
    }

    #[test]
    fn other_problems_show_their_detail_and_foreign_bodies_only_the_status() {
        let body = br#"{"type":"/problems/not-found","title":"Not found","status":404,"detail":"cluster not found"}"#;
        assert_eq!(
            problem_line(StatusCode::NOT_FOUND, body),
            "cluster not found"
        );
        assert_eq!(
            problem_line(
                StatusCode::BAD_GATEWAY,
                b"<html>secret-ish proxy page</html>"
            ),
            "Bad Gateway"
        );
        assert!(problem_line(StatusCode::UNAUTHORIZED, b"{}").contains("LYRA_TOKEN"));
    }

    #[test]
    fn urls_that_are_not_http_are_refused() {
        let e = Orion::new("ftp://x", "t".into(), None, Duration::from_secs(1)).err();
        assert!(matches!(e, Some(CliError::Usage(m)) if m.contains("not an http")));
        let e = Orion::new(
            "http://x",
            "bad\ntoken".into(),
            None,
            Duration::from_secs(1),
        )
        .err();
        assert!(matches!(e, Some(CliError::Usage(_))));
    }
}
