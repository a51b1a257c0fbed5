//! How records are laid out in Redis hashes.
//!
//! Clusters and regions are hashes rather than JSON strings so that the capacity scripts
//! ([`crate::scripts`]) can change one field (a phase, an allocation counter) atomically
//! without re-encoding a document. Field names here are the ones the scripts use.

use std::collections::HashMap;
use std::str::FromStr;

use jiff::Timestamp;

use crate::cluster::{Cluster, ClusterConfiguration, Phase};
use crate::node_limits::NodeLimits;
use crate::region::{Driver, Region};
use crate::resources::Capacity;

/// A stored record that cannot be read back. Always a bug or a foreign writer, never user
/// input: callers log it and answer 500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("stored record lacks field {0:?}")]
    Missing(&'static str),
    #[error("stored field {field:?} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

type Fields = HashMap<String, String>;

fn get<'a>(fields: &'a Fields, name: &'static str) -> Result<&'a str, RecordError> {
    fields
        .get(name)
        .map(String::as_str)
        .ok_or(RecordError::Missing(name))
}

fn parse<T: FromStr>(fields: &Fields, name: &'static str) -> Result<T, RecordError>
where
    T::Err: std::fmt::Display,
{
    get(fields, name)?
        .parse()
        .map_err(|e: T::Err| RecordError::Invalid {
            field: name,
            reason: e.to_string(),
        })
}

fn phase(fields: &Fields) -> Result<Phase, RecordError> {
    let raw = get(fields, "phase")?;
    // RESIZING was stored as SCALING before it had its name.
    let raw = if raw == "SCALING" { "RESIZING" } else { raw };
    Phase::ALL
        .into_iter()
        .find(|p| p.as_str() == raw)
        .ok_or_else(|| RecordError::Invalid {
            field: "phase",
            reason: format!("unknown phase {raw:?}"),
        })
}

/// The capacity dimensions in the order the scripts use.
pub const DIMENSIONS: [&str; 4] = ["nodes", "cpu", "memory", "disk"];

fn capacity(fields: &Fields, prefix: &'static str) -> Result<Capacity, RecordError> {
    let read = |dim: &'static str| -> Result<u64, RecordError> {
        match fields.get(&format!("{prefix}{dim}")) {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| RecordError::Invalid {
                field: dim,
                reason: format!("{prefix}{dim} is not a whole number: {v:?}"),
            }),
        }
    };
    Ok(Capacity {
        nodes: read("nodes")?,
        cpu: read("cpu")?,
        memory: read("memory")?,
        disk: read("disk")?,
    })
}

fn capacity_fields(prefix: &str, c: &Capacity) -> [(String, String); 4] {
    [
        (format!("{prefix}nodes"), c.nodes.to_string()),
        (format!("{prefix}cpu"), c.cpu.to_string()),
        (format!("{prefix}memory"), c.memory.to_string()),
        (format!("{prefix}disk"), c.disk.to_string()),
    ]
}

/// A cluster as stored, with what it holds of its region's capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRecord {
    pub cluster: Cluster,
    /// Capacity currently reserved for the cluster in its region (zero while PENDING).
    pub reserved: Capacity,
}

impl ClusterRecord {
    /// The hash fields of a cluster. Reservation fields are owned by the scripts and are not
    /// written from here.
    pub fn cluster_fields(c: &Cluster) -> Result<Vec<(String, String)>, serde_json::Error> {
        Ok(vec![
            ("id".into(), c.id.to_string()),
            ("account_id".into(), c.account_id.to_string()),
            ("name".into(), c.name.clone()),
            ("cloud_provider".into(), c.cloud_provider.clone()),
            ("cloud_region".into(), c.cloud_region.clone()),
            ("version".into(), c.version.clone()),
            (
                "configuration".into(),
                serde_json::to_string(&c.configuration)?,
            ),
            ("endpoint".into(), c.endpoint.clone()),
            ("phase".into(), c.phase.as_str().into()),
            ("reason".into(), c.reason.clone().unwrap_or_default()),
            ("created_at".into(), c.created_at.to_string()),
            ("updated_at".into(), c.updated_at.to_string()),
            ("generation".into(), c.generation.to_string()),
        ])
    }

    pub fn from_fields(fields: &Fields) -> Result<Self, RecordError> {
        let configuration: ClusterConfiguration =
            serde_json::from_str(get(fields, "configuration")?).map_err(|e| {
                RecordError::Invalid {
                    field: "configuration",
                    reason: e.to_string(),
                }
            })?;
        let reason = get(fields, "reason").unwrap_or_default();
        Ok(Self {
            cluster: Cluster {
                id: parse(fields, "id")?,
                account_id: parse(fields, "account_id")?,
                name: get(fields, "name")?.to_owned(),
                cloud_provider: get(fields, "cloud_provider")?.to_owned(),
                cloud_region: get(fields, "cloud_region")?.to_owned(),
                version: get(fields, "version")?.to_owned(),
                configuration,
                endpoint: get(fields, "endpoint")?.to_owned(),
                phase: phase(fields)?,
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
                created_at: parse::<Timestamp>(fields, "created_at")?,
                updated_at: parse::<Timestamp>(fields, "updated_at")?,
                generation: parse(fields, "generation")?,
            },
            reserved: capacity(fields, "reserved_")?,
        })
    }
}

/// A region as stored: what the operator registered, and what is allocated now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionRecord {
    pub region: Region,
    pub allocated: Capacity,
}

impl RegionRecord {
    /// Free capacity. Never negative: the scripts refuse any change that would make it so.
    pub fn free(&self) -> Capacity {
        self.region
            .capacity
            .checked_sub(&self.allocated)
            .unwrap_or_default()
    }

    /// The fields an operator sets; allocation counters are owned by the scripts.
    pub fn region_fields(r: &Region) -> Result<Vec<(String, String)>, serde_json::Error> {
        let mut fields = vec![
            ("provider".into(), r.provider.clone()),
            ("region".into(), r.region.clone()),
            ("driver".into(), r.driver.as_str().into()),
        ];
        fields.extend(capacity_fields("total_", &r.capacity));
        fields.push((NODE_LIMITS.into(), serde_json::to_string(&r.node_limits)?));
        Ok(fields)
    }

    pub fn from_fields(fields: &Fields) -> Result<Self, RecordError> {
        let driver: Driver = parse(fields, "driver")?;
        Ok(Self {
            region: Region {
                provider: get(fields, "provider")?.to_owned(),
                region: get(fields, "region")?.to_owned(),
                driver,
                capacity: capacity(fields, "total_")?,
                node_limits: node_limits(fields.get(NODE_LIMITS).map(String::as_str))?,
            },
            allocated: capacity(fields, "alloc_")?,
        })
    }
}

/// The region hash field holding the region's [`NodeLimits`] as JSON: one field, so that a
/// script can tell in one comparison whether the bounds a request was checked against are
/// still the region's (see `lua/create_cluster.lua`).
pub const NODE_LIMITS: &str = "node_limits";

/// A region's bounds from its stored field; a region stored before bounds existed has none
/// and gets the defaults.
pub fn node_limits(stored: Option<&str>) -> Result<NodeLimits, RecordError> {
    match stored {
        None => Ok(NodeLimits::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| RecordError::Invalid {
            field: NODE_LIMITS,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterSpec;
    use crate::host::Tld;
    use crate::ids::AccountId;
    use crate::node_limits::Bounds;
    use crate::resources::NodeResources;

    fn to_map(fields: Vec<(String, String)>) -> Fields {
        fields.into_iter().collect()
    }

    #[test]
    fn clusters_round_trip_through_hash_fields() {
        let spec = ClusterSpec {
            name: "c1".into(),
            cloud_provider: "local".into(),
            cloud_region: "dev".into(),
            configuration: ClusterConfiguration {
                num_nodes: 2,
                node_configuration: NodeResources {
                    cpu: 1000,
                    memory: 1024,
                    disk: 10,
                },
            },
        };
        let mut c = Cluster::new(
            AccountId::new(),
            spec,
            &Tld::new("localhost").unwrap(),
            Timestamp::now(),
        )
        .unwrap();
        c.reason = Some("waiting".into());
        let mut fields = to_map(ClusterRecord::cluster_fields(&c).unwrap());
        fields.insert("reserved_nodes".into(), "2".into());
        let back = ClusterRecord::from_fields(&fields).unwrap();
        assert_eq!(back.cluster, c);
        assert_eq!(back.reserved.nodes, 2);
        assert_eq!(back.reserved.cpu, 0);

        fields.insert("phase".into(), "SCALING".into());
        assert_eq!(
            ClusterRecord::from_fields(&fields).map(|r| r.cluster.phase),
            Ok(Phase::Resizing),
            "a resize stored before RESIZING had its name"
        );
        fields.insert("phase".into(), "RUNNING".into());
        assert!(matches!(
            ClusterRecord::from_fields(&fields),
            Err(RecordError::Invalid { field: "phase", .. })
        ));
        fields.remove("phase");
        assert_eq!(
            ClusterRecord::from_fields(&fields),
            Err(RecordError::Missing("phase"))
        );
    }

    #[test]
    fn regions_round_trip_and_free_is_totals_minus_allocated() {
        let r = Region {
            provider: "local".into(),
            region: "dev".into(),
            driver: Driver::Local,
            capacity: Capacity {
                nodes: 10,
                cpu: 10_000,
                memory: 20_480,
                disk: 100,
            },
            node_limits: NodeLimits {
                cpu: Bounds::new(500, 8000),
                ..NodeLimits::default()
            },
        };
        let mut fields = to_map(RegionRecord::region_fields(&r).unwrap());
        fields.insert("alloc_nodes".into(), "3".into());
        let back = RegionRecord::from_fields(&fields).unwrap();
        assert_eq!(back.region, r);
        assert_eq!(back.free().nodes, 7);
        assert_eq!(back.free().cpu, 10_000);

        fields.insert(NODE_LIMITS.into(), "{\"cpu\":".into());
        assert!(matches!(
            RegionRecord::from_fields(&fields),
            Err(RecordError::Invalid {
                field: NODE_LIMITS,
                ..
            })
        ));
    }

    #[test]
    fn regions_stored_before_node_limits_get_the_defaults() {
        let fields = to_map(vec![
            ("provider".into(), "local".into()),
            ("region".into(), "dev".into()),
            ("driver".into(), "local".into()),
            ("total_nodes".into(), "4".into()),
        ]);
        let back = RegionRecord::from_fields(&fields).unwrap();
        assert_eq!(back.region.node_limits, NodeLimits::default());
        assert_eq!(back.region.capacity.nodes, 4);
    }
}
