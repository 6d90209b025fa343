//! The `authpulse` command line. Each subcommand lives in `commands/`.

mod commands;

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let matches = commands::Cli::command().get_matches();
    let cli = match commands::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
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
    match commands::execute(cli, &matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Whoever read stdout has gone (`| head`): nothing is left to say.
        Err(error) if is_closed_stdout(&error) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", authpulse::describe_error(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `error` is a write to a stdout nobody reads any more.
fn is_closed_stdout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<commands::StdoutClosed>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|inner| inner.is::<commands::StdoutClosed>())
    })
}
