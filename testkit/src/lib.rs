//! What Lyra's tests stand on: real processes, started on free loopback ports, that tests can
//! kill and restart, and that never outlive the test process.
//!
//! - [`RedisServer`]: a real `redis-server` with its own directory and AOF on.
//! - [`supervised`]: spawning any child so that it dies with the test process, even when the
//!   test aborts without running destructors.
//! - [`standin`]: the stand-in Qdrant (a test double) as a real process.
//! - [`procs`]: processes seen through /proc (alive, a cluster's nodes).
//! - [`free_port`]: a loopback port nobody is listening on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

mod port;
pub mod procs;
mod redis_server;
pub mod standin;
pub mod supervised;

pub use port::free_port;
pub use redis_server::{HarnessError, RedisServer};
