//! `lyra cluster`: create, list, get, resize, delete and wait for Qdrant clusters.

use std::time::Duration;

use clap::{Args, Subcommand};
use contract::ids::{AccountId, ClusterId};
use control::api::{
    Cluster, ClusterConfiguration, ClusterPage, ClusterSpec, MAX_PAGE_SIZE, NodeResources, Phase,
    ResizeCluster,
};
use http::Method;

use super::orion::{Answer, Orion};
use super::output::{self, Format};
use super::progress::{self, Goal};
use super::quantity::{self, show_cpu, show_disk, show_memory};
use super::region::RegionRef;
use super::{CliError, Connection};

/// `10m`, `90s`, `1h`: how long `--wait` waits.
fn wait_timeout(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: write e.g. 90s, 10m or 1h"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait until the change is done, showing the phase and reason as they change.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits before giving up (the work goes on in the background).
    #[arg(long, default_value = "10m", value_parser = wait_timeout, requires = "wait")]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CreateCluster {
    /// The cluster's name: 2 to 64 characters of [a-zA-Z0-9_-].
    name: String,
    /// Where: `<provider>/<region>` (`lyra region list`).
    #[arg(long, env = "LYRA_REGION", default_value = "local/dev", value_parser = super::region::parse_ref)]
    region: RegionRef,
    /// How many Qdrant nodes.
    #[arg(long, default_value_t = 1)]
    nodes: u32,
    /// CPU per node: cores (2, 1.5) or millicores (500m).
    #[arg(long, default_value = "1", value_parser = quantity::node_cpu)]
    cpu: u32,
    /// Memory per node: 512Mi, 4Gi.
    #[arg(long, default_value = "1Gi", value_parser = quantity::node_memory)]
    memory: u32,
    /// Disk per node: 10Gi, 1Ti.
    #[arg(long, default_value = "10Gi", value_parser = quantity::node_disk)]
    disk: u32,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// The cluster's id (or its name, when only one cluster has it).
    cluster: String,
    /// New number of nodes (default: unchanged).
    #[arg(long)]
    nodes: Option<u32>,
    /// New CPU per node (default: unchanged).
    #[arg(long, value_parser = quantity::node_cpu)]
    cpu: Option<u32>,
    /// New memory per node (default: unchanged).
    #[arg(long, value_parser = quantity::node_memory)]
    memory: Option<u32>,
    /// New disk per node (default: unchanged).
    #[arg(long, value_parser = quantity::node_disk)]
    disk: Option<u32>,
    #[command(flatten)]
    wait: WaitArgs,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster. Answers at once (the cluster is CREATING, or PENDING while its region
    /// lacks capacity); `--wait` follows it until HEALTHY.
    #[command(
        after_help = "Examples:\n  lyra cluster create demo --nodes 3 --wait\n  \
        lyra cluster create search --region aws/eu-west-1 --nodes 3 --cpu 4 --memory 16Gi --disk 200Gi"
    )]
    Create(CreateCluster),
    /// List the account's clusters.
    #[command(after_help = "Example:\n  lyra cluster list --json")]
    List,
    /// Show one cluster: phase, reason, shape, endpoint.
    #[command(after_help = "Example:\n  lyra cluster get demo")]
    Get {
        /// The cluster's id (or its name, when only one cluster has it).
        cluster: String,
    },
    /// Change the number of nodes or each node's resources; the cluster keeps serving.
    #[command(after_help = "Example:\n  lyra cluster resize demo --nodes 5 --wait")]
    Resize(ResizeArgs),
    /// Delete a cluster: its nodes, storage, route and keys stop existing.
    #[command(after_help = "Example:\n  lyra cluster delete demo --wait")]
    Delete {
        /// The cluster's id (or its name, when only one cluster has it).
        cluster: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Wait until a cluster is HEALTHY (exits non-zero with the reason if it fails).
    #[command(after_help = "Example:\n  lyra cluster wait demo --timeout 5m")]
    Wait {
        /// The cluster's id (or its name, when only one cluster has it).
        cluster: String,
        #[arg(long, default_value = "10m", value_parser = wait_timeout)]
        timeout: Duration,
    },
}

fn node_shape(c: &ClusterConfiguration) -> String {
    let n = c.node_configuration;
    format!(
        "{} cpu, {} mem, {} disk",
        show_cpu(n.cpu.into()),
        show_memory(n.memory.into()),
        show_disk(n.disk.into())
    )
}

fn rows(clusters: &[Cluster]) -> String {
    let mut t = output::table(["id", "name", "region", "nodes", "phase", "endpoint"]);
    for c in clusters {
        t.add_row([
            c.id.to_string(),
            c.name.clone(),
            format!("{}/{}", c.cloud_provider, c.cloud_region),
            c.configuration.num_nodes.to_string(),
            c.phase.to_string(),
            c.endpoint.clone(),
        ]);
    }
    t.to_string()
}

fn details(c: &Cluster) -> String {
    output::details(&[
        ("id", c.id.to_string()),
        ("name", c.name.clone()),
        ("account", c.account_id.to_string()),
        ("region", format!("{}/{}", c.cloud_provider, c.cloud_region)),
        ("phase", c.phase.to_string()),
        ("reason", output::or_dash(c.reason.as_deref())),
        ("nodes", c.configuration.num_nodes.to_string()),
        ("each node", node_shape(&c.configuration)),
        ("endpoint", c.endpoint.clone()),
        ("qdrant", c.version.clone()),
        ("created", output::when(c.created_at)),
        ("updated", output::when(c.updated_at)),
    ])
    .to_string()
}

fn show(format: Format, answer: &Answer<Cluster>) -> Result<(), CliError> {
    let c = &answer.value;
    output::emit(format, &answer.json, || c.id.to_string(), || details(c))
}

fn cluster_path(account: AccountId, cluster: ClusterId) -> String {
    format!("/api/v1/accounts/{account}/clusters/{cluster}")
}

/// Every cluster of the account, following the pages.
async fn list_all(orion: &Orion, account: AccountId) -> Result<Answer<Vec<Cluster>>, CliError> {
    let mut clusters = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/accounts/{account}/clusters?page_size={MAX_PAGE_SIZE}");
        if let Some(t) = &token {
            path.push_str("&page_token=");
            path.push_str(t);
        }
        let page: ClusterPage = orion.get(&path).await?.value;
        clusters.extend(page.clusters);
        match page.next_page_token {
            // Tokens are base64url: nothing in them needs escaping in a query.
            Some(t)
                if t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                token = Some(t);
            }
            Some(_) => {
                return Err(CliError::BadAnswer(
                    "Orion sent a page token this CLI cannot send back".into(),
                ));
            }
            None => break,
        }
    }
    let json = serde_json::to_value(&clusters)
        .map_err(|e| CliError::BadAnswer(format!("cannot print the answer: {e}")))?;
    Ok(Answer {
        value: clusters,
        json,
    })
}

/// A cluster named by its id, or by a name only one of the account's live clusters has.
pub async fn resolve(
    orion: &Orion,
    account: AccountId,
    given: &str,
) -> Result<ClusterId, CliError> {
    if let Ok(id) = given.trim().parse::<ClusterId>() {
        return Ok(id);
    }
    let all = list_all(orion, account).await?.value;
    let named: Vec<&Cluster> = all
        .iter()
        .filter(|c| c.name == given && c.phase != Phase::Deleted)
        .collect();
    match named.as_slice() {
        [one] => Ok(one.id),
        [] => Err(CliError::Api {
            status: 404,
            message: format!("no cluster is named {given:?} (`lyra cluster list`)"),
        }),
        _ => Err(CliError::Usage(format!(
            "{} clusters are named {given:?}: give the id",
            named.len()
        ))),
    }
}

async fn finish(
    orion: &Orion,
    format: Format,
    account: AccountId,
    answer: Answer<Cluster>,
    goal: Goal,
    wait: Option<Duration>,
) -> Result<(), CliError> {
    let answer = match wait {
        Some(timeout) => progress::wait(orion, account, answer.value.id, goal, timeout).await?,
        None => answer,
    };
    show(format, &answer)
}

pub async fn run(conn: &Connection, command: ClusterCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    let account = conn.account(&orion).await?;
    match command {
        ClusterCommand::Create(c) => {
            let spec = ClusterSpec {
                name: c.name,
                cloud_provider: c.region.provider,
                cloud_region: c.region.region,
                configuration: ClusterConfiguration {
                    num_nodes: c.nodes,
                    node_configuration: NodeResources {
                        cpu: c.cpu,
                        memory: c.memory,
                        disk: c.disk,
                    },
                },
            };
            let answer = orion
                .change::<_, Cluster>(
                    Method::POST,
                    &format!("/api/v1/accounts/{account}/clusters"),
                    Some(&spec),
                )
                .await?;
            let wait = c.wait.wait.then_some(c.wait.timeout);
            finish(&orion, format, account, answer, Goal::Healthy, wait).await
        }
        ClusterCommand::List => {
            let answer = list_all(&orion, account).await?;
            let ids = || {
                let ids: Vec<String> = answer.value.iter().map(|c| c.id.to_string()).collect();
                ids.join("\n")
            };
            output::emit(format, &answer.json, ids, || rows(&answer.value))
        }
        ClusterCommand::Get { cluster } => {
            let id = resolve(&orion, account, &cluster).await?;
            show(format, &orion.get(&cluster_path(account, id)).await?)
        }
        ClusterCommand::Resize(r) => {
            let id = resolve(&orion, account, &r.cluster).await?;
            let current: Cluster = orion.get(&cluster_path(account, id)).await?.value;
            let mut configuration = current.configuration;
            let node = &mut configuration.node_configuration;
            if let Some(n) = r.nodes {
                configuration.num_nodes = n;
            }
            node.cpu = r.cpu.unwrap_or(node.cpu);
            node.memory = r.memory.unwrap_or(node.memory);
            node.disk = r.disk.unwrap_or(node.disk);
            let body = ResizeCluster { configuration };
            let answer = orion
                .change::<_, Cluster>(Method::PATCH, &cluster_path(account, id), Some(&body))
                .await?;
            let wait = r.wait.wait.then_some(r.wait.timeout);
            finish(&orion, format, account, answer, Goal::Healthy, wait).await
        }
        ClusterCommand::Delete { cluster, wait } => {
            let id = resolve(&orion, account, &cluster).await?;
            let answer = orion
                .change::<(), Cluster>(Method::DELETE, &cluster_path(account, id), None)
                .await?;
            let wait = wait.wait.then_some(wait.timeout);
            finish(&orion, format, account, answer, Goal::Deleted, wait).await
        }
        ClusterCommand::Wait { cluster, timeout } => {
            let id = resolve(&orion, account, &cluster).await?;
            let answer = progress::wait(&orion, account, id, Goal::Healthy, timeout).await?;
            show(format, &answer)
        }
    }
}
