//! The key scheme against fixed vectors and properties.
//!
//! The vectors were computed with an independent implementation (Python's `hmac`, `hashlib`
//! and a textbook HKDF), so they check this crate rather than restate it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use contract::ids::{ClusterId, KeyId};
use contract::keyscheme::{
    ClusterSecret, KEY_LEN, KeyAccess, KeyClaims, KeyRejection, KeySigner, SECRET_LEN, SecretKind,
};
use jiff::Timestamp;
use proptest::prelude::*;

const SECRET: &str = "Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE";
const CLUSTER: &str = "0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a99";
const KEY_ID: &str = "6f1d2c3b-4a59-4e87-9d6c-5b4a39281706";

/// (expiry in unix seconds or 0, access, expected key)
const VECTORS: [(i64, KeyAccess, &str); 3] = [
    (
        1_893_456_000, // 2030-01-01T00:00:00Z
        KeyAccess::Manage,
        "lyra_AQtcPkqdL0weins_bS4cCplvHSw7SllOh51sW0o5KBcGAAAAAHDb2IABvW90szQwf3W8ZCT_vXmJ1eyzW6fah-QM",
    ),
    (
        0,
        KeyAccess::ReadOnly,
        "lyra_AQtcPkqdL0weins_bS4cCplvHSw7SllOh51sW0o5KBcGAAAAAAAAAAACHLW5Lmip8jc60865wITkzB6AnWshyh7s",
    ),
    (
        4_102_444_800, // 2100-01-01T00:00:00Z
        KeyAccess::Collections,
        "lyra_AQtcPkqdL0weins_bS4cCplvHSw7SllOh51sW0o5KBcGAAAAAPSGVwADhdo07zPM56Nw_bKCo9vDUGOON__m-d7E",
    ),
];

fn signer() -> KeySigner {
    KeySigner::new(&ClusterSecret::parse(SECRET).unwrap())
}

fn cluster() -> ClusterId {
    CLUSTER.parse().unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn claims(expiry: i64, access: KeyAccess) -> KeyClaims {
    KeyClaims {
        cluster_id: cluster(),
        key_id: KEY_ID.parse().unwrap(),
        expires_at: (expiry != 0).then(|| at(expiry)),
        access,
    }
}

#[test]
fn issuing_matches_the_independent_vectors() {
    for (expiry, access, want) in VECTORS {
        let key = signer().issue(&claims(expiry, access)).unwrap();
        assert_eq!(key.expose(), want);
        assert_eq!(key.expose().len(), KEY_LEN);
        assert_eq!(key.postfix(), &want[want.len() - 6..]);
    }
}

#[test]
fn vectors_verify_to_their_claims() {
    let now = at(1_800_000_000);
    for (expiry, access, key) in VECTORS {
        let got = signer().verify(key, cluster(), now).unwrap();
        assert_eq!(got, claims(expiry, access));
    }
}

#[test]
fn a_key_expires_at_its_expiry_second() {
    let key = VECTORS[0].2;
    let expiry = VECTORS[0].0;
    assert!(signer().verify(key, cluster(), at(expiry - 1)).is_ok());
    assert_eq!(
        signer().verify(key, cluster(), at(expiry)),
        Err(KeyRejection::Expired)
    );
    assert_eq!(
        signer().verify(key, cluster(), at(expiry + 3600)),
        Err(KeyRejection::Expired)
    );
    // A key without expiry never expires.
    assert!(
        signer()
            .verify(VECTORS[1].2, cluster(), at(i64::from(i32::MAX) * 100))
            .is_ok()
    );
}

#[test]
fn malformed_keys_are_told_apart_from_forged_ones() {
    let now = at(1_800_000_000);
    let valid = VECTORS[0].2;
    let s = signer();
    for bad in [
        "",
        "lyra_",
        "lyra_short",
        &valid[1..],                      // prefix damaged
        &format!("{valid}A"),             // too long
        &valid.replace("lyra_", "LYRA_"), // prefix is case-sensitive
        &format!("lyra_{}", "!".repeat(88)),
        &valid.replacen("lyra_AQ", "lyra_Ag", 1), // version 2
        SECRET,                                   // the cluster secret itself is not a key
    ] {
        assert_eq!(
            s.verify(bad, cluster(), now),
            Err(KeyRejection::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn a_key_for_another_cluster_is_refused() {
    let now = at(1_800_000_000);
    let other = ClusterId::new();
    assert_eq!(
        signer().verify(VECTORS[0].2, other, now),
        Err(KeyRejection::WrongCluster)
    );
}

#[test]
fn a_key_signed_with_another_secret_is_refused() {
    let other = KeySigner::new(&ClusterSecret::generate().unwrap());
    let forged = other.issue(&claims(0, KeyAccess::Manage)).unwrap();
    assert_eq!(
        signer().verify(forged.expose(), cluster(), Timestamp::now()),
        Err(KeyRejection::BadSignature)
    );
}

#[test]
fn expiry_before_the_epoch_cannot_be_issued() {
    let mut c = claims(0, KeyAccess::Manage);
    c.expires_at = Some(at(-5));
    assert!(signer().issue(&c).is_err());
}

#[test]
fn secrets_are_32_alphanumerics_and_never_printed() {
    let s = ClusterSecret::generate().unwrap();
    assert_eq!(s.expose().len(), SECRET_LEN);
    assert!(s.expose().bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(!format!("{s:?}").contains(s.expose()));
    let key = KeySigner::new(&s)
        .issue(&claims(0, KeyAccess::Manage))
        .unwrap();
    assert!(!format!("{key:?}").contains(key.expose()));
    for bad in [
        "",
        "short",
        &"a".repeat(33),
        &format!("{}!", "a".repeat(31)),
    ] {
        assert!(ClusterSecret::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn seal_contexts_bind_cluster_and_kind() {
    let c = cluster();
    assert_ne!(
        SecretKind::ReadWrite.seal_context(c),
        SecretKind::ReadOnly.seal_context(c)
    );
    assert_ne!(
        SecretKind::ReadWrite.seal_context(c),
        SecretKind::ReadWrite.seal_context(ClusterId::new())
    );
}

fn any_access() -> impl Strategy<Value = KeyAccess> {
    prop_oneof![
        Just(KeyAccess::Manage),
        Just(KeyAccess::ReadOnly),
        Just(KeyAccess::Collections)
    ]
}

fn any_secret() -> impl Strategy<Value = ClusterSecret> {
    "[A-Za-z0-9]{32}".prop_map(|s| ClusterSecret::parse(&s).unwrap())
}

fn any_claims() -> impl Strategy<Value = KeyClaims> {
    (
        any::<u128>(),
        any::<u128>(),
        prop::option::of(1i64..=253_402_300_799), // up to 9999-12-31
        any_access(),
    )
        .prop_map(|(c, k, expiry, access)| KeyClaims {
            cluster_id: ClusterId::from_uuid(uuid::Uuid::from_u128(c)),
            key_id: KeyId::from_uuid(uuid::Uuid::from_u128(k)),
            expires_at: expiry.map(at),
            access,
        })
}

/// Every character a key may contain, and a few it may not.
const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.!~ ";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn issued_keys_verify_to_their_claims(secret in any_secret(), claims in any_claims()) {
        let signer = KeySigner::new(&secret);
        let key = signer.issue(&claims).unwrap();
        let now = at(0);
        prop_assert_eq!(signer.verify(key.expose(), claims.cluster_id, now), Ok(claims));
    }

    #[test]
    fn every_single_character_change_is_rejected(secret in any_secret(), claims in any_claims()) {
        let signer = KeySigner::new(&secret);
        let key = signer.issue(&claims).unwrap();
        let key = key.expose();
        let now = at(0);
        for (i, original) in key.char_indices() {
            for replacement in ALPHABET.chars().filter(|c| *c != original) {
                let mut changed = key.to_owned();
                changed.replace_range(i..i + 1, replacement.encode_utf8(&mut [0; 4]));
                prop_assert!(
                    signer.verify(&changed, claims.cluster_id, now).is_err(),
                    "changing position {} to {:?} was accepted", i, replacement
                );
            }
        }
    }

    #[test]
    fn a_key_for_cluster_a_never_verifies_for_cluster_b(
        secret in any_secret(),
        claims in any_claims(),
        other in any::<u128>(),
    ) {
        let other = ClusterId::from_uuid(uuid::Uuid::from_u128(other));
        prop_assume!(other != claims.cluster_id);
        let signer = KeySigner::new(&secret);
        let key = signer.issue(&claims).unwrap();
        prop_assert_eq!(
            signer.verify(key.expose(), other, at(0)),
            Err(KeyRejection::WrongCluster)
        );
    }

    #[test]
    fn a_key_never_verifies_under_another_secret(
        a in any_secret(),
        b in any_secret(),
        claims in any_claims(),
    ) {
        prop_assume!(a != b);
        let key = KeySigner::new(&a).issue(&claims).unwrap();
        prop_assert_eq!(
            KeySigner::new(&b).verify(key.expose(), claims.cluster_id, at(0)),
            Err(KeyRejection::BadSignature)
        );
    }

    #[test]
    fn arbitrary_input_never_panics_and_never_verifies(input in ".{0,120}") {
        prop_assert!(signer().verify(&input, cluster(), at(0)).is_err());
    }
}
