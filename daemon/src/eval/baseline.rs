//! What the eval sees of every scored event: the naive baseline (an alert
//! on every logon to a computer new to its user, after the burn-in), and
//! how close each campaign's own events came to an alert.

use std::collections::BTreeMap;

use authpulse_engine::sinks::{Commit, ScoredBatch, ScoredSink};
use authpulse_generator::Campaign;
use serde::Serialize;

use super::AFTER_ATTACK_S;

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
    pub(super) fn overlapping(&self, first: u32, last: u32) -> Vec<usize> {
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
