//! Computer incidents in a fleet. A computer's logons come from the users of
//! every shard, so each worker sees only its own shards' part of the
//! evidence on it: alone, several workers would each open an incident on
//! the same computer (with different ids), or none would see enough.
//!
//! So each computer's incidents are opened by one worker, the one holding
//! the shard whose hash-key range holds the computer's name
//! ([`super::HostExchange::opens_computer`]: every worker comes to the same
//! answer). The others keep adding their events' computer-side
//! contributions to the computer's ledger, but open nothing on it; what
//! their shards' users contributed goes out with the host shares
//! ([`ComputerRisk`]), and the opening worker takes it into the computer's
//! ledger, in its place by event time, and into its incidents, as if it had
//! scored those events itself. A contribution already in the ledger is not
//! taken twice, so shares traded again change nothing. The evidence arrives
//! one trade late (at most [`super::FleetPace::trade_every`] plus how far
//! the workers are apart), and an incident opens on the contribution that
//! took the computer over the alert level as the opening worker learns of
//! it: the incidents one worker alone would open, with the same ids, as
//! long as the contributions reach it in event-time order.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::Pipeline;
use super::first_visits::{FirstVisit, OwnVisits, SharedVisit, judged_ids};
use crate::entity::{Contribution, EntityKind, EntityRisk, MAX_RULES};
use crate::event::{EventId, Interner, NameId};
use crate::snapshot::ComputersDecided;
use crate::state::HostShare;

/// The contributions one shard's users made to one computer's risk, inside
/// the risk window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputerRisk {
    pub computer: String,
    pub contributions: Vec<SharedContribution>,
    /// The first visits of the shard's users to it not yet judged by every
    /// worker, for the one deciding it ([`super::first_visits`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_visits: Vec<SharedVisit>,
}

/// One event's part in a computer's risk, by name (ids are each worker's
/// own).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedContribution {
    pub time: i64,
    pub weight: f32,
    pub event_id: String,
    pub user: String,
    /// The event's computer (the one logged on to: for a rule about where
    /// logons come from, not the computer whose risk this is).
    pub event_computer: String,
    pub event_score: u8,
    /// The computer's rules that fired on it, each with its reason index.
    pub rules: Vec<(String, u8)>,
}

/// What a fleet worker has decided of the computers whose incidents it
/// opens.
pub(super) struct ComputerDecisions {
    /// Those computers' ledgers: every shard's contributions, taken in in
    /// event-time order behind what every worker has scored.
    pub(super) ledgers: EntityRisk,
    /// Before this worker's state was restored, every computer's
    /// contributions through `everything` had been decided, and those of
    /// the computers in `computers` through their time: taken into the
    /// ledgers again, they count as evidence but open nothing.
    everything: i64,
    computers: FxHashMap<NameId, i64>,
    /// Evidence through this time has been taken (first visits judged
    /// again) at an earlier trade.
    judged_through: i64,
}

/// What a trade brings a deciding worker: the other shards' contributions
/// and first visits, this worker's own first visits, and every shard's
/// counts of the computers (its own among them).
pub(super) struct Evidence<'a> {
    pub(super) traded: &'a [ComputerRisk],
    pub(super) own_visits: &'a OwnVisits,
    pub(super) hosts: &'a [&'a HostShare],
}

impl ComputerDecisions {
    pub(super) fn new(
        ledgers: EntityRisk,
        restored: ComputersDecided,
        names: &mut Interner,
    ) -> ComputerDecisions {
        ComputerDecisions {
            ledgers,
            everything: restored.everything,
            computers: restored
                .computers
                .into_iter()
                .filter(|&(_, time)| time > restored.everything)
                .map(|(name, time)| (names.intern(name.as_bytes()).0, time))
                .collect(),
            judged_through: i64::MIN,
        }
    }

    /// Through when evidence was taken in (first visits judged again).
    pub(super) fn judged_through(&self) -> i64 {
        self.judged_through
    }

    /// Contributions a risk window before `through` count for nothing any
    /// more: they are all decided, so that the record stays as small as the
    /// computers of the last window.
    fn settle(&mut self, through: i64) {
        let settled = through.saturating_sub(self.ledgers.window_s());
        if settled > self.everything {
            self.everything = settled;
            self.computers.retain(|_, &mut time| time > settled);
        }
    }

    /// Through when `computer`'s contributions were decided before.
    fn decided_before(&self, computer: NameId) -> i64 {
        self.computers
            .get(&computer)
            .map_or(self.everything, |&t| t.max(self.everything))
    }

    /// What a state snapshot records: the restored record, and each
    /// computer decided since through its newest contribution.
    pub(super) fn record(&self, names: &Interner) -> ComputersDecided {
        let mut computers: BTreeMap<&str, i64> = self
            .computers
            .iter()
            .map(|(&id, &time)| (names.name(id), time))
            .collect();
        for (id, ledger) in self.ledgers.computer_ledgers() {
            if let Some(newest) = ledger.back() {
                let at = computers.entry(names.name(id)).or_insert(newest.time);
                *at = (*at).max(newest.time);
            }
        }
        ComputersDecided {
            everything: self.everything,
            computers: computers
                .into_iter()
                .filter(|&(_, time)| time > self.everything)
                .map(|(name, time)| (name.to_string(), time))
                .collect(),
        }
    }
}

impl Pipeline<'_> {
    /// What the users of each of the `shards` held contributed to each
    /// computer's risk, one list per shard, with their first visits to the
    /// computers other workers decide. `shard_of`: which held shard a user
    /// (by id) is of; `opens`: whether this worker decides a computer (by
    /// id).
    pub(super) fn risk_shares(
        &self,
        shards: usize,
        shard_of: impl Fn(NameId) -> Option<usize>,
        opens: impl Fn(NameId) -> bool,
        visits: &OwnVisits,
    ) -> Vec<Vec<ComputerRisk>> {
        let mut shares: Vec<Vec<ComputerRisk>> = vec![Vec::new(); shards];
        // Each computer's place in a shard's list.
        let mut places: FxHashMap<(usize, NameId), usize> = FxHashMap::default();
        for (computer, ledger) in self.entities.computer_ledgers() {
            let mut by_shard: Vec<Vec<SharedContribution>> = vec![Vec::new(); shares.len()];
            for c in ledger {
                let Some(shard) = shard_of(c.user) else {
                    continue;
                };
                let user = self.users.name(c.user);
                let rules = self
                    .rules
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|&(r, _)| r < MAX_RULES && c.rules & (1 << r) != 0)
                    .map(|(r, rule)| (rule.id.clone(), c.reasons[r]))
                    .collect();
                by_shard[shard].push(SharedContribution {
                    time: c.time,
                    weight: c.weight,
                    event_id: c.event_id.to_string(),
                    user: user.to_string(),
                    event_computer: self.computers.name(c.computer).to_string(),
                    event_score: c.event_score,
                    rules,
                });
            }
            for (shard, contributions) in by_shard.into_iter().enumerate() {
                if !contributions.is_empty() {
                    places.insert((shard, computer), shares[shard].len());
                    shares[shard].push(ComputerRisk {
                        computer: self.computers.name(computer).to_string(),
                        contributions,
                        first_visits: Vec::new(),
                    });
                }
            }
        }
        for visit in &visits.0 {
            let (user, computer) = (visit.features.user, visit.features.computer);
            if opens(computer) {
                continue;
            }
            let Some(shard) = shard_of(user) else {
                continue;
            };
            let name = self.users.name(user);
            let list = &mut shares[shard];
            let place = *places.entry((shard, computer)).or_insert_with(|| {
                list.push(ComputerRisk {
                    computer: self.computers.name(computer).to_string(),
                    contributions: Vec::new(),
                    first_visits: Vec::new(),
                });
                list.len() - 1
            });
            list[place].first_visits.push(visit.shared(name));
        }
        shares
    }

    /// Decides the computers `opens` accepts (by id) through event time
    /// `through`: this worker's own contributions to them and those of the
    /// other shards (`evidence`), not yet decided, go into their ledgers and
    /// incidents in event-time order, as one worker would have taken them
    /// (and each computer's incidents close by that same time). Their first
    /// visits are judged again with every shard's counts, and what the
    /// computer-side rules make of them replaces their workers' verdicts
    /// ([`super::first_visits`]). Returns how many contributions were taken.
    pub(super) fn decide_computers(
        &mut self,
        decisions: &mut ComputerDecisions,
        evidence: Evidence<'_>,
        opens: impl Fn(NameId) -> bool,
        through: i64,
    ) -> usize {
        // Evidence up to the last trade's time was taken then (shares carry
        // it again: what was taken is not taken twice).
        let since = decisions.judged_through;
        let new = |time: i64| time > since && time <= through;
        let mut visits: Vec<FirstVisit> = evidence
            .own_visits
            .0
            .iter()
            .filter(|v| new(v.time()))
            .filter(|v| opens(v.features.computer))
            .copied()
            .collect();
        let own = visits.len();
        for share in evidence.traded {
            let computer = self.computers.intern(share.computer.as_bytes()).0;
            if !opens(computer) {
                continue;
            }
            for shared in share.first_visits.iter() {
                if let Some(visit) = self.first_visit(&share.computer, shared, new) {
                    visits.push(visit);
                }
            }
        }
        let judged = self.judge_first_visits(&visits, evidence.hosts);
        let replaced = judged_ids(&visits);
        // This worker's own ledger, which its state snapshots keep, takes
        // the verdicts its computers are decided with: restored (after a
        // restart, or by a worker taking its shards over) it must not bring
        // back the verdicts they replaced.
        let source_mask = self.rules.source_mask;
        for (visit, judged) in visits[..own].iter().zip(&judged) {
            self.entities.judge_again(
                visit.features.computer,
                visit.event_id,
                *judged,
                source_mask,
            );
        }
        // A computer-side contribution of a visit judged again is replaced;
        // one to a computer as where a logon came from is not.
        let stays =
            |c: &Contribution| !replaced.contains(&c.event_id) || c.rules & source_mask != 0;
        let mut taken: Vec<(NameId, Contribution)> = visits
            .iter()
            .zip(judged)
            .filter_map(|(visit, judged)| Some((visit.features.computer, judged?)))
            .collect();
        for (computer, ledger) in self.entities.computer_ledgers() {
            if opens(computer) {
                taken.extend(
                    ledger
                        .iter()
                        .filter(|c| new(c.time) && stays(c))
                        .map(|c| (computer, *c)),
                );
            }
        }
        for share in evidence.traded {
            let computer = self.computers.intern(share.computer.as_bytes()).0;
            if !opens(computer) {
                continue;
            }
            for shared in share.contributions.iter().filter(|c| new(c.time)) {
                if let Some(c) = self.contribution(shared)
                    && stays(&c)
                {
                    taken.push((computer, c));
                }
            }
        }
        decisions.judged_through = decisions.judged_through.max(through);
        taken.sort_by_key(|(_, c)| (c.time, c.event_id));
        let mut decided = 0;
        for (computer, c) in taken {
            // Already in the ledger (traded again): nothing; decided before
            // a restart: evidence only.
            let Some(risk) = decisions.ledgers.merge(EntityKind::Computer, computer, c) else {
                continue;
            };
            if c.time <= decisions.decided_before(computer) {
                continue;
            }
            decided += 1;
            self.alerts.close_computers_due(c.time);
            self.alerts.observe(
                (EntityKind::Computer, computer),
                &c,
                risk,
                decisions
                    .ledgers
                    .contributions(EntityKind::Computer, computer, c.time),
                &self.rules,
                &self.computers,
            );
        }
        self.alerts.close_computers_due(through);
        decisions.settle(through);
        decided
    }

    /// A contribution another worker published, with this worker's ids and
    /// rule positions (`None`: its event id is not one).
    pub(super) fn contribution(&mut self, shared: &SharedContribution) -> Option<Contribution> {
        let event_id = EventId::parse(&shared.event_id)?;
        let mut rules = 0u32;
        let mut reasons = [0u8; MAX_RULES];
        for (id, reason) in &shared.rules {
            // A rule this worker's policy lacks (a policy change on its way
            // through the fleet) adds its weight but no flag.
            if let Some(r) = self.rules.rules.iter().position(|rule| &rule.id == id)
                && r < MAX_RULES
            {
                rules |= 1 << r;
                reasons[r] = *reason;
            }
        }
        Some(Contribution {
            time: shared.time,
            weight: shared.weight.clamp(0.0, 1.0),
            event_id,
            user: self.users.intern(shared.user.as_bytes()).0,
            computer: self.computers.intern(shared.event_computer.as_bytes()).0,
            event_score: shared.event_score,
            rules,
            reasons,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertStatus;
    use crate::pipeline::HostExchange;
    use crate::pipeline::fleet_fixtures::fleet_worker;
    use crate::pipeline::{FleetProgress as Progress, Traded};
    use crate::state::HostShare;

    /// A worker holding the shard of users `U1*`, opening the incidents of
    /// computers `C1*`.
    struct Shard;

    impl HostExchange for Shard {
        fn shards(&self) -> usize {
            1
        }

        fn shard_of(&self, user: &str) -> Option<usize> {
            user.starts_with("U1").then_some(0)
        }

        fn opens_computer(&self, computer: &str) -> bool {
            computer.starts_with("C1")
        }

        fn exchange(
            &mut self,
            _: Vec<Vec<HostShare>>,
            _: Vec<Vec<ComputerRisk>>,
            _: Progress,
            _: bool,
        ) -> std::io::Result<Option<Traded>> {
            Ok(Some(Traded::default()))
        }
    }

    /// What a trade brought: the other shards' contributions only.
    fn evidence(traded: &[ComputerRisk]) -> Evidence<'_> {
        static NO_VISITS: OwnVisits = OwnVisits(std::collections::VecDeque::new());
        Evidence {
            traded,
            own_visits: &NO_VISITS,
            hosts: &[],
        }
    }

    fn contribution(time: i64, user: &str) -> SharedContribution {
        SharedContribution {
            time,
            weight: 0.5,
            event_id: EventId::derive(time, user, "C1").to_string(),
            user: user.into(),
            event_computer: "C1".into(),
            event_score: 50,
            rules: vec![("fan_in".into(), 0)],
        }
    }

    /// The others' evidence and this worker's own are decided together in
    /// event-time order, behind the time every worker has scored, once
    /// however often they are traded; the computers of other workers are
    /// left to them.
    #[test]
    fn a_computers_evidence_from_every_shard_is_decided_in_time_order() {
        let mut sinks = Default::default();
        let mut pipeline = fleet_worker(&mut sinks);
        let mut decisions = ComputerDecisions::new(
            EntityRisk::new(86_400, 0),
            ComputersDecided::all_through(0),
            &mut pipeline.computers,
        );
        let share = |computer: &str, times: &[(i64, &str)]| ComputerRisk {
            computer: computer.into(),
            contributions: times.iter().map(|&(t, u)| contribution(t, u)).collect(),
            first_visits: Vec::new(),
        };
        // This worker's own user on C1 between the other shard's two.
        let own = pipeline.contribution(&contribution(1_050, "U10")).unwrap();
        let c1 = pipeline.computers.intern(b"C1").0;
        let opens = |id: NameId| id == c1;
        pipeline.entities.add(EntityKind::Computer, c1, own);
        let traded = [
            share("C1", &[(1_000, "U20"), (1_100, "U21"), (1_200, "U22")]),
            share("C2", &[(1_000, "U20"), (1_100, "U21")]),
        ];
        let decided = pipeline.decide_computers(&mut decisions, evidence(&traded), opens, 1_150);
        assert_eq!(decided, 3, "C1's three through 1,150; none of C2's");
        let published: Vec<_> = pipeline.alerts.take_published().collect();
        let statuses: Vec<_> = published.iter().map(|p| p.status).collect();
        // Open at 75, then critical at 87.5 on the next.
        assert_eq!(statuses, [AlertStatus::Open, AlertStatus::Update]);
        let incident = &published[0].incident;
        assert_eq!(incident.id, c1);
        // 50, then 75 (over the alert level) on this worker's own, between.
        assert_eq!(incident.opened_time, 1_050);
        let sampled: Vec<i64> = incident.samples.iter().map(|s| s.time).collect();
        assert_eq!(sampled, [1_000, 1_050]);
        assert_eq!(incident.samples[1].event_id, own.event_id);
        // Traded again: nothing new; later, the one past 1,150.
        assert_eq!(
            pipeline.decide_computers(&mut decisions, evidence(&traded), opens, 1_150),
            0
        );
        assert_eq!(
            pipeline.decide_computers(&mut decisions, evidence(&traded), opens, 2_000),
            1
        );
        let ledger = decisions
            .ledgers
            .contributions(EntityKind::Computer, c1, 2_000);
        assert_eq!(
            ledger.map(|c| c.time).collect::<Vec<_>>(),
            [1_000, 1_050, 1_100, 1_200]
        );
        // Closed by the computers' own time, an hour after its last.
        pipeline.alerts.close_due(i64::MAX / 2);
        assert!(pipeline.alerts.take_published().next().is_none());
        pipeline.decide_computers(&mut decisions, evidence(&[]), opens, 1_200 + 3_600);
        let closed: Vec<_> = pipeline.alerts.take_published().collect();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].status, AlertStatus::Closed);
        assert_eq!(closed[0].incident.event_count, 4);
        // What this worker publishes: its own shard's users' part only.
        let shard_of = |user: NameId| Shard.shard_of(pipeline.users.name(user));
        let shares = pipeline.risk_shares(1, shard_of, opens, &OwnVisits::default());
        assert_eq!(shares[0].len(), 1);
        assert_eq!(shares[0][0].contributions, [contribution(1_050, "U10")]);
    }

    /// After a restart (or a takeover), what the snapshot says was decided
    /// counts as evidence again but opens nothing twice.
    #[test]
    fn what_was_decided_before_a_restart_is_evidence_only() {
        let mut sinks = Default::default();
        let mut pipeline = fleet_worker(&mut sinks);
        let restored = ComputersDecided {
            everything: 0,
            computers: vec![("C1".into(), 1_100)],
        };
        let mut decisions = ComputerDecisions::new(
            EntityRisk::new(86_400, 0),
            restored,
            &mut pipeline.computers,
        );
        let traded = [ComputerRisk {
            computer: "C1".into(),
            contributions: [(1_000, "U20"), (1_100, "U21"), (1_200, "U22")]
                .iter()
                .map(|&(t, u)| contribution(t, u))
                .collect(),
            first_visits: Vec::new(),
        }];
        let c1 = pipeline.computers.get(b"C1").unwrap();
        let opens = |id: NameId| id == c1;
        assert_eq!(
            pipeline.decide_computers(&mut decisions, evidence(&traded), opens, 2_000),
            1
        );
        let published: Vec<_> = pipeline.alerts.take_published().collect();
        assert_eq!(published.len(), 1);
        // Opened on the one not decided before, with all three as evidence.
        assert_eq!(published[0].incident.opened_time, 1_200);
        assert_eq!(published[0].incident.max_risk, 88);
        let record = decisions.record(&pipeline.computers);
        assert_eq!(record.computers, [("C1".to_string(), 1_200)]);
        // A risk window on, all of it is settled: the record is one time.
        pipeline.decide_computers(&mut decisions, evidence(&[]), opens, 100_000);
        let settled = decisions.record(&pipeline.computers);
        assert_eq!(settled.everything, 100_000 - 86_400);
        assert!(settled.computers.is_empty(), "{settled:?}");
        // Two parts' records: each computer as far as either decided it.
        let joined = record.join(ComputersDecided {
            everything: 50,
            computers: vec![("C1".into(), 900), ("C2".into(), 3_000)],
        });
        assert_eq!(joined.everything, 50);
        assert_eq!(
            joined.computers,
            [("C1".to_string(), 1_200), ("C2".to_string(), 3_000)]
        );
    }
}
