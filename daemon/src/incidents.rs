//! The incidents a run opened, as its alert publications tell them: one
//! entry per alert id, with its entity, when it opened, the span of its
//! contributing events, the users and computers of its samples and every
//! rule that took part. `eval` matches them against labelled campaigns;
//! `rules backtest` compares two policies' incidents.

use std::collections::BTreeMap;

use authpulse_engine::alerts::{Alert, AlertStatus};
use authpulse_engine::entity::EntityKind;
use authpulse_engine::sinks::{AlertSink, Commit};

/// One incident: the alert's first publication and all that joined it since.
#[derive(Clone, Debug)]
pub struct Incident {
    pub entity: EntityKind,
    pub entity_id: String,
    /// The users and computers of its contributing events (the alert's samples).
    pub users: Vec<String>,
    pub computers: Vec<String>,
    /// Unix seconds: when it crossed the alert level, and the span of its
    /// contributing events.
    pub opened: i64,
    pub first: i64,
    pub last: i64,
    /// The latest summary line.
    pub summary: String,
    /// Every rule that took part (its `risk_flags`).
    pub rules: Vec<String>,
}

impl Incident {
    /// Whether `other` is about the same entity and their spans of events
    /// overlap: the same incident as another run saw it.
    pub fn same_as(&self, other: &Incident) -> bool {
        self.entity == other.entity
            && self.entity_id == other.entity_id
            && self.first <= other.last
            && other.first <= self.last
    }
}

/// Collects every publication (opens, updates, closes) by alert id.
#[derive(Default)]
pub struct IncidentLog {
    incidents: BTreeMap<String, Incident>,
    /// Publications seen.
    pub publications: u64,
}

impl IncidentLog {
    /// The incidents, by alert id.
    pub fn incidents(&self) -> impl Iterator<Item = (&str, &Incident)> {
        self.incidents.iter().map(|(id, i)| (id.as_str(), i))
    }
}

fn unix(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn add_new(seen: &mut Vec<String>, names: &[String]) {
    for name in names {
        if !seen.contains(name) {
            seen.push(name.clone());
        }
    }
}

impl Commit for IncidentLog {}

impl AlertSink for IncidentLog {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.publications += 1;
        let (first, last) = (unix(&alert.first_event_time), unix(&alert.last_event_time));
        let incident = self
            .incidents
            .entry(alert.alert_id.clone())
            .or_insert_with(|| Incident {
                entity: alert.entity_type,
                entity_id: alert.entity_id.clone(),
                users: Vec::new(),
                computers: Vec::new(),
                opened: unix(&alert.opened_event_time),
                first,
                last,
                summary: String::new(),
                rules: Vec::new(),
            });
        incident.first = incident.first.min(first);
        incident.last = incident.last.max(last);
        add_new(&mut incident.users, &alert.users);
        add_new(&mut incident.computers, &alert.computers);
        add_new(&mut incident.rules, &alert.risk_flags);
        if alert.status == AlertStatus::Closed || incident.summary.is_empty() {
            incident.summary = alert.summary.clone();
        }
        Ok(())
    }
}
