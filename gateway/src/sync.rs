//! Keeping the gateway's memory in step with Redis.
//!
//! Each connection: subscribe to the events channel first, then load the whole versioned
//! snapshot (routes, revoked keys, certificates), then apply events as they come, and load the
//! snapshot again every `resync` period. Pub/sub is at-most-once, so every reconnect starts
//! with a full snapshot. While Redis is away the gateway serves what it knows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use contract::event::{self, ChangeEvent, Notification};
use contract::ids::KeyId;
use contract::keyspace;
use contract::route::RouteRecord;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::route_table::Route;
use crate::state::GatewayState;
use crate::upstream::Resolved;

pub struct SyncService {
    state: Arc<GatewayState>,
    client: redis::Client,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the event subscription ended")]
    Disconnected,
}

impl SyncService {
    pub fn new(state: Arc<GatewayState>, client: redis::Client) -> Self {
        Self { state, client }
    }

    /// Loads the whole snapshot and replaces what is in memory.
    pub async fn resync(&self, conn: &mut ConnectionManager) -> Result<(), redis::RedisError> {
        let s = &self.state;
        // The version is read first: every route in the hash was written at or below it, so a
        // held route above it arrived by an event after this snapshot and is kept.
        let version: Option<u64> = conn.get(keyspace::config_version()).await?;
        let raw: HashMap<String, String> = conn.hgetall(keyspace::routes()).await?;
        let mut records = Vec::with_capacity(raw.len());
        for (id, json) in raw {
            match serde_json::from_str::<RouteRecord>(&json) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::error!(cluster = %id, error = %e, "unreadable route in the snapshot; skipped")
                }
            }
        }
        // Names are resolved again on every resync, so a node whose name moved is followed.
        let resolved = Resolved::of(&records).await;
        let made = s
            .routes
            .sync_all(version.unwrap_or(0), records, &resolved, |r| {
                Route::from_record(r, &s.keyring, &s.config, &resolved)
            });
        tracing::debug!(made, "routes made anew on resync");
        let revoked: Vec<(String, f64)> = conn
            .zrange_withscores(keyspace::revoked_keys(), 0, -1)
            .await?;
        s.revoked.replace_all(
            revoked
                .into_iter()
                .filter_map(|(id, score)| {
                    let id: KeyId = id.parse().ok()?;
                    Some((id, score.is_finite().then_some(score as i64)))
                })
                .collect(),
        );
        s.revoked.prune(jiff::Timestamp::now());
        match certs::store::load_all(conn, &s.keyring).await {
            Ok(all) => {
                for cert in all {
                    match cert.certified_key() {
                        Ok(key) => s.certs.insert(cert.suffix(), key),
                        Err(e) => {
                            tracing::error!(name = %cert.name, error = %e, "unusable certificate")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot load certificates"),
        }
        let m = &s.metrics;
        m.routes_known.set(s.routes.len() as i64);
        m.revoked_keys.set(s.revoked.len() as i64);
        m.config_version.set(version.unwrap_or(0) as i64);
        m.synced();
        s.ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn apply(&self, conn: &mut ConnectionManager, payload: &[u8]) {
        let s = &self.state;
        let m = &s.metrics;
        match event::decode(payload) {
            Ok(Notification::Event(e)) => {
                match e {
                    ChangeEvent::RouteUpserted { route } => {
                        m.events.with_label_values(&["route.upserted"]).inc();
                        let resolved = Resolved::of([route.as_ref()]).await;
                        match Route::from_record(*route, &s.keyring, &s.config, &resolved) {
                            Ok(r) => {
                                s.routes.upsert(r);
                            }
                            Err(e) => tracing::error!(error = %e, "unusable route event"),
                        }
                    }
                    ChangeEvent::RouteRemoved {
                        cluster_id,
                        version,
                        ..
                    } => {
                        m.events.with_label_values(&["route.removed"]).inc();
                        s.routes.remove(&cluster_id, version);
                    }
                    ChangeEvent::KeyRevoked {
                        key_id, expires_at, ..
                    } => {
                        m.events.with_label_values(&["key.revoked"]).inc();
                        s.revoked.insert(key_id, expires_at);
                    }
                    ChangeEvent::CertificateIssued {
                        provider, region, ..
                    } => {
                        m.events.with_label_values(&["certificate.issued"]).inc();
                        match certs::store::load_region(conn, &s.keyring, &provider, &region).await
                        {
                            Ok(Some(cert)) => match cert.certified_key() {
                                Ok(key) => s.certs.insert(cert.suffix(), key),
                                Err(e) => tracing::error!(error = %e, "unusable certificate"),
                            },
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot load an announced certificate")
                            }
                        }
                    }
                }
                m.routes_known.set(s.routes.len() as i64);
                m.revoked_keys.set(s.revoked.len() as i64);
            }
            Ok(Notification::Unknown { event_type }) => {
                m.events.with_label_values(&["unknown"]).inc();
                tracing::debug!(%event_type, "ignored an event of an unknown type");
            }
            Err(e) => {
                m.events.with_label_values(&["malformed"]).inc();
                tracing::warn!(error = %e, "malformed event");
            }
        }
    }

    /// One connected session; returns on shutdown (`Ok`) or on losing Redis (`Err`).
    async fn session(&self, shutdown: &mut ShutdownWatch) -> Result<(), SyncError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(keyspace::EVENTS_CHANNEL).await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        self.state.redis.set(conn.clone());
        self.resync(&mut conn).await?;
        self.state.metrics.redis_connected.set(1);
        tracing::info!(routes = self.state.routes.len(), "synced with Redis");
        let mut messages = pubsub.on_message();
        let mut resync = tokio::time::interval(self.state.config.resync_every());
        resync.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                message = messages.next() => match message {
                    Some(m) => self.apply(&mut conn, m.get_payload_bytes()).await,
                    None => return Err(SyncError::Disconnected),
                },
                _ = resync.tick() => self.resync(&mut conn).await?,
            }
        }
    }
}

#[async_trait]
impl BackgroundService for SyncService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            match self.session(&mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    self.state.metrics.redis_connected.set(0);
                    tracing::warn!(error = %e, "lost Redis; serving the last known state and reconnecting");
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}
