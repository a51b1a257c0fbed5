//! `lyra`: the one binary. It only parses the command line and calls into the crates.
//!
//! Services: `dev` (everything on one machine), `orion`, `nebula`, `gatekeeper`. Operator
//! tools: `certs`, `platform-key`. Client commands that drive Orion's API: `account`, `token`,
//! `region`, `cluster`, `key`, `usage`, `audit`, `dead-letter` (see `client`).
//!
//! Exit codes: 0 success, 1 a failure (one line on stderr, after `error: `), 2 a malformed
//! command line.

mod client;
mod dev;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::Group;
use client::account::AccountCommand;
use client::cluster::ClusterCommand;
use client::dead_letter::DeadLetterCommand;
use client::key::KeyCommand;
use client::region::RegionCommand;
use client::token::TokenCommand;
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
    /// Example: `QDRANT_BIN=/usr/local/bin/qdrant lyra dev` (stop with Ctrl-C). Logs only
    /// warnings unless RUST_LOG says otherwise (e.g. RUST_LOG=info).
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
    /// Example: `LYRA_GATEWAY_KEY=$(lyra platform-key gateway) lyra gatekeeper --rest-listen 0.0.0.0:6333`
    Gatekeeper(gateway::GatekeeperConfig),
    /// The platform CA and the regions' wildcard certificates.
    Certs(certs::cli::CertsArgs),
    /// The platform key that seals every stored secret (cluster secrets, certificate keys).
    #[command(subcommand)]
    PlatformKey(PlatformKeyCommand),
    /// Accounts: the tenants that own clusters.
    #[command(
        display_order = 10,
        after_help = "Example:\n  lyra account create acme"
    )]
    Account(Group<AccountCommand>),
    /// Account tokens: the credentials an account's people and scripts use with Orion.
    #[command(
        display_order = 11,
        after_help = "Example:\n  export LYRA_TOKEN=$(lyra token create --account acme --role admin -q)"
    )]
    Token(Group<TokenCommand>),
    /// Regions: where clusters run, with which driver and how much capacity.
    #[command(display_order = 12, after_help = "Example:\n  lyra region list")]
    Region(Group<RegionCommand>),
    /// Qdrant clusters: create, list, get, resize, delete, wait.
    #[command(
        display_order = 13,
        after_help = "Example:\n  lyra cluster create demo --nodes 3 --wait"
    )]
    Cluster(Group<ClusterCommand>),
    /// API keys for a cluster: create (shown once), list, revoke.
    #[command(
        display_order = 14,
        after_help = "Example:\n  lyra key create demo --name app --access manage"
    )]
    Key(Group<KeyCommand>),
    /// What the gateways counted for a cluster: requests, bytes in and out.
    #[command(display_order = 15)]
    Usage(client::usage::UsageArgs),
    /// The account's audit log: who did what, newest first.
    #[command(display_order = 16)]
    Audit(client::audit::AuditArgs),
    /// Commands Nebula gave up on: list and replay (operator token).
    #[command(display_order = 17, after_help = "Example:\n  lyra dead-letter list")]
    DeadLetter(Group<DeadLetterCommand>),
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
    /// Print the gateway key for LYRA_GATEWAY_KEY: the serving key derived from the platform
    /// key, which opens what GateKeeper serves with and not the CA's key.
    ///
    /// Example: `LYRA_GATEWAY_KEY=$(LYRA_MASTER_KEY=... lyra platform-key gateway) lyra gatekeeper`
    Gateway {
        /// The platform key, base64. Prefer the environment: flags show up in `ps`.
        #[arg(long, env = "LYRA_MASTER_KEY", hide_env_values = true)]
        master_key: String,
    },
}

/// mimalloc for every service in the binary: measured in docs/benchmarks.md (section 1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and a bare group (`lyra cluster`), which shows its help.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Commands::Dev(args) => {
            // Warnings only, so the banner stands out; RUST_LOG=info shows the services' logs.
            init_tracing_at("warn");
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
        Commands::PlatformKey(PlatformKeyCommand::Gateway { master_key }) => {
            contract::seal::Keyring::from_config(&master_key, &[])
                .map_err(|e| e.to_string())
                .and_then(|ring| {
                    ring.gateway_key()
                        .map(|k| k.to_string())
                        .ok_or_else(|| "no gateway key in this keyring".to_owned())
                })
        }
        Commands::Account(g) => client_command(client::account::run(&g.conn, g.command)),
        Commands::Token(g) => client_command(client::token::run(&g.conn, g.command)),
        Commands::Region(g) => client_command(client::region::run(&g.conn, g.command)),
        Commands::Cluster(g) => client_command(client::cluster::run(&g.conn, g.command)),
        Commands::Key(g) => client_command(client::key::run(&g.conn, g.command)),
        Commands::Usage(args) => client_command(client::usage::run(args)),
        Commands::Audit(args) => client_command(client::audit::run(args)),
        Commands::DeadLetter(g) => client_command(client::dead_letter::run(&g.conn, g.command)),
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

/// A command-line error as one line: clap's message and tip, without the usage block (the
/// line says where `--help` is). Help for a bare group (`lyra cluster`) is printed by clap.
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut parts: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if parts.is_empty() {
        parts.push("error: the command line is not valid");
    }
    format!("{} (see --help)", parts.join(" "))
}

/// Runs a client command; it prints its own answer.
fn client_command(
    work: impl std::future::Future<Output = Result<(), client::CliError>>,
) -> Result<String, String> {
    client::block_on(work)
        .map(|_| String::new())
        .map_err(|e| e.to_string())
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_tracing() {
    init_tracing_at("info");
}

/// Logs to stderr at `default` unless `RUST_LOG` says otherwise; in colour only on a
/// terminal, so a log file or a collector gets plain text.
fn init_tracing_at(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
