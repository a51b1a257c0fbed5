//! `cargo run --release -p bench -- <scenario>`: the benchmark harness (see `bench::harness`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::path::PathBuf;
use std::process::ExitCode;

use bench::harness::scenarios::{self, Ctx, Scenario};
use bench::harness::{Options, procs};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "lyra-bench",
    about = "GateKeeper side by side with nginx and HAProxy, the control plane under load, and the scale of the route table",
    after_help = "Examples:\n  cargo run --release -p bench -- throughput\n  cargo run --release -p bench -- all --rounds 5 --seconds 10"
)]
struct Args {
    /// Which scenario: throughput, latency, tls, grpc, auth, revocation, control, scale,
    /// answers, or `all` for every one in order.
    #[arg(value_parser = selection)]
    scenario: Selection,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unrecorded warm-up seconds before each run.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Interleaved rounds (A B C A B C ...); medians and spreads are over rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent connections of the Qdrant-sized answers scenario.
    #[arg(long, default_value_t = 256)]
    answer_connections: usize,
    /// Revocation trials.
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Routes fed to a gateway in the scale scenario.
    #[arg(long, default_value_t = 100_000)]
    routes: usize,
    /// Revoked keys fed to a gateway in the scale scenario.
    #[arg(long, default_value_t = 1_000_000)]
    revoked: usize,
    /// Where the JSON, Markdown and charts go.
    #[arg(long, default_value = "target/lyra-bench")]
    out: PathBuf,
    /// A second or so per scenario, to check the harness works (not how fast anything is).
    #[arg(long)]
    smoke: bool,
    /// Do not build `lyra` and `qdrant-standin` first (by default, under `cargo run`, the
    /// harness builds them in its own profile so a clean clone needs one command).
    #[arg(long)]
    no_build: bool,
}

/// The scenarios to run.
#[derive(Debug, Clone)]
struct Selection(Vec<Scenario>);

/// `all`, or one scenario by name.
fn selection(s: &str) -> Result<Selection, String> {
    if s == "all" {
        return Ok(Selection(Scenario::ALL.to_vec()));
    }
    Scenario::ALL
        .into_iter()
        .find(|c| c.name() == s)
        .map(|c| Selection(vec![c]))
        .ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|c| c.name()).collect();
            format!("unknown scenario: expected all, {}", names.join(", "))
        })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = if args.smoke {
        Options::smoke(args.out.clone())
    } else {
        Options {
            seconds: args.seconds,
            warmup: args.warmup,
            rounds: args.rounds.max(1),
            connections: args.connections.max(1),
            answer_connections: args.answer_connections.max(1),
            trials: args.trials.max(1),
            routes: args.routes,
            revoked: args.revoked,
            out: args.out.clone(),
        }
    };
    let chosen = args.scenario.0.clone();
    if !args.no_build
        && let Err(e) = procs::build_siblings()
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let pinning = procs::Pinning::detect();
    // The harness (load generator) runs where the upstream and Redis run, not on the proxy's CPU.
    if let Err(e) = procs::pin_current_thread(pinning.rest) {
        eprintln!("warning: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let ctx = Ctx::new(opts.clone(), pinning).await?;
        let mut written = Vec::new();
        for scenario in chosen {
            let report = scenarios::run(scenario, &ctx).await?;
            println!("{}", report.markdown());
            written.extend(report.write(&opts.out)?);
        }
        Ok::<_, bench::harness::HarnessError>(written)
    });
    match result {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
