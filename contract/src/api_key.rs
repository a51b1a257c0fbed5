//! API key metadata: what is stored about a key (never the key itself), and the access a
//! client asks for when creating one.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{ClusterId, KeyId, TokenId};
use crate::keyscheme::KeyAccess;
use crate::validation::Validator;

/// Access to one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CollectionAccess {
    /// Read only.
    #[serde(rename = "r")]
    Read,
    /// Read and write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// One collection rule of a collection-scoped key (Qdrant's JWT `access` claim shape).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CollectionRule {
    /// A Qdrant collection name: 1 to 255 characters, none of them `/`, `\`, a control
    /// character or white space (the pattern spells out Rust's `is_control` and
    /// `is_whitespace`).
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = r"^[^/\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
        )
    )]
    pub collection: String,
    pub access: CollectionAccess,
}

/// A whole-cluster access level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ClusterAccess {
    /// Everything, including creating and deleting collections.
    Manage,
    /// Reads only (searches through POST included, as in Qdrant).
    ReadOnly,
}

/// What a key may do: `"manage"`, `"read-only"`, or a list of collection rules.
// Its schema is written by hand (below): the derive cannot bound the list's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyScope {
    Cluster(ClusterAccess),
    /// 1 to [`MAX_COLLECTION_RULES`] rules, each naming a different collection.
    Collections(Vec<CollectionRule>),
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for KeyScope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::ToSchema;
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref};
        OneOfBuilder::new()
            .item(Ref::from_schema_name(ClusterAccess::name()))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(CollectionRule::name()))
                    .min_items(Some(1))
                    .max_items(Some(MAX_COLLECTION_RULES))
                    .description(Some(format!(
                        "1 to {MAX_COLLECTION_RULES} rules, each naming a different collection."
                    ))),
            )
            .description(Some(
                "What a key may do: `\"manage\"`, `\"read-only\"`, or a list of collection rules.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for KeyScope {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((ClusterAccess::name().into(), ClusterAccess::schema()));
        <ClusterAccess as utoipa::ToSchema>::schemas(schemas);
        schemas.push((CollectionRule::name().into(), CollectionRule::schema()));
        <CollectionRule as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Most collection rules one key may carry: they travel in every upstream JWT.
pub const MAX_COLLECTION_RULES: usize = 100;

impl KeyScope {
    /// The access class signed into the key itself.
    pub fn key_access(&self) -> KeyAccess {
        match self {
            KeyScope::Cluster(ClusterAccess::Manage) => KeyAccess::Manage,
            KeyScope::Cluster(ClusterAccess::ReadOnly) => KeyAccess::ReadOnly,
            KeyScope::Collections(_) => KeyAccess::Collections,
        }
    }

    pub fn validate_into(&self, v: &mut Validator, field: &str) {
        let KeyScope::Collections(rules) = self else {
            return;
        };
        v.check(
            (1..=MAX_COLLECTION_RULES).contains(&rules.len()),
            field,
            || format!("must list 1 to {MAX_COLLECTION_RULES} collection rules"),
        );
        for (i, rule) in rules.iter().enumerate() {
            if let Err(reason) = check_collection_name(&rule.collection) {
                v.fail(format!("{field}[{i}].collection"), reason);
            }
        }
        let mut names: Vec<_> = rules.iter().map(|r| r.collection.as_str()).collect();
        names.sort_unstable();
        v.check(names.windows(2).all(|w| w[0] != w[1]), field, || {
            "names the same collection twice".to_owned()
        });
    }
}

/// Most characters (not bytes: JSON Schema's `maxLength` counts characters, and so does
/// Qdrant) in a collection name.
pub const COLLECTION_NAME_MAX: usize = 255;

/// Qdrant collection names: 1 to 255 characters, none of them a path separator, a control
/// character or white space.
fn check_collection_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > COLLECTION_NAME_MAX {
        return Err("must be 1 to 255 characters long".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(format!("may not contain {c:?}"));
    }
    Ok(())
}

/// A key as stored and listed. The key itself is shown once, at creation, and never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyMetadata {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: KeyId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub cluster_id: ClusterId,
    pub name: String,
    pub access: KeyScope,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// The last characters of the key, so a person can tell keys apart.
    pub postfix: String,
    /// The account token that created the key; `None` for the operator.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub created_by: Option<TokenId>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_as_the_api_documents_them() {
        let manage: KeyScope = serde_json::from_str("\"manage\"").unwrap();
        assert_eq!(manage, KeyScope::Cluster(ClusterAccess::Manage));
        let ro: KeyScope = serde_json::from_str("\"read-only\"").unwrap();
        assert_eq!(ro.key_access(), KeyAccess::ReadOnly);
        let rules: KeyScope = serde_json::from_str(
            r#"[{"collection":"a","access":"r"},{"collection":"b","access":"rw"}]"#,
        )
        .unwrap();
        assert_eq!(rules.key_access(), KeyAccess::Collections);
        for bad in [
            "\"admin\"",
            "[{\"collection\":\"a\",\"access\":\"w\"}]",
            "[{\"collection\":\"a\"}]",
            "{}",
        ] {
            assert!(serde_json::from_str::<KeyScope>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn collection_rules_are_validated() {
        let rule = |c: &str| CollectionRule {
            collection: c.into(),
            access: CollectionAccess::Read,
        };
        let check = |scope: KeyScope| {
            let mut v = Validator::new();
            scope.validate_into(&mut v, "access");
            v.finish()
        };
        assert!(check(KeyScope::Collections(vec![rule("a"), rule("b")])).is_ok());
        assert!(check(KeyScope::Collections(vec![])).is_err());
        assert!(check(KeyScope::Collections(vec![rule("a"), rule("a")])).is_err());
        // Characters, not bytes, as JSON Schema's maxLength and Qdrant count them.
        assert!(check(KeyScope::Collections(vec![rule(&"é".repeat(255))])).is_ok());
        assert!(check(KeyScope::Collections(vec![rule(&"é".repeat(256))])).is_err());
        let err = check(KeyScope::Collections(vec![rule("ok"), rule("a/b")])).unwrap_err();
        assert!(err.has_field("access[1].collection"));
        assert!(check(KeyScope::Cluster(ClusterAccess::Manage)).is_ok());
    }
}
