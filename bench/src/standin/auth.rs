//! Qdrant's credential rules (QDRANT-FACTS.md "Keys" and "JWT RBAC").
//!
//! A credential comes in `api-key` or `Authorization: Bearer`. The read-write key may do
//! anything; the read-only key may read (searches through POST included); with JWT RBAC on,
//! an HS256 token signed with the read-write key carries `access` claims, global (`m`, `r`)
//! or per collection (`r`, `rw`).

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Read something not tied to one collection (the collection list, cluster info).
    GlobalRead,
    /// Create, change or delete collections and other global things.
    Manage,
    Read(&'a str),
    Write(&'a str),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CollectionRule {
    pub collection: String,
    pub access: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum AccessClaim {
    Global(String),
    Collections(Vec<CollectionRule>),
}

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    access: Option<AccessClaim>,
}

/// What the presented credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Manage,
    ReadOnly,
    Collections(Vec<CollectionRule>),
}

/// Why a request is refused, with Qdrant's exact status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401, plain text.
    Missing,
    /// 401, plain text.
    Invalid,
    /// 403, plain text.
    Expired,
    /// 403, Qdrant JSON error.
    Forbidden(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Missing | Refusal::Invalid => 401,
            Refusal::Expired | Refusal::Forbidden(_) => 403,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "Must provide an API key or an Authorization bearer token".into(),
            Refusal::Invalid => "Invalid API key or JWT".into(),
            Refusal::Expired => "ExpiredSignature".into(),
            Refusal::Forbidden(m) => m.clone(),
        }
    }
}

pub struct Keys {
    api_key: Option<String>,
    read_only: Option<String>,
    jwt: Option<(DecodingKey, Validation)>,
}

/// The credential of a request: `api-key`, else `Authorization: Bearer`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("api-key").and_then(|v| v.to_str().ok()) {
        return Some(v);
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

impl Keys {
    pub fn new(api_key: Option<String>, read_only: Option<String>, jwt_rbac: bool) -> Self {
        let jwt = match (&api_key, jwt_rbac) {
            (Some(key), true) => {
                let mut validation = Validation::new(Algorithm::HS256);
                // Qdrant 1.18.3 accepts tokens without `exp`, and refuses expired ones.
                validation.required_spec_claims.clear();
                validation.validate_exp = true;
                validation.leeway = 0;
                Some((DecodingKey::from_secret(key.as_bytes()), validation))
            }
            _ => None,
        };
        Self {
            api_key,
            read_only,
            jwt,
        }
    }

    pub fn authenticate(&self, presented: Option<&str>) -> Result<Grant, Refusal> {
        let Some(api_key) = &self.api_key else {
            return Ok(Grant::Manage); // no key configured: Qdrant is open
        };
        let presented = presented.ok_or(Refusal::Missing)?;
        if presented == api_key {
            return Ok(Grant::Manage);
        }
        if self.read_only.as_deref() == Some(presented) {
            return Ok(Grant::ReadOnly);
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(Refusal::Invalid);
        };
        let claims =
            jsonwebtoken::decode::<Claims>(presented, key, validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => Refusal::Expired,
                    _ => Refusal::Invalid,
                }
            })?;
        Ok(match claims.claims.access {
            Some(AccessClaim::Global(g)) if g == "m" => Grant::Manage,
            Some(AccessClaim::Global(_)) => Grant::ReadOnly,
            Some(AccessClaim::Collections(rules)) => Grant::Collections(rules),
            None => Grant::ReadOnly,
        })
    }
}

impl Grant {
    pub fn allows(&self, need: Need<'_>) -> Result<(), Refusal> {
        let manage =
            || Refusal::Forbidden("Forbidden: Global manage access is required".to_owned());
        match (self, need) {
            (Grant::Manage, _) => Ok(()),
            (Grant::ReadOnly, Need::GlobalRead | Need::Read(_)) => Ok(()),
            (Grant::ReadOnly, _) => Err(manage()),
            (Grant::Collections(_), Need::GlobalRead) => Ok(()),
            (Grant::Collections(_), Need::Manage) => Err(manage()),
            (Grant::Collections(rules), Need::Read(c) | Need::Write(c)) => {
                let rule = rules.iter().find(|r| r.collection == c).ok_or_else(|| {
                    Refusal::Forbidden(format!("Forbidden: Access to collection {c} is required"))
                })?;
                if matches!(need, Need::Write(_)) && rule.access != "rw" {
                    return Err(Refusal::Forbidden(format!(
                        "Forbidden: Write access to collection {c} is required"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Whether a collection list entry is visible (JWT lists are filtered).
    pub fn sees(&self, collection: &str) -> bool {
        match self {
            Grant::Collections(rules) => rules.iter().any(|r| r.collection == collection),
            _ => true,
        }
    }
}
