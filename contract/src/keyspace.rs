//! Every Redis key, stream, consumer group and channel name Lyra uses, in one place.
//!
//! All control-plane keys share the hash tag `{lyra}` so that the Lua scripts that touch
//! several of them at once (reserve capacity + write cluster + XADD command) stay valid on a
//! Redis Cluster: they land in one slot. The control plane's state is small; the data path
//! never reads Redis per request.
//!
//! | name | type | holds |
//! |---|---|---|
//! | `lyra:{lyra}:account:<id>` | string | an account (JSON) |
//! | `lyra:{lyra}:accounts` | zset | account ids by creation time |
//! | `lyra:{lyra}:token:<sha256-hex>` | string | an account token's record, found by the token's hash |
//! | `lyra:{lyra}:region:<provider>:<region>` | hash | a region: driver, totals, allocated ([`crate::record`]) |
//! | `lyra:{lyra}:regions` | set | `<provider>:<region>` of every region |
//! | `lyra:{lyra}:region:<provider>:<region>:waiting` | list | PENDING cluster ids, oldest first |
//! | `lyra:{lyra}:cluster:<id>` | hash | a cluster, its reservation and its nodes ([`crate::record`]) |
//! | `lyra:{lyra}:cluster:<id>:command` | string | the provisioning command of a PENDING cluster, queued when capacity frees |
//! | `lyra:{lyra}:account:<id>:clusters` | zset | an account's cluster ids by creation time |
//! | `lyra:{lyra}:cluster:<id>:secrets` | string | the cluster's sealed secrets (JSON) |
//! | `lyra:{lyra}:cluster:<id>:keys` | hash | API key id → key metadata (JSON), never the key |
//! | `lyra:{lyra}:commands` | stream | the command stream (field `command`: envelope JSON) |
//! | `nebula` | group | Nebula's consumer group on the command stream |
//! | `lyra:{lyra}:commands:attempts` | hash | stream entry id → attempts so far |
//! | `lyra:{lyra}:cluster:<id>:lease` | string | the worker acting on the cluster (expiring lease) |
//! | `lyra:{lyra}:commands:dead` | stream | commands parked after their retries |
//! | `lyra:{lyra}:routes` | hash | cluster id → route record (JSON): the gateways' snapshot |
//! | `lyra:{lyra}:config:version` | string | the platform-wide version counter for routes, revocations, certificates |
//! | `lyra:{lyra}:revoked` | zset | revoked key ids, scored by the key's expiry (unix seconds; +inf for none) |
//! | `lyra:{lyra}:idempotency:<caller>:<key>` | string | the first answer to an idempotent request (24 h) |
//! | `lyra:{lyra}:audit:<account>` | stream | the account's audit log |
//! | `lyra:{lyra}:usage:<cluster>` | hash | request and byte counters reported by gateways |
//! | `lyra:{lyra}:ca` | string | the platform CA, sealed |
//! | `lyra:{lyra}:cert:<provider>:<region>` | string | a region's wildcard certificate, key sealed |
//! | `lyra:events` | channel | [`crate::event::ChangeEvent`]s for gateways |

use crate::ids::{AccountId, ClusterId};

/// The prefix of every control-plane key (the Lua scripts receive it as ARGV[1]).
pub const PREFIX: &str = "lyra:{lyra}:";
const P: &str = "lyra:{lyra}";

pub fn account(id: AccountId) -> String {
    format!("{P}:account:{id}")
}

pub fn accounts() -> String {
    format!("{P}:accounts")
}

/// `token_hash` is the lower-case hex SHA-256 of the token, never the token itself.
pub fn token(token_hash: &str) -> String {
    format!("{P}:token:{token_hash}")
}

pub fn region(provider: &str, region: &str) -> String {
    format!("{P}:region:{provider}:{region}")
}

pub fn regions() -> String {
    format!("{P}:regions")
}

pub fn region_waiting(provider: &str, region: &str) -> String {
    format!("{P}:region:{provider}:{region}:waiting")
}

pub fn cluster(id: ClusterId) -> String {
    format!("{P}:cluster:{id}")
}

pub fn account_clusters(account: AccountId) -> String {
    format!("{P}:account:{account}:clusters")
}

pub fn cluster_queued_command(id: ClusterId) -> String {
    format!("{P}:cluster:{id}:command")
}

/// A short lease held by the worker acting on a cluster, so two workers never act on one
/// cluster at once.
pub fn cluster_lease(id: ClusterId) -> String {
    format!("{P}:cluster:{id}:lease")
}

pub fn cluster_secrets(id: ClusterId) -> String {
    format!("{P}:cluster:{id}:secrets")
}

pub fn cluster_keys(id: ClusterId) -> String {
    format!("{P}:cluster:{id}:keys")
}

pub fn command_stream() -> String {
    format!("{P}:commands")
}

/// The field of a command stream entry that holds the envelope.
pub const COMMAND_FIELD: &str = "command";

pub const NEBULA_GROUP: &str = "nebula";

/// Stream entry id → how many times the command has been attempted (survives restarts).
pub fn command_attempts() -> String {
    format!("{P}:commands:attempts")
}

pub fn dead_letter_stream() -> String {
    format!("{P}:commands:dead")
}

/// Fields of a dead-letter entry.
pub mod dead_letter {
    /// The command envelope, exactly as it was on the command stream.
    pub const COMMAND: &str = "command";
    /// Why the last attempt failed, in words a person can act on.
    pub const ERROR: &str = "error";
    pub const ATTEMPTS: &str = "attempts";
    /// When the command was parked (RFC 3339).
    pub const FAILED_AT: &str = "failed_at";
    /// The command's id on the command stream.
    pub const SOURCE_ID: &str = "source_id";
}

pub fn routes() -> String {
    format!("{P}:routes")
}

pub fn config_version() -> String {
    format!("{P}:config:version")
}

pub fn revoked_keys() -> String {
    format!("{P}:revoked")
}

/// `scope` identifies the caller (a hash of its credential), so two callers' keys never meet.
pub fn idempotency(scope: &str, key: &str) -> String {
    format!("{P}:idempotency:{scope}:{key}")
}

pub fn audit(account: AccountId) -> String {
    format!("{P}:audit:{account}")
}

pub fn usage(cluster: ClusterId) -> String {
    format!("{P}:usage:{cluster}")
}

/// Counters of a cluster's usage hash, incremented by gateways (HINCRBY).
pub mod usage_fields {
    pub const REQUESTS: &str = "requests";
    pub const BYTES_IN: &str = "bytes_in";
    pub const BYTES_OUT: &str = "bytes_out";
    pub const ALL: [&str; 3] = [REQUESTS, BYTES_IN, BYTES_OUT];
}

pub fn ca() -> String {
    format!("{P}:ca")
}

pub fn certificate(provider: &str, region: &str) -> String {
    format!("{P}:cert:{provider}:{region}")
}

/// Pub/sub has no keyspace slot; on a Redis Cluster it is published with SPUBLISH.
pub const EVENTS_CHANNEL: &str = "lyra:events";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_one_hash_slot_tag() {
        let a = AccountId::new();
        let c = ClusterId::new();
        let keys = [
            account(a),
            accounts(),
            token("ab"),
            region("aws", "eu"),
            regions(),
            region_waiting("aws", "eu"),
            cluster(c),
            account_clusters(a),
            cluster_secrets(c),
            cluster_queued_command(c),
            cluster_lease(c),
            command_attempts(),
            cluster_keys(c),
            command_stream(),
            dead_letter_stream(),
            routes(),
            config_version(),
            revoked_keys(),
            idempotency("caller", "k"),
            audit(a),
            usage(c),
            ca(),
            certificate("aws", "eu"),
        ];
        for k in &keys {
            assert!(k.starts_with("lyra:{lyra}:"), "{k}");
        }
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "two names collide");
    }
}
