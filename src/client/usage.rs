//! `lyra usage`: what the gateways counted for a cluster.

use clap::Args;
use control::api::Usage;

use super::cluster::resolve;
use super::output;
use super::{CliError, Connection};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  lyra usage demo --json")]
pub struct UsageArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// The cluster's id (or its name, when only one cluster has it).
    pub cluster: String,
}

pub async fn run(args: UsageArgs) -> Result<(), CliError> {
    let conn = &args.conn;
    let orion = conn.orion()?;
    let account = conn.account(&orion).await?;
    let cluster = resolve(&orion, account, &args.cluster).await?;
    let answer = orion
        .get::<Usage>(&format!(
            "/api/v1/accounts/{account}/clusters/{cluster}/usage"
        ))
        .await?;
    let u = &answer.value;
    output::emit(
        conn.format(),
        &answer.json,
        || u.counters.get("requests").copied().unwrap_or(0).to_string(),
        || {
            let mut t = output::table(["counter", "value"]);
            for (name, value) in &u.counters {
                t.add_row([name.clone(), value.to_string()]);
            }
            t.to_string()
        },
    )
}
