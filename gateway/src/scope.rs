//! What a REST request needs, and whether a key's scope allows it (Qdrant's own rules: see
//! shared/QDRANT-FACTS.md). GateKeeper refuses with 403 before anything reaches the cluster;
//! the upstream credential it sends enforces the same rules again inside Qdrant.

use contract::api_key::{CollectionAccess, CollectionRule};
use contract::keyscheme::KeyAccess;
use http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Nothing to check: probes and the version answer.
    Public,
    /// Reads not tied to one collection (the collection list, cluster info).
    GlobalRead,
    /// Creating, changing or deleting collections, and anything unknown.
    Manage,
    Read(&'a str),
    Write(&'a str),
}

/// Point routes that only read, though sent with POST.
fn reads_points(rest: &[&str]) -> bool {
    rest.is_empty()
        || matches!(
            rest[0],
            "search" | "query" | "scroll" | "count" | "recommend" | "discover"
        )
}

pub fn need<'a>(method: &Method, path: &'a str) -> Need<'a> {
    let segments: Vec<&'a str> = path.trim_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    match segments.as_slice() {
        [""] | ["healthz"] | ["livez"] | ["readyz"] => Need::Public,
        ["collections"] if read => Need::GlobalRead,
        ["collections", c] if read => Need::Read(c),
        ["collections", c, "points", rest @ ..] => {
            if read || (method == Method::POST && reads_points(rest)) {
                Need::Read(c)
            } else {
                Need::Write(c)
            }
        }
        ["collections", c, ..] if read => Need::Read(c),
        ["cluster" | "telemetry" | "metrics", ..] if read => Need::GlobalRead,
        _ => Need::Manage,
    }
}

/// Whether a request may be sent to a node twice: HTTP's idempotent methods (RFC 9110
/// §9.2.2), and Qdrant's reads sent with POST (search, query, scroll, count, ...). Used when a
/// pooled connection is found closed and the node may or may not have seen the request.
pub fn safe_to_repeat(req: &pingora::http::RequestHeader) -> bool {
    match req.method {
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE => true,
        Method::POST => matches!(
            need(&req.method, req.uri.path()),
            Need::Read(_) | Need::GlobalRead
        ),
        _ => false,
    }
}

const MANAGE: &str = "Forbidden: Global manage access is required";

/// `Ok` when `access` (with `rules` for collection keys) allows `need`; else the message.
pub fn allows(access: KeyAccess, rules: &[CollectionRule], need: Need<'_>) -> Result<(), String> {
    match (access, need) {
        (_, Need::Public) | (KeyAccess::Manage, _) => Ok(()),
        (KeyAccess::ReadOnly, Need::GlobalRead | Need::Read(_)) => Ok(()),
        (KeyAccess::ReadOnly, _) => Err(MANAGE.to_owned()),
        (KeyAccess::Collections, Need::GlobalRead) => Ok(()),
        (KeyAccess::Collections, Need::Manage) => Err(MANAGE.to_owned()),
        (KeyAccess::Collections, Need::Read(c) | Need::Write(c)) => {
            let rule = rules
                .iter()
                .find(|r| r.collection == c)
                .ok_or_else(|| format!("Forbidden: Access to collection {c} is required"))?;
            if matches!(need, Need::Write(_)) && rule.access != CollectionAccess::ReadWrite {
                return Err(format!(
                    "Forbidden: Write access to collection {c} is required"
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(c: &str, access: CollectionAccess) -> CollectionRule {
        CollectionRule {
            collection: c.into(),
            access,
        }
    }

    #[test]
    fn routes_map_to_what_they_need() {
        assert_eq!(need(&Method::GET, "/"), Need::Public);
        assert_eq!(need(&Method::GET, "/collections"), Need::GlobalRead);
        assert_eq!(need(&Method::GET, "/collections/a"), Need::Read("a"));
        assert_eq!(need(&Method::PUT, "/collections/a"), Need::Manage);
        assert_eq!(
            need(&Method::POST, "/collections/a/points/search"),
            Need::Read("a")
        );
        assert_eq!(
            need(&Method::POST, "/collections/a/points/query/batch"),
            Need::Read("a")
        );
        assert_eq!(
            need(&Method::PUT, "/collections/a/points"),
            Need::Write("a")
        );
        assert_eq!(
            need(&Method::POST, "/collections/a/points/delete"),
            Need::Write("a")
        );
        assert_eq!(need(&Method::POST, "/snapshots/recover"), Need::Manage);
    }

    #[test]
    fn scopes_follow_qdrant() {
        let rules = [
            rule("a", CollectionAccess::Read),
            rule("b", CollectionAccess::ReadWrite),
        ];
        assert!(allows(KeyAccess::ReadOnly, &[], Need::Read("x")).is_ok());
        assert_eq!(
            allows(KeyAccess::ReadOnly, &[], Need::Write("x")).unwrap_err(),
            MANAGE
        );
        assert!(allows(KeyAccess::Collections, &rules, Need::Read("a")).is_ok());
        assert_eq!(
            allows(KeyAccess::Collections, &rules, Need::Write("a")).unwrap_err(),
            "Forbidden: Write access to collection a is required"
        );
        assert!(allows(KeyAccess::Collections, &rules, Need::Write("b")).is_ok());
        assert_eq!(
            allows(KeyAccess::Collections, &rules, Need::Read("c")).unwrap_err(),
            "Forbidden: Access to collection c is required"
        );
        assert!(allows(KeyAccess::Collections, &rules, Need::Manage).is_err());
        assert!(allows(KeyAccess::Manage, &[], Need::Manage).is_ok());
    }
}
