//! A certificate the operator brings for a region (e.g. a public wildcard obtained with an
//! ACME DNS-01 challenge), checked before any gateway serves it: it must name the region's
//! wildcard, be valid now, and match its private key. Lyra never renews such a certificate.

use std::sync::Arc;

use contract::host::{EndpointHost, Tld};
use jiff::Timestamp;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::CertError;
use crate::region_cert::RegionCert;

fn refused(why: String) -> CertError {
    CertError::Refused(why)
}

/// Checks `chain_pem` (leaf first) and `key_pem` for `*.<region>.<provider>.<tld>` at `now`.
pub fn region_cert(
    provider: &str,
    region: &str,
    tld: &Tld,
    chain_pem: &str,
    key_pem: &str,
    now: Timestamp,
) -> Result<RegionCert, CertError> {
    let name = EndpointHost::wildcard(region, provider, tld)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Pem(format!("certificate chain: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| CertError::Pem("the certificate file holds no certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| CertError::Pem(format!("the first certificate: {e}")))?;
    let names: Vec<String> = parsed
        .subject_alternative_name()
        .map_err(|e| CertError::Pem(format!("subject alternative names: {e}")))?
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !names.contains(&name) {
        return Err(refused(format!(
            "the certificate does not name {name} (it names: {})",
            if names.is_empty() {
                "nothing".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    let validity = parsed.validity();
    let not_before = Timestamp::from_second(validity.not_before.timestamp())
        .map_err(|e| CertError::Pem(format!("notBefore: {e}")))?;
    let not_after = Timestamp::from_second(validity.not_after.timestamp())
        .map_err(|e| CertError::Pem(format!("notAfter: {e}")))?;
    if now < not_before || now >= not_after {
        return Err(refused(format!(
            "the certificate is not valid now (valid from {not_before} to {not_after})"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertError::Pem(format!("private key: {e}")))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)?;
    let certified = Arc::new(CertifiedKey::new(chain, signing));
    certified
        .keys_match()
        .map_err(|_| refused("the private key does not belong to the certificate".into()))?;
    Ok(RegionCert {
        provider: provider.to_owned(),
        region: region.to_owned(),
        name,
        chain_pem: chain_pem.to_owned(),
        key_pem: Zeroizing::new(key_pem.to_owned()),
        not_after,
        provided: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::PlatformCa;

    fn tld() -> Tld {
        Tld::new("example.com").unwrap()
    }

    #[test]
    fn a_matching_wildcard_is_accepted_and_marked_provided() {
        // Any CA will do: here another platform CA stands in for the operator's PKI.
        let theirs = PlatformCa::generate().unwrap();
        let issued = theirs.issue_region("aws", "eu-west-1", &tld()).unwrap();
        let cert = region_cert(
            "aws",
            "eu-west-1",
            &tld(),
            &issued.chain_pem,
            &issued.key_pem,
            Timestamp::now(),
        )
        .unwrap();
        assert!(cert.provided);
        assert_eq!(cert.name, "*.eu-west-1.aws.example.com");
        assert_eq!(cert.not_after, issued.not_after);
        assert!(cert.certified_key().is_ok());
    }

    #[test]
    fn wrong_name_expired_or_foreign_key_is_refused() {
        let ca = PlatformCa::generate().unwrap();
        let issued = ca.issue_region("aws", "eu-west-1", &tld()).unwrap();
        let other = ca.issue_region("aws", "us-east-1", &tld()).unwrap();
        let now = Timestamp::now();
        let wrong_region = region_cert(
            "aws",
            "us-east-1",
            &tld(),
            &issued.chain_pem,
            &issued.key_pem,
            now,
        );
        assert!(
            matches!(wrong_region, Err(CertError::Refused(m)) if m.contains("*.us-east-1.aws.example.com"))
        );
        let later = issued
            .not_after
            .checked_add(jiff::SignedDuration::from_secs(1))
            .unwrap();
        let expired = region_cert(
            "aws",
            "eu-west-1",
            &tld(),
            &issued.chain_pem,
            &issued.key_pem,
            later,
        );
        assert!(matches!(expired, Err(CertError::Refused(m)) if m.contains("not valid now")));
        let foreign = region_cert(
            "aws",
            "eu-west-1",
            &tld(),
            &issued.chain_pem,
            &other.key_pem,
            now,
        );
        assert!(matches!(foreign, Err(CertError::Refused(m)) if m.contains("does not belong")));
        let garbage = region_cert("aws", "eu-west-1", &tld(), "not pem", &issued.key_pem, now);
        assert!(matches!(garbage, Err(CertError::Pem(_))));
    }
}
