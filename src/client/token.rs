//! `lyra token`: account tokens, the credentials people and scripts of an account use.

use clap::{Subcommand, ValueEnum};
use control::api::{CreateToken, CreatedToken, Role};
use http::Method;

use super::output;
use super::{CliError, Connection};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Reads and changes the account's clusters and keys.
    Admin,
    /// Reads only.
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for the account. It is printed once and never stored: keep it.
    #[command(
        after_help = "Example:\n  export LYRA_TOKEN=$(lyra token create --account acme --role admin -q)"
    )]
    Create {
        #[arg(long, value_enum, default_value = "admin")]
        role: RoleArg,
    },
}

pub async fn run(conn: &Connection, command: TokenCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    match command {
        TokenCommand::Create { role } => {
            let account = conn.account(&orion).await?;
            let body = CreateToken { role: role.into() };
            let answer = orion
                .once::<_, CreatedToken>(
                    Method::POST,
                    &format!("/api/v1/accounts/{account}/tokens"),
                    Some(&body),
                )
                .await?;
            let t = &answer.value;
            output::emit(
                format,
                &answer.json,
                || t.token.clone(),
                || {
                    let role = serde_json::to_value(t.role)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!(
                        "Token {} ({role}) for account {account}. It is shown only now; keep it:\n{}",
                        t.id, t.token
                    )
                },
            )
        }
    }
}
