//! An HTTPS client for end-to-end tests: trusts only the given CA (no system roots, nothing
//! "insecure") and sends every host name to one address, as DNS for `*.localhost` would.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

/// Resolves every name to one address.
#[derive(Clone)]
struct Fixed(SocketAddr);

impl tower::Service<Name> for Fixed {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        let addr = self.0;
        Box::pin(async move { Ok(vec![addr].into_iter()) })
    }
}

pub struct Https {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<Fixed>>, Full<Bytes>>,
}

pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Https {
    /// `alpn`: `["h2"]` for gRPC, `["h2", "http/1.1"]` or `["http/1.1"]` for REST.
    pub fn new(ca_pem: &str, gateway: SocketAddr, alpn: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new_with_resolver(Fixed(gateway));
        http.enforce_http(false);
        // hyper-rustls offers ALPN for the versions enabled here.
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        let connector = match alpn {
            ["h2"] => builder.enable_http2().wrap_connector(http),
            ["http/1.1"] => builder.enable_http1().wrap_connector(http),
            _ => builder.enable_all_versions().wrap_connector(http),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        if alpn == ["h2"] {
            builder.http2_only(true);
        }
        Self {
            client: builder.build(connector),
        }
    }

    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Answer, String> {
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
