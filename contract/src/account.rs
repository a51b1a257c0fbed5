//! Accounts: the tenants of the platform. Everything a client owns hangs off one account.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ids::{AccountId, TokenId};
use crate::random::{self, RandomError};
use crate::validation::{ValidationError, Validator};

/// Every account token starts with this, so people and secret scanners can recognise one.
pub const TOKEN_PREFIX: &str = "lyra_at_";

/// A new account token: the prefix and 40 random alphanumerics (238 bits).
pub fn generate_token() -> Result<Zeroizing<String>, RandomError> {
    Ok(Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        random::alphanumeric(40)?
    )))
}

/// How a token is stored and looked up: lower-case hex SHA-256. Tokens carry 238 random bits,
/// so a fast hash is enough; no one can search that space.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

impl Account {
    pub fn new(name: String, now: Timestamp) -> Result<Self, ValidationError> {
        let mut v = Validator::new();
        v.name("name", &name);
        v.finish()?;
        Ok(Self {
            id: AccountId::new(),
            name,
            created_at: now,
        })
    }
}

/// What an account token may do. Viewers read; admins also write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin)
    }
}

/// An account token as stored: the token itself is never kept, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountToken {
    pub id: TokenId,
    pub account_id: AccountId,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_validated() {
        assert!(Account::new("acme".into(), Timestamp::UNIX_EPOCH).is_ok());
        let err = Account::new("a".into(), Timestamp::UNIX_EPOCH).unwrap_err();
        assert!(err.has_field("name"));
    }

    #[test]
    fn tokens_are_prefixed_random_and_stored_by_hash() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 40);
        assert_ne!(*a, *b);
        assert_eq!(token_hash(&a).len(), 64);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_are_lower_case_on_the_wire() {
        assert_eq!(serde_json::to_string(&Role::Viewer).unwrap(), "\"viewer\"");
        assert!(serde_json::from_str::<Role>("\"owner\"").is_err());
        assert!(Role::Admin.can_write() && !Role::Viewer.can_write());
    }
}
