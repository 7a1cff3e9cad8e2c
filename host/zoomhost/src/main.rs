//! The `zoomhost` binary.

use std::process::ExitCode;

use clap::Parser;
use zoomhost::cli::{Cli, Command};
use zoomhost::logging::{self, LogStyle};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dev` shows what flows in its live view and `bench` prints figures: both keep the
    // log to what needs attention (plus, in dev, the plugins' own lines).
    let (default, style) = match cli.command {
        Command::Dev { .. } => ("warn,plugin=info", LogStyle::Dev),
        Command::Bench { .. }
        | Command::BenchSim { .. }
        | Command::BenchCluster { .. }
        | Command::Cluster { .. } => ("warn", LogStyle::Plain),
        _ => ("info", LogStyle::Plain),
    };
    logging::init(cli.log_format, style, default);
    zoomhost::cli::run(cli).await
}
