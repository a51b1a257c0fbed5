//! Typed identifiers. Each wraps a UUID so that a cluster id can never be passed where an
//! account id is expected; on the wire each is the plain hyphenated UUID string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $new:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh identifier.
            pub fn new() -> Self {
                Self(Uuid::$new())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// An account (a tenant). Random (v4): account ids appear in URLs and must not be guessable.
    AccountId,
    new_v4
);
uuid_id!(
    /// A cluster. Random (v4): the id is the first label of the public endpoint host.
    ClusterId,
    new_v4
);
uuid_id!(
    /// An API key's id, signed into the key itself and used to revoke it.
    KeyId,
    new_v4
);
uuid_id!(
    /// A command. Time-ordered (v7), so ids sort in the order commands were issued.
    CommandId,
    now_v7
);
uuid_id!(
    /// An account token (the credential a person or script uses against Orion).
    TokenId,
    new_v4
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_plain_uuid_strings() {
        let id = ClusterId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: ClusterId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string().parse::<ClusterId>().unwrap(), id);
    }

    #[test]
    fn command_ids_are_uuid_v7_and_ordered() {
        let a = CommandId::new();
        let b = CommandId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a <= b);
    }

    #[test]
    fn garbage_is_not_an_id() {
        assert!("not-a-uuid".parse::<AccountId>().is_err());
        assert!("".parse::<KeyId>().is_err());
    }
}
