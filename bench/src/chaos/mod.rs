//! Chaos and soak runs (`lyra-chaos faults`, `lyra-chaos soak`): Lyra under load while its
//! parts fail, and under load with churn for a long time. Loopback only, bounded in time,
//! everything started and torn down by the run; results as Markdown and a PNG chart under
//! `--out`. They measure; the fault run also checks what Lyra promises (nothing lost, no
//! failure for known clusters while Redis is away) and says so in its table.
//!
//! | module | job |
//! |---|---|
//! | `traffic` | keep-alive clients through GateKeeper logging every request's time and outcome |
//! | `control` | a tenant creating, resizing and deleting clusters through Orion |
//! | `faults` | the fault schedule and what each fault cost |
//! | `soak` | half of GateKeeper's maximum, key, revocation and route churn, RSS and fds |
//! | `chart` | the PNG charts |

pub mod chart;
pub mod control;
pub mod faults;
pub mod soak;
pub mod traffic;
