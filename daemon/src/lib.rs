//! The `authpulse` daemon: the scoring engine (`authpulse-engine`) with the
//! outputs and sources a deployment needs around it.
//!
//! `config` is the configuration file of `run --config`; `sources` opens
//! what a run reads (a file, stdin, a Kinesis stream), says what it is and
//! reopens it where a checkpoint left off; `run` builds a run's outputs
//! (and, with a lease table, runs as one worker of a fleet: `fleet`);
//! `lakehouse` writes
//! the Iceberg tables (SQL catalog or AWS Glue) and reads
//! them back for `query` and `maintain`; `aws` is the Kinesis source and
//! producer, SNS alerts and CloudWatch metrics; `incidents` collects a
//! run's incidents from its alerts, which `eval` matches against labelled
//! campaigns (generated, or LANL's red-team file read by `redteam`) and `rules backtest` compares between policies; `tune` searches
//! a policy's parameters on labelled campaigns (and leaves a family of
//! attacks out of the search to see how it fares unseen); `ops` is the operations server of `run --listen`
//! (health, Prometheus metrics, the JSON API, admin actions, the
//! dashboard); `net` gives each of them a runtime for its network I/O. The
//! command line is in `main.rs` and `commands/`.

pub mod aws;
pub mod backtest;
pub mod config;
pub mod eval;
pub mod fleet;
pub mod incidents;
pub mod lakehouse;
pub mod net;
pub mod ops;
pub mod redteam;
pub mod run;
pub mod sources;
pub mod tune;

/// An error and its causes, `: `-separated, each said once: a library error
/// whose message already carries its source's (iceberg's, opendal's) would
/// otherwise repeat the same words down the chain. What the command line
/// prints, the run logs and the operations server shows.
pub fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut cause = Some(error);
    while let Some(next) = cause {
        let message = next.to_string();
        if !said.iter().any(|earlier| earlier.contains(&message)) {
            said.push(message);
        }
        cause = next.source();
    }
    said.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Unexpected => write failed, source: {0}")]
    struct CarriesItsSource(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("the auth_events_raw writer failed")]
    struct Writer(#[source] CarriesItsSource);

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let disk_full = std::io::Error::other("No space left on device (os error 28)");
        let error = Writer(CarriesItsSource(disk_full));
        assert_eq!(
            describe_error(&error),
            "the auth_events_raw writer failed: \
             Unexpected => write failed, source: No space left on device (os error 28)"
        );
        let plain = Writer(CarriesItsSource(std::io::Error::other("disk gone")));
        assert!(describe_error(&plain).ends_with("source: disk gone"));
    }
}
