//! The gateway's Redis connection for the rare lookups off the snapshot (an unknown host, a
//! collection key's rules) and for usage counters. Set by the sync loop once connected; every
//! call has a short deadline, so a Redis outage never stalls a request for long.

use std::sync::RwLock;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

const DEADLINE: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct RedisLink {
    conn: RwLock<Option<ConnectionManager>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("redis is not connected")]
    Down,
    #[error("redis call timed out")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl RedisLink {
    pub fn set(&self, conn: ConnectionManager) {
        if let Ok(mut c) = self.conn.write() {
            *c = Some(conn);
        }
    }

    pub fn connection(&self) -> Result<ConnectionManager, LinkError> {
        self.conn
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or(LinkError::Down)
    }

    pub async fn hget(&self, key: String, field: String) -> Result<Option<String>, LinkError> {
        let mut conn = self.connection()?;
        tokio::time::timeout(DEADLINE, conn.hget(key, field))
            .await
            .map_err(|_| LinkError::Timeout)?
            .map_err(LinkError::from)
    }
}
