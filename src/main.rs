//! `lyra`: the one binary. It only parses the command line and calls into the crates.
//!
//! Today: `orion`, `nebula`, `gatekeeper`, `certs` and `platform-key`; later issues add `dev`,
//! `gatekeeper`, `certs` and the client subcommands.

mod dev;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use contract::seal::PlatformKey;

#[derive(Parser)]
#[command(
    name = "lyra",
    version,
    about = "Lyra: a managed Qdrant cloud in a box"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the whole platform on this machine: Redis, Orion, Nebula and GateKeeper on loopback.
    ///
    /// Example: `QDRANT_BIN=/usr/local/bin/qdrant lyra dev` (stop with Ctrl-C)
    Dev(dev::DevArgs),
    /// Run Orion, the control API (accounts, regions, clusters, API keys).
    ///
    /// Example: `LYRA_OPERATOR_TOKEN=... LYRA_MASTER_KEY=$(lyra platform-key new) lyra orion`
    Orion(control::OrionConfig),
    /// Run Nebula, the provisioning worker (consumes the command stream, runs the drivers).
    ///
    /// Example: `LYRA_MASTER_KEY=... QDRANT_BIN=/usr/local/bin/qdrant lyra nebula`
    Nebula(provisioner::NebulaConfig),
    /// Run GateKeeper, the gateway every client request crosses (TLS, keys, limits, proxying).
    ///
    /// Example: `LYRA_MASTER_KEY=... lyra gatekeeper --rest-listen 0.0.0.0:6333`
    Gatekeeper(gateway::GatekeeperConfig),
    /// The platform CA and the regions' wildcard certificates.
    Certs(certs::cli::CertsArgs),
    /// The platform key that seals every stored secret (cluster secrets, certificate keys).
    #[command(subcommand)]
    PlatformKey(PlatformKeyCommand),
}

#[derive(Subcommand)]
enum PlatformKeyCommand {
    /// Print a new random platform key (32 bytes, base64), for LYRA_MASTER_KEY.
    ///
    /// Example: `export LYRA_MASTER_KEY=$(lyra platform-key new)`
    New,
    /// Print the public id of the platform key (the id stored beside every sealed secret).
    ///
    /// Example: `LYRA_MASTER_KEY=... lyra platform-key id`
    Id {
        /// The platform key, base64. Prefer the environment: flags show up in `ps`.
        #[arg(long, env = "LYRA_MASTER_KEY", hide_env_values = true)]
        master_key: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Dev(args) => {
            init_tracing();
            dev::run(args).map(|_| String::new())
        }
        Commands::Orion(config) => serve(|shutdown| control::run(config, shutdown)),
        Commands::Nebula(config) => serve(|shutdown| provisioner::run(config, shutdown)),
        Commands::Gatekeeper(config) => {
            init_tracing();
            // Pingora runs its own runtimes and handles SIGINT/SIGTERM itself.
            gateway::run(config, None)
                .map(|_| String::new())
                .map_err(|e| e.to_string())
        }
        Commands::Certs(args) => tokio::runtime::Runtime::new()
            .map_err(|e| format!("cannot start: {e}"))
            .and_then(|rt| rt.block_on(certs::cli::run(args))),
        Commands::PlatformKey(PlatformKeyCommand::New) => PlatformKey::generate()
            .map_err(|e| e.to_string())
            .map(|(_, encoded)| encoded.to_string()),
        Commands::PlatformKey(PlatformKeyCommand::Id { master_key }) => {
            PlatformKey::from_base64(&master_key)
                .map(|key| key.id().to_owned())
                .map_err(|e| format!("LYRA_MASTER_KEY: {e}"))
        }
    };
    match result {
        Ok(line) if line.is_empty() => ExitCode::SUCCESS,
        Ok(line) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a service on a multi-threaded runtime until SIGINT or SIGTERM.
fn serve<F, Fut, E>(service: F) -> Result<String, String>
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        service(Box::pin(shutdown_signal()))
            .await
            .map_err(|e| e.to_string())
    })?;
    Ok(String::new())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
