//! Field-level validation. Every check reports which field failed and why, in words a person
//! can act on; Orion turns these into the `errors` member of a problem+json body.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One field that failed validation. `field` is a dotted path into the request body, e.g.
/// `configuration.node_configuration.cpu`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// Every field that failed, never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

impl ValidationError {
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.into(),
                reason: reason.into(),
            }],
        }
    }

    /// Whether `field` is among the failures (for tests and callers that map fields).
    pub fn has_field(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }
}

/// Collects failures so a request learns about every bad field at once, not one per retry.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Records `reason` against `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, reason: impl FnOnce() -> String) {
        if !ok {
            self.fail(field, reason());
        }
    }

    /// Checks that `value` lies in `min..=max`, with a reason that names the unit.
    pub fn range(&mut self, field: &str, value: u64, min: u64, max: u64, unit: &str) {
        self.check((min..=max).contains(&value), field, || {
            format!("must be between {min} and {max} {unit}, got {value}")
        });
    }

    /// Like [`Validator::range`], for bounds that hold only somewhere: the reason says where
    /// (`scope`, e.g. `region local/dev`), so the caller knows whose rule refused the value.
    pub fn range_in(
        &mut self,
        field: &str,
        value: u64,
        (min, max): (u64, u64),
        unit: &str,
        scope: &str,
    ) {
        self.check((min..=max).contains(&value), field, || {
            format!("must be between {min} and {max} {unit} in {scope}, got {value}")
        });
    }

    /// A display name: 2 to 64 characters of `[a-zA-Z0-9_-]`.
    pub fn name(&mut self, field: &str, value: &str) {
        if let Err(reason) = check_name(value) {
            self.fail(field, reason);
        }
    }

    /// A DNS label as used in endpoint hosts: 1 to 63 of `[a-z0-9-]`, not starting or ending
    /// with `-`. Lower case only, so that one region never has two spellings.
    pub fn dns_label(&mut self, field: &str, value: &str) {
        if let Err(reason) = check_dns_label(value) {
            self.fail(field, reason);
        }
    }

    pub fn finish(self) -> Result<(), ValidationError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                errors: self.errors,
            })
        }
    }
}

pub const NAME_MIN: usize = 2;
pub const NAME_MAX: usize = 64;
/// [`Validator::name`]'s characters as a regular expression (the length is checked apart), as
/// the OpenAPI schemas state it.
pub const NAME_PATTERN: &str = r"^[a-zA-Z0-9_-]+$";
/// [`check_dns_label`] as a regular expression, with a length of 1 to [`DNS_LABEL_MAX`].
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$";
pub const DNS_LABEL_MAX: usize = 63;

fn check_name(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if !(NAME_MIN..=NAME_MAX).contains(&len) {
        return Err(format!(
            "must be {NAME_MIN} to {NAME_MAX} characters long, got {len}"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "may contain only letters, digits, '_' and '-', found {c:?}"
        ));
    }
    Ok(())
}

/// Whether `value` is a lower-case DNS label (RFC 1123), the shape of a region or provider.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > DNS_LABEL_MAX {
        return Err(format!(
            "must be 1 to 63 characters long, got {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "may contain only lower-case letters, digits and '-', found {c:?}"
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err("must not start or end with '-'".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_rule() {
        for ok in ["ab", "prod-search_2", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", &"x".repeat(65), "has space", "dot.ted", "ünï"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_labels_are_lower_case_rfc1123() {
        for ok in ["a", "eu-west-1", "gcp", "x1"] {
            assert!(check_dns_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "EU", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validator_collects_every_failure() {
        let mut v = Validator::new();
        v.name("name", "x");
        v.range("configuration.num_nodes", 0, 1, 100, "nodes");
        v.dns_label("cloud_region", "ok");
        let err = v.finish().unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert!(err.has_field("name"));
        assert!(err.has_field("configuration.num_nodes"));
        assert!(err.to_string().contains("between 1 and 100 nodes, got 0"));
    }
}
