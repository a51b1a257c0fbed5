//! Real TLS handshakes on loopback with clients that trust only the Lyra CA.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use std::sync::Arc;

use certs::ca::PlatformCa;
use certs::resolver::CertResolver;
use contract::host::Tld;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const CLUSTER: &str = "0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a99";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server on loopback that answers "ok" after the handshake.
async fn serve(resolver: Arc<CertResolver>) -> u16 {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    port
}

fn client(ca_pem: &str) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Full handshakes only: a resumed session presents no certificate to look at.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// Handshakes with `sni`; returns the leaf the server presented, or the error.
async fn handshake(
    port: u16,
    connector: &TlsConnector,
    sni: &str,
) -> Result<CertificateDer<'static>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert_eq!(answer, b"ok");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    Ok(leaf)
}

fn leaf_of(chain_pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn sni_selects_the_regions_wildcard_and_only_the_lyra_ca_is_trusted() {
    let tld = Tld::new("localhost").unwrap();
    let ca = PlatformCa::generate().unwrap();
    let dev = ca.issue_region("local", "dev", &tld).unwrap();
    let eu = ca.issue_region("aws", "eu-west-1", &tld).unwrap();
    let resolver = Arc::new(CertResolver::new());
    for c in [&dev, &eu] {
        resolver.insert(c.suffix(), c.certified_key().unwrap());
    }
    let port = serve(resolver).await;
    let trusting = client(ca.cert_pem());

    let served = handshake(port, &trusting, &format!("{CLUSTER}.dev.local.localhost"))
        .await
        .unwrap();
    assert_eq!(served, leaf_of(&dev.chain_pem));
    let served = handshake(
        port,
        &trusting,
        &format!("{CLUSTER}.eu-west-1.aws.localhost"),
    )
    .await
    .unwrap();
    assert_eq!(served, leaf_of(&eu.chain_pem));
    // Case does not matter in names.
    assert!(
        handshake(port, &trusting, &format!("{CLUSTER}.DEV.local.localhost"))
            .await
            .is_ok()
    );

    // No certificate for an unknown suffix: the handshake fails.
    let err = handshake(
        port,
        &trusting,
        &format!("{CLUSTER}.nowhere.local.localhost"),
    )
    .await
    .unwrap_err();
    assert!(!err.is_empty());
    // A wildcard covers one label only: a deeper name is not covered.
    assert!(
        handshake(port, &trusting, &format!("a.{CLUSTER}.dev.local.localhost"))
            .await
            .is_err()
    );
    // A client that trusts another CA refuses the certificate.
    let stranger = client(PlatformCa::generate().unwrap().cert_pem());
    let err = handshake(port, &stranger, &format!("{CLUSTER}.dev.local.localhost"))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_new_regions_certificate_is_served_without_restart() {
    let tld = Tld::new("localhost").unwrap();
    let ca = PlatformCa::generate().unwrap();
    let resolver = Arc::new(CertResolver::new());
    let port = serve(resolver.clone()).await;
    let trusting = client(ca.cert_pem());
    let sni = format!("{CLUSTER}.new.local.localhost");
    assert!(handshake(port, &trusting, &sni).await.is_err());
    let fresh = ca.issue_region("local", "new", &tld).unwrap();
    resolver.insert(fresh.suffix(), fresh.certified_key().unwrap());
    assert_eq!(
        handshake(port, &trusting, &sni).await.unwrap(),
        leaf_of(&fresh.chain_pem)
    );
    // Replacing it (a renewal) is picked up by the next handshake.
    let renewed = ca.issue_region("local", "new", &tld).unwrap();
    resolver.insert(renewed.suffix(), renewed.certified_key().unwrap());
    assert_eq!(
        handshake(port, &trusting, &sni).await.unwrap(),
        leaf_of(&renewed.chain_pem)
    );
}

#[tokio::test]
async fn a_ca_read_back_from_pem_still_signs_certificates_clients_accept() {
    let ca = PlatformCa::generate().unwrap();
    let again = PlatformCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let tld = Tld::new("localhost").unwrap();
    let cert = again.issue_region("local", "dev", &tld).unwrap();
    let resolver = Arc::new(CertResolver::new());
    resolver.insert(cert.suffix(), cert.certified_key().unwrap());
    let port = serve(resolver).await;
    assert!(
        handshake(
            port,
            &client(ca.cert_pem()),
            &format!("{CLUSTER}.dev.local.localhost")
        )
        .await
        .is_ok()
    );
    assert!(PlatformCa::from_pem("not pem", &ca.key_pem()).is_err());
    assert!(PlatformCa::from_pem(ca.cert_pem(), "not a key").is_err());
}

#[test]
fn renewal_is_due_a_month_before_expiry() {
    let ca = PlatformCa::generate().unwrap();
    let mut cert = ca
        .issue_region("local", "dev", &Tld::new("localhost").unwrap())
        .unwrap();
    let now = jiff::Timestamp::now();
    assert!(
        !cert.needs_renewal(now),
        "a fresh 90-day certificate is not due"
    );
    cert.not_after = now + jiff::SignedDuration::from_hours(29 * 24);
    assert!(cert.needs_renewal(now));
    assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
}
