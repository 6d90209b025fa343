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
            eprintln!("error: {}", describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once: a library
/// error whose message already carries its source's (iceberg's, opendal's)
/// would otherwise repeat the same words down the chain.
fn describe(error: &anyhow::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !said.iter().any(|earlier| earlier.contains(&message)) {
            said.push(message);
        }
    }
    said.join(": ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Unexpected => write failed, source: {0}")]
    struct CarriesItsSource(#[source] std::io::Error);

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let disk_full = std::io::Error::other("No space left on device (os error 28)");
        let error = anyhow::Error::new(CarriesItsSource(disk_full))
            .context("the auth_events_raw writer failed")
            .context("read stdin");
        assert_eq!(
            describe(&error),
            "read stdin: the auth_events_raw writer failed: \
             Unexpected => write failed, source: No space left on device (os error 28)"
        );
        let plain = anyhow::anyhow!("no such file").context("open events.csv");
        assert_eq!(describe(&plain), "open events.csv: no such file");
    }
}
