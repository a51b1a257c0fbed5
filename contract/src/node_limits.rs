//! A region's bounds on the shape of its clusters: the smallest and largest node it runs (cpu,
//! memory, disk) and how many nodes one cluster may have.
//!
//! Two layers. The absolute [`limits`] reject nonsense everywhere and are checked before a
//! request touches the store; each region's [`NodeLimits`] lie within them and say what that
//! region's machines and operator accept. The operator sets a region's bounds with the region
//! (a [`NodeLimitsSpec`], where every bound left out takes its [`DEFAULT`]); clusters are
//! checked against them when they are created or resized. A region registered without bounds,
//! or stored before bounds existed, has [`DEFAULT`].

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfiguration;
use crate::region::RegionId;
use crate::resources::limits;
use crate::validation::{ValidationError, Validator};

/// Inclusive bounds: a value fits when `min <= value <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    pub const fn new(min: u64, max: u64) -> Self {
        Self { min, max }
    }

    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// The bounds a region enforces, every one of them present.
// Stored with the region (JSON in its hash) and shown by Orion. Unknown fields are ignored on
// reading, not refused, so that a service that predates a new dimension can still read the
// region it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeLimits {
    /// Millicores per node (1000 is one core).
    pub cpu: Bounds,
    /// MiB per node.
    pub memory: Bounds,
    /// GiB per node.
    pub disk: Bounds,
    /// Nodes per cluster.
    pub nodes: Bounds,
}

/// The bounds of a region that sets none. The minimums admit the seed's example (3 nodes of
/// 100 millicores, 128 MiB and 1 GiB: a cluster to try things on); the maximums are the fixed
/// ones Lyra had before bounds were per region, so no existing request changes its answer.
pub const DEFAULT: NodeLimits = NodeLimits {
    cpu: Bounds::new(100, 64_000),
    memory: Bounds::new(128, 512 * 1024),
    disk: Bounds::new(1, 16 * 1024),
    nodes: Bounds::new(1, 100),
};

impl Default for NodeLimits {
    fn default() -> Self {
        DEFAULT
    }
}

/// One dimension's name (as in `node_limits.<name>`), unit and absolute limits, in one table
/// so that no check below can treat the dimensions differently.
struct Dimension {
    name: &'static str,
    unit: &'static str,
    absolute: (u64, u64),
}

const CPU: Dimension = Dimension {
    name: "cpu",
    unit: "millicores",
    absolute: limits::CPU_MILLICORES,
};
const MEMORY: Dimension = Dimension {
    name: "memory",
    unit: "MiB",
    absolute: limits::MEMORY_MIB,
};
const DISK: Dimension = Dimension {
    name: "disk",
    unit: "GiB",
    absolute: limits::DISK_GIB,
};
const NODES: Dimension = Dimension {
    name: "nodes",
    unit: "nodes",
    absolute: limits::NUM_NODES,
};

impl NodeLimits {
    /// Records on `v` every part of `c` outside these bounds, with fields under `prefix` (e.g.
    /// `configuration`) and reasons that name `region`, so the client learns whose rule it is.
    pub fn check_into(
        &self,
        c: &ClusterConfiguration,
        region: &RegionId,
        v: &mut Validator,
        prefix: &str,
    ) {
        let scope = format!("region {region}");
        let node = c.node_configuration;
        let checks = [
            ("num_nodes", c.num_nodes, &self.nodes, &NODES),
            ("node_configuration.cpu", node.cpu, &self.cpu, &CPU),
            (
                "node_configuration.memory",
                node.memory,
                &self.memory,
                &MEMORY,
            ),
            ("node_configuration.disk", node.disk, &self.disk, &DISK),
        ];
        for (field, value, bounds, dim) in checks {
            v.range_in(
                &format!("{prefix}.{field}"),
                value.into(),
                (bounds.min, bounds.max),
                dim.unit,
                &scope,
            );
        }
    }

    /// [`NodeLimits::check_into`] on its own.
    pub fn check(
        &self,
        c: &ClusterConfiguration,
        region: &RegionId,
        prefix: &str,
    ) -> Result<(), ValidationError> {
        let mut v = Validator::new();
        self.check_into(c, region, &mut v, prefix);
        v.finish()
    }
}

/// One dimension's bounds as an operator writes them: either may be left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BoundsSpec {
    /// The smallest value accepted; left out, the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    /// The largest value accepted; left out, the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A region's bounds as an operator sends them with the region, e.g.
/// `{"cpu": {"min": 100, "max": 64000}, "memory": {"min": 128}}`. Every dimension and every
/// bound left out takes its default; the result must lie within the absolute limits, with
/// `min <= max` in each dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeLimitsSpec {
    /// Millicores per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = spec_schema::cpu))]
    pub cpu: Option<BoundsSpec>,
    /// MiB per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = spec_schema::memory))]
    pub memory: Option<BoundsSpec>,
    /// GiB per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = spec_schema::disk))]
    pub disk: Option<BoundsSpec>,
    /// Nodes per cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = spec_schema::nodes))]
    pub nodes: Option<BoundsSpec>,
}

/// Each dimension of a [`NodeLimitsSpec`] as the OpenAPI document shows it: a [`BoundsSpec`]
/// whose bounds must lie within that dimension's absolute limits. One `BoundsSpec` type serves
/// every dimension, so its own schema cannot say which limits apply; these say it from the
/// same [`Dimension`] table the checks use. (That `min <= max` cannot be said in a schema.)
#[cfg(feature = "openapi")]
mod spec_schema {
    use utoipa::openapi::schema::{
        AdditionalProperties, KnownFormat, Object, ObjectBuilder, SchemaFormat, SchemaType, Type,
    };

    use super::{CPU, DISK, Dimension, MEMORY, NODES};

    fn bounds(dim: &Dimension, what: &str) -> Object {
        let (lo, hi) = dim.absolute;
        let unit = dim.unit;
        let bound = |which: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(lo))
                .maximum(Some(hi))
                .description(Some(format!(
                    "The {which} value accepted, {lo} to {hi} {unit}; left out, the default."
                )))
        };
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .description(Some(what))
            .property("min", bound("smallest"))
            .property("max", bound("largest"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .build()
    }

    pub fn cpu() -> Object {
        bounds(&CPU, "Millicores per node.")
    }

    pub fn memory() -> Object {
        bounds(&MEMORY, "MiB per node.")
    }

    pub fn disk() -> Object {
        bounds(&DISK, "GiB per node.")
    }

    pub fn nodes() -> Object {
        bounds(&NODES, "Nodes per cluster.")
    }
}

impl NodeLimitsSpec {
    /// The bounds this asks for, defaults filled in, recording every bad bound on `v` with its
    /// field under `prefix` (e.g. `node_limits.cpu.min`). The result means something only when
    /// `v` finishes without errors.
    pub fn resolve_into(&self, v: &mut Validator, prefix: &str) -> NodeLimits {
        NodeLimits {
            cpu: resolve_one(self.cpu, DEFAULT.cpu, &CPU, v, prefix),
            memory: resolve_one(self.memory, DEFAULT.memory, &MEMORY, v, prefix),
            disk: resolve_one(self.disk, DEFAULT.disk, &DISK, v, prefix),
            nodes: resolve_one(self.nodes, DEFAULT.nodes, &NODES, v, prefix),
        }
    }

    /// [`NodeLimitsSpec::resolve_into`] on its own.
    pub fn resolve(&self, prefix: &str) -> Result<NodeLimits, ValidationError> {
        let mut v = Validator::new();
        let limits = self.resolve_into(&mut v, prefix);
        v.finish()?;
        Ok(limits)
    }

    /// Whether nothing is set, so that a client can leave the member out entirely.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn resolve_one(
    spec: Option<BoundsSpec>,
    default: Bounds,
    dim: &Dimension,
    v: &mut Validator,
    prefix: &str,
) -> Bounds {
    let spec = spec.unwrap_or_default();
    let bounds = Bounds::new(
        spec.min.unwrap_or(default.min),
        spec.max.unwrap_or(default.max),
    );
    let field = format!("{prefix}.{}", dim.name);
    let (lo, hi) = dim.absolute;
    let mut in_range = true;
    for (which, given) in [("min", spec.min), ("max", spec.max)] {
        if let Some(value) = given {
            in_range &= (lo..=hi).contains(&value);
            v.range(&format!("{field}.{which}"), value, lo, hi, dim.unit);
        }
    }
    // Order is only worth reporting between values that are otherwise acceptable. Blame the
    // bound the operator wrote: a defaulted one is not theirs to fix, though they may set it.
    if in_range && bounds.min > bounds.max {
        let unit = dim.unit;
        match (spec.min, spec.max) {
            (given_min, Some(max)) => {
                let note = if given_min.is_some() {
                    ""
                } else {
                    " (the default; set min as well)"
                };
                v.fail(
                    format!("{field}.max"),
                    format!(
                        "must be at least the minimum, {} {unit}{note}, got {max}",
                        bounds.min
                    ),
                );
            }
            (Some(min), None) => v.fail(
                format!("{field}.min"),
                format!(
                    "must be at most the maximum, {} {unit} (the default; set max as well), got {min}",
                    bounds.max
                ),
            ),
            // Both defaulted: DEFAULT is ordered (tested below).
            (None, None) => {}
        }
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NodeResources;

    fn region() -> RegionId {
        RegionId::new("local", "dev").unwrap()
    }

    fn shape(num_nodes: u32, cpu: u32, memory: u32, disk: u32) -> ClusterConfiguration {
        ClusterConfiguration {
            num_nodes,
            node_configuration: NodeResources { cpu, memory, disk },
        }
    }

    #[test]
    fn the_defaults_lie_within_the_absolute_limits_and_admit_the_seed_example() {
        for (b, d) in [
            (DEFAULT.cpu, &CPU),
            (DEFAULT.memory, &MEMORY),
            (DEFAULT.disk, &DISK),
            (DEFAULT.nodes, &NODES),
        ] {
            assert!(b.min <= b.max, "{}", d.name);
            assert!(d.absolute.0 <= b.min && b.max <= d.absolute.1, "{}", d.name);
        }
        assert_eq!(
            NodeLimitsSpec::default().resolve("node_limits"),
            Ok(DEFAULT)
        );
        assert!(
            DEFAULT
                .check(&shape(3, 100, 128, 1), &region(), "configuration")
                .is_ok()
        );
    }

    #[test]
    fn a_shape_outside_the_bounds_names_the_field_the_bound_and_the_region() {
        let err = DEFAULT
            .check(&shape(101, 50, 128, 1), &region(), "configuration")
            .unwrap_err();
        assert!(err.has_field("configuration.num_nodes"));
        assert!(err.has_field("configuration.node_configuration.cpu"));
        assert!(!err.has_field("configuration.node_configuration.memory"));
        assert!(
            err.to_string().contains(
                "configuration.node_configuration.cpu: must be between 100 and 64000 millicores in region local/dev, got 50"
            ),
            "{err}"
        );
    }

    #[test]
    fn left_out_bounds_take_their_defaults() {
        let spec: NodeLimitsSpec =
            serde_json::from_str(r#"{"cpu": {"min": 500}, "disk": {"max": 100}}"#).unwrap();
        let got = spec.resolve("node_limits").unwrap();
        assert_eq!(got.cpu, Bounds::new(500, DEFAULT.cpu.max));
        assert_eq!(got.disk, Bounds::new(DEFAULT.disk.min, 100));
        assert_eq!(got.memory, DEFAULT.memory);
        assert_eq!(got.nodes, DEFAULT.nodes);
    }

    #[test]
    fn bounds_beyond_the_absolute_limits_or_out_of_order_are_refused_by_field() {
        let spec: NodeLimitsSpec = serde_json::from_str(
            r#"{"cpu": {"min": 5}, "memory": {"min": 4096, "max": 1024},
                "disk": {"max": 2000000}, "nodes": {"max": 0}}"#,
        )
        .unwrap();
        let err = spec.resolve("node_limits").unwrap_err();
        for field in [
            "node_limits.cpu.min",
            "node_limits.memory.max",
            "node_limits.disk.max",
            "node_limits.nodes.max",
        ] {
            assert!(err.has_field(field), "{field} not in {err}");
        }
        // One reason per bad bound: an out-of-range value is not also blamed for its order.
        assert_eq!(err.errors.len(), 4, "{err}");
        assert!(err.to_string().contains("at least the minimum, 4096 MiB"));

        // Only min given, above the default max: min is the one to blame, and the reason says
        // where the max came from.
        let spec = NodeLimitsSpec {
            cpu: Some(BoundsSpec {
                min: Some(100_000),
                max: None,
            }),
            ..Default::default()
        };
        let err = spec.resolve("node_limits").unwrap_err();
        assert!(err.has_field("node_limits.cpu.min"));
        assert!(err.to_string().contains("(the default; set max as well)"));
    }

    #[test]
    fn specs_refuse_unknown_fields_and_limits_read_leniently() {
        for bad in [r#"{"gpu": {"min": 1}}"#, r#"{"cpu": {"min": 1, "avg": 2}}"#] {
            assert!(
                serde_json::from_str::<NodeLimitsSpec>(bad).is_err(),
                "{bad}"
            );
        }
        let mut stored = serde_json::to_value(DEFAULT).unwrap();
        stored["gpu"] = serde_json::json!({"min": 0, "max": 8});
        assert_eq!(
            serde_json::from_value::<NodeLimits>(stored).unwrap(),
            DEFAULT
        );
    }
}
