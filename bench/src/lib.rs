//! Benchmarks and the stand-in Qdrant upstream (a test double: the product runs real Qdrant).
//!
//! Not built yet: the stand-in arrives with the Nebula issue, the load harness with the
//! benchmarks issue. Micro-benchmarks live beside the code they measure (`cargo bench -p
//! contract` measures API-key verification today).
