//! Where and when a campaign happens: the accounts it may take (ordinary,
//! service, in no other campaign), the computers new to them (rarely used
//! ones on request), a foothold to work from, the hours it starts at, and
//! [`visit`], how an account's logons to a list of computers are spread
//! over a span.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::{HOUR, MINUTE, Planner};
use crate::DAY;
use crate::model;

impl Planner<'_> {
    /// A start (0-based second) on a day from `from_day` on, at a second of
    /// the daily cycle, leaving `span` seconds before the end.
    pub(super) fn start<R: Rng>(&self, rng: &mut R, span: u32) -> u32 {
        let day = rng.random_range(self.from_day..self.days);
        let t = day * DAY + model::second_of_day(rng, &self.hours);
        t.min((self.days * DAY).saturating_sub(span + 1))
    }

    /// 8:00-10:00 on a weekday from `from_day` on (any day if there is none).
    pub(super) fn weekday_morning<R: Rng>(&self, rng: &mut R) -> u32 {
        let weekdays: Vec<u32> = (self.from_day..self.days).filter(|d| d % 7 < 5).collect();
        let day = weekdays
            .choose(rng)
            .copied()
            .unwrap_or_else(|| rng.random_range(self.from_day..self.days));
        day * DAY + rng.random_range(8 * HOUR..10 * HOUR)
    }

    /// An ordinary account (5-150 computers over the period, active since the
    /// first half-day) that already used at least `min_known` computers at
    /// `t` and is in no other campaign.
    pub(super) fn account<R: Rng>(&mut self, rng: &mut R, t: u32, min_known: usize) -> Option<u32> {
        self.account_where(rng, t, min_known, |_| true)
    }

    /// [`Planner::account`] among the accounts `fits` accepts.
    pub(super) fn account_where<R: Rng>(
        &mut self,
        rng: &mut R,
        t: u32,
        min_known: usize,
        fits: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        for _ in 0..20_000 {
            let u = rng.random_range(0..self.graph.users);
            let pairs = &self.graph.pairs[u as usize];
            if self.taken.contains(&u)
                || !(5..=150).contains(&pairs.computers.len())
                || pairs.first_use.first().is_none_or(|&f| f >= DAY / 2)
                || self.known(u, t).len() < min_known
                || !fits(u)
            {
                continue;
            }
            self.taken.insert(u);
            return Some(u);
        }
        None
    }

    /// A second of office hours (8:30-17:30) of day `day`.
    pub(super) fn office_hours<R: Rng>(rng: &mut R, day: u32) -> u32 {
        day * DAY + rng.random_range(8 * HOUR + 30 * MINUTE..17 * HOUR + 30 * MINUTE)
    }

    /// Up to `n` accounts, at random, that are in no campaign and were seen
    /// before `start`.
    pub(super) fn free_accounts<R: Rng>(&self, rng: &mut R, start: u32, n: usize) -> Vec<u32> {
        let mut users: Vec<u32> = (0..self.graph.users)
            .filter(|&u| {
                !self.taken.contains(&u)
                    && self.graph.pairs[u as usize]
                        .first_use
                        .first()
                        .is_some_and(|&f| f < start)
            })
            .collect();
        users.shuffle(rng);
        users.truncate(n);
        users
    }

    /// `n` accounts that never used `target` each log on to it once or
    /// twice within `span` from `start`.
    pub(super) fn strangers_visit<R: Rng>(
        &mut self,
        rng: &mut R,
        target: u32,
        n: usize,
        start: u32,
        span: u32,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let graph = self.graph;
        let mut events = Vec::new();
        for _ in 0..n {
            let user = (0..1_000).find_map(|_| {
                let u = self.account(rng, start, 1)?;
                if graph.pairs[u as usize].computers.contains(&target) {
                    self.taken.remove(&u);
                    None
                } else {
                    Some(u)
                }
            })?;
            events.extend(visit(rng, user, &[target], start, span, 1..=2));
        }
        Some(events)
    }

    /// The computers `u` has used before `t`, earliest first (the most used).
    pub(super) fn known(&self, u: u32, t: u32) -> Vec<u32> {
        let pairs = &self.graph.pairs[u as usize];
        let n = pairs.first_use.partition_point(|&f| f < t);
        pairs.computers[..n].to_vec()
    }

    /// `n` computers (not hubs) that `u` never uses, that someone used before
    /// `t`, and, with `rare`, that only one or two accounts ever use.
    pub(super) fn new_computers<R: Rng>(
        &self,
        rng: &mut R,
        u: u32,
        n: usize,
        t: u32,
        rare: bool,
        avoid: &[u32],
    ) -> Option<Vec<u32>> {
        let graph = self.graph;
        let mine = &graph.pairs[u as usize].computers;
        let mut chosen: Vec<u32> = Vec::with_capacity(n);
        for _ in 0..200_000 {
            if chosen.len() == n {
                return Some(chosen);
            }
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            let fits = users.first().is_some_and(|&f| f < t)
                && (!rare || (users.len() <= 2))
                && !mine.contains(&c)
                && !chosen.contains(&c)
                && !avoid.contains(&c);
            if fits {
                chosen.push(c);
            }
        }
        None
    }

    /// A round-the-clock service-like account on a few computers of its own
    /// (1-8 by a day before `start`, at most 12 ever), seen since the first
    /// half-day and in no other campaign.
    pub(super) fn service_account<R: Rng>(&mut self, rng: &mut R, start: u32) -> Option<u32> {
        let graph = self.graph;
        let user = (0..20_000).find_map(|_| {
            let u = rng.random_range(0..graph.users);
            let pairs = &graph.pairs[u as usize];
            (graph.rhythms[u as usize] == model::Rhythm::Steady
                && !self.taken.contains(&u)
                && (1..=8).contains(&self.known(u, start.saturating_sub(DAY)).len())
                && pairs.computers.len() <= 12
                && pairs.first_use.first().is_some_and(|&f| f < DAY / 2))
            .then_some(u)
        })?;
        self.taken.insert(user);
        Some(user)
    }

    /// A computer an intruder works from: someone's workstation (not a hub)
    /// in use before `t`, none of `users`' own.
    pub(super) fn pick_foothold<R: Rng>(&self, rng: &mut R, t: u32, users: &[u32]) -> Option<u32> {
        let graph = self.graph;
        (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let fits = self.first_uses[c as usize].first().is_some_and(|&f| f < t)
                && users
                    .iter()
                    .all(|&u| !graph.pairs[u as usize].computers.contains(&c));
            fits.then_some(c)
        })
    }
}

/// `user` logs on to each of `computers` in turn, spread over `span` seconds
/// from `start`, `logons` times each (the repeats within minutes).
pub(super) fn visit<R: Rng>(
    rng: &mut R,
    user: u32,
    computers: &[u32],
    start: u32,
    span: u32,
    logons: std::ops::RangeInclusive<u32>,
) -> Vec<(u32, u32, u32)> {
    let mut times: Vec<u32> = (0..computers.len())
        .map(|_| start + rng.random_range(0..=span))
        .collect();
    times.sort_unstable();
    let mut events = Vec::new();
    for (&c, &t) in computers.iter().zip(&times) {
        for k in 0..rng.random_range(logons.clone()) {
            let t = if k == 0 {
                t
            } else {
                t + rng.random_range(1..10 * MINUTE)
            };
            events.push((t, user, c));
        }
    }
    events
}
