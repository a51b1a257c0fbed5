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
//! | [`host`] | the endpoint host `<cluster-uuid>.<region>.<provider>.<tld>` |
//! | [`command`] | the command envelope and the provisioning commands |
//! | [`route`] | the route record a gateway serves from |
//! | [`event`] | change events published to gateways |
//! | [`keyspace`] | every Redis key, stream, group and channel name |
//! | [`keyscheme`] | cluster secrets and self-verifying API keys |
//! | [`seal`] | sealing secrets under the platform key |

pub mod account;
pub mod cluster;
pub mod command;
pub mod event;
pub mod host;
pub mod ids;
pub mod keyscheme;
pub mod keyspace;
mod random;
pub mod region;
pub mod resources;
pub mod route;
pub mod seal;
pub mod validation;

pub use random::RandomError;
