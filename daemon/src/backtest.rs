//! What two policies make of the same history, side by side: `rules
//! backtest` replays a deployment's curated table through the current
//! policy and a candidate, and this compares their incidents (per day, the
//! ones only one of them raises) and their rules' hits.

use std::collections::BTreeMap;

use authpulse_engine::event::format_time;
use authpulse_engine::pipeline::Summary;
use serde::Serialize;

use crate::incidents::{Incident, IncidentLog};

const DAY: i64 = 86_400;

/// One policy's run over the history.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// Where the policy came from, and its version.
    pub policy: String,
    pub policy_version: String,
    pub events_scored: u64,
    /// Incidents opened within the range.
    pub incidents: u64,
    /// Per rule: its hits over the whole history, and the incidents of the
    /// range it took part in.
    pub rule_hits: BTreeMap<String, u64>,
    pub incidents_by_rule: BTreeMap<String, u64>,
}

/// Incidents opened on one UTC day.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    pub day: String,
    pub current: u64,
    pub candidate: u64,
}

/// An incident only one of the policies raises.
#[derive(Clone, Debug, Serialize)]
pub struct OnlyOne {
    pub alert_id: String,
    pub entity_type: String,
    pub entity_id: String,
    pub opened: String,
    pub rules: Vec<String>,
    pub summary: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The range judged (incidents opened from `from` to before `until`).
    pub from: String,
    pub until: String,
    pub current: Side,
    pub candidate: Side,
    pub days: Vec<Day>,
    pub only_current: Vec<OnlyOne>,
    pub only_candidate: Vec<OnlyOne>,
}

impl Report {
    /// Both policies raise the same incidents.
    pub fn identical(&self) -> bool {
        self.only_current.is_empty() && self.only_candidate.is_empty()
    }
}

/// One policy's run: where its policy came from, its summary and incidents.
pub struct Run<'a> {
    pub policy: &'a str,
    pub summary: &'a Summary,
    pub incidents: &'a IncidentLog,
}

/// Compares the incidents the two runs opened in `[from, until)` (Unix
/// seconds, whole UTC days): an incident of one is the other's too when the
/// other has one on the same entity whose events' span overlaps it.
pub fn compare<'a>(current: &Run<'a>, candidate: &Run<'a>, from: i64, until: i64) -> Report {
    let in_range = |log: &'a IncidentLog| -> Vec<(&'a str, &'a Incident)> {
        log.incidents()
            .filter(|(_, i)| (from..until).contains(&i.opened))
            .collect()
    };
    let (ours, theirs) = (in_range(current.incidents), in_range(candidate.incidents));
    let only = |mine: &[(&str, &Incident)], other: &[(&str, &Incident)]| -> Vec<OnlyOne> {
        mine.iter()
            .filter(|(_, i)| !other.iter().any(|(_, o)| i.same_as(o)))
            .map(|(id, i)| OnlyOne {
                alert_id: id.to_string(),
                entity_type: i.entity.as_str().to_string(),
                entity_id: i.entity_id.clone(),
                opened: format_time(i.opened),
                rules: i.rules.clone(),
                summary: i.summary.clone(),
            })
            .collect()
    };
    let days = (from.div_euclid(DAY)..until.div_euclid(DAY))
        .map(|day| {
            let count = |list: &[(&str, &Incident)]| {
                list.iter()
                    .filter(|(_, i)| i.opened.div_euclid(DAY) == day)
                    .count() as u64
            };
            Day {
                day: format_time(day * DAY)[..10].to_string(),
                current: count(&ours),
                candidate: count(&theirs),
            }
        })
        .collect();
    let side = |run: &Run<'_>, list: &[(&str, &Incident)]| {
        let mut incidents_by_rule: BTreeMap<String, u64> = BTreeMap::new();
        for (_, incident) in list {
            for rule in &incident.rules {
                *incidents_by_rule.entry(rule.clone()).or_default() += 1;
            }
        }
        Side {
            policy: run.policy.to_string(),
            policy_version: run.summary.policy_version.clone(),
            events_scored: run.summary.events_scored,
            incidents: list.len() as u64,
            rule_hits: run.summary.rule_hits.clone(),
            incidents_by_rule,
        }
    };
    Report {
        from: format_time(from),
        until: format_time(until),
        current: side(current, &ours),
        candidate: side(candidate, &theirs),
        days,
        only_current: only(&ours, &theirs),
        only_candidate: only(&theirs, &ours),
    }
}
