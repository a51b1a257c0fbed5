//! `lyra dead-letter`: commands Nebula gave up on, for an operator to read and replay.

use clap::Subcommand;
use control::api::{DeadLetter, Replayed};
use http::Method;

use super::output;
use super::{CliError, Connection};

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List parked commands with the error that parked them (operator token).
    #[command(after_help = "Example:\n  lyra dead-letter list")]
    List,
    /// Put a parked command back on the command stream, e.g. after fixing its cause. A replay
    /// never creates a second cluster.
    #[command(after_help = "Example:\n  lyra dead-letter replay 1732350000000-0")]
    Replay {
        /// The entry's id (`lyra dead-letter list`).
        id: String,
    },
}

pub async fn run(conn: &Connection, command: DeadLetterCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    match command {
        DeadLetterCommand::List => {
            let answer = orion.get::<Vec<DeadLetter>>("/api/v1/dead-letters").await?;
            output::emit(
                format,
                &answer.json,
                || {
                    let ids: Vec<&str> = answer.value.iter().map(|d| d.id.as_str()).collect();
                    ids.join("\n")
                },
                || {
                    let mut t =
                        output::table(["id", "command", "cluster", "attempts", "failed", "error"]);
                    for d in &answer.value {
                        t.add_row([
                            d.id.clone(),
                            output::or_dash(d.name.as_deref()),
                            output::or_dash(d.cluster_id),
                            d.attempts.to_string(),
                            d.failed_at.clone(),
                            d.error.clone(),
                        ]);
                    }
                    t.to_string()
                },
            )
        }
        DeadLetterCommand::Replay { id } => {
            if !id.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Err(CliError::Usage(format!(
                    "{id:?} is not a dead-letter id (e.g. 1732350000000-0)"
                )));
            }
            let answer = orion
                .change::<(), Replayed>(
                    Method::POST,
                    &format!("/api/v1/dead-letters/{id}/replay"),
                    None,
                )
                .await?;
            let r = &answer.value;
            output::emit(
                format,
                &answer.json,
                || r.stream_id.clone(),
                || {
                    format!(
                        "Replayed {id}: back on the command stream as {}.",
                        r.stream_id
                    )
                },
            )
        }
    }
}
