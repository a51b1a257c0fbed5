//! GateKeeper, the Pingora gateway: TLS, Host/SNI routing, key checks, rate limits, REST and
//! gRPC proxying, all served from memory.
//!
//! Not built yet: this crate is the place for it (issue "GateKeeper and certs"). It will depend
//! on `contract` and `certs` only, never on another service.
