//! Change events off pub/sub, and the route records inside them (the same serde as the
//! records of the routes hash), as far as GateKeeper takes them: decoded, then made into a
//! usable route (credentials unsealed, peers built, limits made) and asked for a node.
//!
//! Any bytes give an event, an unknown-type notice or a typed error; a decoded event encodes
//! back to itself; a route is made or refused with an error, never a panic.
#![no_main]

use std::sync::LazyLock;

use contract::event::{self, ChangeEvent, Notification};
use contract::seal::Keyring;
use gateway::config::GatekeeperConfig;
use gateway::route_table::{Route, tried_bit};
use gateway::upstream::Resolved;
use libfuzzer_sys::fuzz_target;

static KEYRING: LazyLock<Keyring> = LazyLock::new(lyra_fuzz::keyring);
static CONFIG: LazyLock<GatekeeperConfig> = LazyLock::new(lyra_fuzz::gateway_config);

fuzz_target!(|data: &[u8]| {
    let Ok(Notification::Event(e)) = event::decode(data) else {
        return;
    };
    let json = e.to_json().expect("a decoded event encodes");
    match event::decode(json.as_bytes()) {
        Ok(Notification::Event(again)) => assert_eq!(again, e),
        other => panic!("an encoded event decodes to {other:?}"),
    }
    let ChangeEvent::RouteUpserted { route } = e else {
        return;
    };
    let nodes = route.nodes.len();
    // Names are never resolved here: only literal addresses make peers.
    let Ok(route) = Route::from_record(*route, &KEYRING, &CONFIG, &Resolved::default()) else {
        return;
    };
    assert_eq!(route.peers.len(), nodes);
    let seed = data.len();
    for grpc in [false, true] {
        for start in [0, seed, usize::MAX - seed, usize::MAX] {
            if let Some((i, _)) = route.pick(start, 0, grpc) {
                assert!(i < nodes);
                // Once every node is tried, none is picked again.
                let all = (0..nodes).fold(0u128, |set, n| set | tried_bit(n));
                if nodes <= 128 {
                    assert!(route.pick(start, all, grpc).is_none());
                }
            }
        }
        let _ = route.serving(seed % (nodes + 1), 0);
    }
    let _ = route.limits.check_rate();
});
