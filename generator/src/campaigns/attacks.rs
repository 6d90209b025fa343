//! The attacks, one planner per kind: who, which computers, and when.
//! Each returns its logons `(time, user, computer)` or `None` when the graph
//! has no fitting account or computer. How each logon is made (its source,
//! logon type, failures) is [`super::means`]'s.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rustc_hash::FxHashSet;

use super::pick::visit;
use super::{HOUR, MINUTE, Planner};
use crate::DAY;
use crate::model;

impl Planner<'_> {
    pub(super) fn spray<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=40 * MINUTE);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let n = rng.random_range(15..=60);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=2))
    }

    pub(super) fn burst<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(3 * MINUTE..=15 * MINUTE);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 1)?;
        let own: Vec<u32> = self.known(user, start).into_iter().take(5).collect();
        // One logon per computer per second at most: the same second, user
        // and computer would be the same event.
        let slots = (span as usize + 1) * own.len();
        let n = rng.random_range(150..=500).min(slots * 4 / 5);
        let mut events = FxHashSet::default();
        while events.len() < n {
            let c = *own.choose(rng).expect("at least one known computer");
            events.insert((start + rng.random_range(0..=span), user, c));
        }
        Some(events.into_iter().collect())
    }

    pub(super) fn chain<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(40 * MINUTE..=3 * HOUR);
        let start = self.start(rng, span);
        let accounts: Vec<u32> = (0..rng.random_range(2..=3))
            .map(|_| self.account(rng, start, 3))
            .collect::<Option<_>>()?;
        let total = rng.random_range(8..=15);
        // Turns: each account takes 1-4 computers, then hands over.
        let mut turns: Vec<(u32, usize)> = Vec::new();
        let mut assigned = 0;
        let mut next = 0;
        while assigned < total {
            let take = rng.random_range(1..=4).min(total - assigned);
            turns.push((accounts[next % accounts.len()], take));
            assigned += take;
            next += 1;
        }
        let mut used: Vec<u32> = Vec::new();
        let mut events = Vec::new();
        let slot = span / turns.len() as u32;
        for (i, &(user, take)) in turns.iter().enumerate() {
            let targets = self.new_computers(rng, user, take, start, false, &used)?;
            used.extend(&targets);
            let from = start + i as u32 * slot;
            events.extend(visit(rng, user, &targets, from, slot, 1..=2));
        }
        Some(events)
    }

    pub(super) fn stealth<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(2 * HOUR..=8 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let n = rng.random_range(3..=6);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }

    pub(super) fn rare<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=2 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let targets = self.new_computers(rng, user, 2, start, true, &[])?;
        // The second computer comes `span` after the first.
        let mut events = visit(rng, user, &targets[..1], start, MINUTE, 1..=2);
        events.extend(visit(rng, user, &targets[1..], start + span, MINUTE, 1..=2));
        Some(events)
    }

    pub(super) fn fan_in<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=15 * MINUTE);
        let start = self.start(rng, span);
        let graph = self.graph;
        // An established computer with a few users of its own.
        let target = (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            let before = users.partition_point(|&f| f + DAY < start);
            ((1..=10).contains(&before)).then_some(c)
        })?;
        let n = rng.random_range(20..=40);
        let events = self.strangers_visit(rng, target, n, start, span)?;
        self.target = Some(target);
        Some(events)
    }

    pub(super) fn multi_day<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let days = rng.random_range(3..=5u32).min(self.days - self.from_day);
        let first = rng.random_range(self.from_day..=self.days - days);
        let graph = self.graph;
        let user = self.account_where(rng, first * DAY, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mut used = Vec::new();
        let mut events = Vec::new();
        for day in first..first + days {
            let n = rng.random_range(1..=3);
            let targets = self.new_computers(rng, user, n, day * DAY, false, &used)?;
            for &c in &targets {
                let at = Self::office_hours(rng, day);
                events.extend(visit(rng, user, &[c], at, 0, 1..=2));
            }
            used.extend(targets);
        }
        Some(events)
    }

    pub(super) fn off_hours<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let day = rng.random_range(self.from_day..self.days);
        let span = rng.random_range(30 * MINUTE..=90 * MINUTE);
        let start = day * DAY + rng.random_range(0..5 * HOUR);
        let graph = self.graph;
        let user = self.account_where(rng, start, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mut known = self.known(user, start);
        known.shuffle(rng);
        known.truncate(rng.random_range(2..=3));
        let fresh = self.new_computers(rng, user, 1, start, false, &[])?;
        let mut events = visit(rng, user, &known, start, span, 3..=7);
        events.extend(visit(rng, user, &fresh, start, span, 1..=3));
        Some(events)
    }

    pub(super) fn slow_fan_in<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(3 * HOUR..=8 * HOUR);
        let start = self.start(rng, span);
        let graph = self.graph;
        // A rarely used computer: one to five users, all of them for a day.
        let target = (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            ((1..=5).contains(&users.len()) && users.iter().all(|&f| f + DAY < start)).then_some(c)
        })?;
        let n = rng.random_range(8..=20);
        let events = self.strangers_visit(rng, target, n, start, span)?;
        self.target = Some(target);
        Some(events)
    }

    pub(super) fn outsider<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(HOUR..=3 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let graph = self.graph;
        // The computers of the accounts it shares a (non-hub) computer with.
        let mut near: FxHashSet<u32> = FxHashSet::default();
        for &c in &graph.pairs[user as usize].computers {
            if c < graph.hubs {
                continue;
            }
            for &peer in &self.users_of[c as usize] {
                near.extend(&graph.pairs[peer as usize].computers);
            }
        }
        let n = rng.random_range(3..=4);
        let mut targets = Vec::new();
        for _ in 0..200_000 {
            if targets.len() == n {
                break;
            }
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            if (3..=20).contains(&users.len())
                && users.first().is_some_and(|&f| f < start)
                && !near.contains(&c)
                && !targets.contains(&c)
            {
                targets.push(c);
            }
        }
        if targets.len() < n {
            return None;
        }
        Some(visit(rng, user, &targets, start, span, 1..=2))
    }

    pub(super) fn service_pivot<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(20 * MINUTE..=60 * MINUTE);
        let start = self.start(rng, span);
        // Around the clock on a few computers of its own.
        let user = self.service_account(rng, start)?;
        let n = rng.random_range(2..=3);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }

    pub(super) fn password_spray<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(10 * MINUTE..=40 * MINUTE);
        let start = self.start(rng, span + 2 * HOUR);
        let graph = self.graph;
        let dc = rng.random_range(0..graph.hubs.max(1));
        let tried: Vec<u32> = (0..rng.random_range(20..=60))
            .map(|_| self.account(rng, start, 1))
            .collect::<Option<_>>()?;
        let foothold = self.pick_foothold(rng, start, &tried)?;
        let mut events = Vec::new();
        for &user in &tried {
            for _ in 0..rng.random_range(1..=2) {
                let at = start + rng.random_range(0..=span);
                self.failed.insert((at, user, dc));
                events.push((at, user, dc));
            }
        }
        // The ones whose password was guessed get in, and move on.
        let end = start + span;
        for &user in tried.iter().take(rng.random_range(1..=2)) {
            events.push((end + rng.random_range(1..5 * MINUTE), user, dc));
            let n = rng.random_range(2..=4);
            let targets = self.new_computers(rng, user, n, start, false, &[])?;
            events.extend(visit(rng, user, &targets, end + 5 * MINUTE, HOUR, 1..=2));
        }
        self.foothold = Some(foothold);
        Some(events)
    }

    pub(super) fn foothold_fan_out<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(HOUR..=2 * HOUR);
        let start = self.start(rng, span);
        let accounts: Vec<u32> = (0..rng.random_range(3..=5))
            .map(|_| self.account(rng, start, 3))
            .collect::<Option<_>>()?;
        let foothold = self.pick_foothold(rng, start, &accounts)?;
        let mut used = Vec::new();
        let mut events = Vec::new();
        let slot = span / accounts.len() as u32;
        for (i, &user) in accounts.iter().enumerate() {
            let n = rng.random_range(2..=6);
            let targets = self.new_computers(rng, user, n, start, false, &used)?;
            used.extend(&targets);
            let from = start + i as u32 * slot;
            events.extend(visit(rng, user, &targets, from, slot, 1..=2));
        }
        self.foothold = Some(foothold);
        Some(events)
    }

    pub(super) fn service_at_desktop<R: Rng>(
        &mut self,
        rng: &mut R,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(10 * MINUTE..=HOUR);
        let start = self.start(rng, span);
        let user = self.service_account(rng, start)?;
        let n = rng.random_range(1..=2);
        let targets = self.new_computers(rng, user, n, start, true, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }
}
