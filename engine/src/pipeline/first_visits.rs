//! A computer's first visits, judged again by the worker that decides it.
//!
//! Each worker of a fleet scores its events with the other shards' counts
//! of a computer as of its last trade, so the computer-side rules (`fan_in`:
//! how many users are new to it this hour, against its usual rate) judge a
//! first visit with counts that are one trade, and in a backfill up to the
//! drift, out of date: the fleet's computer incidents opened on other
//! events than one process's (with other ids), late, or not at all.
//!
//! So every worker keeps the feature records of the first visits it scores
//! (a user's first logon to a computer: where a computer's counts change)
//! and sends those of other workers' computers out with its shares
//! ([`SharedVisit`]). The worker that decides a computer judges each first
//! visit to it again once every worker has scored past it: the record as its
//! worker computed it (the user's side is exact, the user is that worker's)
//! with the computer's side recomputed from every shard's counts as of the
//! visit ([`crate::state::HostCounts::judge_first_visit`]), through the
//! rules. What the computer-side rules make of it replaces what its worker's
//! made of it in the computer's ledger. A visit whose record did not reach
//! the deciding worker keeps its worker's verdict.

use std::collections::VecDeque;

use authpulse_rules_sdk::Features;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::Pipeline;
use crate::entity::{Contribution, MAX_RULES};
use crate::event::{EventId, NameId};
use crate::risk;
use crate::state::{HostCounts, HostShare};

/// A first visit as its worker scored it, for the worker deciding its
/// computer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedVisit {
    pub event_id: String,
    pub user: String,
    /// Its feature record, as the ABI lays it out, in little-endian words.
    pub features: Vec<u32>,
}

/// A first visit this worker scored, or took in from another's share.
#[derive(Clone, Copy, Debug)]
pub(super) struct FirstVisit {
    pub(super) event_id: EventId,
    /// With this worker's ids of the user and the computer.
    pub(super) features: Features,
}

impl FirstVisit {
    pub(super) fn time(&self) -> i64 {
        self.features.event_time
    }

    pub(super) fn shared(&self, user: &str) -> SharedVisit {
        SharedVisit {
            event_id: self.event_id.to_string(),
            user: user.to_string(),
            features: Features::slice_as_bytes(std::slice::from_ref(&self.features))
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect(),
        }
    }
}

/// The first visits this worker has scored, oldest first, as far back as
/// the workers reading its shares (and its own decisions) may need them.
#[derive(Default)]
pub(super) struct OwnVisits(pub(super) VecDeque<FirstVisit>);

impl OwnVisits {
    /// Forgets those at or before `time`.
    pub(super) fn forget_through(&mut self, time: i64) {
        while self.0.front().is_some_and(|v| v.time() <= time) {
            self.0.pop_front();
        }
    }
}

impl Pipeline<'_> {
    /// The first visit another worker published, with this worker's ids,
    /// if its time is `wanted` (`None`: not wanted, or not a record or an
    /// event id). The time is looked at first: a share carries hours of
    /// visits, a trade takes the last second's.
    pub(super) fn first_visit(
        &mut self,
        computer: &str,
        shared: &SharedVisit,
        wanted: impl Fn(i64) -> bool,
    ) -> Option<FirstVisit> {
        let mut bytes = [0u8; std::mem::size_of::<Features>()];
        if shared.features.len() * 4 != bytes.len() {
            return None;
        }
        for (word, out) in shared.features.iter().zip(bytes.chunks_exact_mut(4)) {
            out.copy_from_slice(&word.to_le_bytes());
        }
        let mut features = Features::from_bytes(&bytes)?;
        if !wanted(features.event_time) {
            return None;
        }
        let event_id = EventId::parse(&shared.event_id)?;
        features.user = self.users.intern(shared.user.as_bytes()).0;
        features.computer = self.computers.intern(computer.as_bytes()).0;
        Some(FirstVisit { event_id, features })
    }

    /// Judges `visits` again with every shard's counts of their computers
    /// (`hosts`: each shard's share of each computer, this worker's own
    /// among them) and returns, per visit, the contribution the
    /// computer-side rules make of it to its computer's risk (`None`: no
    /// such rule fired).
    pub(super) fn judge_first_visits(
        &mut self,
        visits: &[FirstVisit],
        hosts: &[&HostShare],
    ) -> Vec<Option<Contribution>> {
        if visits.is_empty() {
            return Vec::new();
        }
        // Only the visits' computers: `hosts` holds every computer of every
        // shard, and a trade judges the visits of a second or two.
        let mut fleet: FxHashMap<&str, Vec<&HostCounts>> = visits
            .iter()
            .map(|visit| (self.computers.name(visit.features.computer), Vec::new()))
            .collect();
        for share in hosts {
            if let Some(counts) = fleet.get_mut(share.computer.as_str()) {
                counts.push(&share.counts);
            }
        }
        let mut counts: FxHashMap<NameId, HostCounts> = FxHashMap::default();
        let records: Vec<Features> = visits
            .iter()
            .map(|visit| {
                let computer = visit.features.computer;
                let all = counts.entry(computer).or_insert_with(|| {
                    let name = self.computers.name(computer);
                    HostCounts::sum(fleet.get(name).into_iter().flatten().copied())
                });
                let mut features = visit.features;
                all.judge_first_visit(&mut features);
                features
            })
            .collect();
        let mut judged = Vec::with_capacity(visits.len());
        let counting = self.rules.scoring_mask & self.rules.computer_mask;
        for (chunk, records) in visits
            .chunks(self.options.batch_size.max(1))
            .zip(records.chunks(self.options.batch_size.max(1)))
        {
            self.rules.judge_again(records);
            for (i, visit) in chunk.iter().enumerate() {
                let features = &records[i];
                if self.allow_users.contains(&features.user)
                    || self.allow_computers.contains(&features.computer)
                {
                    judged.push(None);
                    continue;
                }
                let rules = &self.rules;
                let (event_score, fired) = risk::combine(
                    rules
                        .scoring_weights()
                        .zip(&rules.rules)
                        .map(|(weight, rule)| (weight, &rule.verdicts[i])),
                );
                let side = fired & counting;
                if side == 0 {
                    judged.push(None);
                    continue;
                }
                let score = rules.side_score(i, side);
                let mut reasons = [0u8; MAX_RULES];
                for (r, rule) in rules.rules.iter().enumerate().take(MAX_RULES) {
                    if side & (1 << r) != 0 {
                        reasons[r] = rule.verdicts[i].reason.min(255) as u8;
                    }
                }
                judged.push(Some(Contribution {
                    time: features.event_time,
                    weight: f32::from(score) / 100.0,
                    event_id: visit.event_id,
                    user: features.user,
                    computer: features.computer,
                    event_score,
                    rules: side,
                    reasons,
                }));
            }
        }
        judged
    }
}

/// The event ids of visits judged again, whose worker's computer-side
/// contributions they replace.
pub(super) fn judged_ids(visits: &[FirstVisit]) -> FxHashSet<EventId> {
    visits.iter().map(|v| v.event_id).collect()
}

#[cfg(test)]
mod tests {
    use authpulse_rules_sdk::FLAG_NEW_DEVICE_FOR_USER;

    use super::*;
    use crate::entity::{EntityKind, EntityRisk};
    use crate::event::{DAY, HOUR};
    use crate::pipeline::fleet_fixtures::fleet_worker;
    use crate::pipeline::shared_risk::{ComputerDecisions, ComputerRisk, Evidence};
    use crate::snapshot::ComputersDecided;

    const NOW: i64 = 40 * DAY;

    /// A first visit to `computer` at `NOW`, scored by another worker that
    /// counted `new_in_hour` users new to it in the last hour.
    fn scored_visit(computer: &str, user: &str, new_in_hour: u32) -> SharedVisit {
        let features = Features {
            event_time: NOW,
            flags: FLAG_NEW_DEVICE_FOR_USER,
            host_users_ever: 30,
            host_new_users_1h: new_in_hour,
            host_new_users_24h: new_in_hour,
            host_tenure_s: 30 * DAY as u32,
            host_baseline_new_users: 3,
            host_baseline_s: 27 * DAY as u32,
            user_known_computers: 4,
            user_tenure_s: 30 * DAY as u32,
            ..Features::default()
        };
        FirstVisit {
            event_id: EventId::derive(NOW, user, computer),
            features,
        }
        .shared(user)
    }

    /// A computer a month old with 30 users, three of them new over its
    /// baseline, and `new_in_hour` new in the last hour (the visit's user
    /// the last of them).
    fn counts(computer: &str, new_in_hour: i64) -> HostShare {
        HostShare {
            computer: computer.into(),
            counts: HostCounts {
                users_ever: 30,
                first_seen: NOW - 30 * DAY,
                day: NOW / DAY,
                users_today: new_in_hour as u32,
                hour: NOW / HOUR,
                users_this_hour: new_in_hour as u32,
                firsts: (0..new_in_hour).map(|k| NOW - 100 * k).rev().collect(),
                later_users: 3 + new_in_hour as u32,
            },
        }
    }

    /// A visit another worker scored with counts of an hour before is
    /// judged with every shard's counts as of the visit: a fan-in its
    /// worker could not see is taken into the computer's ledger, and one
    /// its worker saw that the counts do not bear out is replaced by
    /// nothing.
    #[test]
    fn a_first_visit_is_judged_with_every_shards_counts() {
        let mut sinks = Default::default();
        let mut pipeline = fleet_worker(&mut sinks);
        let fan_in = pipeline
            .rules
            .rules
            .iter()
            .position(|rule| rule.id == "fan_in")
            .unwrap();
        let mut decisions = ComputerDecisions::new(
            EntityRisk::new(DAY as u64, 0),
            ComputersDecided::all_through(0),
            &mut pipeline.computers,
        );
        // C1: twenty new users this hour, its worker knew of one. C2: one,
        // its worker counted twenty and published a fan-in.
        let missed = scored_visit("C1", "U1", 1);
        let claimed = scored_visit("C2", "U2", 20);
        let claimed_id = claimed.event_id.clone();
        let traded = [
            ComputerRisk {
                computer: "C1".into(),
                contributions: Vec::new(),
                first_visits: vec![missed.clone()],
            },
            ComputerRisk {
                computer: "C2".into(),
                contributions: vec![crate::pipeline::SharedContribution {
                    time: NOW,
                    weight: 0.9,
                    event_id: claimed_id.clone(),
                    user: "U2".into(),
                    event_computer: "C2".into(),
                    event_score: 90,
                    rules: vec![("fan_in".into(), 0)],
                }],
                first_visits: vec![claimed],
            },
        ];
        let hosts = [counts("C1", 20), counts("C2", 1)];
        let host_refs: Vec<&HostShare> = hosts.iter().collect();
        let own = OwnVisits::default();
        let evidence = Evidence {
            traded: &traded,
            own_visits: &own,
            hosts: &host_refs,
        };
        let taken = pipeline.decide_computers(&mut decisions, evidence, |_| true, NOW + 1);
        assert_eq!(taken, 1, "C1's visit, judged again; C2's claim replaced");
        let c1 = pipeline.computers.get(b"C1").unwrap();
        let ledger: Vec<&Contribution> = decisions
            .ledgers
            .contributions(EntityKind::Computer, c1, NOW + 1)
            .collect();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].event_id.to_string(), missed.event_id);
        assert_ne!(ledger[0].rules & (1 << fan_in), 0, "fan_in fired");
        let c2 = pipeline.computers.get(b"C2").unwrap();
        let ledger = decisions
            .ledgers
            .contributions(EntityKind::Computer, c2, NOW + 1);
        assert_eq!(ledger.count(), 0, "the claim is not borne out");
        // This worker's own visit to C3, which it scored as a fan-in with
        // stale counts: judged with every shard's, its own ledger (what its
        // snapshots keep) no longer holds the verdict.
        let mut decisions_3 = ComputerDecisions::new(
            EntityRisk::new(DAY as u64, 0),
            ComputersDecided::all_through(0),
            &mut pipeline.computers,
        );
        let stale = scored_visit("C3", "U3", 20);
        let own_visit = pipeline.first_visit("C3", &stale, |_| true).unwrap();
        let c3 = own_visit.features.computer;
        let mut raw = pipeline
            .contribution(&crate::pipeline::SharedContribution {
                time: NOW,
                weight: 0.9,
                event_id: stale.event_id.clone(),
                user: "U3".into(),
                event_computer: "C3".into(),
                event_score: 90,
                rules: vec![("fan_in".into(), 0)],
            })
            .unwrap();
        raw.rules = 1 << fan_in;
        pipeline.entities.add(EntityKind::Computer, c3, raw);
        let own_visits = OwnVisits(std::collections::VecDeque::from([own_visit]));
        let quiet = [counts("C3", 1)];
        let quiet_refs: Vec<&HostShare> = quiet.iter().collect();
        let evidence = Evidence {
            traded: &[],
            own_visits: &own_visits,
            hosts: &quiet_refs,
        };
        assert_eq!(
            pipeline.decide_computers(&mut decisions_3, evidence, |_| true, NOW + 1),
            0
        );
        let kept = pipeline
            .entities
            .contributions(EntityKind::Computer, c3, NOW + 1);
        assert_eq!(kept.count(), 0, "the replaced verdict is gone");

        // Without the visit's record, its worker's verdict stands.
        let mut decisions = ComputerDecisions::new(
            EntityRisk::new(DAY as u64, 0),
            ComputersDecided::all_through(0),
            &mut pipeline.computers,
        );
        let mut unjudged = traded.clone();
        unjudged[1].first_visits.clear();
        let evidence = Evidence {
            traded: &unjudged,
            own_visits: &own,
            hosts: &host_refs,
        };
        pipeline.decide_computers(&mut decisions, evidence, |_| true, NOW + 1);
        let ledger = decisions
            .ledgers
            .contributions(EntityKind::Computer, c2, NOW + 1);
        assert_eq!(ledger.count(), 1);
    }
}
