//! The contract: the one language Orion, Nebula and GateKeeper speak.
//!
//! Each concern lives in its own module so a newcomer can find it by name:
//!
//! | module | what it holds |
//! |---|---|
//! | [`ids`] | typed identifiers (accounts, clusters, keys, commands) |
//! | [`validation`] | field-level validation errors |
//! | [`resources`] | node resources and capacity, with their units fixed once |
//! | [`account`], [`region`], [`cluster`] | the domain model |
//! | [`node_limits`] | a region's bounds on one node's resources and a cluster's node count |
//! | [`api_key`] | API key metadata and scopes (never the key) |
//! | [`host`] | the endpoint host `<cluster-uuid>.<region>.<provider>.<tld>` |
//! | [`command`] | the command envelope and the provisioning commands |
//! | [`route`] | the route record a gateway serves from |
//! | [`event`] | change events published to gateways |
//! | [`keyspace`] | every Redis key, stream, group and channel name |
//! | [`record`] | how clusters and regions are laid out in Redis hashes |
//! | [`scripts`] | the Lua scripts that move capacity, clusters and commands atomically |
//! | [`keyscheme`] | cluster secrets and self-verifying API keys |
//! | [`seal`] | sealing secrets under the platform key |

pub mod account;
pub mod api_key;
pub mod cluster;
pub mod command;
pub mod event;
pub mod host;
pub mod ids;
pub mod keyscheme;
pub mod keyspace;
pub mod node_limits;
#[cfg(feature = "cli")]
pub mod platform;
#[cfg(feature = "qdrant-api")]
pub mod qdrant;
mod random;
pub mod record;
pub mod region;
pub mod resources;
pub mod route;
pub mod scripts;
pub mod seal;
pub mod validation;

pub use random::RandomError;
