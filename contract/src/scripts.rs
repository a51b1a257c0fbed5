//! The Lua scripts that change capacity, clusters and the command stream together, atomically.
//!
//! They are the only writers of allocation counters and reservations, shared by Orion and
//! Nebula so that both move state the same way. Each script's header documents its KEYS,
//! ARGV and replies; every script starts with the shared prelude (`lua/prelude.lua`), whose
//! ARGV[1] is [`crate::keyspace::PREFIX`] and ARGV[2] the current time.

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/prelude.lua"), "\n", include_str!($file))
    };
}

/// Claim capacity, write the cluster and queue its command, or queue the claim.
pub const CREATE_CLUSTER: &str = script!("lua/create_cluster.lua");
/// Register or change a region, then allocate waiting claims in order.
pub const PUT_REGION: &str = script!("lua/put_region.lua");
/// Change a running cluster's shape.
pub const RESIZE_CLUSTER: &str = script!("lua/resize_cluster.lua");
/// Start deleting a cluster (idempotent).
pub const DELETE_CLUSTER: &str = script!("lua/delete_cluster.lua");
/// Revoke an API key and publish the revocation.
pub const REVOKE_KEY: &str = script!("lua/revoke_key.lua");
/// Put a dead-lettered command back on the stream.
pub const REPLAY_DEAD_LETTER: &str = script!("lua/replay_dead_letter.lua");
/// Change a cluster's phase only from expected phases (Nebula).
pub const SET_PHASE_IF: &str = script!("lua/set_phase_if.lua");
/// Move a cluster to a phase and publish its route together, only from expected phases
/// (Nebula).
pub const GO_LIVE: &str = script!("lua/go_live.lua");
/// Record a finished resize, publish its route and release surplus capacity (Nebula).
pub const FINISH_RESIZE: &str = script!("lua/finish_resize.lua");
/// Record a finished deprovision: route removed, capacity released (Nebula).
pub const FINISH_DEPROVISION: &str = script!("lua/finish_deprovision.lua");
/// Park a command that failed every attempt (Nebula).
pub const DEAD_LETTER: &str = script!("lua/dead_letter.lua");
/// Replace a stored value only if it is unchanged since it was read (Orion's reseal pass).
pub const REPLACE_IF_UNCHANGED: &str = script!("lua/replace_if_unchanged.lua");
