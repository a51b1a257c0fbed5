//! Change events: what Orion and Nebula publish on pub/sub for every gateway.
//!
//! Pub/sub is at-most-once, so events are an accelerator, not the source of truth: a gateway
//! resyncs from the versioned snapshot on every (re)connect, and each event carries the
//! version it belongs to so an older event never overwrites newer state.
//!
//! Readers must tolerate event types they do not know (a newer writer may add some):
//! [`decode`] returns [`Notification::Unknown`] for them, to be logged and counted.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{ClusterId, KeyId};
use crate::route::RouteRecord;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ChangeEvent {
    /// A route was created or changed; the full record travels so no lookup is needed.
    #[serde(rename = "route.upserted")]
    RouteUpserted { route: Box<RouteRecord> },
    /// A cluster stopped being routable (deleted).
    #[serde(rename = "route.removed")]
    RouteRemoved {
        cluster_id: ClusterId,
        host: String,
        version: u64,
    },
    /// An API key was revoked. `expires_at` is the key's own expiry, after which the
    /// revocation no longer needs to be remembered.
    #[serde(rename = "key.revoked")]
    KeyRevoked {
        cluster_id: ClusterId,
        key_id: KeyId,
        expires_at: Option<Timestamp>,
        version: u64,
    },
    /// A region's wildcard certificate was issued or renewed.
    #[serde(rename = "certificate.issued")]
    CertificateIssued {
        provider: String,
        region: String,
        version: u64,
    },
}

impl ChangeEvent {
    /// The `type` tags this build knows.
    pub const TYPES: [&'static str; 4] = [
        "route.upserted",
        "route.removed",
        "key.revoked",
        "certificate.issued",
    ];

    pub fn version(&self) -> u64 {
        match self {
            ChangeEvent::RouteUpserted { route } => route.version,
            ChangeEvent::RouteRemoved { version, .. }
            | ChangeEvent::KeyRevoked { version, .. }
            | ChangeEvent::CertificateIssued { version, .. } => *version,
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// A decoded pub/sub message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Event(ChangeEvent),
    /// A well-formed message of a type this build does not know.
    Unknown {
        event_type: String,
    },
}

/// Why a message could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("event is not a JSON object with a string \"type\": {0}")]
    NoType(#[source] serde_json::Error),
    #[error("event {event_type:?} is malformed: {source}")]
    Malformed {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Deserialize)]
struct TypeTag {
    #[serde(rename = "type")]
    event_type: String,
}

/// Reads one pub/sub message.
pub fn decode(bytes: &[u8]) -> Result<Notification, EventDecodeError> {
    let tag: TypeTag = serde_json::from_slice(bytes).map_err(EventDecodeError::NoType)?;
    if !ChangeEvent::TYPES.contains(&tag.event_type.as_str()) {
        return Ok(Notification::Unknown {
            event_type: tag.event_type,
        });
    }
    serde_json::from_slice(bytes)
        .map(Notification::Event)
        .map_err(|source| EventDecodeError::Malformed {
            event_type: tag.event_type,
            source,
        })
}
