//! Node resources and region capacity. Units are fixed here, once, for the whole product:
//! `cpu` in millicores, `memory` in MiB, `disk` in GiB.

use serde::{Deserialize, Serialize};

use crate::validation::Validator;

/// Absolute, inclusive bounds on one node's resources and on a cluster's node count: what any
/// request must satisfy, and what every region's [`crate::node_limits::NodeLimits`] must lie
/// within. They reject nonsense, not policy; a region's own bounds are usually much tighter.
///
/// - cpu 10m..=1000 cores: below a hundredth of a core no Qdrant node does useful work, and
///   the minimum catches cores sent where millicores are meant (`2` for two cores); the
///   largest machines offered (AWS u7in-32tb, 896 vCPUs) stay below 1000 cores.
/// - memory 64 MiB..=32 TiB: Qdrant's own footprint at start is of that order, and the minimum
///   catches GiB sent where MiB are meant (`8` for 8 GiB); 32 TiB is the largest single
///   machine offered (AWS u7in-32tb).
/// - disk 1 GiB..=1 PiB: 1 GiB is the unit; one node's disk is one volume, and no provider
///   offers a volume near 1 PiB (EBS: 64 TiB).
/// - nodes 1..=100: a Qdrant cluster is one Raft group that every node joins, and 100 is the
///   largest Lyra has been built for (regions may lower it, not raise it).
///
/// Every value fits in the API's 32-bit per-node fields, and a whole cluster's demand
/// (100 x 1 PiB) stays far below the capacity scripts' exact range (2^53).
pub mod limits {
    pub const CPU_MILLICORES: (u64, u64) = (10, 1_000_000);
    pub const MEMORY_MIB: (u64, u64) = (64, 32 * 1024 * 1024);
    pub const DISK_GIB: (u64, u64) = (1, 1024 * 1024);
    pub const NUM_NODES: (u64, u64) = (1, 100);
    /// The largest total of one dimension of a region's capacity: far beyond any real region,
    /// small enough that sums in the capacity scripts stay exact.
    pub const CAPACITY_TOTAL: u64 = 1 << 50;
}

/// What each node of a cluster gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
// The schema's bounds are the absolute `limits` (utoipa takes only literals; Orion's OpenAPI
// test holds them to the constants).
pub struct NodeResources {
    /// Millicores: 1000 is one core.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 10, maximum = 1000000, example = 1000)
    )]
    pub cpu: u32,
    /// MiB.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 64, maximum = 33554432, example = 1024)
    )]
    pub memory: u32,
    /// GiB.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 1048576, example = 10)
    )]
    pub disk: u32,
}

impl NodeResources {
    /// Records values outside the absolute [`limits`] on `v`, with `prefix` naming where these
    /// resources sit in the request (e.g. `configuration.node_configuration`). The region's
    /// own bounds are checked by [`crate::node_limits::NodeLimits::check_into`].
    pub fn validate_into(&self, v: &mut Validator, prefix: &str) {
        let (lo, hi) = limits::CPU_MILLICORES;
        v.range(
            &format!("{prefix}.cpu"),
            self.cpu.into(),
            lo,
            hi,
            "millicores",
        );
        let (lo, hi) = limits::MEMORY_MIB;
        v.range(
            &format!("{prefix}.memory"),
            self.memory.into(),
            lo,
            hi,
            "MiB",
        );
        let (lo, hi) = limits::DISK_GIB;
        v.range(&format!("{prefix}.disk"), self.disk.into(), lo, hi, "GiB");
    }
}

/// An amount of capacity: a region's totals, what is allocated, what is free, or what a
/// cluster needs. `cpu`, `memory` and `disk` are sums over nodes, in the units above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
// At most `limits::CAPACITY_TOTAL` in each dimension (a literal here, held to the constant by
// Orion's OpenAPI test).
pub struct Capacity {
    #[cfg_attr(feature = "openapi", schema(maximum = 1125899906842624_u64))]
    pub nodes: u64,
    #[cfg_attr(feature = "openapi", schema(maximum = 1125899906842624_u64))]
    pub cpu: u64,
    #[cfg_attr(feature = "openapi", schema(maximum = 1125899906842624_u64))]
    pub memory: u64,
    #[cfg_attr(feature = "openapi", schema(maximum = 1125899906842624_u64))]
    pub disk: u64,
}

impl Capacity {
    /// What `num_nodes` nodes of `node` need in total.
    pub fn for_nodes(num_nodes: u32, node: NodeResources) -> Self {
        let n = u64::from(num_nodes);
        Self {
            nodes: n,
            cpu: n * u64::from(node.cpu),
            memory: n * u64::from(node.memory),
            disk: n * u64::from(node.disk),
        }
    }

    /// Whether `need` fits into `self` in every dimension.
    pub fn covers(&self, need: &Capacity) -> bool {
        self.nodes >= need.nodes
            && self.cpu >= need.cpu
            && self.memory >= need.memory
            && self.disk >= need.disk
    }

    /// `self - other`, or `None` when any dimension would go negative.
    pub fn checked_sub(&self, other: &Capacity) -> Option<Capacity> {
        Some(Capacity {
            nodes: self.nodes.checked_sub(other.nodes)?,
            cpu: self.cpu.checked_sub(other.cpu)?,
            memory: self.memory.checked_sub(other.memory)?,
            disk: self.disk.checked_sub(other.disk)?,
        })
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(&self, other: &Capacity) -> Option<Capacity> {
        Some(Capacity {
            nodes: self.nodes.checked_add(other.nodes)?,
            cpu: self.cpu.checked_add(other.cpu)?,
            memory: self.memory.checked_add(other.memory)?,
            disk: self.disk.checked_add(other.disk)?,
        })
    }

    /// The dimensions in which `self` falls short of `need`, for a reason a person can act on.
    pub fn shortfall(&self, need: &Capacity) -> Vec<&'static str> {
        let mut short = Vec::new();
        if self.nodes < need.nodes {
            short.push("nodes");
        }
        if self.cpu < need.cpu {
            short.push("cpu");
        }
        if self.memory < need.memory {
            short.push("memory");
        }
        if self.disk < need.disk {
            short.push("disk");
        }
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: NodeResources = NodeResources {
        cpu: 2000,
        memory: 4096,
        disk: 50,
    };

    #[test]
    fn demand_multiplies_by_nodes() {
        let c = Capacity::for_nodes(3, NODE);
        assert_eq!(
            c,
            Capacity {
                nodes: 3,
                cpu: 6000,
                memory: 12288,
                disk: 150
            }
        );
    }

    #[test]
    fn arithmetic_never_goes_negative() {
        let total = Capacity::for_nodes(3, NODE);
        let need = Capacity::for_nodes(4, NODE);
        assert!(!total.covers(&need));
        assert_eq!(total.checked_sub(&need), None);
        assert_eq!(
            total.shortfall(&need),
            vec!["nodes", "cpu", "memory", "disk"]
        );
        let left = total.checked_sub(&Capacity::for_nodes(1, NODE)).unwrap();
        assert_eq!(left, Capacity::for_nodes(2, NODE));
        assert_eq!(left.checked_add(&Capacity::for_nodes(1, NODE)), Some(total));
    }

    #[test]
    fn out_of_range_resources_name_their_field_and_unit() {
        let mut v = Validator::new();
        NodeResources {
            cpu: 5,
            memory: 4096,
            disk: 0,
        }
        .validate_into(&mut v, "configuration.node_configuration");
        let err = v.finish().unwrap_err();
        assert!(err.has_field("configuration.node_configuration.cpu"));
        assert!(err.has_field("configuration.node_configuration.disk"));
        assert!(!err.has_field("configuration.node_configuration.memory"));
        assert!(err.to_string().contains("millicores"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<NodeResources, _> =
            serde_json::from_str(r#"{"cpu":1000,"memory":1024,"disk":1,"gpu":1}"#);
        assert!(r.is_err());
    }
}
