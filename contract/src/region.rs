//! Regions: where clusters run. A region belongs to a provider, names the infrastructure
//! driver that builds its clusters, and has a finite capacity that is never oversubscribed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::node_limits::NodeLimits;
use crate::resources::Capacity;
use crate::validation::{ValidationError, Validator};

/// The infrastructure driver a region's clusters are built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Local processes of the Qdrant binary (the embedded default).
    Local,
    /// kube-rs server-side apply of what the official Qdrant chart renders.
    Kubernetes,
    /// The official `qdrant/qdrant` Helm chart through the `helm` binary.
    Helm,
}

impl Driver {
    pub const ALL: [Driver; 3] = [Driver::Local, Driver::Kubernetes, Driver::Helm];

    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Local => "local",
            Driver::Kubernetes => "kubernetes",
            Driver::Helm => "helm",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a driver name is not one of [`Driver::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown driver {0:?}: expected one of local, kubernetes, helm")]
pub struct UnknownDriver(pub String);

impl FromStr for Driver {
    type Err = UnknownDriver;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Driver::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDriver(s.to_owned()))
    }
}

/// A provider and region pair, e.g. `aws` / `eu-west-1`; both are DNS labels because they are
/// part of every endpoint host in the region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionId {
    pub provider: String,
    pub region: String,
}

impl RegionId {
    pub fn new(provider: &str, region: &str) -> Result<Self, ValidationError> {
        let mut v = Validator::new();
        v.dns_label("cloud_provider", provider);
        v.dns_label("cloud_region", region);
        v.finish()?;
        Ok(Self {
            provider: provider.to_owned(),
            region: region.to_owned(),
        })
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.region)
    }
}

/// A region as an operator registers it: its driver, its capacity totals and its bounds on
/// the shape of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Region {
    pub provider: String,
    pub region: String,
    pub driver: Driver,
    /// Totals: what the region can hold when empty.
    pub capacity: Capacity,
    /// What one node may have and how many nodes one cluster may have here.
    #[serde(default)]
    pub node_limits: NodeLimits,
}

impl Region {
    pub fn id(&self) -> RegionId {
        RegionId {
            provider: self.provider.clone(),
            region: self.region.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_parse_and_print_the_same_names() {
        for d in Driver::ALL {
            assert_eq!(d.as_str().parse::<Driver>().unwrap(), d);
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        let err = "docker".parse::<Driver>().unwrap_err();
        assert!(err.to_string().contains("local, kubernetes, helm"));
    }

    #[test]
    fn region_ids_are_dns_labels() {
        assert!(RegionId::new("aws", "eu-west-1").is_ok());
        let err = RegionId::new("AWS", "eu_west").unwrap_err();
        assert!(err.has_field("cloud_provider") && err.has_field("cloud_region"));
    }
}
