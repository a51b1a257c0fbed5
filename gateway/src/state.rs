//! Everything GateKeeper serves from, shared by its listeners and its sync loop.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use certs::resolver::CertResolver;
use contract::host::Tld;
use contract::seal::Keyring;

use crate::config::GatekeeperConfig;
use crate::credential::JwtMinter;
use crate::key_rules::KeyRules;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::revoked::RevokedKeys;
use crate::route_table::RouteTable;

pub struct GatewayState {
    pub config: GatekeeperConfig,
    pub keyring: Keyring,
    pub tld: Tld,
    pub routes: RouteTable,
    pub revoked: RevokedKeys,
    pub rules: KeyRules,
    pub jwt: JwtMinter,
    pub key_limits: crate::limits::KeyLimits,
    pub usage: crate::usage::Usage,
    pub certs: Arc<CertResolver>,
    pub redis: RedisLink,
    pub metrics: Metrics,
    /// Set once the first full sync is done: `/readyz` answers 200 from then on.
    pub ready: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl GatewayState {
    pub fn new(config: GatekeeperConfig) -> Result<Self, StateError> {
        if let Some(why) = config.refusal() {
            return Err(StateError::Config(why));
        }
        if config.bench_without_auth {
            tracing::warn!("LYRA_BENCH_WITHOUT_AUTH: keys, scopes and limits are NOT checked");
        }
        let keyring = config
            .platform
            .keyring()
            .map_err(|e| StateError::Config(e.to_string()))?;
        let tld =
            Tld::new(&config.tld).map_err(|e| StateError::Config(format!("LYRA_TLD: {e}")))?;
        Ok(Self {
            config,
            keyring,
            tld,
            routes: RouteTable::default(),
            revoked: RevokedKeys::default(),
            rules: KeyRules::default(),
            jwt: JwtMinter::default(),
            key_limits: crate::limits::KeyLimits::default(),
            usage: crate::usage::Usage::default(),
            certs: Arc::new(CertResolver::new()),
            redis: RedisLink::default(),
            metrics: Metrics::new()?,
            ready: AtomicBool::new(false),
        })
    }
}
