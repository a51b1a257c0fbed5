//! TLS for GateKeeper's listeners: certificates chosen by SNI from memory (certs'
//! `CertResolver`), and the SNI name kept with the connection so each request can be checked
//! against its `Host`.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::Digest;
use pingora::protocols::tls::TlsRef;
use pingora::proxy::Session;

use certs::resolver::CertResolver;

/// The server name a client asked for in its TLS handshake (lower case).
#[derive(Debug, Clone)]
pub struct Sni(pub String);

struct SniCapture;

#[async_trait]
impl TlsAccept for SniCapture {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        tls.server_name()
            .map(|name| Arc::new(Sni(name.to_ascii_lowercase())) as Arc<dyn Any + Send + Sync>)
    }
}

/// TLS settings of a listener: `h2_only` for gRPC, h2 and http/1.1 for REST.
pub fn settings(resolver: Arc<CertResolver>, h2_only: bool) -> pingora::Result<TlsSettings> {
    let mut tls = TlsSettings::with_callbacks(Box::new(SniCapture))?;
    tls.set_cert_resolver(resolver);
    if h2_only {
        tls.set_alpn(pingora::protocols::ALPN::H2);
    } else {
        tls.enable_h2();
    }
    Ok(tls)
}

/// The SNI name of the request's connection; `None` on plain connections.
pub fn sni(session: &Session) -> Option<&str> {
    sni_of(session.digest()?)
}

/// The SNI name kept in a connection's digest.
pub fn sni_of(digest: &Digest) -> Option<&str> {
    digest
        .ssl_digest
        .as_ref()?
        .extension
        .get::<Sni>()
        .map(|s| s.0.as_str())
}
