//! The `/metrics` endpoint: Prometheus text exposition through the
//! `metrics` facade and its Prometheus exporter.
//!
//! Names follow Prometheus conventions: an `authpulse_` prefix, base units
//! (seconds, bytes), `_total` on counters, and no user or computer labels
//! (their number is unbounded). Counters the pipeline keeps per event are
//! copied once a second from its summary ([`publish`]), so the hot path
//! pays nothing per event; rare events (a table commit, an SNS publish, a
//! policy reload, an alert) are counted where they happen. Without
//! `--listen` no recorder is installed and those calls do nothing.

use std::sync::OnceLock;

use authpulse_engine::alerts::{Alert, AlertStatus};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::status::{FleetView, Status};

/// Seconds: batch scoring (a few ms) and table commits (tens of ms to s).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Result<Exporter, String>> = OnceLock::new();

/// Installs the recorder (once per process; later calls reuse it).
pub fn install() -> Result<(), String> {
    EXPORTER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    DURATION_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            describe();
            let process = metrics_process::Collector::default();
            process.describe();
            Ok(Exporter { handle, process })
        })
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// The exposition text, the process metrics read now.
pub fn render() -> String {
    match EXPORTER.get() {
        Some(Ok(exporter)) => {
            exporter.process.collect();
            exporter.handle.render()
        }
        _ => String::new(),
    }
}

fn describe() {
    describe_counter!(
        "authpulse_events_read_total",
        "Records read from the source."
    );
    describe_counter!(
        "authpulse_events_valid_total",
        "Records that parsed and passed validation."
    );
    describe_counter!(
        "authpulse_events_invalid_total",
        "Records dead-lettered as invalid, by reason."
    );
    describe_counter!(
        "authpulse_events_duplicate_total",
        "Events seen before (in this input or already stored)."
    );
    describe_counter!(
        "authpulse_events_late_total",
        "Events that arrived after the watermark passed them (dead-lettered)."
    );
    describe_counter!(
        "authpulse_events_future_total",
        "Events dated too far ahead of the event clock or the wall clock (dead-lettered)."
    );
    describe_counter!("authpulse_events_scored_total", "Events scored.");
    describe_counter!(
        "authpulse_events_by_risk_level_total",
        "Events scored, by risk level."
    );
    describe_gauge!(
        "authpulse_processing_lag_seconds",
        "Event time to read time, over the last second: quantiles 0.5 and 0.95."
    );
    describe_gauge!(
        "authpulse_fleet_leases_held",
        "Shard leases this fleet worker holds (run --lease-table)."
    );
    describe_gauge!(
        "authpulse_fleet_shards_reading",
        "Held shards this fleet worker reads now (parents finished, not itself finished)."
    );
    describe_gauge!(
        "authpulse_kinesis_iterator_age_seconds",
        "How far behind its shard's tip each Kinesis reader is."
    );
    describe_histogram!(
        "authpulse_batch_duration_seconds",
        "Time to score one batch (features, rules, risk, alerts)."
    );
    describe_counter!("authpulse_rule_evaluations_total", "Events a rule judged.");
    describe_counter!("authpulse_rule_hits_total", "Events a rule fired on.");
    describe_counter!(
        "authpulse_rule_failures_total",
        "Batches a rule failed (trap, timeout, bad output)."
    );
    describe_gauge!(
        "authpulse_rule_busy_seconds",
        "Time spent in a rule since the start (rises like a counter: take its rate)."
    );
    describe_gauge!(
        "authpulse_rule_enabled",
        "1 while a rule runs, 0 once its failure policy switched it off; by mode."
    );
    describe_counter!(
        "authpulse_policy_reloads_total",
        "Policy changes swapped in while running."
    );
    describe_counter!(
        "authpulse_policy_reloads_refused_total",
        "Policy changes refused (the running policy stayed)."
    );
    describe_counter!("authpulse_alerts_total", "Incidents opened, by risk level.");
    describe_counter!(
        "authpulse_alert_publications_total",
        "Alert publications (open, update, closed)."
    );
    describe_counter!(
        "authpulse_table_commits_total",
        "Iceberg commits, by table."
    );
    describe_counter!("authpulse_table_rows_total", "Rows committed, by table.");
    describe_counter!(
        "authpulse_table_bytes_total",
        "Bytes of data files committed, by table."
    );
    describe_counter!(
        "authpulse_table_commit_conflicts_total",
        "Commits that found another writer's commit made in between (another fleet worker, or maintain) and were made again on top of it, by table."
    );
    describe_histogram!(
        "authpulse_table_commit_duration_seconds",
        "From a commit's request to its snapshot in the catalog, by table."
    );
    describe_gauge!("authpulse_state_users", "Users the engine keeps state for.");
    describe_gauge!(
        "authpulse_state_computers",
        "Computers the engine keeps state for."
    );
    describe_gauge!(
        "authpulse_state_device_pairs",
        "Distinct user/computer pairs."
    );
    describe_gauge!(
        "authpulse_state_bytes",
        "Heap bytes of the detection state."
    );
    describe_gauge!("authpulse_state_held_events", "Events the watermark holds.");
    describe_gauge!("authpulse_open_incidents", "Incidents open now.");
    describe_counter!(
        "authpulse_state_limit_hits_total",
        "Times a state limit was hit, by limit."
    );
    describe_counter!(
        "authpulse_sns_messages_total",
        "SNS publish outcomes: sent, retried, failed."
    );
    describe_counter!(
        "authpulse_cloudwatch_requests_total",
        "CloudWatch PutMetricData outcomes: sent, failed."
    );
    describe_gauge!("authpulse_up", "1 while the run is scoring.");
}

/// A fleet worker's leases: held, and being read.
pub fn publish_fleet(view: &FleetView) {
    if EXPORTER.get().is_none() {
        return;
    }
    gauge!("authpulse_fleet_leases_held").set(view.leases.len() as f64);
    let reading = view.leases.iter().filter(|l| l.reading).count();
    gauge!("authpulse_fleet_shards_reading").set(reading as f64);
}

/// Copies the pipeline's counters and sizes (once a second).
pub fn publish(status: &Status) {
    if EXPORTER.get().is_none() {
        return;
    }
    let s = &status.summary;
    let source = status.source.clone();
    counter!("authpulse_events_read_total", "source" => source.clone()).absolute(s.events_read);
    counter!("authpulse_events_valid_total", "source" => source.clone()).absolute(s.events_valid);
    for (reason, n) in &s.invalid_by_reason {
        counter!("authpulse_events_invalid_total", "source" => source.clone(), "reason" => reason.clone())
            .absolute(*n);
    }
    counter!("authpulse_events_duplicate_total", "source" => source.clone()).absolute(s.duplicates);
    counter!("authpulse_events_late_total", "source" => source.clone()).absolute(s.late);
    counter!("authpulse_events_future_total", "source" => source.clone()).absolute(s.future);
    counter!("authpulse_events_scored_total", "source" => source).absolute(s.events_scored);
    for (level, n) in &s.risk_levels {
        counter!("authpulse_events_by_risk_level_total", "level" => level.clone()).absolute(*n);
    }
    for (quantile, lag) in [("0.5", status.lag_p50_s), ("0.95", status.lag_p95_s)] {
        if let Some(lag) = lag {
            gauge!("authpulse_processing_lag_seconds", "quantile" => quantile).set(lag as f64);
        }
    }
    for (shard, events) in &status.events_by_shard {
        counter!("authpulse_kinesis_events_read_total", "shard" => shard.clone()).absolute(*events);
    }
    for (shard, ms) in &status.iterator_age_ms {
        gauge!("authpulse_kinesis_iterator_age_seconds", "shard" => shard.clone())
            .set(*ms as f64 / 1000.0);
    }
    for (id, report) in &s.rules {
        let rule = || id.clone();
        counter!("authpulse_rule_evaluations_total", "rule" => rule()).absolute(report.evaluations);
        counter!("authpulse_rule_hits_total", "rule" => rule()).absolute(report.hits);
        counter!("authpulse_rule_failures_total", "rule" => rule()).absolute(report.failures);
        // Counters here are whole numbers; seconds in a rule are not.
        gauge!("authpulse_rule_busy_seconds", "rule" => rule()).set(report.time_ms / 1000.0);
    }
    for rule in &status.rules {
        let mode = match rule.mode {
            authpulse_engine::policy::RuleMode::Enforce => "enforce",
            authpulse_engine::policy::RuleMode::Shadow => "shadow",
        };
        gauge!("authpulse_rule_enabled", "rule" => rule.id.clone(), "mode" => mode)
            .set(if rule.disabled { 0.0 } else { 1.0 });
    }
    counter!("authpulse_policy_reloads_total").absolute(s.policy_reloads);
    counter!("authpulse_policy_reloads_refused_total").absolute(s.policy_reloads_refused);
    counter!("authpulse_alert_publications_total").absolute(s.alert_publications);
    for (limit, n) in &s.state_caps {
        counter!("authpulse_state_limit_hits_total", "limit" => limit.clone()).absolute(*n);
    }
    let z = &status.sizes;
    gauge!("authpulse_state_users").set(z.users as f64);
    gauge!("authpulse_state_computers").set(z.computers as f64);
    gauge!("authpulse_state_device_pairs").set(z.device_pairs as f64);
    gauge!("authpulse_state_bytes").set(z.state_bytes as f64);
    gauge!("authpulse_state_held_events").set(z.held_events as f64);
    gauge!("authpulse_open_incidents").set(z.open_incidents as f64);
    gauge!("authpulse_up").set(if status.phase == "running" { 1.0 } else { 0.0 });
}

/// One batch's scoring time.
pub fn record_batch(seconds: f64) {
    histogram!("authpulse_batch_duration_seconds").record(seconds);
}

/// An alert publication: an opening counts as an alert of its level.
pub fn count_alert(alert: &Alert) {
    if alert.status == AlertStatus::Open {
        counter!("authpulse_alerts_total", "level" => alert.risk_level.as_str()).increment(1);
    }
}

/// A table commit that landed.
pub fn count_commit(table: &'static str, rows: u64, bytes: u64, seconds: f64) {
    counter!("authpulse_table_commits_total", "table" => table).increment(1);
    counter!("authpulse_table_rows_total", "table" => table).increment(rows);
    counter!("authpulse_table_bytes_total", "table" => table).increment(bytes);
    histogram!("authpulse_table_commit_duration_seconds", "table" => table).record(seconds);
}

/// A commit that lost the race for a table's metadata to another writer's
/// and is made again on top of it.
pub fn count_commit_conflict(table: &str) {
    counter!("authpulse_table_commit_conflicts_total", "table" => table.to_string()).increment(1);
}

/// An SNS message's outcome (`sent`, `retried`, `already_sent`).
pub fn count_sns(outcome: &'static str) {
    counter!("authpulse_sns_messages_total", "outcome" => outcome).increment(1);
}

/// A CloudWatch request's outcome (`sent`, `failed`).
pub fn count_cloudwatch(outcome: &'static str) {
    counter!("authpulse_cloudwatch_requests_total", "outcome" => outcome).increment(1);
}
