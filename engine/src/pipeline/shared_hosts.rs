//! A fleet worker trades computer popularity with the other workers
//! ([`crate::state::HostShare`]): the shares of the shards it holds go
//! out, the other shards' come in and count from then on, every
//! [`FleetPace::trade_every`] while it reads. With them goes how far in
//! event time each worker has scored, which keeps the workers in step
//! ([`super::fleet_pace`]), and what its users contributed to the
//! computers others decide ([`super::shared_risk`]).

use std::io;
use std::time::{Duration, Instant};

use authpulse_rules_sdk::Features;

use super::Pipeline;
use super::first_visits::{FirstVisit, OwnVisits};
use super::fleet_pace::{FleetPace, Trade};
use super::shared_risk::{ComputerDecisions, ComputerRisk, Evidence};
use crate::entity::EntityRisk;
use crate::event::{Event, EventId, Interner, NameId};
use crate::snapshot::ComputersDecided;
use crate::state::HostShare;

/// Where a fleet's workers publish and read each shard's host shares.
pub trait HostExchange {
    /// The shards this worker holds: shares are published one list per
    /// shard, in this order.
    fn shards(&self) -> usize;
    /// Which of them a user's events come from (`None`: none of them).
    fn shard_of(&self, user: &str) -> Option<usize>;
    /// Whether this worker opens the incidents of `computer`: one worker
    /// of the fleet does, and every worker agrees which
    /// ([`super::shared_risk`]).
    fn opens_computer(&self, computer: &str) -> bool;
    /// Publishes this worker's shares (host popularity and contributions to
    /// computers' risk, one list per shard) and progress, and returns the
    /// latest of every shard it does not hold.
    ///
    /// With `wait` (the first trade, and the last at the end of input) it
    /// does so before it returns. Otherwise it may trade in the background,
    /// so that scoring never waits on the network: these shares are then
    /// published by a later round, and it returns what the last round that
    /// finished brought, or `None` if none finished since it last returned.
    fn exchange(
        &mut self,
        shares: Vec<Vec<HostShare>>,
        risk: Vec<Vec<ComputerRisk>>,
        progress: Progress,
        wait: bool,
    ) -> io::Result<Option<Traded>>;
}

/// How far a worker has got, published with its shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Event time scored through (Unix seconds).
    pub scored_through: i64,
    /// Its shards have nothing more to read now: nobody need wait for it.
    pub caught_up: bool,
}

/// What a trade brings in.
#[derive(Debug, Default)]
pub struct Traded {
    pub shares: Vec<HostShare>,
    pub risk: Vec<ComputerRisk>,
    /// The earliest event time scored through by a worker of another shard
    /// that still has events to read (`None`: none such, or none known).
    pub slowest: Option<i64>,
    /// The latest event time scored through by a worker of another shard
    /// that has read all it had (`None`: none such).
    pub latest: Option<i64>,
}

/// What trading host shares has cost a worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Times this worker built its shares and handed them over.
    pub handed_over: u64,
    /// Trades that brought the other shards' shares in.
    pub trades: u64,
    /// Time the scoring thread spent trading: building its shares, taking
    /// the others' in, deciding computers (the requests run on a thread
    /// of their own).
    pub trading: Duration,
    /// Time spent waiting for the slowest shard.
    pub waited: Duration,
}

/// The host-share state of a pipeline in a fleet.
pub(super) struct Fleet<'o> {
    exchange: &'o mut dyn HostExchange,
    pub(super) pace: FleetPace,
    pub(super) last_trade: Instant,
    /// Event time scored through at the last trade.
    pub(super) traded_through: i64,
    pub(super) slowest: Option<i64>,
    /// The source was idle at the last look.
    pub(super) caught_up: bool,
    /// Whether a wait for the fleet is under way (logged once per wait).
    pub(super) waiting_since: Option<Instant>,
    /// The computers whose incidents this worker opens, as decided so far.
    pub(super) decisions: ComputerDecisions,
    /// Which held shard each user (by id) is of, [`NOT_HELD`] if none:
    /// asked of the exchange once per user (a hash of the name), not at
    /// every trade.
    user_shards: Vec<u16>,
    /// Whether this worker opens each computer's (by id) incidents: asked
    /// of the exchange once per computer.
    computers_opened: Vec<bool>,
    /// The first visits this worker has scored, for the workers that
    /// decide their computers (and itself).
    visits: OwnVisits,
}

/// A user of none of the shards held.
const NOT_HELD: u16 = u16::MAX;

impl Fleet<'_> {
    /// How far this worker's computers are decided (what its state
    /// snapshots record).
    pub(super) fn computers_decided(&self, names: &Interner) -> ComputersDecided {
        self.decisions.record(names)
    }

    /// The ledgers of the computers decided here (a policy change remaps
    /// them as it does the pipeline's own).
    pub(super) fn computer_ledgers(&mut self) -> &mut EntityRisk {
        &mut self.decisions.ledgers
    }

    /// Keeps the first visits among a scored batch's `events`.
    pub(super) fn keep_first_visits(
        &mut self,
        events: &[Event],
        features: &[Features],
        event_id: impl Fn(&Event) -> EventId,
    ) {
        for (event, features) in events.iter().zip(features) {
            if features.is_new_device() {
                self.visits.0.push_back(FirstVisit {
                    event_id: event_id(event),
                    features: *features,
                });
            }
        }
    }
}

impl<'o> Pipeline<'o> {
    /// Trades host shares while reading (and once now).
    pub fn share_hosts(&mut self, exchange: &'o mut dyn HostExchange, pace: FleetPace) {
        // Computers' incidents are decided behind the fleet, by one worker
        // each: the others' open ones are theirs to carry on.
        let computers = &self.computers;
        self.alerts.set_computers_apart();
        self.alerts
            .forget_computer_incidents(|id| exchange.opens_computer(computers.name(id)));
        let entity_risk = &self.policy.file.entity_risk;
        let ledgers = EntityRisk::new(
            entity_risk.window.as_secs(),
            entity_risk.half_life.as_secs(),
        );
        self.fleet = Some(Fleet {
            exchange,
            pace,
            last_trade: Instant::now(),
            traded_through: self.closed_through,
            slowest: None,
            caught_up: false,
            waiting_since: None,
            decisions: ComputerDecisions::new(
                ledgers,
                self.computers_decided
                    .take()
                    .unwrap_or_else(|| ComputersDecided::all_through(self.closed_through)),
                &mut self.computers,
            ),
            user_shards: Vec::new(),
            computers_opened: Vec::new(),
            visits: OwnVisits::default(),
        });
        self.trade_hosts(Trade::First);
    }

    /// At the end of input: a last trade, and every computer decided.
    pub(super) fn last_trade(&mut self) {
        self.trade_hosts(Trade::Last);
    }

    /// Publishes this worker's shares and takes in the others', then decides
    /// its computers through what every worker has scored (the last trade:
    /// through its own last event, at the end of input). A failed trade, or
    /// one still under way, leaves the others' last shares counting: the
    /// computer features are then staler, not wrong by more, and computers
    /// wait for the next.
    pub(super) fn trade_hosts(&mut self, trade: Trade) {
        // Out of the pipeline while it trades, so that the pipeline's
        // parts can be lent beside it.
        let Some(mut fleet) = self.fleet.take() else {
            return;
        };
        let started = Instant::now();
        fleet.last_trade = started;
        fleet.traded_through = self.closed_through;
        let users = &self.users;
        let computers = &self.computers;
        let exchange = &mut *fleet.exchange;
        let user_shards = &mut fleet.user_shards;
        for user in user_shards.len()..users.len() {
            let shard = exchange.shard_of(users.name(user as NameId));
            user_shards.push(
                shard
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(NOT_HELD),
            );
        }
        let opened = &mut fleet.computers_opened;
        for computer in opened.len()..computers.len() {
            opened.push(exchange.opens_computer(computers.name(computer as NameId)));
        }
        // A reader may score as far back as this; this worker's own
        // decisions have judged the visits through the other bound.
        let behind = fleet.pace.readers_behind_s();
        fleet.visits.forget_through(
            self.closed_through
                .saturating_sub(behind)
                .min(fleet.decisions.judged_through()),
        );
        let shares = self.state.host_shares(
            self.closed_through.max(0),
            behind,
            exchange.shards(),
            &|user| {
                let shard = user_shards[user as usize];
                (shard != NOT_HELD).then_some(usize::from(shard))
            },
            &|computer| computers.name(computer).to_string(),
        );
        let published: usize = shares.iter().map(Vec::len).sum();
        // This worker's own part of the counts of the computers it decides,
        // for their first visits judged again.
        let own_hosts: Vec<HostShare> = shares
            .iter()
            .flatten()
            .filter(|share| {
                computers
                    .get(share.computer.as_bytes())
                    .is_some_and(|id| opened[id as usize])
            })
            .cloned()
            .collect();
        self.counters.fleet.handed_over += 1;
        let shard_of = |user: NameId| {
            let shard = user_shards.get(user as usize).copied().unwrap_or(NOT_HELD);
            (shard != NOT_HELD).then_some(usize::from(shard))
        };
        let opens = |computer: NameId| opened.get(computer as usize).copied().unwrap_or(false);
        let risk = self.risk_shares(exchange.shards(), shard_of, opens, &fleet.visits);
        let progress = Progress {
            scored_through: self.closed_through,
            caught_up: fleet.caught_up,
        };
        let last = trade == Trade::Last;
        match exchange.exchange(shares, risk, progress, trade != Trade::While) {
            Ok(None) => {}
            Ok(Some(traded)) => {
                fleet.slowest = traded.slowest;
                let computers = &mut self.computers;
                self.state
                    .set_shared_hosts(&traded.shares, |name| computers.intern(name.as_bytes()).0);
                for share in &traded.risk {
                    computers.intern(share.computer.as_bytes());
                }
                // The computers new in this trade: whether this worker
                // decides them, asked once each.
                for computer in opened.len()..computers.len() {
                    opened.push(exchange.opens_computer(computers.name(computer as NameId)));
                }
                // Every shard's events before this second are scored (the
                // others' as of their shares, this worker's own as of now).
                // At the end, what it knows up to its own last event, or
                // with every other shard read to its end, up to the last of
                // theirs (otherwise the rest is for whoever reads on; its
                // snapshot says so).
                let through = if last {
                    match (traded.slowest, traded.latest) {
                        (None, Some(latest)) => self.closed_through.max(latest),
                        _ => self.closed_through,
                    }
                } else {
                    self.closed_through
                        .min(traded.slowest.unwrap_or(i64::MAX))
                        .saturating_sub(1)
                };
                let decisions = &mut fleet.decisions;
                let hosts: Vec<&HostShare> = own_hosts.iter().chain(&traded.shares).collect();
                let merged = self.decide_computers(
                    decisions,
                    Evidence {
                        traded: &traded.risk,
                        own_visits: &fleet.visits,
                        hosts: &hosts,
                    },
                    |computer| opened.get(computer as usize).copied().unwrap_or(false),
                    through,
                );
                self.counters.fleet.trades += 1;
                tracing::debug!(
                    published,
                    received = traded.shares.len(),
                    merged,
                    slowest = traded.slowest,
                    ms = started.elapsed().as_millis() as u64,
                    "host shares traded"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "cannot trade host shares with the fleet; the others' last ones keep counting");
            }
        }
        self.counters.fleet.trading += started.elapsed();
        self.fleet = Some(fleet);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::fleet_fixtures::{Other, an_hour_on_c1, worker};

    /// The other shards' users count in this worker's computer features,
    /// and a worker further ahead than the drift of the slowest waits.
    #[test]
    fn the_others_count_and_the_leader_waits() {
        let slowest = std::rc::Rc::new(std::cell::Cell::new(Some(0)));
        let mut other = Other {
            slowest: slowest.clone(),
            shares: vec![HostShare {
                computer: "C1".into(),
                counts: crate::state::HostCounts {
                    users_ever: 5,
                    ..Default::default()
                },
            }],
            published: Vec::new(),
            finished: None,
        };
        let mut sinks = Default::default();
        let mut pipeline = worker(&mut sinks);
        let pace = FleetPace {
            trade_every: Duration::ZERO,
            max_drift_s: Some(600),
        };
        pipeline.share_hosts(&mut other, pace);
        an_hour_on_c1(&mut pipeline);
        let scored_through = pipeline.closed_through;
        assert!(scored_through > 0, "{scored_through}");
        assert!(pipeline.keep_pace(false), "far ahead of the slowest");
        slowest.set(Some(scored_through - 600));
        assert!(!pipeline.keep_pace(false), "within the drift of it");
        slowest.set(Some(scored_through - 601));
        assert!(pipeline.keep_pace(false), "a second past the drift");
        pipeline.end_of_input().unwrap();
        let scored_to_the_end = pipeline.closed_through;
        drop(pipeline);
        // The last trade, at the end of input, says so.
        let last = other.published.last().unwrap();
        assert_eq!(last.1.scored_through, scored_to_the_end);
        assert_eq!(last.0, 1, "one computer in this worker's share");
        // Its three users and the other shards' five.
        let users: Vec<u32> = sinks.0.rows.iter().map(|r| r.host_users_ever).collect();
        assert_eq!(users[..3], [6, 7, 8]);
        assert!(users[3..].iter().all(|&u| u == 8), "{users:?}");
    }
}
