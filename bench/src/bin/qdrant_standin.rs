//! `qdrant-standin`: a test double of the Qdrant server (see `bench::standin`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark tooling, not the product

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = bench::standin::Args::parse();
    let config = match bench::standin::Config::from_env(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("qdrant-standin: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qdrant-standin: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::standin::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qdrant-standin: {e}");
            ExitCode::FAILURE
        }
    }
}
