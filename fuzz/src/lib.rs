//! What the fuzz targets share: fixed keys and ids (so a seed made by `make-seeds` means the
//! same thing to the target that reads it), and the helpers that build them.
//!
//! Nothing here is a real secret: every key is a constant known to anyone reading this file,
//! used only inside a fuzzing process.

use clap::Parser;
use contract::ids::ClusterId;
use contract::keyscheme::{ClusterSecret, KeySigner};
use contract::seal::{Keyring, PlatformKey};
use gateway::config::GatekeeperConfig;

/// The cluster every fixture belongs to.
pub fn cluster() -> ClusterId {
    ClusterId::from_uuid(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0001,
    ))
}

/// The platform key the fixtures seal with: 32 fixed bytes.
pub fn keyring() -> Keyring {
    let bytes: Vec<u8> = (0u8..32).collect();
    match PlatformKey::from_bytes(&bytes) {
        Ok(key) => Keyring::new(key, vec![]),
        Err(e) => panic!("the fixed platform key is 32 bytes: {e}"),
    }
}

/// The cluster's read-write secret (32 alphanumerics, as Nebula makes them).
pub const SECRET: &str = "FuzzFixtureSecretNotRealAbCd0123";

pub fn secret() -> ClusterSecret {
    match ClusterSecret::parse(SECRET) {
        Ok(s) => s,
        Err(e) => panic!("the fixed secret is well formed: {e}"),
    }
}

pub fn signer() -> KeySigner {
    KeySigner::new(&secret())
}

/// The top-level domains the host target parses under.
pub const TLDS: [&str; 3] = ["localhost", "cloud.example.com", "a"];

#[derive(Parser)]
struct ConfigArgs {
    #[command(flatten)]
    config: GatekeeperConfig,
}

/// GateKeeper's configuration with its defaults (the gateway key is any 32 bytes: the
/// fixtures' routes are opened with [`keyring`], not with it).
pub fn gateway_config() -> GatekeeperConfig {
    match ConfigArgs::try_parse_from([
        "fuzz",
        "--gateway-key",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ]) {
        Ok(args) => args.config,
        Err(e) => panic!("the fixed gateway flags parse: {e}"),
    }
}
