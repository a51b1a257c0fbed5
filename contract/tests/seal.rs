//! Sealing round-trips, tamper detection and key rotation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use contract::seal::{Keyring, PlatformKey, PlatformKeyError, Purpose, SealError, Sealed};

const CONTEXT: &str = "lyra/cluster/0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a99/read-write";

fn keyring() -> Keyring {
    Keyring::new(PlatformKey::generate().unwrap().0, vec![])
}

#[test]
fn sealing_round_trips_and_hides_the_plaintext() {
    let ring = keyring();
    let secret = b"Zq8vN3xR7tLp2WcY5kHm9JdF4sBg6QaE";
    let sealed = ring.seal(secret, CONTEXT).unwrap();
    assert_eq!(&ring.unseal(&sealed, CONTEXT).unwrap()[..], secret);
    let stored = serde_json::to_string(&sealed).unwrap();
    assert!(!stored.contains("Zq8vN3xR7tLp"));
    assert!(!format!("{sealed:?}").contains(&sealed.ciphertext));
    // Fresh nonce every time: sealing twice never gives the same bytes.
    assert_ne!(ring.seal(secret, CONTEXT).unwrap(), sealed);
}

#[test]
fn the_platform_key_id_is_a_fixed_function_of_the_key() {
    // Computed independently as HMAC-SHA256(key, "lyra platform key id")[..8] in hex.
    let key = PlatformKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    assert_eq!(key.id(), "11d3111c37a361c4");
    // Padding and a trailing newline (as in a key file) are accepted.
    let again = PlatformKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n").unwrap();
    assert_eq!(again.id(), key.id());
    assert!(!format!("{key:?}").contains("AAECAw"));
}

#[test]
fn bad_platform_keys_are_typed_errors() {
    assert_eq!(
        PlatformKey::from_base64("not base64 at all!").unwrap_err(),
        PlatformKeyError::NotBase64
    );
    assert_eq!(
        PlatformKey::from_base64("AAECAw==").unwrap_err(),
        PlatformKeyError::WrongLength(4)
    );
    assert_eq!(
        PlatformKey::from_base64("").unwrap_err(),
        PlatformKeyError::WrongLength(0)
    );
}

fn tampered(sealed: &Sealed, field: fn(&mut Sealed) -> &mut String, at: usize) -> Sealed {
    let mut copy = sealed.clone();
    let s = field(&mut copy);
    let c = s.as_bytes()[at];
    let swap = if c == b'A' { "B" } else { "A" };
    s.replace_range(at..at + 1, swap);
    copy
}

#[test]
fn any_tampering_is_detected() {
    let ring = keyring();
    let sealed = ring.seal(b"secret material", CONTEXT).unwrap();
    for at in 0..sealed.ciphertext.len() - 1 {
        let bad = tampered(&sealed, |s| &mut s.ciphertext, at);
        assert!(
            matches!(ring.unseal(&bad, CONTEXT), Err(SealError::Unauthentic)),
            "ciphertext position {at}"
        );
    }
    for at in 0..sealed.nonce.len() - 1 {
        let bad = tampered(&sealed, |s| &mut s.nonce, at);
        assert!(
            matches!(ring.unseal(&bad, CONTEXT), Err(SealError::Unauthentic)),
            "nonce position {at}"
        );
    }
    let mut truncated = sealed.clone();
    truncated.ciphertext.truncate(10);
    assert!(ring.unseal(&truncated, CONTEXT).is_err());
    let mut bad_b64 = sealed.clone();
    bad_b64.nonce = "***".into();
    assert!(matches!(
        ring.unseal(&bad_b64, CONTEXT),
        Err(SealError::Malformed(_))
    ));
    let mut alg = sealed.clone();
    alg.alg = "aes-128-ecb".into();
    assert!(matches!(
        ring.unseal(&alg, CONTEXT),
        Err(SealError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn a_sealed_value_opens_only_in_its_context() {
    let ring = keyring();
    let sealed = ring.seal(b"secret", CONTEXT).unwrap();
    let elsewhere = CONTEXT.replace("read-write", "read-only");
    assert!(matches!(
        ring.unseal(&sealed, &elsewhere),
        Err(SealError::Unauthentic)
    ));
}

#[test]
fn the_wrong_platform_key_is_refused() {
    let sealed = keyring().seal(b"secret", CONTEXT).unwrap();
    let other = keyring();
    assert!(matches!(
        other.unseal(&sealed, CONTEXT),
        Err(SealError::UnknownKey { .. })
    ));
    // Even a key that claims the right id cannot open it.
    let mut forged = sealed.clone();
    forged.kid = other.current_id(Purpose::Serving).unwrap().to_owned();
    assert!(matches!(
        other.unseal(&forged, CONTEXT),
        Err(SealError::Unauthentic)
    ));
}

#[test]
fn rotation_opens_old_values_and_reseals_with_the_new_key() {
    let (old_key, old_b64) = PlatformKey::generate().unwrap();
    let old_ring = Keyring::new(old_key, vec![]);
    let sealed = old_ring.seal(b"secret", CONTEXT).unwrap();

    let (new_key, _) = PlatformKey::generate().unwrap();
    let previous = PlatformKey::from_base64(&old_b64).unwrap();
    let rotated = Keyring::new(new_key, vec![previous]);
    assert!(rotated.needs_reseal(&sealed, CONTEXT));
    assert_eq!(&rotated.unseal(&sealed, CONTEXT).unwrap()[..], b"secret");

    let resealed = rotated.reseal(&sealed, CONTEXT).unwrap();
    assert_eq!(
        Some(resealed.kid.as_str()),
        rotated.current_id(Purpose::Serving)
    );
    assert!(!rotated.needs_reseal(&resealed, CONTEXT));
    assert_eq!(&rotated.unseal(&resealed, CONTEXT).unwrap()[..], b"secret");
    // The old ring alone cannot read what the new key sealed.
    assert!(old_ring.unseal(&resealed, CONTEXT).is_err());
}

#[test]
fn unknown_fields_in_a_stored_value_are_refused() {
    let sealed = keyring().seal(b"x", CONTEXT).unwrap();
    let mut json = serde_json::to_value(&sealed).unwrap();
    json["extra"] = "1".into();
    assert!(serde_json::from_value::<Sealed>(json).is_err());
}

const CA_CONTEXT: &str = "lyra/ca/key";
const PLATFORM_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[test]
fn purpose_keys_are_a_fixed_one_way_function_of_the_platform_key() {
    // Computed independently (Python's hmac): HKDF-SHA256(salt "lyra/seal/purpose",
    // ikm = the platform key, info = the purpose's name), 32 bytes.
    let platform = PlatformKey::from_base64(PLATFORM_B64).unwrap();
    assert_eq!(platform.derive(Purpose::Serving).id(), "eb95870d43e1406e");
    assert_eq!(platform.derive(Purpose::Authority).id(), "ee339f95131033b4");
    let ring = Keyring::from_config(PLATFORM_B64, &[]).unwrap();
    assert_eq!(
        ring.gateway_key().unwrap().as_str(),
        "a9RM5wrKTQUeYkfDTJ5u2qM0tgSaTR9Xwcm/ucy/ZZw="
    );
    assert_eq!(ring.current_id(Purpose::Serving), Some("eb95870d43e1406e"));
    assert_eq!(
        ring.current_id(Purpose::Authority),
        Some("ee339f95131033b4")
    );
    assert_eq!(Purpose::of_context(CA_CONTEXT), Purpose::Authority);
    assert_eq!(Purpose::of_context(CONTEXT), Purpose::Serving);
    assert_eq!(
        Purpose::of_context("lyra/cert/aws/us-east-1/key"),
        Purpose::Serving
    );
}

#[test]
fn the_gateway_keyring_opens_what_it_serves_with_and_never_the_ca_key() {
    let full = Keyring::from_config(PLATFORM_B64, &[]).unwrap();
    let gateway_key = full.gateway_key().unwrap();
    let gateway = Keyring::serving_from_config(&gateway_key, &[]).unwrap();
    assert!(
        gateway.gateway_key().is_none(),
        "it cannot hand out what it does not hold"
    );

    let secret = full.seal(b"cluster secret", CONTEXT).unwrap();
    assert_eq!(
        &gateway.unseal(&secret, CONTEXT).unwrap()[..],
        b"cluster secret"
    );

    let ca_key = full
        .seal(b"-----BEGIN PRIVATE KEY-----", CA_CONTEXT)
        .unwrap();
    assert_eq!(
        &full.unseal(&ca_key, CA_CONTEXT).unwrap()[..],
        b"-----BEGIN PRIVATE KEY-----"
    );
    assert!(matches!(
        gateway.unseal(&ca_key, CA_CONTEXT),
        Err(SealError::OutOfScope {
            purpose: Purpose::Authority
        })
    ));
    // Nor by presenting the CA's blob under a serving context: its key id is not one the
    // gateway holds, and the context is bound into the ciphertext anyway.
    assert!(gateway.unseal(&ca_key, CONTEXT).is_err());
    assert!(matches!(
        gateway.seal(b"x", CA_CONTEXT),
        Err(SealError::OutOfScope { .. })
    ));
    assert_eq!(gateway.current_id(Purpose::Authority), None);
}

#[test]
fn a_gateway_given_the_platform_key_is_told_so() {
    let full = Keyring::from_config(PLATFORM_B64, &[]).unwrap();
    let sealed = full.seal(b"secret", CONTEXT).unwrap();
    let mistaken = Keyring::serving_from_config(PLATFORM_B64, &[]).unwrap();
    let err = mistaken.unseal(&sealed, CONTEXT).unwrap_err();
    assert!(matches!(err, SealError::PlatformKeyGiven), "{err}");
    assert!(err.to_string().contains("lyra platform-key gateway"));
    assert!(!err.to_string().contains(PLATFORM_B64));
    let err = Keyring::serving_from_config("short", &[]).unwrap_err();
    assert_eq!(err.setting, "LYRA_GATEWAY_KEY");
}

#[test]
fn values_sealed_before_purposes_open_with_the_platform_key_and_reseal_for_the_gateway() {
    // Before purposes, values were sealed under the platform key itself: a keyring holding
    // only that key as its serving key seals exactly such a value.
    let platform = PlatformKey::from_base64(PLATFORM_B64).unwrap();
    let old = Keyring::serving_only(platform, vec![])
        .seal(b"old secret", CONTEXT)
        .unwrap();
    assert_eq!(old.kid, "11d3111c37a361c4", "the platform key's own id");

    let full = Keyring::from_config(PLATFORM_B64, &[]).unwrap();
    assert_eq!(&full.unseal(&old, CONTEXT).unwrap()[..], b"old secret");
    assert!(full.needs_reseal(&old, CONTEXT));
    let gateway = Keyring::serving_from_config(&full.gateway_key().unwrap(), &[]).unwrap();
    assert!(matches!(
        gateway.unseal(&old, CONTEXT),
        Err(SealError::UnknownKey { .. })
    ));

    let resealed = full.reseal(&old, CONTEXT).unwrap();
    assert!(!full.needs_reseal(&resealed, CONTEXT));
    assert_eq!(
        &gateway.unseal(&resealed, CONTEXT).unwrap()[..],
        b"old secret"
    );
}

#[test]
fn a_rotated_gateway_key_still_opens_values_of_the_previous_one() {
    let (old_key, old_b64) = PlatformKey::generate().unwrap();
    let sealed = Keyring::new(old_key, vec![]).seal(b"s", CONTEXT).unwrap();
    let (new_key, new_b64) = PlatformKey::generate().unwrap();
    let rotated = Keyring::new(new_key, vec![PlatformKey::from_base64(&old_b64).unwrap()]);
    let old_gateway = Keyring::from_config(&old_b64, &[])
        .unwrap()
        .gateway_key()
        .unwrap();
    let new_gateway = Keyring::from_config(&new_b64, &[])
        .unwrap()
        .gateway_key()
        .unwrap();
    assert_eq!(
        rotated.gateway_key().unwrap().as_str(),
        new_gateway.as_str()
    );
    let gateway = Keyring::serving_from_config(&new_gateway, &[old_gateway.to_string()]).unwrap();
    assert_eq!(&gateway.unseal(&sealed, CONTEXT).unwrap()[..], b"s");
}
