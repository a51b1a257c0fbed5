//! `lyra region`: the capacity inventory (regions, their driver and totals). Operator token to
//! change; any token to read.

use clap::{Args, Subcommand};
use contract::region::Driver;
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
    /// Register a region or change its capacity (operator token). Raising capacity allocates
    /// waiting clusters, oldest first.
    #[command(
        after_help = "Example:\n  lyra region set aws/eu-west-1 --driver kubernetes --nodes 64 --cpu 256 --memory 1Ti --disk 50Ti"
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
            let answer = orion.get::<Vec<RegionView>>("/api/v1/regions").await?;
            let found = answer
                .value
                .into_iter()
                .zip(answer.json.as_array().cloned().unwrap_or_default())
                .find(|(r, _)| r.provider == region.provider && r.region == region.region);
            let Some((view, json)) = found else {
                return Err(CliError::Api {
                    status: 404,
                    message: format!("region {}/{} not found", region.provider, region.region),
                });
            };
            let one = std::slice::from_ref(&view);
            output::emit(format, &json, || names(one), || rows(one))
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
            };
            let path = format!(
                "/api/v1/regions/{}/{}",
                set.region.provider, set.region.region
            );
            let answer = orion
                .change::<_, RegionView>(Method::PUT, &path, Some(&body))
                .await?;
            let one = std::slice::from_ref(&answer.value);
            output::emit(format, &answer.json, || names(one), || rows(one))
        }
    }
}
