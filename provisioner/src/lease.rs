//! A per-cluster lease, so that two workers never act on one cluster at once (a provision
//! and a deprovision of the same cluster may reach two workers).
//!
//! The holder is the worker's consumer name, which is unique among live workers (it owns a
//! pending list in the consumer group). A worker restarted under the same name after a crash
//! takes its own lease back at once instead of waiting for it to expire; within one worker,
//! commands of one cluster are kept apart by the handlers' in-process lock.

use std::time::Duration;

use contract::ids::ClusterId;
use contract::keyspace;
use redis::Script;
use redis::aio::ConnectionManager;
use std::sync::LazyLock;

/// Extends or releases a lease only if we still hold it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});
/// Takes the lease if it is free or already ours.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local cur = redis.call('GET', KEYS[1]) \
         if cur == false or cur == ARGV[1] then \
           redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end \
         return 0",
    )
});
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then \
           return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

pub struct Lease {
    key: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// Takes the lease on `cluster` for `holder`, or `None` while another holder has it.
    pub async fn acquire(
        conn: &mut ConnectionManager,
        cluster: ClusterId,
        holder: &str,
        ttl: Duration,
    ) -> redis::RedisResult<Option<Self>> {
        let key = keyspace::cluster_lease(cluster);
        let taken: i64 = ACQUIRE
            .key(&key)
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        Ok((taken == 1).then(|| Self {
            key,
            holder: holder.to_owned(),
            ttl,
        }))
    }

    /// A handle on a lease already taken by `holder` (to renew it from another task).
    pub fn held(cluster: ClusterId, holder: &str, ttl: Duration) -> Self {
        Self {
            key: keyspace::cluster_lease(cluster),
            holder: holder.to_owned(),
            ttl,
        }
    }

    pub async fn renew(&self, conn: &mut ConnectionManager) -> redis::RedisResult<bool> {
        let renewed: i64 = RENEW
            .key(&self.key)
            .arg(&self.holder)
            .arg(self.ttl.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        Ok(renewed == 1)
    }

    pub async fn release(self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        RELEASE
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async::<i64>(conn)
            .await
            .map(|_| ())
    }
}
