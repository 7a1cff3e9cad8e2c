//! The `zoomhost` binary.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = zoomhost::cli::Cli::parse();
    // `dev` shows what flows in its live view and `bench` prints figures: both keep the
    // log to what needs attention (plus, in dev, the plugins' own lines).
    let default = match cli.command {
        zoomhost::cli::Command::Dev { .. } => "warn,plugin=info",
        zoomhost::cli::Command::Bench { .. } | zoomhost::cli::Command::BenchSim { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ZOOMHOST_LOG").unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    zoomhost::cli::run(cli).await
}
