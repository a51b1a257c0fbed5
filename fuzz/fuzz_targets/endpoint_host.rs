//! The endpoint host parse (`Host`, `:authority`, SNI), on every request GateKeeper serves.
//!
//! Input: one byte choosing the TLD, then the host text. Beyond not panicking:
//! - the borrowed parse the gateway uses and the owned parse Orion uses agree, error for error;
//! - an accepted host has exactly one canonical text, which parses back to the same endpoint,
//!   equals the input lower-cased (port aside), and is what `EndpointHost::new` builds.
#![no_main]

use contract::host::{EndpointHost, HostRef, Tld};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    let tld = Tld::new(lyra_fuzz::TLDS[usize::from(choice) % lyra_fuzz::TLDS.len()])
        .expect("the fixture TLDs are valid");
    let borrowed = HostRef::parse(input, &tld);
    let owned = EndpointHost::parse(input, &tld);
    match (&borrowed, &owned) {
        (Ok(b), Ok(o)) => {
            assert!(
                o.matches(b),
                "{input:?}: the owned parse does not match the borrowed one"
            );
            let canonical = o.to_string();
            let name = input.split(':').next().unwrap_or(input);
            assert_eq!(
                canonical,
                name.to_ascii_lowercase(),
                "{input:?}: one cluster must have one host"
            );
            assert_eq!(EndpointHost::parse(&canonical, &tld).as_ref(), Ok(o));
            assert_eq!(
                EndpointHost::new(o.cluster_id, &o.region, &o.provider, &tld).as_ref(),
                Ok(o)
            );
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "{input:?}: the parses refuse differently"),
        _ => panic!("{input:?}: borrowed {borrowed:?}, owned {owned:?}"),
    }
});
