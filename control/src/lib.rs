//! Orion, the control API: accounts, regions and capacity, clusters, API keys, audit.
//!
//! Not built yet: this crate is the place for it (issue "Orion: the control API on axum and
//! Redis"). It will depend on `contract` only, never on another service.
