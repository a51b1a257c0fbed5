//! `lyra audit`: who did what in an account, newest first.

use clap::Args;
use control::api::AuditEntry;

use super::output;
use super::{CliError, Connection};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  lyra audit --limit 20")]
pub struct AuditArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// How many entries, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

pub async fn run(args: AuditArgs) -> Result<(), CliError> {
    let conn = &args.conn;
    let orion = conn.orion()?;
    let account = conn.account(&orion).await?;
    let answer = orion
        .get::<Vec<AuditEntry>>(&format!(
            "/api/v1/accounts/{account}/audit?limit={}",
            args.limit
        ))
        .await?;
    output::emit(
        conn.format(),
        &answer.json,
        || {
            let ids: Vec<&str> = answer.value.iter().map(|e| e.id.as_str()).collect();
            ids.join("\n")
        },
        || {
            let mut t = output::table(["at", "actor", "action", "resource"]);
            for e in &answer.value {
                t.add_row([
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.resource.clone(),
                ]);
            }
            t.to_string()
        },
    )
}
