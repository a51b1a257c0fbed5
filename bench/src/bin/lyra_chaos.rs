//! `cargo run --release -p bench --bin lyra-chaos -- faults|soak`: Lyra under load while its
//! parts fail, and for a long time with churn (see `bench::chaos`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bench::chaos::faults::{self, FaultOptions};
use bench::chaos::soak::{self, SoakOptions};
use bench::harness::procs;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lyra-chaos",
    about = "Lyra under load while Nebula, Redis and Qdrant nodes fail; and a soak with churn",
    after_help = "Examples:\n  cargo run --release -p bench --bin lyra-chaos -- faults\n  cargo run --release -p bench --bin lyra-chaos -- soak --minutes 10"
)]
struct Args {
    #[command(subcommand)]
    run: Run,
    /// Where the Markdown and the chart go.
    #[arg(long, global = true, default_value = "target/lyra-chaos")]
    out: PathBuf,
    /// Do not build `lyra` and `qdrant-standin` first.
    #[arg(long, global = true)]
    no_build: bool,
}

#[derive(Subcommand)]
enum Run {
    /// Kill Nebula, kill and stop Redis, kill a Qdrant node, under load; what each cost.
    Faults {
        /// Quiet seconds before, between and after the faults.
        #[arg(long, default_value_t = 5.0)]
        quiet: f64,
        /// Keep-alive connections sending reads (writes get half as many).
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Milliseconds between a connection's requests.
        #[arg(long, default_value_t = 2)]
        pause_ms: u64,
    },
    /// A share of GateKeeper's maximum with key, revocation and route churn every second.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seconds per point of the curve.
        #[arg(long, default_value_t = 10.0)]
        window: f64,
        /// Seconds left out of the flatness figures.
        #[arg(long, default_value_t = 60.0)]
        warmup: f64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// The share of the measured maximum.
        #[arg(long, default_value_t = 0.5)]
        share: f64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.no_build
        && let Err(e) = procs::build_siblings()
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = args.out.clone();
    let result = runtime.block_on(async move {
        match args.run {
            Run::Faults {
                quiet,
                connections,
                pause_ms,
            } => faults::run(FaultOptions {
                quiet: Duration::from_secs_f64(quiet.max(1.0)),
                connections,
                pause: Duration::from_millis(pause_ms),
                out,
            })
            .await
            .map(|(md, broken)| (md, broken.is_empty())),
            Run::Soak {
                minutes,
                window,
                warmup,
                connections,
                share,
            } => {
                soak::run(SoakOptions {
                    duration: Duration::from_secs_f64(minutes.max(0.1) * 60.0),
                    window: Duration::from_secs_f64(window.max(1.0)),
                    warmup: Duration::from_secs_f64(warmup.max(0.0)),
                    connections,
                    share: share.clamp(0.01, 1.0),
                    out,
                })
                .await
            }
        }
    });
    match result {
        Ok((md, kept)) => {
            println!("{md}");
            if kept {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: a promise was broken (see the report)");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
