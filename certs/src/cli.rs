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
    /// Serve a certificate you bring for a region (e.g. a public wildcard from your ACME
    /// client) instead of one from the platform CA. It must name *.<region>.<provider>.<tld>
    /// and match its key; Lyra never renews it: import the next one before it expires.
    ///
    /// Example: `lyra certs import aws eu-west-1 --tld cloud.example.com --cert fullchain.pem --key privkey.pem`
    Import {
        provider: String,
        region: String,
        /// Domain under which cluster endpoints live.
        #[arg(long, env = "LYRA_TLD", default_value = "localhost")]
        tld: String,
        /// The certificate chain, leaf first (PEM).
        #[arg(long)]
        cert: std::path::PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: std::path::PathBuf,
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
    let ca = |conn| platform_ca(conn, &keyring);
    match args.command {
        CertsCommand::Ca => Ok(ca(&mut conn).await?.cert_pem().trim_end().to_owned()),
        CertsCommand::Issue {
            provider,
            region,
            tld,
        } => {
            let tld = Tld::new(&tld).map_err(|e| format!("--tld: {e}"))?;
            let ca = ca(&mut conn).await?;
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
        // An imported certificate needs no CA: none is created for it.
        CertsCommand::Import {
            provider,
            region,
            tld,
            cert,
            key,
        } => import(&mut conn, &keyring, &provider, &region, &tld, &cert, &key).await,
    }
}

async fn platform_ca(
    conn: &mut redis::aio::MultiplexedConnection,
    keyring: &Keyring,
) -> Result<crate::ca::PlatformCa, String> {
    store::load_or_create_ca(conn, keyring)
        .await
        .map_err(|e| e.to_string())
}

async fn import(
    conn: &mut redis::aio::MultiplexedConnection,
    keyring: &Keyring,
    provider: &str,
    region: &str,
    tld: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<String, String> {
    let tld = Tld::new(tld).map_err(|e| format!("--tld: {e}"))?;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (chain_pem, key_pem) = (read(cert)?, zeroize::Zeroizing::new(read(key)?));
    let registered: bool = redis::AsyncCommands::sismember(
        conn,
        contract::keyspace::regions(),
        format!("{provider}:{region}"),
    )
    .await
    .map_err(|e| format!("redis: {e}"))?;
    if !registered {
        return Err(format!(
            "region {provider}/{region} is not registered: register it first (lyra region set)"
        ));
    }
    let checked = crate::provided::region_cert(
        provider,
        region,
        &tld,
        &chain_pem,
        &key_pem,
        jiff::Timestamp::now(),
    )
    .map_err(|e| e.to_string())?;
    store::save_region(conn, keyring, &checked)
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "imported {} (valid until {}); gateways serve it now and Lyra will not renew it",
        checked.name, checked.not_after
    ))
}
