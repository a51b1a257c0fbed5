//! Where Orion is and who is asking: flags first, then the environment, then what `lyra dev`
//! keeps in its data directory, so that a newcomer next to a running `lyra dev` needs neither.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use contract::ids::AccountId;
use control::api::Account;

use super::CliError;
use super::orion::Orion;
use super::output::Format;

/// The file in the dev data directory that holds Orion's URL (written by `lyra dev`).
pub const DEV_URL_FILE: &str = "orion.url";
/// The file in the dev data directory that holds the operator token.
pub const DEV_TOKEN_FILE: &str = "operator.token";
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct Connection {
    /// Orion's URL. Default: the one `lyra dev` wrote to its data directory, else
    /// http://127.0.0.1:8080.
    #[arg(long, env = "LYRA_URL", global = true)]
    pub url: Option<String>,
    /// An operator or account token. Default: `lyra dev`'s operator token from its data
    /// directory. Prefer the environment: flags show up in `ps`.
    #[arg(long, env = "LYRA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A CA certificate (PEM) to trust, besides the system's, when Orion is served over https.
    #[arg(long, env = "LYRA_CACERT", global = true)]
    pub cacert: Option<PathBuf>,
    /// Where `lyra dev` keeps its data, to find its URL and token.
    #[arg(long, env = "LYRA_DATA_DIR", default_value = ".lyra", global = true)]
    pub data_dir: PathBuf,
    /// The account to act in: an id or a name. Default: the only account the token sees.
    #[arg(long, env = "LYRA_ACCOUNT", global = true)]
    pub account: Option<String>,
    /// Seconds to wait for each answer from Orion.
    #[arg(
        long,
        env = "LYRA_REQUEST_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub request_timeout: u64,
    /// Print Orion's JSON answer, for scripts.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub json: bool,
    /// Print only the essential value: an id, or the secret of a new key or token.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Connection {
    pub fn format(&self) -> Format {
        match (self.json, self.quiet) {
            (true, _) => Format::Json,
            (false, true) => Format::Quiet,
            (false, false) => Format::Table,
        }
    }

    fn base_url(&self) -> String {
        self.url
            .clone()
            .or_else(|| read_trimmed(&self.data_dir.join(DEV_URL_FILE)))
            .unwrap_or_else(|| DEFAULT_URL.to_owned())
    }

    fn bearer(&self) -> Result<String, CliError> {
        self.token
            .clone()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| read_trimmed(&self.data_dir.join(DEV_TOKEN_FILE)))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "no token: set LYRA_TOKEN (or --token), or run next to `lyra dev`'s data \
                     directory ({} has no {DEV_TOKEN_FILE})",
                    self.data_dir.display()
                ))
            })
    }

    /// A client for Orion with this connection's URL, token and trust.
    pub fn orion(&self) -> Result<Orion, CliError> {
        let url = self.base_url();
        let token = self.bearer()?;
        Orion::new(
            &url,
            token,
            self.cacert.as_deref(),
            Duration::from_secs(self.request_timeout.max(1)),
        )
    }

    /// The account to act in: `--account` (an id, or a name looked up), else the only account
    /// this token can see.
    pub async fn account(&self, orion: &Orion) -> Result<AccountId, CliError> {
        if let Some(given) = self.account.as_deref().map(str::trim)
            && let Ok(id) = given.parse::<AccountId>()
        {
            return Ok(id);
        }
        let accounts: Vec<Account> = orion.get("/api/v1/accounts").await?.value;
        match self.account.as_deref().map(str::trim) {
            Some(name) => {
                let found: Vec<&Account> = accounts.iter().filter(|a| a.name == name).collect();
                match found.as_slice() {
                    [one] => Ok(one.id),
                    [] => Err(CliError::Usage(format!(
                        "no account named {name:?} is visible to this token (`lyra account list`)"
                    ))),
                    _ => Err(CliError::Usage(format!(
                        "several accounts are named {name:?}: pass --account with an id"
                    ))),
                }
            }
            None => match accounts.as_slice() {
                [one] => Ok(one.id),
                [] => Err(CliError::Usage(
                    "no account yet: create one with `lyra account create <name>`".into(),
                )),
                many => Err(CliError::Usage(format!(
                    "{} accounts are visible to this token: pass --account <id or name> (or set LYRA_ACCOUNT)",
                    many.len()
                ))),
            },
        }
    }
}
