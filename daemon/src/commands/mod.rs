//! Subcommands: one file each.

/// `println!` that returns the write's error instead of panicking: a
/// closed stdout (`authpulse run ... | head -1`) ends the command quietly
/// (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!($crate::commands::stdout(), $($arg)*)
    }};
}

/// Nobody reads stdout any more (`| head` exited): the command stops
/// without a word (see `main`).
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

/// Stdout, whose writes fail with [`StdoutClosed`] once nobody reads it.
pub fn stdout() -> Stdout {
    Stdout(std::io::stdout().lock())
}

pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    fn closed(error: std::io::Error) -> std::io::Error {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
        } else {
            error
        }
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(Self::closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(Self::closed)
    }
}

mod aws_args;
mod backtest;
mod bench;
mod bench_formats;
mod bench_shares;
mod catalog_args;
mod config_cmd;
mod demo;
mod eval;
mod gen_cmd;
mod latency;
mod leases;
mod maintain;
mod policy_cmd;
mod progress;
mod query;
mod replay;
mod rules_cmd;
mod run;
mod shell;
mod state_cmd;
mod tune;

use clap::{ArgMatches, Parser, Subcommand};

/// AuthPulse: real-time risk scoring of authentication events with sandboxed
/// WebAssembly rules.
///
/// Quick start: `authpulse demo` generates a realistic LANL-style data set with a
/// few hidden attacks, scores it, and shows the alerts.
#[derive(Parser)]
#[command(name = "authpulse", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate LANL-format authentication data (`time,user,computer`).
    Gen(gen_cmd::GenArgs),
    /// Score events from a file or stdin; write alerts and dead letters.
    Run(Box<run::RunArgs>),
    /// Write events to a Kinesis stream (the producer side of `run --source kinesis://`).
    Replay(replay::ReplayArgs),
    /// Generate data with hidden attacks, score it, show the top alerts.
    Demo(demo::DemoArgs),
    /// Measure detection on labelled campaigns against a naive baseline.
    Eval(Box<eval::EvalArgs>),
    /// Tune a policy's parameters on labelled campaigns; leave-one-family-out.
    Tune(Box<tune::TuneArgs>),
    /// Run read-only SQL over the Iceberg tables `run` wrote.
    Query(query::QueryArgs),
    /// Compact small files and expire old snapshots of the Iceberg tables.
    Maintain(maintain::MaintainArgs),
    /// Measure pipeline throughput with the rules as WASM and natively.
    Bench(bench::BenchArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Build, inspect and test rule modules (for rule authors).
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// List the lease table several `run --lease-table` workers share.
    Leases(leases::LeasesArgs),
    /// Build the engine state from history (a warm start) and inspect state snapshots.
    #[command(subcommand)]
    State(state_cmd::StateCommand),
    /// Check a configuration file for `run --config`.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
}

/// Runs the command `cli` says; `matches` is the parsed command line it came
/// from (which flags were given, for `run --config`).
pub fn execute(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(args) => gen_cmd::execute(args),
        Command::Run(mut args) => {
            if let (Some(path), Some(run)) =
                (args.config.clone(), matches.subcommand_matches("run"))
            {
                config_cmd::apply_file(&path, &mut args, run)?;
            }
            run::execute(*args)
        }
        Command::Demo(args) => demo::execute(args),
        Command::Eval(args) => eval::execute(*args),
        Command::Tune(args) => tune::execute(*args),
        Command::Replay(args) => replay::execute(args),
        Command::Query(args) => query::execute(args),
        Command::Maintain(args) => maintain::execute(args),
        Command::Bench(args) => bench::execute(args),
        Command::Policy(cmd) => policy_cmd::execute(cmd),
        Command::Rules(cmd) => rules_cmd::execute(cmd),
        Command::State(cmd) => state_cmd::execute(cmd),
        Command::Leases(args) => leases::execute(args),
        Command::Config(cmd) => config_cmd::execute(cmd),
    }
}
