//! The command envelope Nebula reads off the stream. Any bytes decode to a command or a typed
//! error, never a panic; a decoded command encodes and decodes back to itself.
#![no_main]

use contract::command::CommandEnvelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = CommandEnvelope::from_json(data) else {
        return;
    };
    let json = envelope.to_json().expect("a decoded command encodes");
    let again = CommandEnvelope::from_json(json.as_bytes()).expect("an encoded command decodes");
    assert_eq!(again, envelope);
});
