//! The settings the services share: where the platform's Redis is and the key that opens what
//! is sealed in it. Orion and Nebula flatten [`PlatformArgs`] (the platform key); GateKeeper
//! flattens [`ServingArgs`] (only the serving key derived from it). Feature `cli`.

use crate::seal::{Keyring, KeyringConfigError};

#[derive(Clone, clap::Args)]
pub struct PlatformArgs {
    /// Redis holding the platform's state, command stream and events.
    #[arg(
        long,
        env = "LYRA_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// The platform key that seals every stored secret (32 bytes, base64).
    #[arg(long, env = "LYRA_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,

    /// Earlier platform keys, still accepted for opening sealed values (comma-separated).
    #[arg(
        long,
        env = "LYRA_MASTER_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_master_keys: Vec<String>,
}

impl PlatformArgs {
    /// Settings for a Redis URL and a platform key (tests and embedding).
    pub fn new(redis_url: impl Into<String>, master_key: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            master_key: master_key.into(),
            previous_master_keys: Vec::new(),
        }
    }

    pub fn keyring(&self) -> Result<Keyring, KeyringConfigError> {
        Keyring::from_config(&self.master_key, &self.previous_master_keys)
    }
}

impl std::fmt::Debug for PlatformArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformArgs")
            .field("redis_url", &self.redis_url)
            .finish_non_exhaustive()
    }
}

/// GateKeeper's share: Redis and the serving key, which opens what the gateways serve with
/// (clusters' upstream secrets, regions' TLS keys) and nothing else: not the CA's key.
#[derive(Clone, clap::Args)]
pub struct ServingArgs {
    /// Redis holding the platform's state and events.
    #[arg(
        long,
        env = "LYRA_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// The gateway key (32 bytes, base64): the serving key derived from the platform key,
    /// printed by `LYRA_MASTER_KEY=... lyra platform-key gateway`. Never the platform key.
    #[arg(long, env = "LYRA_GATEWAY_KEY", hide_env_values = true)]
    pub gateway_key: String,

    /// Earlier gateway keys, still accepted for opening sealed values (comma-separated).
    #[arg(
        long,
        env = "LYRA_GATEWAY_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub previous_gateway_keys: Vec<String>,

    /// Set when the platform key reached this process (`LYRA_MASTER_KEY`): refused at start.
    #[arg(
        long = "master-key",
        env = "LYRA_MASTER_KEY",
        hide = true,
        value_parser = withhold
    )]
    pub platform_key_given: Option<Withheld>,
}

/// A value this process must not hold, dropped as soon as it is parsed: only its presence is
/// kept, to refuse it with a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld;

fn withhold(_: &str) -> Result<Withheld, std::convert::Infallible> {
    Ok(Withheld)
}

impl ServingArgs {
    pub fn new(redis_url: impl Into<String>, gateway_key: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            gateway_key: gateway_key.into(),
            previous_gateway_keys: Vec::new(),
            platform_key_given: None,
        }
    }

    pub fn keyring(&self) -> Result<Keyring, KeyringConfigError> {
        Keyring::serving_from_config(&self.gateway_key, &self.previous_gateway_keys)
    }

    /// Why these settings must not be served with, if they must not.
    pub fn refusal(&self) -> Option<String> {
        self.platform_key_given.map(|_| {
            "LYRA_MASTER_KEY is set, and GateKeeper must not hold the platform key (it would let \
             the internet-facing process open the CA's private key): unset it and give \
             LYRA_GATEWAY_KEY=$(LYRA_MASTER_KEY=... lyra platform-key gateway) instead"
                .to_owned()
        })
    }
}

impl std::fmt::Debug for ServingArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingArgs")
            .field("redis_url", &self.redis_url)
            .field("platform_key_given", &self.platform_key_given.is_some())
            .finish_non_exhaustive()
    }
}
