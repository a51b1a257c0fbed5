//! API-key verification, which GateKeeper runs on every request with whatever the client sent.
//!
//! Input: a mode byte, then
//! - even: any text, verified as a key. Whatever verifies must be exactly the key the signer
//!   issues for the claims it carries (no second spelling of a key is accepted);
//! - odd: 16 bytes of key id, 4 of expiry, 1 of access, then (position, byte) edits applied
//!   to a freshly issued key. An edited key that differs from the issued one never verifies.
#![no_main]

use std::sync::LazyLock;

use contract::ids::KeyId;
use contract::keyscheme::{KeyAccess, KeyClaims, KeySigner};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;

static SIGNER: LazyLock<KeySigner> = LazyLock::new(lyra_fuzz::signer);

/// The fixed "now" of every verification (2027-01-15): seeds expire after it or never.
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Timestamp::from_second(NOW).expect("a valid time");
    let cluster = lyra_fuzz::cluster();
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(claims) = SIGNER.verify(text, cluster, now) {
            let issued = SIGNER
                .issue(&claims)
                .expect("verified claims can be issued");
            assert_eq!(issued.expose(), text, "a second spelling of a key verified");
        }
        return;
    }
    if rest.len() < 21 {
        return;
    }
    let (head, edits) = rest.split_at(21);
    let mut id = [0u8; 16];
    id.copy_from_slice(&head[..16]);
    let offset = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
    let access = match head[20] % 3 {
        0 => KeyAccess::Manage,
        1 => KeyAccess::ReadOnly,
        _ => KeyAccess::Collections,
    };
    let claims = KeyClaims {
        cluster_id: cluster,
        key_id: KeyId::from_uuid(uuid::Uuid::from_bytes(id)),
        expires_at: (offset != 0)
            .then(|| Timestamp::from_second(NOW + i64::from(offset)).expect("a valid time")),
        access,
    };
    let key = SIGNER
        .issue(&claims)
        .expect("claims after 1970 can be issued");
    assert_eq!(SIGNER.verify(key.expose(), cluster, now), Ok(claims));
    let mut edited = key.expose().as_bytes().to_vec();
    for pair in edits.chunks_exact(2) {
        let at = usize::from(pair[0]) % edited.len();
        edited[at] = pair[1];
    }
    let Ok(edited) = std::str::from_utf8(&edited) else {
        return;
    };
    if edited != key.expose() {
        assert!(
            SIGNER.verify(edited, cluster, now).is_err(),
            "an edited key verified"
        );
    }
});
