//! Detection quality, measured: labelled campaigns hidden in background
//! activity, the pipeline's alerts matched against them, and the same data
//! judged by a naive baseline (an alert on every new device), side by side.
//!
//! An alert *detects* a campaign when its entity is one of the campaign's
//! accounts (a user alert) or computers, or the computers it works from
//! (a computer alert), its evidence
//! involves the campaign's computers (a user alert) or accounts (a computer
//! alert), and its span of contributing events overlaps the campaign's; a
//! computer alert whose events are the campaign's accounts on its
//! computers detects it too, whatever the computer (a source rule's alert
//! on the desk an attack works from, when that is its account's own and
//! so not among the campaign's `sources`). Time to detect is from the
//! attack's first event to the event that opened the alert (event time). An
//! alert opened after the burn-in that detects no attack is a false alert,
//! unless it is *after an attack*: on one of an attack's accounts or
//! computers, opened within [`AFTER_ATTACK_S`] of the attack's end. The
//! rules weigh the last three days of an account against its history, so
//! an account that was just sprayed across dozens of computers keeps
//! looking like it for three days: such an alert's evidence is the attack,
//! and it is counted apart (neither a detection nor a false alert). Benign
//! cases (roll-outs, roaming admins, new hires, and the habits that
//! run from the first day: help desk, desktop support, nightly scanners)
//! are counted apart as well, since each must stay quiet once the burn-in
//! is over.

use std::collections::BTreeMap;

use authpulse_engine::alerts::Alert;
use authpulse_engine::entity::EntityKind;
use authpulse_engine::event::TimeBase;
use authpulse_engine::sinks::{AlertSink, Commit, ScoredBatch, ScoredSink};
use authpulse_generator::{Campaign, Kind};
use serde::Serialize;

use crate::incidents::{Incident, IncidentLog};

/// How this scorecard counts (raised when the counting changes): part of
/// the key under which `tune` keeps an evaluation, so that one counted
/// differently is run again.
pub const SCORECARD_VERSION: u32 = 2;

/// How long after an attack an alert on one of its accounts or computers
/// counts as about the attack: the longest look-back of the built-in
/// rules (`slow_spread`'s three days).
pub const AFTER_ATTACK_S: u32 = 3 * 86_400;

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
fn match_incidents<'i>(
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

/// What an eval sees of every scored event: the naive baseline (an alert on
/// every event that is a new device for its user, after the burn-in), and
/// how close each campaign's own events came to an alert.
pub struct NaiveBaseline {
    campaigns: Vec<Campaign>,
    /// Campaign indices by start time, for the ones a batch overlaps.
    by_start: Vec<usize>,
    burn_in_end: u32,
    /// Per campaign: the first new-device event among its own.
    pub first_hit: Vec<Option<u32>>,
    /// Per campaign: the strongest evidence its events drew.
    pub closest: Vec<Closest>,
    /// Attacks by their accounts: a new device of one within
    /// [`AFTER_ATTACK_S`] after the attack is counted apart, as alerts are.
    attacks_of_user: BTreeMap<String, Vec<usize>>,
    /// New-device events after the burn-in that belong to no attack ...
    pub false_alerts: u64,
    /// ... those of them after an attack on their account ...
    pub after_attack: u64,
    pub alerts: u64,
    /// LANL time of the latest event scored (how many days the data held).
    pub last_time: u32,
}

/// What a campaign's own events drew from the rules: for one that was
/// missed, how near it came and which rules saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Closest {
    /// Its events that were scored.
    pub events: u32,
    /// Of those, the ones a rule fired on.
    pub hit: u32,
    /// The highest score of one of its events ...
    pub top_score: u8,
    /// ... and the rules that fired on that event.
    pub top_rules: Vec<String>,
}

impl Closest {
    /// One line: "top event score 30 (new_device, rare_host), 4 of 4
    /// logons with a rule hit".
    pub fn describe(&self) -> String {
        if self.events == 0 {
            return "none of its logons was scored".to_string();
        }
        if self.hit == 0 {
            return format!("no rule fired on its {} logon(s)", self.events);
        }
        format!(
            "top event score {} ({}), {} of {} logon(s) with a rule hit",
            self.top_score,
            self.top_rules.join(", "),
            self.hit,
            self.events
        )
    }
}

impl NaiveBaseline {
    pub fn new(campaigns: Vec<Campaign>, burn_in_end: u32) -> Self {
        let mut by_start: Vec<usize> = (0..campaigns.len()).collect();
        by_start.sort_by_key(|&i| campaigns[i].start);
        let mut attacks_of_user: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in campaigns.iter().enumerate().filter(|(_, c)| !c.benign) {
            for user in &c.users {
                attacks_of_user.entry(user.clone()).or_default().push(i);
            }
        }
        NaiveBaseline {
            attacks_of_user,
            burn_in_end,
            by_start,
            first_hit: vec![None; campaigns.len()],
            closest: vec![Closest::default(); campaigns.len()],
            campaigns,
            false_alerts: 0,
            after_attack: 0,
            alerts: 0,
            last_time: 0,
        }
    }

    /// The campaigns whose span overlaps `first..=last` (LANL time).
    fn overlapping(&self, first: u32, last: u32) -> Vec<usize> {
        let started = self
            .by_start
            .partition_point(|&i| self.campaigns[i].start <= last);
        self.by_start[..started]
            .iter()
            .copied()
            .filter(|&i| self.campaigns[i].end >= first)
            .collect()
    }
}

impl Commit for NaiveBaseline {}

impl ScoredSink for NaiveBaseline {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> std::io::Result<()> {
        let lanl = |t: i64| batch.time_base.to_lanl(t).clamp(0, i64::from(u32::MAX)) as u32;
        let Some((first, last)) =
            batch
                .events
                .iter()
                .map(|e| e.event_time)
                .fold(None, |span, t| {
                    let (first, last) = span.unwrap_or((t, t));
                    Some((first.min(t), last.max(t)))
                })
        else {
            return Ok(());
        };
        self.last_time = self.last_time.max(lanl(last));
        // The campaigns a batch can hold are the few whose span overlaps it.
        let active = self.overlapping(lanl(first), lanl(last));
        for (i, (event, features)) in batch.events.iter().zip(batch.features).enumerate() {
            let new_device = features.is_new_device();
            if active.is_empty() && !new_device {
                continue;
            }
            let time = lanl(event.event_time);
            let (user, computer) = (
                batch.users.name(event.user),
                batch.computers.name(event.computer),
            );
            let mut attack = false;
            for &c in &active {
                let campaign = &self.campaigns[c];
                if !campaign.contains(time, user, computer) {
                    continue;
                }
                attack |= !campaign.benign;
                let closest = &mut self.closest[c];
                closest.events += 1;
                if batch.flags[i] != 0 {
                    closest.hit += 1;
                    if closest.hit == 1 || batch.scores[i] > closest.top_score {
                        closest.top_score = batch.scores[i];
                        closest.top_rules = batch
                            .flag_names(batch.flags[i])
                            .map(str::to_string)
                            .collect();
                    }
                }
                if new_device && time >= self.burn_in_end {
                    self.first_hit[c].get_or_insert(time);
                }
            }
            if new_device && time >= self.burn_in_end {
                self.alerts += 1;
                if !attack {
                    let after = self.attacks_of_user.get(user).is_some_and(|attacks| {
                        attacks.iter().any(|&c| {
                            let end = self.campaigns[c].end;
                            time > end && time - end <= AFTER_ATTACK_S
                        })
                    });
                    if after {
                        self.after_attack += 1;
                    } else {
                        self.false_alerts += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Results for one kind of campaign.
#[derive(Clone, Debug, Serialize)]
pub struct KindResult {
    pub kind: Kind,
    /// Attacks alike in what gives them away (see `Kind::family`).
    pub family: &'static str,
    /// One of the six kinds the built-in rules were first written for.
    pub first: bool,
    pub campaigns: u32,
    pub detected: u32,
    /// Time to detect (event time, seconds): median and 95th percentile of
    /// the detected ones.
    pub ttd_p50_s: Option<u32>,
    pub ttd_p95_s: Option<u32>,
    pub naive_detected: u32,
    pub naive_ttd_p50_s: Option<u32>,
}

/// Totals over the attacks, for AuthPulse or the naive baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub campaigns: u32,
    pub detected: u32,
    pub recall: f64,
    /// Alerts opened after the burn-in.
    pub alerts: u64,
    /// Of those, alerts on an attack's entity within three days after it,
    /// detecting no attack: the attack's evidence still counting.
    pub after_attack: u64,
    /// Alerts that detect no attack and are not after one.
    pub false_alerts: u64,
    pub false_alerts_per_day: f64,
    /// Alerts after the burn-in that are not false (they detect an attack
    /// or come after one), over all of them.
    pub precision: f64,
    pub ttd_p50_s: Option<u32>,
    pub ttd_p95_s: Option<u32>,
}

/// A benign kind and how many of its cases alerted.
#[derive(Clone, Debug, Serialize)]
pub struct BenignResult {
    pub kind: Kind,
    pub cases: u32,
    pub alerted: u32,
}

/// A campaign the pipeline missed, or an alert that matched no attack.
#[derive(Clone, Debug, Serialize)]
pub struct Note {
    pub id: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scorecard {
    pub kinds: Vec<KindResult>,
    pub authpulse: Totals,
    pub naive: Totals,
    pub benign: Vec<BenignResult>,
    /// Alerts during the burn-in, per day (not counted as false alerts).
    pub burn_in_alerts: Vec<u64>,
    /// Per rule: how many burn-in alerts and false alerts it took part in.
    pub burn_in_alerts_by_rule: BTreeMap<String, u64>,
    pub false_alerts_by_rule: BTreeMap<String, u64>,
    pub missed: Vec<Note>,
    /// The false alerts (at most 50).
    pub false_alerts: Vec<Note>,
    /// The alerts after an attack on its entity (at most 50).
    pub after_attack: Vec<Note>,
    /// The alerts on benign cases.
    pub benign_alerts: Vec<Note>,
}

/// Matches the alerts in `log` and the baseline's hits against `campaigns`.
/// `days` of data, the first `burn_in_days` of them burn-in.
pub fn score(
    campaigns: &[Campaign],
    log: &AlertLog,
    naive: &NaiveBaseline,
    days: u32,
    burn_in_days: u32,
) -> Scorecard {
    let burn_in_end = burn_in_days * 86_400;
    let judged_days = f64::from(days.saturating_sub(burn_in_days).max(1));
    let Matched {
        detected_at,
        alerts,
        true_alerts,
        burn_in_alerts,
        mut false_alerts,
        mut after_attack,
        benign_alerts,
        burn_in_alerts_by_rule,
        false_alerts_by_rule,
    } = log.match_campaigns(campaigns, burn_in_end);
    let attacks: Vec<(usize, &Campaign)> = campaigns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.benign)
        .collect();
    let ttd = |hits: &[Option<u32>], idx: &[usize]| -> Vec<u32> {
        let mut v: Vec<u32> = idx
            .iter()
            .filter_map(|&i| hits[i].map(|t| t.saturating_sub(campaigns[i].start)))
            .collect();
        v.sort_unstable();
        v
    };
    let mut kinds: Vec<Kind> = attacks.iter().map(|(_, c)| c.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let kind_results = kinds
        .iter()
        .map(|&kind| {
            let idx: Vec<usize> = attacks
                .iter()
                .filter(|(_, c)| c.kind == kind)
                .map(|&(i, _)| i)
                .collect();
            let ours = ttd(&detected_at, &idx);
            let theirs = ttd(&naive.first_hit, &idx);
            KindResult {
                kind,
                family: kind.family(),
                first: Kind::FIRST.contains(&kind),
                campaigns: idx.len() as u32,
                detected: ours.len() as u32,
                ttd_p50_s: quantile(&ours, 0.5),
                ttd_p95_s: quantile(&ours, 0.95),
                naive_detected: theirs.len() as u32,
                naive_ttd_p50_s: quantile(&theirs, 0.5),
            }
        })
        .collect();
    let all: Vec<usize> = attacks.iter().map(|&(i, _)| i).collect();
    let totals = |hits: &[Option<u32>], alerts: u64, after_attack: u64, false_alerts: u64| {
        let found = ttd(hits, &all);
        Totals {
            campaigns: all.len() as u32,
            detected: found.len() as u32,
            recall: ratio(found.len() as u64, all.len() as u64),
            alerts,
            after_attack,
            false_alerts,
            false_alerts_per_day: false_alerts as f64 / judged_days,
            precision: ratio(alerts - false_alerts, alerts),
            ttd_p50_s: quantile(&found, 0.5),
            ttd_p95_s: quantile(&found, 0.95),
        }
    };
    let after = after_attack.len() as u64;
    let authpulse = totals(&detected_at, alerts, after, alerts - true_alerts - after);
    let naive_totals = totals(
        &naive.first_hit,
        naive.alerts,
        naive.after_attack,
        naive.false_alerts,
    );
    let mut benign: BTreeMap<Kind, BenignResult> = BTreeMap::new();
    for (i, c) in campaigns.iter().enumerate().filter(|(_, c)| c.benign) {
        let entry = benign.entry(c.kind).or_insert(BenignResult {
            kind: c.kind,
            cases: 0,
            alerted: 0,
        });
        entry.cases += 1;
        entry.alerted += u32::from(detected_at[i].is_some());
    }
    let missed = attacks
        .iter()
        .filter(|&&(i, _)| detected_at[i].is_none())
        .map(|&(i, c)| Note {
            id: format!("campaign {}", c.id),
            text: format!(
                "{} ({}); {}",
                c.description,
                c.users.join(" "),
                naive.closest[i].describe()
            ),
        })
        .collect();
    false_alerts.truncate(50);
    after_attack.truncate(50);
    Scorecard {
        kinds: kind_results,
        authpulse,
        naive: naive_totals,
        benign: benign.into_values().collect(),
        burn_in_alerts,
        burn_in_alerts_by_rule,
        false_alerts_by_rule,
        missed,
        false_alerts,
        after_attack,
        benign_alerts,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.95), Some(7));
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(2));
        assert_eq!(quantile(&(1..=20).collect::<Vec<_>>(), 0.95), Some(19));
    }

    fn campaign(id: u32, start: u32, end: u32) -> Campaign {
        Campaign {
            id,
            kind: Kind::Rare,
            benign: false,
            users: vec!["U1".into()],
            computers: vec!["C1".into()],
            target: None,
            sources: Vec::new(),
            start,
            end,
            events: 2,
            description: String::new(),
        }
    }

    #[test]
    fn a_batch_is_matched_against_the_campaigns_it_overlaps() {
        let baseline = NaiveBaseline::new(
            vec![
                campaign(1, 500, 900),
                campaign(2, 100, 200),
                campaign(3, 150, 600),
            ],
            0,
        );
        assert_eq!(baseline.overlapping(0, 99), Vec::<usize>::new());
        assert_eq!(baseline.overlapping(0, 100), vec![1]);
        assert_eq!(baseline.overlapping(201, 499), vec![2]);
        let mut both = baseline.overlapping(550, 560);
        both.sort_unstable();
        assert_eq!(both, vec![0, 2]);
        assert_eq!(baseline.overlapping(901, 1000), Vec::<usize>::new());
    }

    fn incident(user: &str, computer: &str, opened: u32) -> Incident {
        let opened = i64::from(opened);
        Incident {
            entity: EntityKind::User,
            entity_id: user.into(),
            users: vec![user.into()],
            computers: vec![computer.into()],
            opened,
            first: opened,
            last: opened,
            summary: format!("{user} on {computer}"),
            rules: vec!["slow_spread".into()],
        }
    }

    /// `incidents` matched against `campaigns`, LANL time being Unix time
    /// here, after a burn-in of seven days.
    fn matched(incidents: &[(&str, Incident)], campaigns: &[Campaign]) -> Matched {
        let incidents = incidents.iter().map(|(id, i)| (*id, i));
        match_incidents(incidents, |unix| unix as u32, campaigns, 7 * 86_400)
    }

    fn ids(notes: &[Note]) -> Vec<String> {
        notes.iter().map(|n| n.id.clone()).collect()
    }

    #[test]
    fn an_alert_on_an_attacked_account_days_later_is_neither_a_detection_nor_false() {
        let day: u32 = 86_400;
        let mut benign = campaign(2, 10 * day, 10 * day + 600);
        benign.benign = true;
        benign.users = vec!["U2".into()];
        let campaigns = [campaign(1, 8 * day, 8 * day + 900), benign];
        let incidents = [
            // On the attack's own computer while it runs: a detection.
            ("a", incident("U1", "C1", 8 * day + 60)),
            // Its account on another computer two days on: its evidence
            // (three days of new computers) still holds the attack.
            ("b", incident("U1", "C9", 10 * day)),
            // ... four days on, past every rule's look-back: false.
            ("c", incident("U1", "C9", 12 * day + 1000)),
            // Another account: false.
            ("d", incident("U3", "C9", 9 * day)),
            // The desk the attack worked from, its source rule's alert on
            // the attack's logons: a detection.
            (
                "f",
                Incident {
                    entity: EntityKind::Computer,
                    entity_id: "C7".into(),
                    ..incident("U1", "C1", 8 * day + 120)
                },
            ),
            // The same desk, but the account's logons elsewhere: false.
            (
                "g",
                Incident {
                    entity: EntityKind::Computer,
                    entity_id: "C7".into(),
                    ..incident("U1", "C8", 8 * day + 120)
                },
            ),
            // A benign case's account after it: still counted against us.
            ("e", incident("U2", "C9", 10 * day + 3600)),
        ];
        let m = matched(&incidents, &campaigns);
        assert_eq!((m.alerts, m.true_alerts), (7, 2));
        assert_eq!(ids(&m.after_attack), ["b"]);
        assert_eq!(m.after_attack[0].text, "47.8 h after rare 1: U1 on C9");
        assert_eq!(ids(&m.false_alerts), ["c", "d", "g", "e"]);
        assert_eq!(m.detected_at, [Some(8 * day + 60), None]);
    }

    #[test]
    fn an_alert_that_detects_an_attack_is_not_held_against_a_habit_it_touches() {
        let day: u32 = 86_400;
        // A help desk that visits the computer an attack fans in on.
        let mut help_desk = campaign(2, 0, 14 * day);
        help_desk.benign = true;
        help_desk.kind = Kind::HelpDesk;
        help_desk.users = vec!["U2".into()];
        let campaigns = [campaign(1, 8 * day, 8 * day + 900), help_desk];
        let on_the_computer = |users: &[&str], opened: u32| Incident {
            entity: EntityKind::Computer,
            entity_id: "C1".into(),
            users: users.iter().map(|&u| u.into()).collect(),
            ..incident("U1", "C1", opened)
        };
        let incidents = [
            ("attack", on_the_computer(&["U1", "U2"], 8 * day + 60)),
            ("habit", on_the_computer(&["U2"], 11 * day)),
        ];
        let m = matched(&incidents, &campaigns);
        assert_eq!((m.alerts, m.true_alerts), (2, 1));
        assert_eq!(ids(&m.benign_alerts), ["habit"]);
        assert_eq!(m.detected_at, [Some(8 * day + 60), Some(11 * day)]);
    }

    #[test]
    fn a_missed_campaign_says_how_close_it_came() {
        let mut closest = Closest::default();
        assert_eq!(closest.describe(), "none of its logons was scored");
        closest.events = 3;
        assert_eq!(closest.describe(), "no rule fired on its 3 logon(s)");
        closest.hit = 2;
        closest.top_score = 41;
        closest.top_rules = vec!["new_device".into(), "rare_host".into()];
        assert_eq!(
            closest.describe(),
            "top event score 41 (new_device, rare_host), 2 of 3 logon(s) with a rule hit"
        );
    }
}
