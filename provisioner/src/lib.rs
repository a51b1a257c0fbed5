//! Nebula, the provisioning worker: consumes the command stream and drives the
//! `InfrastructureClient`s (local processes, Kubernetes, Helm).
//!
//! Not built yet: this crate is the place for it (issue "Nebula: the durable provisioning
//! worker"). It will depend on `contract` only, never on another service.
