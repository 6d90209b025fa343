//! The run as the operations server reports it: what the pipeline thread
//! publishes (in [`super::live`]) and the API, the dashboard and the
//! Prometheus exposition read. A type of its own so that the publisher and
//! the readers depend on it, not on each other.

use std::collections::BTreeMap;

use authpulse_engine::pipeline::{RuleInfo, Sizes, Summary};
use serde::Serialize;

/// The run as the API reports it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// `starting`, `running`, `recovering`, `stopping` or `finished`.
    pub phase: &'static str,
    /// What is read: `kinesis:STREAM`, a file, `stdin`.
    pub source: String,
    /// RFC 3339.
    pub started_at: String,
    pub updated_at: String,
    pub uptime_s: f64,
    /// Events read per second over the last publication interval.
    pub events_per_s: f64,
    /// Processing lag (event time to read) of the events of the last
    /// interval: median and 95th percentile, seconds.
    pub lag_p50_s: Option<u64>,
    pub lag_p95_s: Option<u64>,
    /// Per Kinesis shard, how far behind its tip the reader is (ms).
    pub iterator_age_ms: BTreeMap<String, i64>,
    /// Per Kinesis shard, events read by this process.
    pub events_by_shard: BTreeMap<String, u64>,
    /// When the policy was last swapped in or refused while running.
    pub last_reload_at: Option<String>,
    pub last_reload_refused_at: Option<String>,
    pub summary: Summary,
    pub sizes: Sizes,
    pub rules: Vec<RuleInfo>,
}

/// One point of the dashboard's history.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    pub events_per_s: f64,
    pub lag_p95_s: Option<u64>,
}
