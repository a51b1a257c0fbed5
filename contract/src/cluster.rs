//! Clusters: what a client asks for (a spec), and what the platform records about it.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::host::{EndpointHost, Tld};
use crate::ids::{AccountId, ClusterId};
use crate::region::RegionId;
use crate::resources::{Capacity, NodeResources, limits};
use crate::validation::{ValidationError, Validator};

/// The Qdrant version new clusters run unless told otherwise.
pub const DEFAULT_QDRANT_VERSION: &str = "v1.18.3";

/// Where a cluster is in its life. On the wire these are the upper-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Accepted, waiting for capacity in its region.
    Pending,
    /// Capacity reserved, the provisioning command is queued or running.
    Creating,
    /// Every node is ready and the route is published.
    Healthy,
    /// Was healthy, and no node answers now: not served (503 with Retry-After).
    NotReady,
    /// Serving, but short of its shape: a node is not ready, a peer is missing from the Raft
    /// cluster, or a shard replica is not active. `reason` says which.
    Degraded,
    /// A resize is in progress (its `reason` says how far); the cluster keeps serving.
    /// Stored as `SCALING` before it had this name, which still reads as this phase.
    #[serde(alias = "SCALING")]
    Resizing,
    /// Provisioning gave up; `reason` says why.
    FailedToCreate,
    /// A resize gave up; `reason` says why. The cluster may still serve its old shape.
    FailedToUpdate,
    /// A delete is queued or running.
    Deleting,
    /// Gone: its processes, storage, route and capacity are released.
    Deleted,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::Pending,
        Phase::Creating,
        Phase::Healthy,
        Phase::NotReady,
        Phase::Degraded,
        Phase::Resizing,
        Phase::FailedToCreate,
        Phase::FailedToUpdate,
        Phase::Deleting,
        Phase::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Creating => "CREATING",
            Phase::Healthy => "HEALTHY",
            Phase::NotReady => "NOT_READY",
            Phase::Degraded => "DEGRADED",
            Phase::Resizing => "RESIZING",
            Phase::FailedToCreate => "FAILED_TO_CREATE",
            Phase::FailedToUpdate => "FAILED_TO_UPDATE",
            Phase::Deleting => "DELETING",
            Phase::Deleted => "DELETED",
        }
    }

    /// Whether a gateway forwards requests to a cluster in this phase. A cluster being resized,
    /// or whose resize failed, still runs its previous nodes and keeps serving.
    pub fn serves_traffic(self) -> bool {
        matches!(
            self,
            Phase::Healthy | Phase::Degraded | Phase::Resizing | Phase::FailedToUpdate
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shape of a cluster: how many nodes, and what each node gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterConfiguration {
    /// 1 to 100 (`limits::NUM_NODES`); a region may allow fewer.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, example = 1))]
    pub num_nodes: u32,
    pub node_configuration: NodeResources,
}

impl ClusterConfiguration {
    /// Checks the absolute [`limits`]; the region's own bounds are checked by
    /// [`crate::node_limits::NodeLimits::check_into`] once the region is known.
    pub fn validate_into(&self, v: &mut Validator, prefix: &str) {
        let (lo, hi) = limits::NUM_NODES;
        v.range(
            &format!("{prefix}.num_nodes"),
            self.num_nodes.into(),
            lo,
            hi,
            "nodes",
        );
        self.node_configuration
            .validate_into(v, &format!("{prefix}.node_configuration"));
    }

    /// The capacity this shape takes from its region.
    pub fn demand(&self) -> Capacity {
        Capacity::for_nodes(self.num_nodes, self.node_configuration)
    }
}

/// What a client asks for when creating a cluster (the seed's request shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// 2 to 64 characters of `[a-zA-Z0-9_-]`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 2,
            max_length = 64,
            pattern = r"^[a-zA-Z0-9_-]+$",
            example = "demo"
        )
    )]
    pub name: String,
    /// A registered provider: a DNS label (1 to 63 of `[a-z0-9-]`, no `-` at either end).
    /// (`lyra dev` registers `local`/`dev`.)
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 63,
            pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            example = "local"
        )
    )]
    pub cloud_provider: String,
    /// A registered region of that provider: a DNS label, like the provider.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 63,
            pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
            example = "dev"
        )
    )]
    pub cloud_region: String,
    pub configuration: ClusterConfiguration,
}

impl ClusterSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Validator::new();
        v.name("name", &self.name);
        v.dns_label("cloud_provider", &self.cloud_provider);
        v.dns_label("cloud_region", &self.cloud_region);
        self.configuration.validate_into(&mut v, "configuration");
        v.finish()
    }
}

/// A cluster as the platform records it and as Orion shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub id: ClusterId,
    pub account_id: AccountId,
    pub name: String,
    pub cloud_provider: String,
    pub cloud_region: String,
    /// The Qdrant version the cluster runs.
    pub version: String,
    pub configuration: ClusterConfiguration,
    /// The public host clients connect to: `<id>.<region>.<provider>.<tld>`.
    pub endpoint: String,
    pub phase: Phase,
    /// Why the cluster is in its phase, in words a person can act on; `None` when healthy.
    pub reason: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
    /// Bumped on every change of the desired shape, so a worker can tell a stale command from
    /// the current one.
    pub generation: u64,
}

impl Cluster {
    /// A new cluster for a validated spec, in phase `PENDING` until capacity is reserved.
    pub fn new(
        account_id: AccountId,
        spec: ClusterSpec,
        tld: &Tld,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        spec.validate()?;
        let id = ClusterId::new();
        let endpoint = EndpointHost::new(id, &spec.cloud_region, &spec.cloud_provider, tld)
            .map_err(|e| ValidationError::single("cloud_region", e.to_string()))?;
        Ok(Self {
            id,
            account_id,
            name: spec.name,
            cloud_provider: spec.cloud_provider,
            cloud_region: spec.cloud_region,
            version: DEFAULT_QDRANT_VERSION.to_owned(),
            configuration: spec.configuration,
            endpoint: endpoint.to_string(),
            phase: Phase::Pending,
            reason: None,
            created_at: now,
            updated_at: now,
            generation: 1,
        })
    }

    pub fn region_id(&self) -> RegionId {
        RegionId {
            provider: self.cloud_provider.clone(),
            region: self.cloud_region.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            name: "search-prod".into(),
            cloud_provider: "aws".into(),
            cloud_region: "eu-west-1".into(),
            configuration: ClusterConfiguration {
                num_nodes: 3,
                node_configuration: NodeResources {
                    cpu: 2000,
                    memory: 8192,
                    disk: 100,
                },
            },
        }
    }

    #[test]
    fn phases_use_their_upper_case_names_on_the_wire() {
        for p in Phase::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
            let back: Phase = serde_json::from_str(&format!("\"{p}\"")).unwrap();
            assert_eq!(back, p);
        }
        assert!(serde_json::from_str::<Phase>("\"RUNNING\"").is_err());
    }

    #[test]
    fn a_new_cluster_is_pending_with_its_endpoint() {
        let tld = Tld::new("lyra.example").unwrap();
        let c = Cluster::new(AccountId::new(), spec(), &tld, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(c.phase, Phase::Pending);
        assert_eq!(c.generation, 1);
        assert_eq!(c.endpoint, format!("{}.eu-west-1.aws.lyra.example", c.id));
        assert_eq!(c.configuration.demand().nodes, 3);
        let json = serde_json::to_value(&c).unwrap();
        for field in [
            "id",
            "name",
            "cloud_provider",
            "cloud_region",
            "configuration",
            "endpoint",
            "phase",
            "reason",
            "created_at",
            "updated_at",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut s = spec();
        s.name = "x".into();
        s.cloud_region = "EU".into();
        s.configuration.num_nodes = 101;
        s.configuration.node_configuration.memory = 1;
        let err = s.validate().unwrap_err();
        for field in [
            "name",
            "cloud_region",
            "configuration.num_nodes",
            "configuration.node_configuration.memory",
        ] {
            assert!(err.has_field(field), "{field} not reported in {err}");
        }
        assert_eq!(err.errors.len(), 4);
    }

    #[test]
    fn only_serving_phases_take_traffic() {
        let serving: Vec<_> = Phase::ALL
            .into_iter()
            .filter(|p| p.serves_traffic())
            .collect();
        assert_eq!(
            serving,
            vec![
                Phase::Healthy,
                Phase::Degraded,
                Phase::Resizing,
                Phase::FailedToUpdate
            ]
        );
    }
}
