//! Certificates for Lyra's endpoints.
//!
//! | module | job |
//! |---|---|
//! | [`ca`] | the platform CA (ECDSA P-256, rcgen) and the wildcard leaves it signs |
//! | [`provided`] | checking a certificate an operator brings for a region |
//! | [`region_cert`] | one region's `*.<region>.<provider>.<tld>` certificate, and when to renew it |
//! | [`resolver`] | a rustls `ResolvesServerCert` that picks a certificate by SNI suffix, hot-swappable |
//! | [`store`] | keeping the CA and the certificates in Redis, private keys sealed |
//! | [`cli`] | `lyra certs ca`, `lyra certs issue` |
//!
//! Clients trust the CA (`lyra certs ca > ca.pem`); gateways serve the leaves.

pub mod ca;
pub mod cli;
pub mod provided;
pub mod region_cert;
pub mod resolver;
pub mod store;

/// Why a certificate could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("not a usable PEM certificate or key: {0}")]
    Pem(String),
    #[error("invalid name: {0}")]
    Name(#[from] contract::host::HostError),
    #[error("rustls refused the key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Seal(#[from] contract::seal::SealError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored certificate is unreadable: {0}")]
    Stored(#[from] serde_json::Error),
    /// A certificate offered for a region that cannot serve it.
    #[error("{0}")]
    Refused(String),
}
