//! Accounts: the tenants of the platform. Everything a client owns hangs off one account.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, TokenId};
use crate::validation::{ValidationError, Validator};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
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
pub struct AccountToken {
    pub id: TokenId,
    pub account_id: AccountId,
    pub role: Role,
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
    fn roles_are_lower_case_on_the_wire() {
        assert_eq!(serde_json::to_string(&Role::Viewer).unwrap(), "\"viewer\"");
        assert!(serde_json::from_str::<Role>("\"owner\"").is_err());
        assert!(Role::Admin.can_write() && !Role::Viewer.can_write());
    }
}
