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
    /// A fleet worker's leases (`run --lease-table`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetView>,
}

/// A fleet worker's place in its lease table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FleetView {
    pub worker: String,
    pub lease_table: String,
    /// The shards whose leases it holds.
    pub leases: Vec<HeldLease>,
}

/// One held lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeldLease {
    pub shard: String,
    /// Being read now (held, parents finished, not itself finished).
    pub reading: bool,
    /// The lease's checkpoint, as the KCL writes it (`TRIM_HORIZON`, a
    /// sequence number, `SHARD_END`).
    pub checkpoint: String,
}

/// One point of the dashboard's history.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    pub events_per_s: f64,
    pub lag_p95_s: Option<u64>,
}
