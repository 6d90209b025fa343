//! What a run counted: the metrics for operators and the summary at the end.

use crate::limits::{Cap, CapHits};
use crate::metrics::{LagHistogram, MetricsSnapshot};
use crate::policy::RiskLevel;
use crate::rules::RuleReport;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::BTreeMap;

use super::Pipeline;

#[derive(Clone, Debug, Default)]
pub(super) struct Counters {
    pub(super) events_read: u64,
    pub(super) invalid: u64,
    pub(super) duplicates: u64,
    pub(super) late: u64,
    /// Refused as dated too far ahead; and as of the last checkpoint's log.
    pub(super) future: u64,
    pub(super) future_logged: u64,
    pub(super) scored: u64,
    /// Incidents opened.
    pub(super) alerts: u64,
    /// Alert publications (opens, updates, closes).
    pub(super) alert_publications: u64,
    pub(super) by_level: [u64; 4],
    pub(super) invalid_by_reason: FxHashMap<&'static str, u64>,
    pub(super) policy_reloads: u64,
    pub(super) policy_reloads_refused: u64,
    /// Totals of rule sets replaced by reloads, by rule id.
    pub(super) retired_rules: BTreeMap<String, RuleReport>,
    pub(super) reload_timings: ReloadTimings,
    pub(super) batches: u64,
    pub(super) batch_time: std::time::Duration,
    /// Each batch's scoring time since last drained, once asked for
    /// ([`Pipeline::time_batches`]).
    pub(super) batch_durations: Option<Vec<f32>>,
    /// Lag (event time to reading) of events read since the last metrics
    /// snapshot.
    pub(super) lag: LagHistogram,
    /// Duplicates the warehouse already stored (not kept in snapshots).
    pub(super) already_stored: u64,
    /// Times each state limit was hit, and as of the last checkpoint's log.
    pub(super) caps: CapHits,
    pub(super) caps_logged: CapHits,
    /// In a fleet: host-share trades, and time spent waiting for the
    /// slowest shard.
    pub(super) fleet: super::FleetStats,
}

/// How each policy swap went, in order (for `bench --reload`).
#[derive(Clone, Debug, Default)]
pub struct ReloadTimings {
    /// Time the hot path stood still for each swap.
    pub pause_us: Vec<u64>,
    /// From the change being noticed on disk to the swap.
    pub effective_ms: Vec<u64>,
}

/// The JSON line `run` prints at exit.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub events_read: u64,
    pub events_valid: u64,
    pub invalid: u64,
    /// Events seen before: in this input, or (`already_stored`) stored in
    /// the warehouse by another.
    pub duplicates: u64,
    /// Of the duplicates, those the warehouse already stored.
    #[serde(default)]
    pub already_stored: u64,
    pub late: u64,
    /// Refused as dated too far ahead of the event clock (or, live, of the
    /// wall clock): dead-lettered as `future`.
    #[serde(default)]
    pub future: u64,
    pub events_scored: u64,
    /// Incidents (alerts) opened.
    pub alerts: u64,
    /// Alert publications: each incident's opening, updates and closing.
    #[serde(default)]
    pub alert_publications: u64,
    pub risk_levels: BTreeMap<String, u64>,
    pub rule_hits: BTreeMap<String, u64>,
    pub rule_failures: BTreeMap<String, u64>,
    pub invalid_by_reason: BTreeMap<String, u64>,
    pub users: u64,
    pub computers: u64,
    pub device_pairs: u64,
    /// Heap memory of the detection state at exit, in bytes: windows, device
    /// history, host popularity, baselines and entity risk.
    #[serde(default)]
    pub state_bytes: u64,
    /// Times each state limit was hit ([`crate::limits`]).
    pub state_caps: BTreeMap<String, u64>,
    pub policy_version: String,
    /// Per rule (by id, across reloads): mode, evaluations, hits, failures,
    /// time spent.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleReport>,
    /// Policy changes swapped in while running.
    #[serde(default)]
    pub policy_reloads: u64,
    /// Policy changes refused (the running policy stayed).
    #[serde(default)]
    pub policy_reloads_refused: u64,
    pub engine: String,
    pub elapsed_s: f64,
    pub events_per_s: f64,
}

impl<'o> Pipeline<'o> {
    /// Counters so far, the lag of every event read included.
    pub fn metrics(&self) -> MetricsSnapshot {
        let c = &self.counters;
        let failures = c.retired_rules.values().map(|r| r.failures).sum::<u64>()
            + self
                .rules
                .rules
                .iter()
                .map(|r| r.stats.failures)
                .sum::<u64>();
        MetricsSnapshot {
            events_read: c.events_read,
            invalid: c.invalid,
            duplicates: c.duplicates,
            late: c.late,
            future: c.future,
            events_scored: c.scored,
            alerts: c.alerts,
            rule_failures: failures,
            batches: c.batches,
            batch_time: c.batch_time,
            lag: c.lag.clone(),
        }
    }

    /// The summary so far (what the run prints at its end).
    pub fn summary(&self) -> Summary {
        let c = &self.counters;
        let elapsed = self.started.elapsed().as_secs_f64();
        // Rules of replaced policy versions keep their counts.
        let mut rules = c.retired_rules.clone();
        for rule in &self.rules.rules {
            rules.entry(rule.id.clone()).or_default().add(rule);
        }
        let named = |count: fn(&RuleReport) -> u64| {
            rules
                .iter()
                .map(|(id, report)| (id.clone(), count(report)))
                .collect()
        };
        Summary {
            events_read: c.events_read,
            events_valid: c.events_read - c.invalid,
            invalid: c.invalid,
            duplicates: c.duplicates,
            already_stored: c.already_stored,
            late: c.late,
            future: c.future,
            events_scored: c.scored,
            alerts: c.alerts,
            alert_publications: c.alert_publications,
            risk_levels: RiskLevel::ALL
                .iter()
                .map(|l| (l.as_str().to_string(), c.by_level[*l as usize]))
                .collect(),
            rule_hits: named(|r| r.hits),
            rule_failures: named(|r| r.failures),
            invalid_by_reason: c
                .invalid_by_reason
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            users: self.users.len() as u64,
            computers: self.computers.len() as u64,
            device_pairs: self.state.device_pairs() as u64,
            state_bytes: (self.state.heap_bytes() + self.entities.heap_bytes()) as u64,
            state_caps: Cap::ALL
                .iter()
                .map(|cap| (cap.name().to_string(), c.caps.get(*cap)))
                .collect(),
            policy_version: self.rules.version.clone(),
            rules,
            policy_reloads: c.policy_reloads,
            policy_reloads_refused: c.policy_reloads_refused,
            engine: format!("{:?}", self.options.engine).to_lowercase(),
            elapsed_s: elapsed,
            events_per_s: if elapsed > 0.0 {
                c.events_read as f64 / elapsed
            } else {
                0.0
            },
        }
    }
}
