//! Alerting: one alert per entity incident, published as soon as it opens,
//! again as it grows, and once more when it closes.
//!
//! An incident opens when a user's or a computer's accumulated risk (see
//! [`entity`](crate::entity)) reaches the alert level, whether one loud event
//! or several quiet ones got it there; it starts with the contributions that
//! got it there. Every further contribution to that entity extends it. Its
//! alert is published with `status: open` at once, then `update` whenever its
//! level rises or a rule joins it, and `closed` when event time has moved the
//! dedup window past its latest contribution (or at the end of input). All
//! publications of an incident share its `alert_id` and count up `sequence`.
//!
//! Everything is driven by event time and the pipeline feeds events in one
//! total order, so the publications do not depend on batch sizes. What a
//! publication holds (the alerts file's and the routes' records) is
//! `publication`'s.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::entity::{Contribution, EntityKind, MAX_RULES, RuleMoves};
use crate::event::{EventId, Interner, NameId};
use crate::policy::{AlertConfig, RiskBands, RiskLevel};
use crate::rules::RuleSet;

mod publication;

pub use publication::{Alert, AlertEvent, AlertRule};

/// Where an incident is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Just crossed the alert level.
    Open,
    /// Its level rose, or another rule joined it.
    Update,
    /// Quiet for the dedup window (or input ended); the final numbers.
    Closed,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Update => "update",
            AlertStatus::Closed => "closed",
        }
    }
}

/// One contributing event as an incident keeps it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub event_id: EventId,
    pub time: i64,
    pub user: NameId,
    pub computer: NameId,
    /// The event's own risk score.
    pub score: u8,
    /// The entity's rules that fired on it.
    pub rules: u32,
}

/// An entity incident while it is open.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Incident {
    pub entity: EntityKind,
    pub id: NameId,
    pub alert_id: String,
    /// Event time of the contribution that made it cross the alert level.
    pub opened_time: i64,
    pub first_time: i64,
    pub last_time: i64,
    /// Highest accumulated risk of the entity while open.
    pub max_risk: u8,
    /// Highest risk score of one of its events.
    pub max_event_score: u8,
    /// Rules that fired among its contributions (bit per rule position).
    pub flags: u32,
    /// First reason index seen per rule (by rule position).
    pub reasons: Vec<Option<u32>>,
    /// Contributions each rule fired on (by rule position).
    pub rule_hits: Vec<u32>,
    pub event_count: u64,
    /// The first contributions (at most `alerts.max_sample_events`).
    pub samples: Vec<Sample>,
    /// Distinct users and computers of its contributions (at most
    /// `alerts.max_sample_events` each).
    pub users: Vec<NameId>,
    pub computers: Vec<NameId>,
    pub policy_version: String,
    /// Publications so far.
    pub sequence: u32,
    published_level: RiskLevel,
    published_flags: u32,
}

impl Incident {
    fn expiry(&self, window: i64) -> i64 {
        self.last_time + window
    }

    fn add(&mut self, c: &Contribution, max_samples: usize) {
        self.first_time = self.first_time.min(c.time);
        self.last_time = self.last_time.max(c.time);
        self.max_event_score = self.max_event_score.max(c.event_score);
        self.flags |= c.rules;
        self.event_count += 1;
        for r in 0..self.rule_hits.len().min(MAX_RULES) {
            if c.rules & (1 << r) != 0 {
                self.rule_hits[r] += 1;
                self.reasons[r].get_or_insert(u32::from(c.reasons[r]));
            }
        }
        if self.samples.len() < max_samples {
            self.samples.push(Sample {
                event_id: c.event_id,
                time: c.time,
                user: c.user,
                computer: c.computer,
                score: c.event_score,
                rules: c.rules,
            });
        }
        if self.users.len() < max_samples && !self.users.contains(&c.user) {
            self.users.push(c.user);
        }
        if self.computers.len() < max_samples && !self.computers.contains(&c.computer) {
            self.computers.push(c.computer);
        }
    }
}

/// An incident to publish, with its status.
pub struct Publication {
    pub status: AlertStatus,
    pub incident: Incident,
}

pub struct AlertEngine {
    config: AlertConfig,
    bands: RiskBands,
    window: i64,
    open: FxHashMap<(EntityKind, NameId), Incident>,
    /// When each open incident falls due to close; an entry is stale when
    /// its incident has been extended since (or closed).
    expiries: BinaryHeap<Reverse<(i64, EntityKind, NameId)>>,
    /// Computers' incidents' due times, when computers keep an event time
    /// of their own ([`AlertEngine::set_computers_apart`]).
    computer_expiries: Option<BinaryHeap<Reverse<(i64, EntityKind, NameId)>>>,
    published: Vec<Publication>,
}

impl AlertEngine {
    pub fn new(config: &AlertConfig, bands: RiskBands) -> Self {
        AlertEngine {
            window: config.dedup_window.as_secs() as i64,
            config: config.clone(),
            bands,
            open: FxHashMap::default(),
            expiries: BinaryHeap::new(),
            computer_expiries: None,
            published: Vec::new(),
        }
    }

    /// From now on computers' incidents close only by
    /// [`AlertEngine::close_computers_due`], at an event time of their own:
    /// a fleet decides them behind what every worker has scored
    /// (`pipeline::shared_risk`), which lags this worker's own events.
    pub fn set_computers_apart(&mut self) {
        if self.computer_expiries.is_none() {
            self.computer_expiries = Some(BinaryHeap::new());
            self.reschedule();
        }
    }

    /// Whether computers' incidents are decided apart from the events that
    /// scored them ([`AlertEngine::set_computers_apart`]).
    pub fn computers_apart(&self) -> bool {
        self.computer_expiries.is_some()
    }

    /// Forgets, without publishing, the open computer incidents `keep`
    /// refuses: another worker of a fleet carries them on.
    pub fn forget_computer_incidents(&mut self, keep: impl Fn(NameId) -> bool) {
        self.open
            .retain(|&(kind, id), _| kind == EntityKind::User || keep(id));
        self.reschedule();
    }

    fn schedule(&mut self, due: i64, kind: EntityKind, id: NameId) {
        match (kind, self.computer_expiries.as_mut()) {
            (EntityKind::Computer, Some(heap)) => heap.push(Reverse((due, kind, id))),
            _ => self.expiries.push(Reverse((due, kind, id))),
        }
    }

    /// Every open incident's due time, again (after the window or the
    /// heaps changed).
    fn reschedule(&mut self) {
        self.expiries.clear();
        if let Some(heap) = self.computer_expiries.as_mut() {
            heap.clear();
        }
        let due: Vec<_> = self
            .open
            .iter()
            .map(|(&(kind, id), i)| (i.expiry(self.window), kind, id))
            .collect();
        for (due, kind, id) in due {
            self.schedule(due, kind, id);
        }
    }

    /// The accumulated risk that opens an incident: the lowest score of
    /// `alerts.min_level`.
    pub fn threshold(&self) -> u8 {
        match self.config.min_level {
            RiskLevel::Low => 1,
            RiskLevel::Medium => self.bands.medium,
            RiskLevel::High => self.bands.high,
            RiskLevel::Critical => self.bands.critical,
        }
    }

    /// Takes a reloaded policy's alert settings and rule list (`old_rules` and
    /// `new_rules` are the rule ids by position). Open incidents carry on;
    /// their flags, reasons and counts follow each rule to its new position,
    /// and a rule the new policy dropped leaves them.
    pub fn reload(
        &mut self,
        config: &AlertConfig,
        bands: RiskBands,
        old_rules: &[String],
        new_rules: &[String],
    ) {
        self.config = config.clone();
        self.bands = bands;
        self.window = config.dedup_window.as_secs() as i64;
        // Due times move with the window.
        self.reschedule();
        let Some(moves) = RuleMoves::between(old_rules, new_rules) else {
            return;
        };
        for incident in self.open.values_mut() {
            let mut reasons = vec![None; new_rules.len()];
            let mut hits = vec![0; new_rules.len()];
            for (old, new) in moves.kept() {
                reasons[new] = incident.reasons.get(old).copied().flatten();
                hits[new] = incident.rule_hits.get(old).copied().unwrap_or(0);
            }
            incident.flags = moves.bits(incident.flags);
            incident.published_flags = moves.bits(incident.published_flags);
            for sample in &mut incident.samples {
                sample.rules = moves.bits(sample.rules);
            }
            incident.reasons = reasons;
            incident.rule_hits = hits;
        }
    }

    /// Whether any incident falls due at or before event time `now`: a cheap
    /// check the pipeline makes per event before [`AlertEngine::close_due`].
    #[inline]
    pub fn any_due(&self, now: i64) -> bool {
        self.expiries
            .peek()
            .is_some_and(|Reverse((t, _, _))| *t <= now)
    }

    /// Closes the incidents whose dedup window has passed at event time `now`
    /// (computers' too, unless they keep their own time).
    pub fn close_due(&mut self, now: i64) {
        let mut due = std::mem::take(&mut self.expiries);
        self.close_from(&mut due, now);
        self.expiries = due;
    }

    /// Closes the computers' incidents due by their own event time `now`
    /// (when apart: [`AlertEngine::set_computers_apart`]).
    pub fn close_computers_due(&mut self, now: i64) {
        if let Some(mut due) = self.computer_expiries.take() {
            self.close_from(&mut due, now);
            self.computer_expiries = Some(due);
        }
    }

    fn close_from(&mut self, due: &mut BinaryHeap<Reverse<(i64, EntityKind, NameId)>>, now: i64) {
        while let Some(&Reverse((at, kind, id))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            let current = self
                .open
                .get(&(kind, id))
                .is_some_and(|i| i.expiry(self.window) == at);
            if current {
                let incident = self.open.remove(&(kind, id)).expect("present");
                self.publish(AlertStatus::Closed, incident);
            }
        }
    }

    /// Takes a contribution to `entity` whose accumulated risk is now
    /// `risk`. `ledger` gives the entity's contributions inside the risk
    /// window (this one included), the evidence a new incident starts with;
    /// `rules` scored them, `names` names the entity.
    pub fn observe<'a>(
        &mut self,
        (kind, id): (EntityKind, NameId),
        contribution: &Contribution,
        risk: f32,
        ledger: impl Iterator<Item = &'a Contribution>,
        rules: &RuleSet,
        names: &Interner,
    ) {
        let rule_count = rules.rules.len();
        let risk = risk.round().clamp(0.0, 100.0) as u8;
        let max_samples = self.config.max_sample_events;
        let window = self.window;
        if let Some(incident) = self.open.get_mut(&(kind, id)) {
            incident.add(contribution, max_samples);
            incident.max_risk = incident.max_risk.max(risk);
            let due = incident.expiry(window);
            let grew = self.bands.level(incident.max_risk) > incident.published_level
                || incident.flags & !incident.published_flags != 0;
            let grown = grew.then(|| incident.clone());
            self.schedule(due, kind, id);
            if let Some(snapshot) = grown {
                self.publish(AlertStatus::Update, snapshot);
            }
            return;
        }
        if risk < self.threshold() {
            return;
        }
        let mut incident = Incident {
            entity: kind,
            id,
            alert_id: alert_id(kind, names.name(id), contribution.event_id),
            opened_time: contribution.time,
            first_time: contribution.time,
            last_time: contribution.time,
            max_risk: risk,
            max_event_score: 0,
            flags: 0,
            reasons: vec![None; rule_count],
            rule_hits: vec![0; rule_count],
            event_count: 0,
            samples: Vec::new(),
            users: Vec::new(),
            computers: Vec::new(),
            policy_version: rules.version.clone(),
            sequence: 0,
            published_level: RiskLevel::Low,
            published_flags: 0,
        };
        for c in ledger {
            incident.add(c, max_samples);
        }
        // The alert id names the entity and the event that opened the
        // incident: the same on every run over the same events, and never
        // shared by two incidents of one entity (a later incident may start
        // from evidence an earlier one also holds, but not open on it).
        self.schedule(incident.expiry(window), kind, id);
        self.open.insert((kind, id), incident.clone());
        self.publish(AlertStatus::Open, incident);
    }

    fn publish(&mut self, status: AlertStatus, mut incident: Incident) {
        incident.sequence += 1;
        let level = self.bands.level(incident.max_risk);
        if let Some(open) = self.open.get_mut(&(incident.entity, incident.id)) {
            open.sequence = incident.sequence;
            open.published_level = level;
            open.published_flags = open.flags;
        }
        self.published.push(Publication { status, incident });
    }

    /// Closes every incident (end of input), in (due time, alert id) order.
    pub fn close_all(&mut self) {
        let mut all: Vec<Incident> = self.open.drain().map(|(_, i)| i).collect();
        let window = self.window;
        all.sort_by(|a, b| (a.expiry(window), &a.alert_id).cmp(&(b.expiry(window), &b.alert_id)));
        self.expiries.clear();
        if let Some(due) = self.computer_expiries.as_mut() {
            due.clear();
        }
        for incident in all {
            self.publish(AlertStatus::Closed, incident);
        }
    }

    /// The publications since the last call, in order.
    pub fn take_published(&mut self) -> std::vec::Drain<'_, Publication> {
        self.published.drain(..)
    }

    /// The open incidents (what a state snapshot keeps), in alert id order.
    pub fn open_snapshot(&self) -> Vec<Incident> {
        let mut open: Vec<Incident> = self.open.values().cloned().collect();
        open.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        open
    }

    /// Takes back the open incidents of a snapshot, whose rules were
    /// `old_rules` (labels by position); `new_rules` are this engine's.
    pub fn restore_open(
        &mut self,
        incidents: Vec<Incident>,
        old_rules: &[String],
        new_rules: &[String],
    ) {
        self.open = incidents
            .into_iter()
            .map(|i| ((i.entity, i.id), i))
            .collect();
        let (config, bands) = (self.config.clone(), self.bands);
        self.reload(&config, bands, old_rules, new_rules);
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> usize {
        self.open.len()
    }
}

/// `alert_id`: stable across reruns and restarts for the same incident.
fn alert_id(kind: EntityKind, entity: &str, first_event: EventId) -> String {
    let mut h = Sha256::new();
    h.update(b"alert|");
    if kind == EntityKind::Computer {
        // Users keep the ids they had before computers could alert.
        h.update(b"computer|");
    }
    h.update(entity.as_bytes());
    h.update(b"|");
    h.update(first_event.to_string().as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::EntityRisk;
    use std::time::Duration;

    struct Harness {
        alerts: AlertEngine,
        risk: EntityRisk,
        names: Interner,
        rules: RuleSet,
    }

    impl Harness {
        fn new() -> Harness {
            let config = AlertConfig {
                dedup_window: Duration::from_secs(100),
                ..AlertConfig::default()
            };
            let mut names = Interner::default();
            names.intern(b"U1");
            names.intern(b"U2");
            // Three rules: positions 0, 1 and 2 of the contributions' bits.
            let policy = crate::policy::Policy::parse(
                "rules:\n  - {id: a, module: 'builtin:new_device'}\n  - {id: b, module: 'builtin:burst'}\n  - {id: c, module: 'builtin:fan_in'}\n",
                "p.yaml",
                std::path::Path::new("."),
            )
            .unwrap();
            Harness {
                alerts: AlertEngine::new(&config, RiskBands::default()),
                risk: EntityRisk::new(1_000, 0),
                names,
                rules: RuleSet::load(&policy, crate::rules::Engine::Native, 1).unwrap(),
            }
        }

        /// Entity `id` (a user) gets an event at `time` weighing `weight`
        /// from rule `rule`.
        fn feed(&mut self, id: NameId, time: i64, weight: f32, rule: u32) {
            if self.alerts.any_due(time) {
                self.alerts.close_due(time);
            }
            let c = Contribution {
                time,
                weight,
                event_id: EventId::derive(time, "U", "C"),
                user: id,
                computer: 0,
                event_score: (weight * 100.0) as u8,
                rules: 1 << rule,
                reasons: [0; MAX_RULES],
            };
            let risk = self.risk.add(EntityKind::User, id, c);
            let ledger = self.risk.contributions(EntityKind::User, id, time);
            self.alerts.observe(
                (EntityKind::User, id),
                &c,
                risk,
                ledger,
                &self.rules,
                &self.names,
            );
        }

        fn published(&mut self) -> Vec<(AlertStatus, NameId, u32, u8, u64)> {
            self.alerts
                .take_published()
                .map(|p| {
                    let i = p.incident;
                    (p.status, i.id, i.sequence, i.max_risk, i.event_count)
                })
                .collect()
        }
    }

    #[test]
    fn quiet_events_add_up_to_an_incident_published_at_once() {
        let mut h = Harness::new();
        h.feed(0, 0, 0.3, 0);
        h.feed(0, 10, 0.3, 0);
        assert!(h.published().is_empty(), "51 is below HIGH");
        h.feed(0, 20, 0.3, 0);
        // 1 - 0.7^3 = 65.7: opens with all three contributions.
        assert_eq!(h.published(), [(AlertStatus::Open, 0, 1, 66, 3)]);
        // A fourth from the same rule raises nothing that was not said ...
        h.feed(0, 30, 0.3, 0);
        assert!(h.published().is_empty());
        // ... a new rule does, and so does a higher level.
        h.feed(0, 40, 0.1, 1);
        assert_eq!(h.published(), [(AlertStatus::Update, 0, 2, 78, 5)]);
        h.feed(0, 50, 0.5, 1);
        assert_eq!(h.published(), [(AlertStatus::Update, 0, 3, 89, 6)]);
        // Quiet for the window (100 s after 50): closed, with the totals.
        h.feed(1, 149, 0.1, 0);
        assert!(h.published().is_empty());
        h.feed(1, 150, 0.1, 0);
        assert_eq!(h.published(), [(AlertStatus::Closed, 0, 4, 89, 6)]);
    }

    #[test]
    fn one_loud_event_opens_and_close_all_ends_everything() {
        let mut h = Harness::new();
        h.feed(1, 5, 0.9, 2);
        h.feed(0, 6, 0.7, 0);
        assert_eq!(
            h.published(),
            [
                (AlertStatus::Open, 1, 1, 90, 1),
                (AlertStatus::Open, 0, 1, 70, 1)
            ]
        );
        h.alerts.close_all();
        let closed = h.published();
        assert_eq!(closed.len(), 2);
        assert!(
            closed
                .iter()
                .all(|p| p.0 == AlertStatus::Closed && p.2 == 2)
        );
        assert_eq!(h.alerts.open_incidents(), 0);
    }

    #[test]
    fn alert_ids_are_stable_and_differ_by_entity() {
        let id = EventId::derive(5, "U1", "C1");
        assert_eq!(
            alert_id(EntityKind::User, "U1", id),
            alert_id(EntityKind::User, "U1", id)
        );
        assert_ne!(
            alert_id(EntityKind::User, "C1", id),
            alert_id(EntityKind::Computer, "C1", id)
        );
    }
}
