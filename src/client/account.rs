//! `lyra account`: tenants (operator token to create or list them all).

use clap::Subcommand;
use control::api::{Account, CreateAccount};
use http::Method;

use super::output;
use super::{CliError, Connection};

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account (operator token).
    #[command(after_help = "Example:\n  lyra account create acme")]
    Create {
        /// 2 to 64 characters of [a-zA-Z0-9_-].
        name: String,
    },
    /// List the accounts this token can see (all of them, for the operator).
    #[command(after_help = "Example:\n  lyra account list --json")]
    List,
    /// Show one account.
    #[command(after_help = "Example:\n  lyra account get acme")]
    Get {
        /// The account's id or name (default: --account, or the only one).
        account: Option<String>,
    },
}

fn rows(accounts: &[Account]) -> String {
    let mut t = output::table(["id", "name", "created"]);
    for a in accounts {
        t.add_row([a.id.to_string(), a.name.clone(), output::when(a.created_at)]);
    }
    t.to_string()
}

pub async fn run(conn: &Connection, command: AccountCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    match command {
        AccountCommand::Create { name } => {
            let answer = orion
                .change::<_, Account>(
                    Method::POST,
                    "/api/v1/accounts",
                    Some(&CreateAccount { name }),
                )
                .await?;
            let a = &answer.value;
            output::emit(
                format,
                &answer.json,
                || a.id.to_string(),
                || rows(std::slice::from_ref(a)),
            )
        }
        AccountCommand::List => {
            let answer = orion.get::<Vec<Account>>("/api/v1/accounts").await?;
            let ids = || {
                let ids: Vec<String> = answer.value.iter().map(|a| a.id.to_string()).collect();
                ids.join("\n")
            };
            output::emit(format, &answer.json, ids, || rows(&answer.value))
        }
        AccountCommand::Get { account } => {
            let mut conn = conn.clone();
            if account.is_some() {
                conn.account = account;
            }
            let id = conn.account(&orion).await?;
            let answer = orion
                .get::<Account>(&format!("/api/v1/accounts/{id}"))
                .await?;
            let a = &answer.value;
            output::emit(
                format,
                &answer.json,
                || a.id.to_string(),
                || rows(std::slice::from_ref(a)),
            )
        }
    }
}
