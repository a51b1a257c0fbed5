//! What a request needs of a key (method and path), and whether a key's scope allows it: the
//! check GateKeeper makes before anything reaches a cluster.
//!
//! Input: one byte choosing the method, then the path. Invariants beyond not panicking:
//! - a collection named by the classification is the path's second segment;
//! - GET and HEAD never need more than a read;
//! - a manage key is allowed everything; a read-only key nothing but reads;
//! - a collection key is allowed a collection only by its own rule, and writes only by a
//!   read-write rule.
#![no_main]

use contract::api_key::{CollectionAccess, CollectionRule};
use contract::keyscheme::KeyAccess;
use gateway::scope::{Need, allows, need};
use http::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let method = match choice % 8 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        4 => Method::DELETE,
        5 => Method::PATCH,
        6 => Method::OPTIONS,
        _ => Method::from_bytes(b"PURGE").expect("a valid token"),
    };
    let needed = need(&method, path);
    if let Need::Read(c) | Need::Write(c) = needed {
        // Found another way: what follows the leading `collections/`, up to the next slash.
        let named = path
            .trim_start_matches('/')
            .strip_prefix("collections/")
            .map(|rest| {
                rest.split_once('/')
                    .map_or(rest.trim_end_matches('/'), |(c, _)| c)
            });
        assert_eq!(
            named,
            Some(c),
            "{method} {path:?} names the wrong collection"
        );
    }
    if method == Method::GET || method == Method::HEAD {
        assert!(
            !matches!(needed, Need::Write(_)),
            "{method} {path:?} classified as a write"
        );
    }
    assert!(allows(KeyAccess::Manage, &[], needed).is_ok());
    let read_only = allows(KeyAccess::ReadOnly, &[], needed).is_ok();
    assert_eq!(
        read_only,
        matches!(needed, Need::Public | Need::GlobalRead | Need::Read(_))
    );
    if let Need::Read(c) | Need::Write(c) = needed {
        assert!(allows(KeyAccess::Collections, &[], needed).is_err());
        let rule = |access| CollectionRule {
            collection: c.to_owned(),
            access,
        };
        let other = CollectionRule {
            collection: format!("{c}x"),
            access: CollectionAccess::ReadWrite,
        };
        assert!(allows(KeyAccess::Collections, &[other], needed).is_err());
        assert!(
            allows(
                KeyAccess::Collections,
                &[rule(CollectionAccess::ReadWrite)],
                needed
            )
            .is_ok()
        );
        assert_eq!(
            allows(
                KeyAccess::Collections,
                &[rule(CollectionAccess::Read)],
                needed
            )
            .is_ok(),
            matches!(needed, Need::Read(_))
        );
    }
});
