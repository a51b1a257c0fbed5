//! Opening a sealed secret, as Nebula, Orion and GateKeeper do with what they read from Redis.
//!
//! Input: a mode byte, then
//! - even: any bytes as the stored JSON of a sealed value, opened under a cluster's secret
//!   contexts or the CA's; never a panic, and whatever opens seals and opens again to the same
//!   plaintext;
//! - odd: a plaintext length byte, then (2-byte position, byte) edits applied to the JSON of that
//!   plaintext freshly sealed. An edited blob opens to the original plaintext or not at all,
//!   and never under another context.
#![no_main]

use std::sync::LazyLock;

use contract::keyscheme::SecretKind;
use contract::seal::{Keyring, Sealed};
use libfuzzer_sys::fuzz_target;

static KEYRING: LazyLock<Keyring> = LazyLock::new(lyra_fuzz::keyring);

fn contexts() -> [String; 3] {
    let cluster = lyra_fuzz::cluster();
    [
        SecretKind::ReadWrite.seal_context(cluster),
        SecretKind::ReadOnly.seal_context(cluster),
        "lyra/ca/key".to_owned(),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let contexts = contexts();
    if mode % 2 == 0 {
        let Ok(sealed) = serde_json::from_slice::<Sealed>(rest) else {
            return;
        };
        for context in &contexts {
            if let Ok(plain) = KEYRING.unseal(&sealed, context) {
                let again = KEYRING
                    .seal(&plain, context)
                    .expect("an opened value seals");
                let reopened = KEYRING
                    .unseal(&again, context)
                    .expect("a sealed value opens");
                assert_eq!(reopened.as_slice(), plain.as_slice());
            }
        }
        return;
    }
    let Some((&len, edits)) = rest.split_first() else {
        return;
    };
    let plain: Vec<u8> = (0..len).collect();
    let context = &contexts[usize::from(len) % contexts.len()];
    let sealed = KEYRING.seal(&plain, context).expect("a plaintext seals");
    let json = serde_json::to_vec(&sealed).expect("a sealed value encodes");
    let mut edited = json.clone();
    // Two-byte positions reach every byte of the blob, the tag at the end of a long one too.
    for edit in edits.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([edit[0], edit[1]])) % edited.len();
        edited[at] = edit[2];
    }
    let Ok(tampered) = serde_json::from_slice::<Sealed>(&edited) else {
        return;
    };
    for other in &contexts {
        match KEYRING.unseal(&tampered, other) {
            Ok(opened) => {
                assert_eq!(other, context, "opened under another context");
                assert_eq!(
                    opened.as_slice(),
                    plain.as_slice(),
                    "a tampered blob opened"
                );
            }
            Err(_) => assert!(other != context || tampered != sealed),
        }
    }
});
