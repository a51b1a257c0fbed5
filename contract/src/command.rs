//! Commands: the durable requests Orion queues on the command stream and Nebula executes.
//!
//! Every command travels in one envelope:
//!
//! ```json
//! {"id": "<uuidv7>", "name": "ProvisionDBCluster", "schema_id": 701, "type": "COMMAND",
//!  "created_at": "2026-11-23T10:00:00Z", "account_id": "<uuid>", "idempotency_key": null,
//!  "payload": { ... }}
//! ```
//!
//! `name` and `schema_id` together say how to read `payload`; a reader that meets a pair it does
//! not know gets a typed [`CommandDecodeError`], never a panic, so a newer Orion can never crash
//! an older Nebula.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, ClusterId, CommandId};
use crate::resources::NodeResources;

/// The `type` every command envelope carries.
pub const COMMAND_TYPE: &str = "COMMAND";

/// The configuration block of a provisioning or resize command (the seed's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfiguration {
    pub cluster_endpoint: String,
    pub cluster_id: ClusterId,
    pub num_nodes: u32,
    pub node_configuration: NodeResources,
}

/// Create a cluster: secrets, nodes, route. Schema 701.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionDbCluster {
    pub account_id: AccountId,
    pub cloud_provider: String,
    pub cloud_region: String,
    pub cluster_id: ClusterId,
    pub cluster_name: String,
    pub cluster_version: String,
    pub db_configuration: DbConfiguration,
}

/// Change a cluster's shape to `db_configuration`. Schema 702. `generation` is the cluster's
/// generation this shape belongs to; a worker ignores a resize older than the cluster's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeDbCluster {
    pub account_id: AccountId,
    pub cloud_provider: String,
    pub cloud_region: String,
    pub cluster_id: ClusterId,
    pub generation: u64,
    pub db_configuration: DbConfiguration,
}

/// Remove everything a cluster has: nodes, storage, route, capacity. Schema 703.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprovisionDbCluster {
    pub account_id: AccountId,
    pub cloud_provider: String,
    pub cloud_region: String,
    pub cluster_id: ClusterId,
}

/// A command, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Provision(ProvisionDbCluster),
    Resize(ResizeDbCluster),
    Deprovision(DeprovisionDbCluster),
}

impl Command {
    pub const PROVISION: &'static str = "ProvisionDBCluster";
    pub const RESIZE: &'static str = "ResizeDBCluster";
    pub const DEPROVISION: &'static str = "DeprovisionDBCluster";

    /// The `(name, schema_id)` pairs this build reads and writes.
    pub const SCHEMAS: [(&'static str, u32); 3] = [
        (Self::PROVISION, 701),
        (Self::RESIZE, 702),
        (Self::DEPROVISION, 703),
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Command::Provision(_) => Self::PROVISION,
            Command::Resize(_) => Self::RESIZE,
            Command::Deprovision(_) => Self::DEPROVISION,
        }
    }

    pub fn schema_id(&self) -> u32 {
        match self {
            Command::Provision(_) => 701,
            Command::Resize(_) => 702,
            Command::Deprovision(_) => 703,
        }
    }

    pub fn cluster_id(&self) -> ClusterId {
        match self {
            Command::Provision(c) => c.cluster_id,
            Command::Resize(c) => c.cluster_id,
            Command::Deprovision(c) => c.cluster_id,
        }
    }

    pub fn account_id(&self) -> AccountId {
        match self {
            Command::Provision(c) => c.account_id,
            Command::Resize(c) => c.account_id,
            Command::Deprovision(c) => c.account_id,
        }
    }

    fn payload(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Command::Provision(c) => serde_json::to_value(c),
            Command::Resize(c) => serde_json::to_value(c),
            Command::Deprovision(c) => serde_json::to_value(c),
        }
    }
}

/// Why bytes are not a command this build can execute.
#[derive(Debug, thiserror::Error)]
pub enum CommandDecodeError {
    #[error("command envelope is not valid JSON of the expected shape: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("envelope type is {0:?}, expected \"COMMAND\"")]
    NotACommand(String),
    #[error("unknown command {name:?}")]
    UnknownCommand { name: String },
    #[error("unknown schema {schema_id} for command {name:?}")]
    UnknownSchema { name: String, schema_id: u32 },
    #[error("payload of {name} is invalid: {source}")]
    Payload {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("payload account {payload} does not match envelope account {envelope}")]
    AccountMismatch {
        envelope: AccountId,
        payload: AccountId,
    },
}

/// A command with its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEnvelope {
    pub id: CommandId,
    pub created_at: Timestamp,
    pub account_id: AccountId,
    /// The client's `Idempotency-Key`, when the request that caused this command had one.
    pub idempotency_key: Option<String>,
    pub command: Command,
}

/// The envelope exactly as it is on the wire.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope {
    id: CommandId,
    name: String,
    schema_id: u32,
    #[serde(rename = "type")]
    kind: String,
    created_at: Timestamp,
    account_id: AccountId,
    #[serde(default)]
    idempotency_key: Option<String>,
    payload: serde_json::Value,
}

impl CommandEnvelope {
    /// Wraps `command` in a new envelope with a fresh time-ordered id.
    pub fn new(command: Command, idempotency_key: Option<String>, now: Timestamp) -> Self {
        Self {
            id: CommandId::new(),
            created_at: now,
            account_id: command.account_id(),
            idempotency_key,
            command,
        }
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let wire = WireEnvelope {
            id: self.id,
            name: self.command.name().to_owned(),
            schema_id: self.command.schema_id(),
            kind: COMMAND_TYPE.to_owned(),
            created_at: self.created_at,
            account_id: self.account_id,
            idempotency_key: self.idempotency_key.clone(),
            payload: self.command.payload()?,
        };
        serde_json::to_string(&wire)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, CommandDecodeError> {
        let wire: WireEnvelope =
            serde_json::from_slice(bytes).map_err(CommandDecodeError::Envelope)?;
        if wire.kind != COMMAND_TYPE {
            return Err(CommandDecodeError::NotACommand(wire.kind));
        }
        let (name, schema_id) = match Command::SCHEMAS.iter().find(|(n, _)| *n == wire.name) {
            Some(&(name, schema_id)) => (name, schema_id),
            None => return Err(CommandDecodeError::UnknownCommand { name: wire.name }),
        };
        if schema_id != wire.schema_id {
            return Err(CommandDecodeError::UnknownSchema {
                name: wire.name,
                schema_id: wire.schema_id,
            });
        }
        let payload = |source| CommandDecodeError::Payload { name, source };
        let command = match name {
            Command::PROVISION => {
                Command::Provision(serde_json::from_value(wire.payload).map_err(payload)?)
            }
            Command::RESIZE => {
                Command::Resize(serde_json::from_value(wire.payload).map_err(payload)?)
            }
            Command::DEPROVISION => {
                Command::Deprovision(serde_json::from_value(wire.payload).map_err(payload)?)
            }
            _ => return Err(CommandDecodeError::UnknownCommand { name: wire.name }),
        };
        if command.account_id() != wire.account_id {
            return Err(CommandDecodeError::AccountMismatch {
                envelope: wire.account_id,
                payload: command.account_id(),
            });
        }
        Ok(Self {
            id: wire.id,
            created_at: wire.created_at,
            account_id: wire.account_id,
            idempotency_key: wire.idempotency_key,
            command,
        })
    }
}
