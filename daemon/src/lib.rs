//! The `authpulse` daemon: the scoring engine (`authpulse-engine`) with the
//! outputs and sources a deployment needs around it.
//!
//! `config` is the configuration file of `run --config`; `sources` opens
//! what a run reads (a file, stdin, a Kinesis stream), says what it is and
//! reopens it where a checkpoint left off; `run` builds a run's outputs;
//! `lakehouse` writes
//! the Iceberg tables (SQL catalog or AWS Glue) and reads
//! them back for `query` and `maintain`; `aws` is the Kinesis source and
//! producer, SNS alerts and CloudWatch metrics; `incidents` collects a
//! run's incidents from its alerts, which `eval` matches against labelled
//! campaigns (generated, or LANL's red-team file read by `redteam`) and `rules backtest` compares between policies; `tune` searches
//! a policy's parameters on labelled campaigns (and leaves a family of
//! attacks out of the search to see how it fares unseen); `ops` is the operations server of `run --listen`
//! (health, Prometheus metrics, the JSON API, admin actions, the
//! dashboard). The command line is in `main.rs` and `commands/`.

pub mod aws;
pub mod backtest;
pub mod config;
pub mod eval;
pub mod incidents;
pub mod lakehouse;
pub mod ops;
pub mod redteam;
pub mod run;
pub mod sources;
pub mod tune;
