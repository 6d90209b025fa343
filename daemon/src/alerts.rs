//! Alerting: one alert per user incident, not per event. An event at or above
//! the alert level opens an incident for its user; further risky events less than
//! the dedup window after the incident's latest one extend it. An incident closes
//! when event time has moved a full window past its latest event (or at end of
//! input) and is then emitted once, with a stable `alert_id`.
//!
//! Everything is driven by event time, and closed incidents are emitted in
//! (expiry, alert_id) order, so the alerts do not depend on batch sizes.

use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::event::{EventId, Interner, NameId, format_time};
use crate::policy::{AlertConfig, RiskLevel};
use crate::rules::RuleSet;

/// A user incident while it is open.
#[derive(Clone, Debug)]
pub struct Incident {
    pub user: NameId,
    pub alert_id: String,
    pub first_time: i64,
    pub last_time: i64,
    pub max_score: u8,
    pub flags: u32,
    /// First reason index seen per rule (by rule position).
    pub reasons: Vec<Option<u32>>,
    pub event_count: u64,
    pub sample_event_ids: Vec<EventId>,
    pub computers: Vec<NameId>,
    pub policy_version: String,
}

impl Incident {
    fn expiry(&self, window: i64) -> i64 {
        self.last_time + window
    }
}

/// One risky event, as the alert engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct RiskyEvent {
    pub user: NameId,
    pub computer: NameId,
    pub time: i64,
    pub event_id: EventId,
    pub score: u8,
    pub flags: u32,
}

pub struct AlertEngine {
    config: AlertConfig,
    window: i64,
    open: FxHashMap<NameId, Incident>,
    closed: Vec<Incident>,
}

impl AlertEngine {
    pub fn new(config: &AlertConfig) -> Self {
        AlertEngine {
            window: config.dedup_window.as_secs() as i64,
            config: config.clone(),
            open: FxHashMap::default(),
            closed: Vec::new(),
        }
    }

    /// Takes a reloaded policy's alert settings and rule list (`old_rules` and
    /// `new_rules` are the rule ids by position). Open incidents carry on;
    /// their flags and reasons follow each rule to its new position, and a
    /// rule the new policy dropped leaves their flag lists (its score stays
    /// in `max_score`).
    pub fn reload(&mut self, config: &AlertConfig, old_rules: &[String], new_rules: &[String]) {
        self.config = config.clone();
        self.window = config.dedup_window.as_secs() as i64;
        if old_rules == new_rules {
            return;
        }
        let moved: Vec<Option<usize>> = old_rules
            .iter()
            .map(|id| new_rules.iter().position(|n| n == id))
            .collect();
        for incident in self.open.values_mut() {
            let mut flags = 0u32;
            let mut reasons = vec![None; new_rules.len()];
            for (old, new) in moved.iter().enumerate() {
                if let Some(new) = *new {
                    if incident.flags & (1 << old) != 0 {
                        flags |= 1 << new;
                    }
                    reasons[new] = incident.reasons.get(old).copied().flatten();
                }
            }
            incident.flags = flags;
            incident.reasons = reasons;
        }
    }

    /// Whether an event at `level` concerns alerting.
    #[inline]
    pub fn is_alertable(&self, level: RiskLevel) -> bool {
        level >= self.config.min_level
    }

    /// Adds an alertable event. `reasons(r)` is rule `r`'s reason for this event.
    pub fn observe(
        &mut self,
        event: RiskyEvent,
        reasons: impl Fn(usize) -> Option<u32>,
        rule_count: usize,
        policy_version: &str,
        users: &Interner,
    ) {
        let window = self.window;
        if let Some(incident) = self.open.get(&event.user)
            && event.time - incident.last_time >= window
        {
            let expired = self.open.remove(&event.user).expect("present");
            self.closed.push(expired);
        }
        let max_samples = self.config.max_sample_events;
        let incident = self.open.entry(event.user).or_insert_with(|| Incident {
            user: event.user,
            alert_id: alert_id(users.name(event.user), event.event_id),
            first_time: event.time,
            last_time: event.time,
            max_score: 0,
            flags: 0,
            reasons: vec![None; rule_count],
            event_count: 0,
            sample_event_ids: Vec::new(),
            computers: Vec::new(),
            policy_version: policy_version.to_string(),
        });
        incident.last_time = event.time;
        incident.max_score = incident.max_score.max(event.score);
        incident.flags |= event.flags;
        incident.event_count += 1;
        if incident.reasons.len() < rule_count {
            incident.reasons.resize(rule_count, None);
        }
        for (r, slot) in incident.reasons.iter_mut().enumerate() {
            if slot.is_none() && event.flags & (1 << r) != 0 {
                *slot = reasons(r);
            }
        }
        if incident.sample_event_ids.len() < max_samples {
            incident.sample_event_ids.push(event.event_id);
        }
        if incident.computers.len() < max_samples && !incident.computers.contains(&event.computer) {
            incident.computers.push(event.computer);
        }
    }

    /// Closes incidents whose window has passed at event time `now`; returns
    /// every incident closed since the last call, in emission order.
    pub fn close_expired(&mut self, now: i64) -> Vec<Incident> {
        let window = self.window;
        let expired: Vec<NameId> = self
            .open
            .iter()
            .filter(|(_, i)| i.expiry(window) <= now)
            .map(|(&u, _)| u)
            .collect();
        for user in expired {
            let incident = self.open.remove(&user).expect("present");
            self.closed.push(incident);
        }
        self.take_closed()
    }

    /// Closes every incident (end of input).
    pub fn close_all(&mut self) -> Vec<Incident> {
        let all: Vec<Incident> = self.open.drain().map(|(_, i)| i).collect();
        self.closed.extend(all);
        self.take_closed()
    }

    fn take_closed(&mut self) -> Vec<Incident> {
        let window = self.window;
        let mut closed = std::mem::take(&mut self.closed);
        closed
            .sort_by(|a, b| (a.expiry(window), &a.alert_id).cmp(&(b.expiry(window), &b.alert_id)));
        closed
    }
}

/// `alert_id`: stable across reruns and restarts for the same incident.
fn alert_id(user: &str, first_event: EventId) -> String {
    let mut h = Sha256::new();
    h.update(b"alert|");
    h.update(user.as_bytes());
    h.update(b"|");
    h.update(first_event.to_string().as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An alert as written to the alerts file (JSON lines) and sent to alert routes.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub user_id: String,
    /// Highest score of the incident's events.
    pub risk_score: u8,
    pub risk_level: RiskLevel,
    /// Every rule that fired on the incident's events.
    pub risk_flags: Vec<String>,
    pub rules: Vec<AlertRule>,
    pub first_event_time: String,
    pub last_event_time: String,
    pub event_count: u64,
    /// The first events' ids (at most `alerts.max_sample_events`).
    pub event_ids: Vec<String>,
    /// The first distinct computers involved.
    pub computers: Vec<String>,
    pub policy_version: String,
    /// One line for a pager or a ticket title.
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertRule {
    pub id: String,
    pub version: String,
    pub severity: String,
    pub mitre: Vec<String>,
    pub reason: String,
}

impl Alert {
    /// Renders a closed incident with names and rule metadata.
    pub fn render(
        incident: &Incident,
        users: &Interner,
        computers: &Interner,
        rules: &RuleSet,
        level: RiskLevel,
    ) -> Alert {
        let mut flags = Vec::new();
        let mut fired = Vec::new();
        for (r, rule) in rules.rules.iter().enumerate() {
            if incident.flags & (1 << r) == 0 {
                continue;
            }
            flags.push(rule.id.clone());
            let reason = incident
                .reasons
                .get(r)
                .copied()
                .flatten()
                .and_then(|i| rule.metadata.reasons.get(i as usize).cloned())
                .unwrap_or_default();
            fired.push(AlertRule {
                id: rule.id.clone(),
                version: rule.metadata.version.clone(),
                severity: rule.metadata.severity.clone(),
                mitre: rule.metadata.mitre.clone(),
                reason,
            });
        }
        let user_id = users.name(incident.user).to_string();
        let summary = format!(
            "{} risk {} for {}: {} event(s) on {} computer(s) between {} and {} [{}]",
            level.as_str(),
            incident.max_score,
            user_id,
            incident.event_count,
            incident.computers.len(),
            format_time(incident.first_time),
            format_time(incident.last_time),
            flags.join(", ")
        );
        Alert {
            alert_id: incident.alert_id.clone(),
            user_id,
            risk_score: incident.max_score,
            risk_level: level,
            risk_flags: flags,
            rules: fired,
            first_event_time: format_time(incident.first_time),
            last_event_time: format_time(incident.last_time),
            event_count: incident.event_count,
            event_ids: incident
                .sample_event_ids
                .iter()
                .map(|id| id.to_string())
                .collect(),
            computers: incident
                .computers
                .iter()
                .map(|&c| computers.name(c).to_string())
                .collect(),
            policy_version: incident.policy_version.clone(),
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn engine() -> (AlertEngine, Interner) {
        let config = AlertConfig {
            dedup_window: Duration::from_secs(100),
            ..AlertConfig::default()
        };
        let mut users = Interner::default();
        users.intern(b"U1");
        users.intern(b"U2");
        (AlertEngine::new(&config), users)
    }

    fn risky(user: NameId, time: i64, score: u8) -> RiskyEvent {
        RiskyEvent {
            user,
            computer: 0,
            time,
            event_id: EventId::derive(time, "U", "C"),
            score,
            flags: 1,
        }
    }

    #[test]
    fn groups_events_into_incidents_per_user() {
        let (mut a, users) = engine();
        for (u, t, s) in [
            (0, 0, 70),
            (0, 50, 90),
            (1, 60, 65),
            (0, 149, 60),
            (0, 250, 70),
        ] {
            a.observe(risky(u, t, s), |_| Some(0), 1, "v1", &users);
        }
        // U1: 0, 50, 149 form one incident (gaps < 100); 250 starts another.
        // Emitted by expiry: U2's (60 + 100) before U1's first (149 + 100).
        let closed = a.close_expired(250);
        assert_eq!(closed.len(), 2);
        assert_eq!((closed[0].user, closed[0].event_count), (1, 1));
        assert_eq!(
            (closed[1].user, closed[1].first_time, closed[1].last_time),
            (0, 0, 149)
        );
        assert_eq!((closed[1].event_count, closed[1].max_score), (3, 90));
        let rest = a.close_all();
        assert_eq!((rest.len(), rest[0].first_time), (1, 250));
        assert_ne!(rest[0].alert_id, closed[1].alert_id);
    }

    #[test]
    fn alert_ids_are_stable() {
        let (mut a, users) = engine();
        let (mut b, _) = engine();
        a.observe(risky(0, 5, 70), |_| Some(0), 1, "v1", &users);
        b.observe(risky(0, 5, 70), |_| Some(0), 1, "v1", &users);
        assert_eq!(a.close_all()[0].alert_id, b.close_all()[0].alert_id);
    }
}
