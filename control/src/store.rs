//! Orion's connection to Redis.
//!
//! Redis being away must never make Orion hang or answer 500: every call has a hard deadline
//! and connection failures become [`StoreError::Unavailable`], which clients see as 503 with
//! `Retry-After`. The connection is made lazily and remade after a failure, so Orion starts
//! without Redis and recovers by itself when it returns.

use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use contract::record::RecordError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RedisResult};

use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    #[error("redis error: {0}")]
    Redis(#[source] RedisError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("script gave an unexpected reply: {0:?}")]
    Reply(Vec<String>),
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "redis unavailable");
                Problem::unavailable()
            }
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}

fn classify(e: RedisError) -> StoreError {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Redis(e)
    }
}

pub struct Store {
    client: redis::Client,
    timeout: Duration,
    conn: RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Store {
    /// `timeout` bounds every call, connecting included.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            timeout,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    fn cached(&self) -> Option<ConnectionManager> {
        self.conn.read().ok().and_then(|c| c.clone())
    }

    /// A connection, made now if there is none.
    pub async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout / 2))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let made = tokio::time::timeout(
            self.timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Unavailable("connecting timed out".into()))?
        .map_err(classify)?;
        if let Ok(mut slot) = self.conn.write() {
            *slot = Some(made.clone());
        }
        Ok(made)
    }

    /// Runs one Redis operation under the deadline.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, op(conn)).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(StoreError::Unavailable("redis call timed out".into())),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}

/// Reads a script's reply: its first element is a status word.
pub fn reply_status(reply: &[String]) -> &str {
    reply.first().map(String::as_str).unwrap_or("")
}

/// The contract's scripts, hashed once. `invoke_async` sends EVALSHA and falls back to EVAL
/// when Redis does not know the script yet (after a restart, for instance).
pub mod lua {
    use std::sync::LazyLock;

    use contract::scripts;
    use redis::Script;

    pub static CREATE_CLUSTER: LazyLock<Script> =
        LazyLock::new(|| Script::new(scripts::CREATE_CLUSTER));
    pub static PUT_REGION: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::PUT_REGION));
    pub static RESIZE_CLUSTER: LazyLock<Script> =
        LazyLock::new(|| Script::new(scripts::RESIZE_CLUSTER));
    pub static DELETE_CLUSTER: LazyLock<Script> =
        LazyLock::new(|| Script::new(scripts::DELETE_CLUSTER));
    pub static REVOKE_KEY: LazyLock<Script> = LazyLock::new(|| Script::new(scripts::REVOKE_KEY));
    pub static REPLAY_DEAD_LETTER: LazyLock<Script> =
        LazyLock::new(|| Script::new(scripts::REPLAY_DEAD_LETTER));
}
