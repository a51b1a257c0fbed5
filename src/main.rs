//! `lyra`: the one binary. It only parses the command line and calls into the crates.
//!
//! Today it manages the platform key; later issues add `dev`, `orion`, `nebula`,
//! `gatekeeper`, `certs` and the client subcommands.

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
