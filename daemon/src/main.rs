//! The `authpulse` command line. Each subcommand lives in `commands/`.

mod commands;

use std::io::IsTerminal;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    // The AWS SDK's credential chain warns about every provider it tries
    // (IMDS off an EC2 host, a missing profile) before one succeeds or the
    // call fails with the reason; its own errors are enough by default.
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUTHPULSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,aws_config=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match commands::execute(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
