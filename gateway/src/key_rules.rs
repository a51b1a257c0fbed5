//! The collection rules of collection-scoped keys. They are stored by key id (they would make
//! keys long) and never change after creation, so each is read from Redis once and kept.

use std::sync::Arc;
use std::time::Duration;

use contract::api_key::CollectionRule;
use contract::api_key::{ApiKeyMetadata, KeyScope};
use contract::ids::{ClusterId, KeyId};
use contract::keyspace;
use moka::future::Cache;

use crate::redis_link::RedisLink;

pub struct KeyRules {
    cache: Cache<KeyId, Arc<Vec<CollectionRule>>>,
}

impl Default for KeyRules {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }
}

impl KeyRules {
    /// The rules of `key`, `None` when the key has none on record (then it is refused).
    pub async fn get(
        &self,
        redis: &RedisLink,
        cluster: ClusterId,
        key: KeyId,
    ) -> Option<Arc<Vec<CollectionRule>>> {
        if let Some(r) = self.cache.get(&key).await {
            return Some(r);
        }
        let loaded = self
            .cache
            .try_get_with(key, async {
                let json: Option<String> = redis
                    .hget(keyspace::cluster_keys(cluster), key.to_string())
                    .await
                    .map_err(|_| ())?;
                let meta: ApiKeyMetadata =
                    json.and_then(|j| serde_json::from_str(&j).ok()).ok_or(())?;
                match meta.access {
                    KeyScope::Collections(rules) if meta.cluster_id == cluster => {
                        Ok(Arc::new(rules))
                    }
                    _ => Err(()),
                }
            })
            .await;
        loaded.ok()
    }
}
