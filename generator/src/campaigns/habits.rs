//! The benign hard cases: habits that run from the first day (help desk,
//! desktop support, a nightly scanner), and one-off days that look like
//! spreading (a roll-out, a migration morning, a roaming admin's round, a
//! new hire's first days). Detection must leave them alone because history
//! shows them normal.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rustc_hash::FxHashSet;

use super::pick::visit;
use super::{HOUR, MINUTE, Planner};
use crate::DAY;
use crate::model;

impl Planner<'_> {
    pub(super) fn rollout<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let server = self.next_computer;
        self.next_computer += 1;
        let n = rng
            .random_range(200..=600)
            .min(self.graph.users as usize / 2);
        let users = self.free_accounts(rng, start, n);
        if users.is_empty() {
            return None;
        }
        let end_of_data = self.days * DAY - 1;
        let mut events = Vec::new();
        for &user in &users {
            // First logon during the morning, then 0-3 more over two days.
            let first = start + rng.random_range(0..4 * HOUR);
            events.push((first.min(end_of_data), user, server));
            for _ in 0..rng.random_range(0..=3) {
                let later = first + rng.random_range(HOUR..2 * DAY);
                if later <= end_of_data {
                    events.push((later, user, server));
                }
            }
        }
        self.target = Some(server);
        Some(events)
    }

    pub(super) fn roaming_admin<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(30 * MINUTE..=2 * HOUR);
        let day = rng.random_range(self.from_day..self.days);
        // Known for a day at least, so the pipeline has seen them.
        let known_since = (day * DAY).saturating_sub(DAY);
        let graph = self.graph;
        let admin = (0..graph.users)
            .filter(|u| !self.taken.contains(u))
            .map(|u| (self.known(u, known_since).len(), u))
            .filter(|&(known, _)| known >= 24)
            .collect::<Vec<_>>()
            .choose(rng)
            .map(|&(_, u)| u)?;
        self.taken.insert(admin);
        // A round at the admin's own working hours.
        let hours = rand_distr::weighted::WeightedAliasIndex::new(
            graph.rhythms[admin as usize].hour_weights().to_vec(),
        )
        .expect("valid weights");
        let start = (day * DAY + model::second_of_day(rng, &hours))
            .min((self.days * DAY).saturating_sub(span + 1));
        let mut known = self.known(admin, known_since);
        known.shuffle(rng);
        known.truncate(rng.random_range(20..=60));
        Some(visit(rng, admin, &known, start, span, 1..=3))
    }

    pub(super) fn new_hire<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let hire = self.next_user;
        self.next_user += 1;
        let workstation = self.next_computer;
        self.next_computer += 1;
        self.homes.push((hire, workstation));
        let graph = self.graph;
        // A colleague with a few computers of the team's (not hubs).
        let mut team = (0..1_000).find_map(|_| {
            let colleague = self.account(rng, start, 4)?;
            self.taken.remove(&colleague);
            let team: Vec<u32> = self
                .known(colleague, start)
                .into_iter()
                .filter(|&c| c >= graph.hubs)
                .collect();
            (team.len() >= 2).then_some(team)
        })?;
        team.shuffle(rng);
        let n_hubs = rng.random_range(3..=6);
        let hubs: Vec<u32> = (0..graph.hubs)
            .collect::<Vec<_>>()
            .choose_multiple(rng, n_hubs)
            .copied()
            .collect();
        let day_one: Vec<u32> = [workstation]
            .into_iter()
            .chain(hubs)
            .chain(team.iter().copied().take(rng.random_range(2..=6)))
            .collect();
        let mut events = Vec::new();
        let mut computers = day_one;
        for day in 0..3u32 {
            let day_start = start + day * DAY;
            if day_start + 9 * HOUR >= self.days * DAY {
                break;
            }
            if day > 0 {
                // A few more of the team's computers each day.
                let more = rng.random_range(1..=3);
                computers.extend(team.iter().copied().skip(computers.len()).take(more));
            }
            events.extend(visit(rng, hire, &computers, day_start, 8 * HOUR, 3..=10));
        }
        Some(events)
    }

    /// Every weekday from the first day, an account visits `new_per_day`
    /// workstations (one or two users each) it never used, and
    /// `again_per_day` of those it visited before.
    pub(super) fn help_desk<R: Rng>(
        &mut self,
        rng: &mut R,
        new_per_day: std::ops::RangeInclusive<usize>,
        again_per_day: std::ops::RangeInclusive<usize>,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let graph = self.graph;
        let user = self.account_where(rng, DAY / 2, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mine: FxHashSet<u32> = graph.pairs[user as usize]
            .computers
            .iter()
            .copied()
            .collect();
        let mut visited: Vec<u32> = Vec::new();
        let mut events = Vec::new();
        for day in (0..self.days).filter(|d| d % 7 < 5) {
            let mut today = Vec::new();
            for _ in 0..100_000 {
                if today.len() == *new_per_day.end() {
                    break;
                }
                let c = rng.random_range(graph.hubs..graph.computers);
                let users = &self.first_uses[c as usize];
                if (1..=2).contains(&users.len())
                    && users[0] < day * DAY
                    && !mine.contains(&c)
                    && !visited.contains(&c)
                    && !today.contains(&c)
                {
                    today.push(c);
                }
            }
            today.truncate(rng.random_range(new_per_day.clone()));
            let again = rng.random_range(again_per_day.clone()).min(visited.len());
            let revisits: Vec<u32> = visited.choose_multiple(rng, again).copied().collect();
            for &c in today.iter().chain(&revisits) {
                let at = Self::office_hours(rng, day);
                events.extend(visit(rng, user, &[c], at, 0, 1..=3));
            }
            visited.extend(today);
        }
        (!events.is_empty()).then_some(events)
    }

    pub(super) fn nightly_scanner<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let scanner = self.next_user;
        self.next_user += 1;
        // The scanner's own server, that it works from.
        self.homes.push((scanner, self.next_computer));
        self.next_computer += 1;
        let graph = self.graph;
        let mut scope: Vec<u32> = (graph.hubs..graph.computers).collect();
        scope.shuffle(rng);
        let mut reach = rng.random_range(150..=300).min(scope.len());
        let mut events = Vec::new();
        for night in 0..self.days {
            let start = night * DAY + HOUR;
            events.extend(visit(rng, scanner, &scope[..reach], start, 2 * HOUR, 1..=1));
            reach = (reach + rng.random_range(0..=5)).min(scope.len());
        }
        Some(events)
    }

    pub(super) fn migration_morning<R: Rng>(
        &mut self,
        rng: &mut R,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let servers: Vec<u32> = (0..rng.random_range(4..=8))
            .map(|_| {
                self.next_computer += 1;
                self.next_computer - 1
            })
            .collect();
        let n = rng
            .random_range(50..=150)
            .min(self.graph.users as usize / 4);
        let users = self.free_accounts(rng, start, n);
        if users.is_empty() {
            return None;
        }
        let end_of_data = self.days * DAY - 1;
        let mut events = Vec::new();
        for &user in &users {
            let take = rng.random_range(2..=3);
            let mine: Vec<u32> = servers.choose_multiple(rng, take).copied().collect();
            for &server in &mine {
                let first = start + rng.random_range(0..3 * HOUR);
                events.push((first.min(end_of_data), user, server));
                for _ in 0..rng.random_range(0..=3) {
                    let later = first + rng.random_range(HOUR..2 * DAY);
                    if later <= end_of_data {
                        events.push((later, user, server));
                    }
                }
            }
        }
        self.target = servers.first().copied();
        Some(events)
    }
}
