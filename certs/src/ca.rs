//! The platform CA: made once, ECDSA P-256, ten years. It signs one wildcard certificate per
//! region. Its parameters are fixed here, so a CA read back from PEM (Redis, or files Lyra
//! wrote) can sign again without parsing its certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::CertError;
use crate::region_cert::RegionCert;
use contract::host::{EndpointHost, Tld};

/// The subject every Lyra CA has.
pub const CA_NAME: &str = "Lyra Platform CA";
const CA_YEARS: i64 = 10;
/// Leaves live 90 days, like public ACME certificates; they are renewed well before.
pub const LEAF_DAYS: i64 = 90;

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Lyra");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

pub struct PlatformCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for PlatformCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCa").finish_non_exhaustive()
    }
}

impl PlatformCa {
    pub fn generate() -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365 * CA_YEARS);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// A CA Lyra made before, from its certificate and private key in PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        if !cert_pem.contains("BEGIN CERTIFICATE") {
            return Err(CertError::Pem("the CA certificate is not PEM".into()));
        }
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| CertError::Pem(format!("the CA key: {e}")))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key,
        })
    }

    /// The certificate clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, for sealing.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    /// A new `*.<region>.<provider>.<tld>` certificate, signed by this CA.
    pub fn issue_region(
        &self,
        provider: &str,
        region: &str,
        tld: &Tld,
    ) -> Result<RegionCert, CertError> {
        let name = EndpointHost::wildcard(region, provider, tld)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(LEAF_DAYS);
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        let not_after = jiff::Timestamp::from_second(params.not_after.unix_timestamp())
            .map_err(|e| CertError::Pem(format!("expiry out of range: {e}")))?;
        Ok(RegionCert {
            provider: provider.to_owned(),
            region: region.to_owned(),
            name,
            // The chain a server sends: the leaf, then the CA.
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: Zeroizing::new(key.serialize_pem()),
            not_after,
            provided: false,
        })
    }
}
