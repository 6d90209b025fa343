//! CloudWatch metrics: the pipeline's counters as `PutMetricData` calls, at
//! most one round per interval (a minute by default), and optionally as
//! Embedded Metric Format lines that the CloudWatch agent, ECS or Lambda turn
//! into the same metrics without an API call.
//!
//! Metric names (namespace `AuthPulse` by default, dimension `Pipeline`):
//!
//! | name | unit | what |
//! |---|---|---|
//! | `EventsIn` | Count | records read in the interval |
//! | `EventsOut` | Count | events scored |
//! | `InvalidEvents` | Count | malformed records (dead-lettered) |
//! | `DuplicateEvents` | Count | events dropped as duplicates |
//! | `LateEvents` | Count | events older than the watermark (dead-lettered) |
//! | `FutureEvents` | Count | events dated too far ahead (dead-lettered) |
//! | `AlertsRaised` | Count | alerts |
//! | `RuleFailures` | Count | failed rule-module batches |
//! | `BatchDuration` | Milliseconds | mean time to score one batch |
//! | `ProcessingLag` | Seconds | event time to the time the pipeline read the event, as a distribution (CloudWatch computes any percentile) |
//! | `ProcessingLagP50`, `ProcessingLagP95` | Seconds | the same, as computed here |
//! | `IteratorAge` | Milliseconds | per `Shard`: how far behind the stream's tip the reader is |
//! | `IteratorAgeMax` | Milliseconds | the largest of those |
//!
//! Counts are sent per interval (deltas), so CloudWatch's `Sum` over any
//! period is the number of events in it.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio::sync::{mpsc, oneshot};

use super::{AwsSettings, Backoff, error_text};
use authpulse_engine::metrics::MetricsSnapshot;

/// `PutMetricData` takes at most 1,000 metrics per call.
const MAX_DATUMS_PER_CALL: usize = 1000;
/// And at most 150 distinct values per metric.
const MAX_VALUES: usize = 150;
/// Attempts per call before a round of metrics is dropped.
const ATTEMPTS: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }

    fn standard(self) -> StandardUnit {
        match self {
            Unit::Count => StandardUnit::Count,
            Unit::Milliseconds => StandardUnit::Milliseconds,
            Unit::Seconds => StandardUnit::Seconds,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Single(f64),
    /// (value, how many times) pairs.
    Distribution(Vec<(f64, f64)>),
}

/// One metric value of one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub name: &'static str,
    pub unit: Unit,
    pub value: Value,
    /// Extra dimension: the shard, for iterator ages.
    pub shard: Option<String>,
}

impl Reading {
    fn single(name: &'static str, unit: Unit, value: f64) -> Reading {
        Reading {
            name,
            unit,
            value: Value::Single(value),
            shard: None,
        }
    }
}

/// The readings of one interval: counts are the differences between two
/// snapshots; the lag is `current`'s (the events of the interval).
/// `iterator_ages`: (shard, milliseconds behind the tip).
pub fn readings(
    previous: &MetricsSnapshot,
    current: &MetricsSnapshot,
    iterator_ages: &[(String, i64)],
) -> Vec<Reading> {
    let delta = |f: fn(&MetricsSnapshot) -> u64| f(current).saturating_sub(f(previous)) as f64;
    let mut out = vec![
        Reading::single("EventsIn", Unit::Count, delta(|m| m.events_read)),
        Reading::single("EventsOut", Unit::Count, delta(|m| m.events_scored)),
        Reading::single("InvalidEvents", Unit::Count, delta(|m| m.invalid)),
        Reading::single("DuplicateEvents", Unit::Count, delta(|m| m.duplicates)),
        Reading::single("LateEvents", Unit::Count, delta(|m| m.late)),
        Reading::single("FutureEvents", Unit::Count, delta(|m| m.future)),
        Reading::single("AlertsRaised", Unit::Count, delta(|m| m.alerts)),
        Reading::single("RuleFailures", Unit::Count, delta(|m| m.rule_failures)),
    ];
    let batches = current.batches.saturating_sub(previous.batches);
    if batches > 0 {
        let time = current.batch_time.saturating_sub(previous.batch_time);
        out.push(Reading::single(
            "BatchDuration",
            Unit::Milliseconds,
            time.as_secs_f64() * 1e3 / batches as f64,
        ));
    }
    let lag = &current.lag;
    if let (Some(p50), Some(p95)) = (lag.quantile(0.5), lag.quantile(0.95)) {
        let mut buckets: Vec<(f64, f64)> = lag
            .buckets()
            .map(|(seconds, count)| (seconds as f64, count as f64))
            .collect();
        // Over the per-metric limit (rare: lags spread over 150 buckets), the
        // smallest buckets fold into their neighbours.
        while buckets.len() > MAX_VALUES {
            let (_, count) = buckets.remove(0);
            buckets[0].1 += count;
        }
        out.push(Reading {
            name: "ProcessingLag",
            unit: Unit::Seconds,
            value: Value::Distribution(buckets),
            shard: None,
        });
        out.push(Reading::single(
            "ProcessingLagP50",
            Unit::Seconds,
            p50 as f64,
        ));
        out.push(Reading::single(
            "ProcessingLagP95",
            Unit::Seconds,
            p95 as f64,
        ));
    }
    for (shard, age) in iterator_ages {
        out.push(Reading {
            name: "IteratorAge",
            unit: Unit::Milliseconds,
            value: Value::Single(*age as f64),
            shard: Some(shard.clone()),
        });
    }
    if let Some(max) = iterator_ages.iter().map(|(_, age)| *age).max() {
        out.push(Reading::single(
            "IteratorAgeMax",
            Unit::Milliseconds,
            max as f64,
        ));
    }
    out
}

/// Where and how metrics are published.
#[derive(Clone, Debug)]
pub struct CloudWatchConfig {
    pub namespace: String,
    /// Dimensions on every metric (`Pipeline=<name>`).
    pub dimensions: Vec<(String, String)>,
    pub aws: AwsSettings,
}

enum Command {
    Put(Vec<Reading>, SystemTime),
    Flush(oneshot::Sender<PublishReport>),
}

/// How publishing went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub calls: u64,
    pub datums: u64,
    /// Rounds given up after every attempt failed.
    pub dropped_rounds: u64,
}

/// Sends readings to CloudWatch from a task of its own.
pub struct CloudWatchPublisher {
    commands: mpsc::UnboundedSender<Command>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl CloudWatchPublisher {
    pub fn start(config: CloudWatchConfig) -> io::Result<CloudWatchPublisher> {
        let runtime = crate::net::runtime("cloudwatch")?;
        let sdk = runtime.block_on(config.aws.load());
        let client = Client::new(&sdk);
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(put_loop(client, config, rx));
        Ok(CloudWatchPublisher {
            commands: tx,
            runtime: Some(runtime),
        })
    }

    /// Queues one interval's readings (never blocks).
    pub fn put(&self, readings: Vec<Reading>, at: SystemTime) {
        let _ = self.commands.send(Command::Put(readings, at));
    }

    /// Waits until everything queued is sent (or given up).
    pub fn flush(&self) -> PublishReport {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Flush(tx)).is_err() {
            return PublishReport::default();
        }
        rx.blocking_recv().unwrap_or_default()
    }
}

impl Drop for CloudWatchPublisher {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn datums(
    readings: &[Reading],
    dimensions: &[(String, String)],
    at: SystemTime,
) -> Vec<MetricDatum> {
    let timestamp = DateTime::from(at);
    readings
        .iter()
        .map(|reading| {
            let mut datum = MetricDatum::builder()
                .metric_name(reading.name)
                .unit(reading.unit.standard())
                .timestamp(timestamp);
            for (name, value) in dimensions {
                datum = datum.dimensions(Dimension::builder().name(name).value(value).build());
            }
            if let Some(shard) = &reading.shard {
                datum = datum.dimensions(Dimension::builder().name("Shard").value(shard).build());
            }
            match &reading.value {
                Value::Single(value) => datum = datum.value(*value),
                Value::Distribution(pairs) => {
                    for (value, count) in pairs {
                        datum = datum.values(*value).counts(*count);
                    }
                }
            }
            datum.build()
        })
        .collect()
}

async fn put_loop(
    client: Client,
    config: CloudWatchConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut report = PublishReport::default();
    while let Some(command) = commands.recv().await {
        let (readings, at) = match command {
            Command::Put(readings, at) => (readings, at),
            Command::Flush(reply) => {
                let _ = reply.send(report);
                continue;
            }
        };
        let all = datums(&readings, &config.dimensions, at);
        for chunk in all.chunks(MAX_DATUMS_PER_CALL) {
            let mut attempt = 0;
            loop {
                let sent = client
                    .put_metric_data()
                    .namespace(&config.namespace)
                    .set_metric_data(Some(chunk.to_vec()))
                    .send()
                    .await;
                match sent {
                    Ok(_) => {
                        report.calls += 1;
                        report.datums += chunk.len() as u64;
                        crate::ops::prometheus::count_cloudwatch("sent");
                        break;
                    }
                    Err(error) if attempt + 1 < ATTEMPTS => {
                        let delay = Backoff::DEFAULT.jittered(attempt);
                        attempt += 1;
                        tracing::debug!(error = %error_text(&error), "PutMetricData failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    Err(error) => {
                        report.dropped_rounds += 1;
                        crate::ops::prometheus::count_cloudwatch("failed");
                        tracing::warn!(namespace = %config.namespace, error = %error_text(&error), "PutMetricData failed {ATTEMPTS} times; this round of metrics is dropped");
                        break;
                    }
                }
            }
        }
    }
}

/// One CloudWatch Embedded Metric Format line for `readings` (the
/// distribution is left out: EMF has no counts; its percentiles are in).
pub fn emf_line(
    namespace: &str,
    dimensions: &[(String, String)],
    readings: &[Reading],
    at: SystemTime,
) -> String {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut metrics = Vec::new();
    let mut root = serde_json::Map::new();
    for (name, value) in dimensions {
        root.insert(name.clone(), value.clone().into());
    }
    for reading in readings {
        let Value::Single(value) = reading.value else {
            continue;
        };
        // Per-shard values would need a line per shard; the maximum stands in.
        if reading.shard.is_some() {
            continue;
        }
        metrics.push(serde_json::json!({"Name": reading.name, "Unit": reading.unit.as_str()}));
        root.insert(reading.name.to_string(), value.into());
    }
    let dimension_names: Vec<&str> = dimensions.iter().map(|(n, _)| n.as_str()).collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimension_names],
                "Metrics": metrics,
            }],
        }),
    );
    serde_json::Value::Object(root).to_string()
}

/// Appends EMF lines to a file.
pub struct EmfWriter {
    file: std::fs::File,
}

impl EmfWriter {
    pub fn create(path: &std::path::Path) -> io::Result<EmfWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EmfWriter { file })
    }

    /// One line, in one write (so concurrent appenders do not interleave).
    pub fn write(&mut self, line: &str) -> io::Result<()> {
        self.file.write_all(format!("{line}\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(events: u64, lags: &[i64]) -> MetricsSnapshot {
        let mut m = MetricsSnapshot {
            events_read: events,
            events_scored: events,
            batches: events / 10,
            batch_time: Duration::from_millis(events),
            ..MetricsSnapshot::default()
        };
        for lag in lags {
            m.lag.record(*lag);
        }
        m
    }

    fn single(readings: &[Reading], name: &str) -> Option<f64> {
        readings
            .iter()
            .find(|r| r.name == name && r.shard.is_none())
            .map(|r| match r.value {
                Value::Single(v) => v,
                Value::Distribution(_) => f64::NAN,
            })
    }

    #[test]
    fn readings_are_interval_deltas() {
        let previous = snapshot(100, &[]);
        let current = snapshot(250, &[1, 2, 400, 400]);
        let ages = [
            ("shardId-0".to_string(), 1500),
            ("shardId-1".to_string(), 20),
        ];
        let readings = readings(&previous, &current, &ages);
        assert_eq!(single(&readings, "EventsIn"), Some(150.0));
        assert_eq!(single(&readings, "BatchDuration"), Some(10.0));
        assert_eq!(single(&readings, "ProcessingLagP50"), Some(2.0));
        assert_eq!(single(&readings, "ProcessingLagP95"), Some(384.0));
        assert_eq!(single(&readings, "IteratorAgeMax"), Some(1500.0));
        let lag = readings.iter().find(|r| r.name == "ProcessingLag").unwrap();
        assert_eq!(
            lag.value,
            Value::Distribution(vec![(1.0, 1.0), (2.0, 1.0), (384.0, 2.0)])
        );
        let per_shard = readings.iter().filter(|r| r.name == "IteratorAge").count();
        assert_eq!(per_shard, 2);
    }

    #[test]
    fn emf_lines_name_their_metrics() {
        let readings = readings(&snapshot(0, &[]), &snapshot(42, &[3]), &[]);
        let dims = [("Pipeline".to_string(), "prod".to_string())];
        let line = emf_line(
            "AuthPulse",
            &dims,
            &readings,
            UNIX_EPOCH + Duration::from_secs(2),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["EventsIn"], 42.0);
        assert_eq!(v["Pipeline"], "prod");
        assert_eq!(v["_aws"]["Timestamp"], 2000);
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"ProcessingLagP95"));
        assert!(!names.contains(&"ProcessingLag"), "no distribution in EMF");
    }
}
