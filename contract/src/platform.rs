//! The settings every service shares: where the platform's Redis is and the platform key that
//! opens what is sealed in it. Flattened into each service's own flags (feature `cli`).

use crate::seal::{Keyring, KeyringConfigError};

#[derive(Debug, Clone, clap::Args)]
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
