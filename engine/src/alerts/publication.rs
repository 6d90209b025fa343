//! An alert as it is published: one JSON line of the alerts file, the SNS
//! message, a row of the `alerts` table. Its fields are the reference for
//! whoever consumes them; an [`Incident`] becomes one at each of its
//! publications.

use serde::{Deserialize, Serialize};

use super::{AlertStatus, Publication};
use crate::entity::EntityKind;
use crate::event::{Interner, format_time};
use crate::policy::{RiskBands, RiskLevel};
use crate::rules::RuleSet;

/// An alert publication, as written to the alerts file (JSON lines) and sent
/// to alert routes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    /// `open`, `update` or `closed`.
    pub status: AlertStatus,
    /// 1 for the opening, then one more per publication of this incident.
    pub sequence: u32,
    /// Who the incident is about: `user` or `computer`.
    pub entity_type: EntityKind,
    pub entity_id: String,
    /// Highest accumulated risk of the entity during the incident, 0..=100.
    pub risk_score: u8,
    pub risk_level: RiskLevel,
    /// Highest risk score of one of its events (far below `risk_score` when
    /// many quiet events added up).
    pub max_event_score: u8,
    /// Every rule that fired on the incident's events.
    pub risk_flags: Vec<String>,
    pub rules: Vec<AlertRule>,
    /// When it crossed the alert level (event time).
    pub opened_event_time: String,
    pub first_event_time: String,
    pub last_event_time: String,
    /// Contributing events so far.
    pub event_count: u64,
    /// The first contributing events (at most `alerts.max_sample_events`).
    pub events: Vec<AlertEvent>,
    /// The distinct users and computers of those events.
    pub users: Vec<String>,
    pub computers: Vec<String>,
    pub policy_version: String,
    /// One line for a pager or a ticket title: who, how risky, why.
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: String,
    pub version: String,
    pub severity: String,
    pub mitre: Vec<String>,
    pub reason: String,
    /// Contributing events it fired on.
    pub hits: u32,
}

/// One contributing event of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub event_id: String,
    pub event_time: String,
    pub user_id: String,
    pub computer_id: String,
    pub risk_score: u8,
    pub rules: Vec<String>,
}

impl Alert {
    /// Renders a publication with names and rule metadata.
    pub fn render(
        publication: &Publication,
        users: &Interner,
        computers: &Interner,
        rules: &RuleSet,
        bands: RiskBands,
    ) -> Alert {
        let incident = &publication.incident;
        let level = bands.level(incident.max_risk);
        let rule_ids = |bits: u32| -> Vec<String> {
            rules
                .rules
                .iter()
                .enumerate()
                .filter(|(r, _)| bits & (1 << r) != 0)
                .map(|(_, rule)| rule.id.clone())
                .collect()
        };
        let mut fired = Vec::new();
        for (r, rule) in rules.rules.iter().enumerate() {
            if incident.flags & (1 << r) == 0 {
                continue;
            }
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
                hits: incident.rule_hits.get(r).copied().unwrap_or(0),
            });
        }
        let entity_id = match incident.entity {
            EntityKind::User => users.name(incident.id),
            EntityKind::Computer => computers.name(incident.id),
        }
        .to_string();
        let why: Vec<String> = fired
            .iter()
            .map(|r| format!("{} x{} ({})", r.id, r.hits, r.reason))
            .collect();
        let summary = format!(
            "{} risk {} for {} {}: {} event(s), {} user(s) on {} computer(s), {} to {}; {}",
            level.as_str(),
            incident.max_risk,
            incident.entity.as_str(),
            entity_id,
            incident.event_count,
            incident.users.len(),
            incident.computers.len(),
            format_time(incident.first_time),
            format_time(incident.last_time),
            why.join("; ")
        );
        Alert {
            alert_id: incident.alert_id.clone(),
            status: publication.status,
            sequence: incident.sequence,
            entity_type: incident.entity,
            entity_id,
            risk_score: incident.max_risk,
            risk_level: level,
            max_event_score: incident.max_event_score,
            risk_flags: fired.iter().map(|r| r.id.clone()).collect(),
            rules: fired,
            opened_event_time: format_time(incident.opened_time),
            first_event_time: format_time(incident.first_time),
            last_event_time: format_time(incident.last_time),
            event_count: incident.event_count,
            events: incident
                .samples
                .iter()
                .map(|s| AlertEvent {
                    event_id: s.event_id.to_string(),
                    event_time: format_time(s.time),
                    user_id: users.name(s.user).to_string(),
                    computer_id: computers.name(s.computer).to_string(),
                    risk_score: s.score,
                    rules: rule_ids(s.rules),
                })
                .collect(),
            users: incident
                .users
                .iter()
                .map(|&u| users.name(u).to_string())
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

    /// The user the incident is about, for user incidents.
    pub fn user_id(&self) -> Option<&str> {
        (self.entity_type == EntityKind::User).then_some(self.entity_id.as_str())
    }
}
