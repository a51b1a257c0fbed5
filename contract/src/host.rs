//! The endpoint host: `<cluster-uuid>.<region>.<provider>.<tld>`.
//!
//! Built by Orion when a cluster is created, parsed by GateKeeper from `Host`, `:authority`
//! and SNI on every request. Parsing is strict: host names are case-insensitive and a port is
//! stripped, but anything that is not exactly one canonical cluster UUID, one region label and
//! one provider label under the platform's TLD is not a Lyra host.

use std::fmt;

use uuid::Uuid;

use crate::ids::ClusterId;
use crate::validation::check_dns_label;

/// Why a string is not a Lyra endpoint host (or a TLD).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host is longer than 253 characters")]
    TooLong,
    #[error("host is an IP address, not a cluster endpoint")]
    IpLiteral,
    #[error("host has an invalid port")]
    InvalidPort,
    #[error("host contains a character that is not allowed in a host name")]
    InvalidCharacter,
    #[error("host is not under the platform domain")]
    WrongSuffix,
    #[error("host must be <cluster-id>.<region>.<provider>.<tld>")]
    WrongShape,
    #[error("the first label of the host is not a cluster id")]
    InvalidClusterId,
    #[error("the {which} label {reason}")]
    InvalidLabel { which: &'static str, reason: String },
}

/// The platform's top-level domain under which every endpoint lives, e.g. `localhost` or
/// `cloud.example.com`: one or more lower-case DNS labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tld(String);

impl Tld {
    pub fn new(tld: &str) -> Result<Self, HostError> {
        let lower = tld.to_ascii_lowercase();
        if lower.is_empty() {
            return Err(HostError::Empty);
        }
        for label in lower.split('.') {
            check_dns_label(label).map_err(|reason| HostError::InvalidLabel {
                which: "tld",
                reason,
            })?;
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed, canonical (lower-case) endpoint host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointHost {
    pub cluster_id: ClusterId,
    pub region: String,
    pub provider: String,
    tld: String,
}

/// An endpoint host checked as [`EndpointHost::parse`] does, without allocating: its labels
/// are borrowed as written (any case). What the gateway parses on every request.
#[derive(Debug, Clone, Copy)]
pub struct HostRef<'a> {
    pub cluster_id: ClusterId,
    region: &'a str,
    provider: &'a str,
}

impl PartialEq for HostRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cluster_id == other.cluster_id
            && self.region.eq_ignore_ascii_case(other.region)
            && self.provider.eq_ignore_ascii_case(other.provider)
    }
}

impl<'a> HostRef<'a> {
    /// Parses a `Host` header, h2 `:authority` or SNI name under `tld`.
    pub fn parse(input: &'a str, tld: &Tld) -> Result<Self, HostError> {
        let name = strip_port(input)?;
        if name.len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(HostError::InvalidCharacter);
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(HostError::IpLiteral);
        }
        let suffix_len = tld.0.len() + 1;
        if name.len() <= suffix_len {
            return Err(HostError::WrongSuffix);
        }
        let (head, suffix) = name.split_at(name.len() - suffix_len);
        if !suffix.starts_with('.') || !suffix[1..].eq_ignore_ascii_case(&tld.0) {
            return Err(HostError::WrongSuffix);
        }
        let mut labels = head.split('.');
        let (Some(id), Some(region), Some(provider), None) =
            (labels.next(), labels.next(), labels.next(), labels.next())
        else {
            return Err(HostError::WrongShape);
        };
        // Only the canonical hyphenated form: the same cluster must not have several hosts.
        if id.len() != 36 {
            return Err(HostError::InvalidClusterId);
        }
        let cluster_id = Uuid::try_parse(id).map_err(|_| HostError::InvalidClusterId)?;
        Ok(Self {
            cluster_id: ClusterId::from_uuid(cluster_id),
            region: label_any_case("region", region)?,
            provider: label_any_case("provider", provider)?,
        })
    }
}

/// A DNS label as written, any case: checked as its lower-case form would be, allocating only
/// to say what is wrong.
fn label_any_case<'a>(which: &'static str, label: &'a str) -> Result<&'a str, HostError> {
    // The characters were checked by the caller (alphanumeric, '-', '.'); no '.' in a label.
    let fine =
        !label.is_empty() && label.len() <= 63 && !label.starts_with('-') && !label.ends_with('-');
    if fine {
        Ok(label)
    } else {
        checked_label(which, &label.to_ascii_lowercase()).map(|_| label)
    }
}

/// The longest host name DNS allows.
const MAX_HOST_LEN: usize = 253;

impl EndpointHost {
    pub fn new(
        cluster_id: ClusterId,
        region: &str,
        provider: &str,
        tld: &Tld,
    ) -> Result<Self, HostError> {
        let host = Self {
            cluster_id,
            region: checked_label("region", region)?,
            provider: checked_label("provider", provider)?,
            tld: tld.0.clone(),
        };
        if host.to_string().len() > MAX_HOST_LEN {
            return Err(HostError::TooLong);
        }
        Ok(host)
    }

    /// Parses a `Host` header, h2 `:authority` or SNI name.
    pub fn parse(input: &str, tld: &Tld) -> Result<Self, HostError> {
        let host = HostRef::parse(input, tld)?;
        Ok(Self {
            cluster_id: host.cluster_id,
            region: host.region.to_ascii_lowercase(),
            provider: host.provider.to_ascii_lowercase(),
            tld: tld.0.clone(),
        })
    }

    /// Whether `host` names this endpoint (labels compared without regard to case).
    pub fn matches(&self, host: &HostRef<'_>) -> bool {
        self.cluster_id == host.cluster_id
            && self.region.eq_ignore_ascii_case(host.region)
            && self.provider.eq_ignore_ascii_case(host.provider)
    }

    /// The wildcard name that covers every cluster of a region: `*.<region>.<provider>.<tld>`.
    pub fn wildcard(region: &str, provider: &str, tld: &Tld) -> Result<String, HostError> {
        Ok(format!(
            "*.{}.{}.{}",
            checked_label("region", region)?,
            checked_label("provider", provider)?,
            tld
        ))
    }
}

impl fmt::Display for EndpointHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.cluster_id, self.region, self.provider, self.tld
        )
    }
}

fn checked_label(which: &'static str, label: &str) -> Result<String, HostError> {
    check_dns_label(label).map_err(|reason| HostError::InvalidLabel { which, reason })?;
    Ok(label.to_owned())
}

/// Removes a `:port` suffix, refusing IPv6 literals and ports that are not 1..=65535.
fn strip_port(input: &str) -> Result<&str, HostError> {
    if input.is_empty() {
        return Err(HostError::Empty);
    }
    if input.starts_with('[') {
        return Err(HostError::IpLiteral);
    }
    let name = match input.split_once(':') {
        None => input,
        Some((name, port)) => {
            let valid = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p != 0);
            if !valid {
                return Err(HostError::InvalidPort);
            }
            name
        }
    };
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a99";

    fn tld() -> Tld {
        Tld::new("localhost").unwrap()
    }

    fn parse(s: &str) -> Result<EndpointHost, HostError> {
        EndpointHost::parse(s, &tld())
    }

    #[test]
    fn the_borrowed_parse_agrees_with_the_owned_one() {
        let inputs = [
            format!("{ID}.eu-west-1.aws.localhost"),
            format!("{ID}.EU-West-1.AWS.LocalHost:6333"),
            format!("{ID}.-bad.aws.localhost"),
            format!("{ID}.eu.aws-.localhost"),
            format!("{ID}..aws.localhost"),
            format!("{ID}.eu.aws.example"),
            format!("{}.eu.aws.localhost", "a".repeat(36)),
            format!("{ID}.{}.aws.localhost", "r".repeat(64)),
            "127.0.0.1".to_owned(),
            "[::1]:6333".to_owned(),
            String::new(),
        ];
        for input in &inputs {
            let owned = parse(input);
            let borrowed = HostRef::parse(input, &tld());
            assert_eq!(owned.as_ref().err(), borrowed.as_ref().err(), "{input}");
            if let (Ok(o), Ok(b)) = (owned, borrowed) {
                assert!(o.matches(&b), "{input}");
            }
        }
        let a = HostRef::parse(&inputs[0], &tld()).unwrap();
        let b = HostRef::parse(&inputs[1], &tld()).unwrap();
        assert_eq!(a, b, "labels compare without regard to case");
        let other = format!("{ID}.eu-west-2.aws.localhost");
        let c = HostRef::parse(&other, &tld()).unwrap();
        assert_ne!(a, c);
        assert!(!parse(&inputs[0]).unwrap().matches(&c));
    }

    #[test]
    fn build_and_parse_round_trip() {
        let id: ClusterId = ID.parse().unwrap();
        let host = EndpointHost::new(id, "dev", "local", &tld()).unwrap();
        assert_eq!(host.to_string(), format!("{ID}.dev.local.localhost"));
        assert_eq!(parse(&host.to_string()).unwrap(), host);
    }

    #[test]
    fn case_is_folded_and_ports_are_stripped() {
        let upper = format!("{}.DEV.Local.LOCALHOST:6333", ID.to_uppercase());
        let host = parse(&upper).unwrap();
        assert_eq!(host.cluster_id.to_string(), ID);
        assert_eq!(host.to_string(), format!("{ID}.dev.local.localhost"));
        assert!(parse(&format!("{ID}.dev.local.localhost:443")).is_ok());
    }

    #[test]
    fn multi_label_tlds_work() {
        let tld = Tld::new("Cloud.Example.COM").unwrap();
        assert_eq!(tld.as_str(), "cloud.example.com");
        let h = EndpointHost::parse(&format!("{ID}.eu-west-1.aws.cloud.example.com"), &tld);
        assert_eq!(h.unwrap().region, "eu-west-1");
        let other = EndpointHost::parse(&format!("{ID}.eu-west-1.aws.example.com"), &tld);
        assert_eq!(other.unwrap_err(), HostError::WrongSuffix);
        let short = EndpointHost::parse("eu-west-1.aws.cloud.example.com", &tld);
        assert_eq!(short.unwrap_err(), HostError::WrongShape);
    }

    #[test]
    fn anything_else_is_not_a_lyra_host() {
        let cases: &[(&str, HostError)] = &[
            ("", HostError::Empty),
            (":6333", HostError::Empty),
            ("127.0.0.1", HostError::IpLiteral),
            ("127.0.0.1:6333", HostError::IpLiteral),
            ("[::1]:6333", HostError::IpLiteral),
            ("[::1]", HostError::IpLiteral),
            ("localhost", HostError::WrongSuffix),
            (".localhost", HostError::WrongSuffix),
            ("example.com", HostError::WrongSuffix),
            ("dev.local.localhost", HostError::WrongShape),
            ("x.dev.local.notlocalhost", HostError::WrongSuffix),
            ("a.b.dev.local.localhost", HostError::WrongShape),
            (
                "not-a-uuid.dev.local.localhost",
                HostError::InvalidClusterId,
            ),
            (
                "0b5c3e4a9d2f4c1e8a7b3f6d2e1c0a99.dev.local.localhost",
                HostError::InvalidClusterId,
            ),
            (
                "{0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a9}.dev.local.localhost",
                HostError::InvalidCharacter,
            ),
            (
                "h\u{e9}llo.dev.local.localhost",
                HostError::InvalidCharacter,
            ),
            ("a b.dev.local.localhost", HostError::InvalidCharacter),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).as_ref().err(), Some(want), "input {input:?}");
        }
    }

    #[test]
    fn ports_must_be_real_ports() {
        for port in ["", "0", "65536", "99999", "12a", "-1", "6333:1", "123456"] {
            let input = format!("{ID}.dev.local.localhost:{port}");
            assert_eq!(parse(&input), Err(HostError::InvalidPort), "{input}");
        }
    }

    #[test]
    fn empty_and_bad_labels_are_refused() {
        for input in [
            format!("{ID}..local.localhost"),
            format!("{ID}.dev..localhost"),
            format!("{ID}.-dev.local.localhost"),
            format!("{ID}.dev.local-.localhost"),
            format!("{ID}.dev.local.localhost."),
        ] {
            assert!(parse(&input).is_err(), "{input}");
        }
        assert!(parse(&format!("{ID}.{}.local.localhost", "a".repeat(64))).is_err());
    }

    #[test]
    fn overlong_hosts_are_refused_before_any_work() {
        let long = format!("{}.localhost", "a".repeat(300));
        assert_eq!(parse(&long), Err(HostError::TooLong));
    }

    #[test]
    fn tlds_are_validated() {
        assert!(Tld::new("").is_err());
        assert!(Tld::new("exa mple.com").is_err());
        assert!(Tld::new("example..com").is_err());
    }

    #[test]
    fn wildcards_cover_a_region() {
        assert_eq!(
            EndpointHost::wildcard("dev", "local", &tld()).unwrap(),
            "*.dev.local.localhost"
        );
        assert!(EndpointHost::wildcard("Dev", "local", &tld()).is_err());
    }
}
