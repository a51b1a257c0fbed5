//! Benchmarks and the stand-in Qdrant upstream.
//!
//! [`standin`] is a **test double** of Qdrant: no Qdrant binary can be installed on the build
//! machines, so tests and benchmarks run this as `QDRANT_BIN`. It accepts Qdrant's flags and
//! environment for ports, keys and cluster bootstrap, and answers like Qdrant 1.18.3 as
//! recorded in `shared/QDRANT-FACTS.md`. The product runs real Qdrant.
//!
//! [`harness`] is the benchmark harness (`cargo run --release -p bench -- <scenario>`):
//! GateKeeper next to nginx and HAProxy, the control plane, the route table at scale.
//! Micro-benchmarks live beside the code they measure (`cargo bench -p gateway`).
//!
//! [`chaos`] runs Lyra under load while its parts fail, and soaks it (`lyra-chaos`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

pub mod chaos;
pub mod harness;
pub mod standin;
