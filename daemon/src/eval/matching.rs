//! The pipeline's alerts, collected and matched against the campaigns:
//! which attacks each incident detects, which are false, which follow an
//! attack, and which benign cases alerted.

use std::collections::BTreeMap;

use authpulse_engine::alerts::Alert;
use authpulse_engine::entity::EntityKind;
use authpulse_engine::event::TimeBase;
use authpulse_engine::sinks::{AlertSink, Commit};
use authpulse_generator::Campaign;

use super::{AFTER_ATTACK_S, Note};
use crate::incidents::{Incident, IncidentLog};

/// Collects the pipeline's alerts (every publication) for the eval: the
/// incidents, judged in LANL time.
pub struct AlertLog {
    time_base: TimeBase,
    log: IncidentLog,
}

impl AlertLog {
    pub fn new(time_base: TimeBase) -> AlertLog {
        AlertLog {
            time_base,
            log: IncidentLog::default(),
        }
    }

    /// Publications seen (opens, updates and closes).
    pub fn publications(&self) -> u64 {
        self.log.publications
    }

    fn lanl(&self, unix: i64) -> u32 {
        self.time_base.to_lanl(unix).clamp(0, i64::from(u32::MAX)) as u32
    }
}

impl Commit for AlertLog {}

impl AlertSink for AlertLog {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.log.send(alert)
    }
}

/// What matching the alerts against the campaigns found.
pub struct Matched {
    /// Per campaign: the earliest opening (LANL time) of an alert that
    /// detects it.
    pub detected_at: Vec<Option<u32>>,
    /// Alerts opened after the burn-in, and those of them that detect an attack.
    pub alerts: u64,
    pub true_alerts: u64,
    /// Alerts opened during the burn-in, per day.
    pub burn_in_alerts: Vec<u64>,
    /// Per rule, the burn-in alerts and the false alerts it took part in.
    pub burn_in_alerts_by_rule: BTreeMap<String, u64>,
    pub false_alerts_by_rule: BTreeMap<String, u64>,
    /// Alerts after the burn-in that detect no attack and are not after one.
    pub false_alerts: Vec<Note>,
    /// Alerts after the burn-in on an attack's entity within
    /// [`AFTER_ATTACK_S`] after it, detecting no attack.
    pub after_attack: Vec<Note>,
    /// Alerts on a benign case (counted among the false alerts too).
    pub benign_alerts: Vec<Note>,
}

impl AlertLog {
    /// Matches every incident against `campaigns`; alerts opened before
    /// `burn_in_end` (LANL time) count apart.
    pub fn match_campaigns(&self, campaigns: &[Campaign], burn_in_end: u32) -> Matched {
        match_incidents(
            self.log.incidents(),
            |unix| self.lanl(unix),
            campaigns,
            burn_in_end,
        )
    }
}

/// [`AlertLog::match_campaigns`], over `incidents`, with `lanl` turning
/// their Unix times into LANL time.
pub(super) fn match_incidents<'i>(
    incidents: impl Iterator<Item = (&'i str, &'i Incident)>,
    lanl: impl Fn(i64) -> u32,
    campaigns: &[Campaign],
    burn_in_end: u32,
) -> Matched {
    let mut m = Matched {
        detected_at: vec![None; campaigns.len()],
        alerts: 0,
        true_alerts: 0,
        burn_in_alerts: vec![0; burn_in_end.div_ceil(86_400) as usize],
        false_alerts: Vec::new(),
        after_attack: Vec::new(),
        benign_alerts: Vec::new(),
        burn_in_alerts_by_rule: BTreeMap::new(),
        false_alerts_by_rule: BTreeMap::new(),
    };
    for (alert_id, incident) in incidents {
        let (opened, first, last) = (
            lanl(incident.opened),
            lanl(incident.first),
            lanl(incident.last),
        );
        let mut detects_attack = false;
        let mut after_attack = None;
        let mut benign_cases = Vec::new();
        for (i, c) in campaigns.iter().enumerate() {
            let involves =
                |mine: &[String], theirs: &[String]| mine.iter().any(|name| theirs.contains(name));
            let (entity_is_its, entity_matches) = match incident.entity {
                EntityKind::User => {
                    let its = c.users.contains(&incident.entity_id);
                    (its, its && involves(&incident.computers, &c.computers))
                }
                // A computer alert may be about where the attack
                // came from (its foothold): a source rule's.
                // Or about where it came from when that is an account's
                // own desk (not among `sources`): a source rule's, whose
                // events are the attack's own logons.
                EntityKind::Computer => {
                    let its = c.computers.contains(&incident.entity_id)
                        || c.sources.contains(&incident.entity_id);
                    let its_accounts = involves(&incident.users, &c.users);
                    let its_logons = its_accounts && involves(&incident.computers, &c.computers);
                    (its, (its && its_accounts) || its_logons)
                }
            };
            if entity_is_its && !c.benign && opened > c.end && opened - c.end <= AFTER_ATTACK_S {
                after_attack = Some(c);
            }
            let overlaps = first <= c.end && last >= c.start;
            // A habit runs from the first day: what its account does
            // before the burn-in ends is learning, not judged.
            let judged = !c.kind.is_habit() || opened >= burn_in_end;
            if entity_matches && overlaps && judged {
                let at = opened.max(c.start);
                if c.benign {
                    benign_cases.push((i, at));
                    continue;
                }
                let slot = &mut m.detected_at[i];
                *slot = Some(slot.map_or(at, |t| t.min(at)));
                detects_attack = true;
            }
        }
        // An incident that detects an attack is about the attack, though a
        // benign case's account or computer shows in it too (a help desk
        // visiting a computer under attack): it pages no one for the habit.
        if !detects_attack {
            for (i, at) in benign_cases {
                let slot = &mut m.detected_at[i];
                *slot = Some(slot.map_or(at, |t| t.min(at)));
                let c = &campaigns[i];
                m.benign_alerts.push(Note {
                    id: alert_id.to_string(),
                    text: format!("{} case {}: {}", c.kind, c.id, incident.summary),
                });
            }
        }
        let tally = |by_rule: &mut BTreeMap<String, u64>| {
            for rule in &incident.rules {
                *by_rule.entry(rule.clone()).or_default() += 1;
            }
        };
        if opened < burn_in_end {
            m.burn_in_alerts[(opened / 86_400) as usize] += 1;
            tally(&mut m.burn_in_alerts_by_rule);
            continue;
        }
        m.alerts += 1;
        if detects_attack {
            m.true_alerts += 1;
        } else if let Some(c) = after_attack {
            m.after_attack.push(Note {
                id: alert_id.to_string(),
                text: format!(
                    "{:.1} h after {} {}: {}",
                    f64::from(opened - c.end) / 3600.0,
                    c.kind,
                    c.id,
                    incident.summary
                ),
            });
        } else {
            tally(&mut m.false_alerts_by_rule);
            m.false_alerts.push(Note {
                id: alert_id.to_string(),
                text: incident.summary.clone(),
            });
        }
    }
    m
}
