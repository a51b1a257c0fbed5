//! `lyra certs`: the CA for clients to trust, and regional certificates on demand.

use clap::{Args, Subcommand};
use contract::host::Tld;
use contract::seal::Keyring;

use crate::store;

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    pub command: CertsCommand,

    /// Redis holding the platform's state.
    #[arg(
        long,
        env = "LYRA_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    pub redis_url: String,

    /// The platform key that seals private keys (32 bytes, base64).
    #[arg(long, env = "LYRA_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Print the platform CA certificate (PEM), creating the CA on first use.
    ///
    /// Example: `lyra certs ca > ca.pem && curl --cacert ca.pem https://<cluster>.dev.local.localhost:6333/`
    Ca,
    /// Issue (or renew when due) the wildcard certificate of a region and print its name and
    /// expiry. Gateways pick it up at once.
    ///
    /// Example: `lyra certs issue aws eu-west-1 --tld cloud.example.com`
    Issue {
        provider: String,
        region: String,
        /// Domain under which cluster endpoints live.
        #[arg(long, env = "LYRA_TLD", default_value = "localhost")]
        tld: String,
    },
}

/// Runs the command; the answer is what to print.
pub async fn run(args: CertsArgs) -> Result<String, String> {
    let master_key = args
        .master_key
        .ok_or("LYRA_MASTER_KEY is not set: it is needed to open the CA's sealed key")?;
    let keyring = Keyring::from_config(&master_key, &[]).map_err(|e| e.to_string())?;
    let client =
        redis::Client::open(args.redis_url.as_str()).map_err(|e| format!("LYRA_REDIS_URL: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot reach Redis at {}: {e}", args.redis_url))?;
    let ca = store::load_or_create_ca(&mut conn, &keyring)
        .await
        .map_err(|e| e.to_string())?;
    match args.command {
        CertsCommand::Ca => Ok(ca.cert_pem().trim_end().to_owned()),
        CertsCommand::Issue {
            provider,
            region,
            tld,
        } => {
            let tld = Tld::new(&tld).map_err(|e| format!("--tld: {e}"))?;
            let (cert, issued) =
                store::ensure_region(&mut conn, &keyring, &ca, &provider, &region, &tld)
                    .await
                    .map_err(|e| e.to_string())?;
            Ok(format!(
                "{} {} (valid until {})",
                if issued { "issued" } else { "current" },
                cert.name,
                cert.not_after
            ))
        }
    }
}
