//! Certificates: the platform CA (rcgen), wildcard leaf certificates
//! `*.<region>.<provider>.<tld>` per region, and a rustls certificate resolver.
//!
//! Not built yet: this crate is the place for it (issue "GateKeeper and certs").
