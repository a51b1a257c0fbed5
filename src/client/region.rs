//! `lyra region`: the capacity inventory (regions, their driver, totals and node limits).
//! Operator token to change; any token to read.

use clap::{Args, Subcommand};
use contract::node_limits::{Bounds, BoundsSpec, DEFAULT, NodeLimitsSpec};
use contract::region::{Driver, RegionId};
use control::api::{Capacity, PutRegion, RegionView};
use http::Method;

use super::output;
use super::quantity::{self, show_cpu, show_disk, show_memory};
use super::{CliError, Connection};

/// `<provider>/<region>`, e.g. `aws/eu-west-1`.
#[derive(Debug, Clone)]
pub struct RegionRef {
    pub provider: String,
    pub region: String,
}

/// Parses `<provider>/<region>`.
pub fn parse_ref(s: &str) -> Result<RegionRef, String> {
    match s.split_once('/') {
        Some((p, r)) if !p.is_empty() && !r.is_empty() && !r.contains('/') => Ok(RegionRef {
            provider: p.to_owned(),
            region: r.to_owned(),
        }),
        _ => Err(format!(
            "{s:?} is not <provider>/<region>, e.g. aws/eu-west-1"
        )),
    }
}

#[derive(Debug, Args)]
pub struct SetRegion {
    /// `<provider>/<region>`.
    #[arg(value_parser = parse_ref)]
    region: RegionRef,
    /// Which driver builds the region's clusters.
    #[arg(long, value_parser = |s: &str| s.parse::<Driver>().map_err(|e| e.to_string()))]
    driver: Driver,
    /// Most nodes the region holds.
    #[arg(long)]
    nodes: u64,
    /// Total CPU: cores (64) or millicores (64000m).
    #[arg(long, value_parser = quantity::cpu)]
    cpu: u64,
    /// Total memory: 256Gi, or MiB.
    #[arg(long, value_parser = quantity::memory)]
    memory: u64,
    /// Total disk: 10Ti, or GiB.
    #[arg(long, value_parser = quantity::disk)]
    disk: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Bounds on one node and on a cluster's nodes. A bound left out takes its default, also when
/// the region had another one: `set` describes the whole region. The defaults in the help come
/// from the contract, so they cannot drift from what Orion applies.
#[derive(Debug, Args)]
#[command(next_help_heading = "Node limits (a bound left out takes its default)")]
pub struct LimitArgs {
    #[arg(long, value_parser = quantity::cpu,
        help = format!("Least CPU of one node: cores (0.5) or millicores (500m) [default: {}]", show_cpu(DEFAULT.cpu.min)))]
    min_cpu: Option<u64>,
    #[arg(long, value_parser = quantity::cpu,
        help = format!("Most CPU of one node [default: {}]", show_cpu(DEFAULT.cpu.max)))]
    max_cpu: Option<u64>,
    #[arg(long, value_parser = quantity::memory,
        help = format!("Least memory of one node: 256Mi, 1Gi [default: {}]", show_memory(DEFAULT.memory.min)))]
    min_memory: Option<u64>,
    #[arg(long, value_parser = quantity::memory,
        help = format!("Most memory of one node [default: {}]", show_memory(DEFAULT.memory.max)))]
    max_memory: Option<u64>,
    #[arg(long, value_parser = quantity::disk,
        help = format!("Least disk of one node: 10Gi [default: {}]", show_disk(DEFAULT.disk.min)))]
    min_disk: Option<u64>,
    #[arg(long, value_parser = quantity::disk,
        help = format!("Most disk of one node [default: {}]", show_disk(DEFAULT.disk.max)))]
    max_disk: Option<u64>,
    #[arg(long, help = format!("Fewest nodes of one cluster [default: {}]", DEFAULT.nodes.min))]
    min_nodes: Option<u64>,
    #[arg(long, help = format!("Most nodes of one cluster [default: {}]", DEFAULT.nodes.max))]
    max_nodes: Option<u64>,
}

impl LimitArgs {
    /// What to send: nothing when no bound is given, so Orion applies every default.
    fn spec(&self) -> Option<NodeLimitsSpec> {
        let bounds = |min: Option<u64>, max: Option<u64>| {
            (min.is_some() || max.is_some()).then_some(BoundsSpec { min, max })
        };
        let spec = NodeLimitsSpec {
            cpu: bounds(self.min_cpu, self.max_cpu),
            memory: bounds(self.min_memory, self.max_memory),
            disk: bounds(self.min_disk, self.max_disk),
            nodes: bounds(self.min_nodes, self.max_nodes),
        };
        (!spec.is_empty()).then_some(spec)
    }
}

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// List regions with their capacity, what is allocated, what is free and who waits.
    #[command(after_help = "Example:\n  lyra region list")]
    List,
    /// Show one region.
    #[command(after_help = "Example:\n  lyra region get local/dev")]
    Get {
        #[arg(value_parser = parse_ref)]
        region: RegionRef,
    },
    /// Register a region or change its capacity and node limits (operator token). Raising
    /// capacity allocates waiting clusters, oldest first; node limits apply to clusters created
    /// or resized from now on.
    #[command(
        after_help = "Example:\n  lyra region set aws/eu-west-1 --driver kubernetes --nodes 64 --cpu 256 --memory 1Ti --disk 50Ti \\\n      --min-cpu 500m --max-memory 64Gi"
    )]
    Set(SetRegion),
}

fn capacity(c: &Capacity) -> String {
    format!(
        "{} nodes, {} cpu, {} mem, {} disk",
        c.nodes,
        show_cpu(c.cpu),
        show_memory(c.memory),
        show_disk(c.disk)
    )
}

fn range(b: &Bounds, show: fn(u64) -> String) -> String {
    format!("{} to {}", show(b.min), show(b.max))
}

fn details(r: &RegionView) -> String {
    let l = &r.node_limits;
    output::details(&[
        ("region", format!("{}/{}", r.provider, r.region)),
        ("driver", r.driver.to_string()),
        ("capacity", capacity(&r.capacity)),
        ("allocated", capacity(&r.allocated)),
        ("free", capacity(&r.free)),
        ("waiting", r.waiting.to_string()),
        ("cpu per node", range(&l.cpu, show_cpu)),
        ("memory per node", range(&l.memory, show_memory)),
        ("disk per node", range(&l.disk, show_disk)),
        ("nodes per cluster", range(&l.nodes, |n| n.to_string())),
    ])
    .to_string()
}

fn rows(regions: &[RegionView]) -> String {
    let mut t = output::table(["region", "driver", "capacity", "free", "waiting"]);
    for r in regions {
        t.add_row([
            format!("{}/{}", r.provider, r.region),
            r.driver.to_string(),
            capacity(&r.capacity),
            capacity(&r.free),
            r.waiting.to_string(),
        ]);
    }
    t.to_string()
}

fn names(regions: &[RegionView]) -> String {
    let names: Vec<String> = regions
        .iter()
        .map(|r| format!("{}/{}", r.provider, r.region))
        .collect();
    names.join("\n")
}

pub async fn run(conn: &Connection, command: RegionCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    match command {
        RegionCommand::List => {
            let answer = orion.get::<Vec<RegionView>>("/api/v1/regions").await?;
            output::emit(
                format,
                &answer.json,
                || names(&answer.value),
                || rows(&answer.value),
            )
        }
        RegionCommand::Get { region } => {
            // Names go into the path: one that is no DNS label (a space, `?`) cannot exist, and
            // must not turn into another request.
            if RegionId::new(&region.provider, &region.region).is_err() {
                return Err(CliError::Api {
                    status: 404,
                    message: format!("region {}/{} not found", region.provider, region.region),
                });
            }
            let answer = orion
                .get::<RegionView>(&format!(
                    "/api/v1/regions/{}/{}",
                    region.provider, region.region
                ))
                .await?;
            let one = std::slice::from_ref(&answer.value);
            output::emit(
                format,
                &answer.json,
                || names(one),
                || details(&answer.value),
            )
        }
        RegionCommand::Set(set) => {
            let body = PutRegion {
                driver: set.driver,
                capacity: Capacity {
                    nodes: set.nodes,
                    cpu: set.cpu,
                    memory: set.memory,
                    disk: set.disk,
                },
                node_limits: set.limits.spec(),
            };
            let path = format!(
                "/api/v1/regions/{}/{}",
                set.region.provider, set.region.region
            );
            let answer = orion
                .change::<_, RegionView>(Method::PUT, &path, Some(&body))
                .await?;
            let one = std::slice::from_ref(&answer.value);
            output::emit(
                format,
                &answer.json,
                || names(one),
                || details(&answer.value),
            )
        }
    }
}
