//! What the other workers of a fleet add to each computer's popularity.
//!
//! Workers that share a stream split it by user: each holds some shards, and
//! its state has only those shards' users. A computer's users span shards,
//! so each worker publishes, per shard it holds, what that shard's users
//! make of each computer ([`HostShare`]: absolute numbers, so publishing
//! again, after a retry or by the worker that took the shard over, never
//! counts twice), and adds up the shares of the shards it does not hold
//! ([`SharedHosts`]). A computer's features are then its own workers' count
//! plus the others': the users ever, of the day and of the clock hour, the
//! users new to it in the last hour and day, and when it was first used are
//! exact up to how old the others' shares are (one commit interval), and
//! so is its usual rate of new users (the users new to it a day or more
//! after its first use: each shard counts its own from the earliest first
//! use it knows of, so only users of a computer's first day can be counted
//! differently). The computer's busiest hour stays the worker's own (a
//! maximum over hours does not add up across shards).

use serde::{Deserialize, Serialize};

use authpulse_rules_sdk::{FLAG_NEW_COMPUTER, Features};

use super::{DAY, EngineState, HOUR, baseline, saturate};
use crate::event::NameId;

/// One computer as one shard's users have used it, as of `now`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostShare {
    pub computer: String,
    #[serde(flatten)]
    pub counts: HostCounts,
}

/// A computer's users as some shards' users make them up: one shard's in a
/// [`HostShare`], the sum of the other shards' in a worker's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostCounts {
    /// The users who ever logged on to it.
    pub users_ever: u32,
    /// Unix seconds of the first of them.
    pub first_seen: i64,
    /// UTC day (days since the epoch) `users_today` counts.
    pub day: i64,
    pub users_today: u32,
    /// Clock hour (hours since the epoch) `users_this_hour` counts.
    pub hour: i64,
    pub users_this_hour: u32,
    /// When each of them first logged on to it, oldest first: within the
    /// day before the earliest event a worker reading the share may score
    /// (`EngineState::host_shares`' `behind_s` and a day before `now`).
    pub firsts: Vec<i64>,
    /// Those of them who first logged on to it a day or more after anyone
    /// did (its usual rate of new users counts these).
    #[serde(default)]
    pub later_users: u32,
}

/// Per computer id, what the other shards add up to (empty outside a
/// fleet).
#[derive(Default)]
pub(crate) struct SharedHosts(Vec<HostCounts>);

impl SharedHosts {
    #[inline]
    pub fn get(&self, computer: usize) -> Option<&HostCounts> {
        self.0.get(computer).filter(|s| s.users_ever > 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the other shards add to an event on `computer` at `time`.
    #[inline(never)]
    pub fn added_at(&self, computer: usize, time: i64) -> Added {
        self.get(computer)
            .map_or_else(Added::default, |s| s.at(time))
    }

    /// Users of `computer` on other shards (0 outside a fleet).
    #[inline]
    pub fn users_ever(&self, computer: usize) -> u32 {
        self.get(computer).map_or(0, |s| s.users_ever)
    }
}

impl HostCounts {
    /// Several shards' counts of one computer, added up.
    pub fn sum<'a>(shares: impl IntoIterator<Item = &'a HostCounts>) -> HostCounts {
        let mut sum = HostCounts::default();
        for share in shares {
            sum.add(share);
        }
        sum.firsts.sort_unstable();
        sum
    }

    /// What these counts say of the computer at `time`. Counts taken ahead
    /// of `time` (a worker further on in event time) include users who
    /// came after it: those of their last day are known and left out.
    fn at(&self, time: i64) -> Added {
        let through = self.firsts.partition_point(|&t| t <= time);
        let later = self.firsts.len() - through;
        let users_ever = self.users_ever.saturating_sub(later as u32);
        if users_ever == 0 {
            return Added::default();
        }
        Added {
            users_ever,
            later_users: self.later_users.saturating_sub(later as u32),
            users_today: if self.day == time.div_euclid(DAY) {
                self.users_today
            } else {
                0
            },
            users_this_hour: if self.hour == time.div_euclid(HOUR) {
                self.users_this_hour
            } else {
                0
            },
            new_users_1h: self.firsts_within(through, time - HOUR),
            new_users_24h: self.firsts_within(through, time - DAY),
            first_seen: Some(self.first_seen),
        }
    }

    /// Gives a user's first logon to the computer (`features`, scored by
    /// one worker with the other shards' counts as of its last trade) the
    /// computer's side one state of the whole stream would have given it,
    /// `self` being every shard's counts of the computer added up, taken at
    /// or after the logon: its users ever, new within the hour and the day,
    /// its age, its usual rate of new users, and whether it is new to
    /// everyone. Its users of the day and of the clock hour, its busiest
    /// hour and its peers stay as scored (counts taken later cannot say
    /// them as of the logon). Users who came in the same second count as
    /// before it. Counts that do not hold the logon's user change nothing.
    pub fn judge_first_visit(&self, features: &mut Features) {
        let time = features.event_time;
        let now = self.at(time);
        let Some(first_seen) = now.first_seen else {
            return;
        };
        features.host_users_ever = now.users_ever;
        features.host_new_users_1h = now.new_users_1h;
        features.host_new_users_24h = now.new_users_24h;
        features.host_tenure_s = saturate(time - first_seen);
        (features.host_baseline_new_users, features.host_baseline_s) =
            baseline(first_seen, time, now.later_users, now.new_users_24h);
        if now.users_ever == 1 {
            features.flags |= FLAG_NEW_COMPUTER;
        } else {
            features.flags &= !FLAG_NEW_COMPUTER;
        }
    }

    fn add(&mut self, share: &HostCounts) {
        if self.users_ever == 0 || share.first_seen < self.first_seen {
            self.first_seen = share.first_seen;
        }
        self.users_ever += share.users_ever;
        self.later_users += share.later_users;
        // Shares taken at different times count different days (hours):
        // the latest is the one events are scored in.
        if share.day > self.day {
            (self.day, self.users_today) = (share.day, 0);
        }
        if share.day == self.day {
            self.users_today += share.users_today;
        }
        if share.hour > self.hour {
            (self.hour, self.users_this_hour) = (share.hour, 0);
        }
        if share.hour == self.hour {
            self.users_this_hour += share.users_this_hour;
        }
        self.firsts.extend_from_slice(&share.firsts);
    }

    /// Users new to the computer after `since` among its first
    /// `through` firsts (`firsts` is sorted; those up to the event).
    #[inline]
    fn firsts_within(&self, through: usize, since: i64) -> u32 {
        let after = self.firsts[..through].partition_point(|&t| t <= since);
        (through - after) as u32
    }
}

/// What a computer's event adds from the other shards, for the features.
#[derive(Clone, Copy, Default)]
pub(crate) struct Added {
    pub users_ever: u32,
    pub later_users: u32,
    pub users_today: u32,
    pub users_this_hour: u32,
    pub new_users_1h: u32,
    pub new_users_24h: u32,
    pub first_seen: Option<i64>,
}

impl EngineState {
    /// Per shard (as `shard_of` places each user; `None`: not one of
    /// `shards`), what its users make of each computer as of `now`, in
    /// the order of the computers' ids. `shard_of` is asked once per
    /// device pair: it should be a lookup, not a hash of the name.
    ///
    /// `behind_s`: how far behind `now` in event time a worker reading the
    /// shares may score (the fleet's drift bound). The firsts go back a day
    /// before that, so that such a worker counts the users new to a
    /// computer over the whole day up to its event, not only those of the
    /// day up to `now`.
    pub fn host_shares(
        &self,
        now: i64,
        behind_s: i64,
        shards: usize,
        shard_of: &dyn Fn(NameId) -> Option<usize>,
        computer_name: &dyn Fn(NameId) -> String,
    ) -> Vec<Vec<HostShare>> {
        const NONE: u32 = u32::MAX;
        let (day, hour) = (now.div_euclid(DAY), now.div_euclid(HOUR));
        // Per shard, each computer's place in its shares (a table, not a
        // map: this runs over every device pair at each trade).
        let mut places: Vec<Vec<u32>> = (0..shards).map(|_| vec![NONE; self.hosts.len()]).collect();
        let mut by_shard: Vec<Vec<(NameId, HostShare)>> = (0..shards).map(|_| Vec::new()).collect();
        for (&key, &id) in &self.device_index {
            let (user, computer) = ((key >> 32) as NameId, key as NameId);
            let Some(shard) = shard_of(user) else {
                continue;
            };
            let device = &self.devices[id as usize];
            let place = &mut places[shard][computer as usize];
            if *place == NONE {
                *place = by_shard[shard].len() as u32;
                by_shard[shard].push((
                    computer,
                    HostShare {
                        computer: computer_name(computer),
                        counts: HostCounts {
                            first_seen: device.first_seen,
                            day,
                            hour,
                            ..HostCounts::default()
                        },
                    },
                ));
            }
            let share = &mut by_shard[shard][*place as usize].1.counts;
            share.users_ever += 1;
            // From the earliest first use of the computer this worker
            // knows of, as `observe` counts its own.
            let first_known = self
                .shared
                .get(computer as usize)
                .map_or(self.hosts[computer as usize].first_seen, |s| {
                    s.first_seen.min(self.hosts[computer as usize].first_seen)
                });
            share.later_users += u32::from(device.first_seen >= first_known + DAY);
            share.first_seen = share.first_seen.min(device.first_seen);
            share.users_today += u32::from(device.last_day == day);
            share.users_this_hour += u32::from(device.last_seen.div_euclid(HOUR) == hour);
            if device.first_seen > now - behind_s.max(0) - DAY {
                share.firsts.push(device.first_seen);
            }
        }
        by_shard
            .into_iter()
            .map(|mut shares| {
                shares.sort_unstable_by_key(|(computer, _)| *computer);
                shares
                    .into_iter()
                    .map(|(_, mut share)| {
                        share.counts.firsts.sort_unstable();
                        share
                    })
                    .collect()
            })
            .collect()
    }

    /// Replaces what the other shards add: their latest shares, each
    /// computer named by `computer_id`.
    pub fn set_shared_hosts<'a>(
        &mut self,
        shares: impl IntoIterator<Item = &'a HostShare>,
        mut computer_id: impl FnMut(&str) -> NameId,
    ) {
        let mut shared: Vec<HostCounts> = Vec::new();
        for share in shares {
            let c = computer_id(&share.computer) as usize;
            if c >= shared.len() {
                shared.resize_with(c + 1, HostCounts::default);
            }
            shared[c].add(&share.counts);
        }
        for s in &mut shared {
            s.firsts.sort_unstable();
        }
        self.shared = SharedHosts(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a computer's features are: its users ever, today, this hour,
    /// new in 24 h and 1 h, its age, its usual rate of new users (the
    /// baseline's new users and length), and the event's flags.
    fn host_side(f: &authpulse_rules_sdk::Features) -> [i64; 9] {
        [
            f.host_users_ever.into(),
            f.host_users_today.into(),
            f.host_users_this_hour.into(),
            f.host_new_users_24h.into(),
            f.host_new_users_1h.into(),
            f.host_tenure_s.into(),
            f.host_baseline_new_users.into(),
            f.host_baseline_s.into(),
            f.flags.into(),
        ]
    }

    /// Which half of a stream a user's events are in.
    fn half_of(user: NameId) -> usize {
        (user % 2) as usize
    }

    /// One state of the whole stream, and one of each half (by user).
    fn whole_and_halves(events: &[(i64, NameId, NameId)]) -> (EngineState, [EngineState; 2]) {
        let mut whole = EngineState::default();
        let mut halves = [EngineState::default(), EngineState::default()];
        for &(t, u, c) in events {
            whole.observe(t, u, c);
            halves[half_of(u)].observe(t, u, c);
        }
        (whole, halves)
    }

    /// Two halves of one stream, by user, give each computer the counts
    /// one state of the whole stream gives, once each adds the other's
    /// shares.
    #[test]
    fn two_halves_add_up_to_the_whole() {
        let events: Vec<(i64, NameId, NameId)> = (0..400)
            .map(|i| (i * 600, (i * 7 % 13) as NameId, (i * 5 % 11) as NameId))
            .collect();
        let (mut whole, mut halves) = whole_and_halves(&events);
        let now = events.last().unwrap().0;
        let name = |c: NameId| format!("C{c}");
        let id = |name: &str| name[1..].parse::<NameId>().unwrap();
        let shares: Vec<Vec<HostShare>> = halves
            .iter()
            .map(|h| {
                h.host_shares(now, 0, 2, &|u| Some(half_of(u)), &name)
                    .swap_remove(0)
            })
            .collect();
        let odd = halves[1].host_shares(now, 0, 2, &|u| Some(half_of(u)), &name)[1].clone();
        assert!(shares[1].is_empty(), "the even half has no odd users");
        // Each half adds the other's; the same shares again change nothing.
        halves[0].set_shared_hosts(&odd, id);
        halves[0].set_shared_hosts(&odd, id);
        halves[1].set_shared_hosts(&shares[0], id);
        let (t, u) = (now + 60, 3);
        for c in 0..11 {
            let expected = whole.observe(t, u, c);
            let got = halves[half_of(u)].observe(t, u, c);
            assert_eq!(host_side(&got), host_side(&expected), "computer {c}");
        }
    }

    /// A computer whose users arrive over days, half of them on each
    /// worker: its usual rate of new users (what `fan_in` weighs the last
    /// hour and day against) is the whole stream's on both, not the half
    /// each worker sees (which made every busy computer's ordinary day
    /// look like a fan-in to a fleet).
    #[test]
    fn the_usual_rate_of_new_users_counts_every_shard() {
        // User k first logs on to computer 0 at k * 3 h, then every hour
        // for a while; the second half's first user comes 3 h after the
        // first half's.
        let mut events: Vec<(i64, NameId, NameId)> = Vec::new();
        for k in 0..48i64 {
            for again in 0..6 {
                events.push((k * 3 * HOUR + again * HOUR, k as NameId, 0));
            }
        }
        events.sort_unstable();
        let (mut whole, mut halves) = whole_and_halves(&events);
        let now = events.last().unwrap().0;
        let name = |c: NameId| format!("C{c}");
        let id = |_: &str| 0;
        let share_of = |half: usize| {
            halves[half].host_shares(now, 0, 2, &|u| Some(half_of(u)), &name)[half].clone()
        };
        let (even, odd) = (share_of(0), share_of(1));
        halves[0].set_shared_hosts(&odd, id);
        halves[1].set_shared_hosts(&even, id);
        let t = now + 60;
        let expected = whole.observe(t, 100, 0);
        assert!(expected.host_baseline_new_users > 10, "{expected:?}");
        for (half, user) in [(0, 100), (1, 101)] {
            let got = halves[half].observe(t, user, 0);
            assert_eq!(host_side(&got), host_side(&expected), "half {half}");
        }
    }

    /// A share taken further on in event time does not count, for an
    /// earlier event, the users who came after it.
    #[test]
    fn a_share_from_ahead_counts_only_users_before_the_event() {
        let mut ahead = EngineState::default();
        ahead.observe(1_000, 1, 0);
        ahead.observe(5_000, 3, 0);
        let shares = ahead.host_shares(5_000, 0, 1, &|_| Some(0), &|c| format!("C{c}"));
        let mut behind = EngineState::default();
        behind.set_shared_hosts(&shares[0], |_| 0);
        let early = behind.observe(2_000, 2, 0);
        assert_eq!((early.host_users_ever, early.host_new_users_24h), (2, 2));
        assert_eq!(
            early.flags & FLAG_NEW_COMPUTER,
            0,
            "user 1 was there before"
        );
        let late = behind.observe(6_000, 4, 0);
        assert_eq!((late.host_users_ever, late.host_new_users_24h), (4, 4));
        let mut first = EngineState::default();
        first.set_shared_hosts(&shares[0], |_| 0);
        let before_all = first.observe(500, 9, 0);
        assert_eq!(before_all.host_users_ever, 1);
        assert_ne!(before_all.flags & FLAG_NEW_COMPUTER, 0, "nobody before it");
    }

    /// A share taken ahead of the reader's event keeps the users new to the
    /// computer over the whole day up to that event, as far behind as it
    /// is told the readers may be: counted over the day up to the share's
    /// own time, the first of them was missing.
    #[test]
    fn a_share_from_ahead_keeps_the_day_before_a_reader_behind_it() {
        let mut ahead = EngineState::default();
        ahead.observe(1_000, 1, 0);
        let now = 1_000 + DAY + 1_800;
        ahead.observe(now, 3, 0);
        let event = DAY + 900;
        let mut whole = EngineState::default();
        whole.observe(1_000, 1, 0);
        let expected = whole.observe(event, 2, 0);
        assert_eq!(
            (expected.host_users_ever, expected.host_new_users_24h),
            (2, 2)
        );
        let read = |behind_s: i64| {
            let shares = ahead.host_shares(now, behind_s, 1, &|_| Some(0), &|c| format!("C{c}"));
            let mut behind = EngineState::default();
            behind.set_shared_hosts(&shares[0], |_| 0);
            behind.observe(event, 2, 0)
        };
        // (Its users of the day and the hour are its own time's: user 3's
        // logon, after the event, among them.)
        let day_side = |f: &authpulse_rules_sdk::Features| {
            let [ever, _, _, new_24h, new_1h, tenure, ..] = host_side(f);
            [ever, new_24h, new_1h, tenure]
        };
        let within = read(HOUR);
        assert_eq!(day_side(&within), day_side(&expected));
        let too_far = read(0);
        assert_eq!(
            (too_far.host_users_ever, too_far.host_new_users_24h),
            (2, 1),
            "user 1's first logon left the share's day"
        );
    }

    /// Every first visit of the last six hours, judged again with both
    /// halves' counts taken at the end, gets the computer side one state
    /// of the whole stream gave it as it came, though each half scored it
    /// with the other's counts of hours before.
    #[test]
    fn a_first_visit_judged_again_gets_the_whole_streams_computer_side() {
        // Three days on 5 computers, with a user more every 30 events.
        let events: Vec<(i64, NameId, NameId)> = (0..1_200)
            .map(|i| {
                let user = i * 7 % (5 + i / 30);
                (i * 217, user as NameId, (i * 11 % 37 % 5) as NameId)
            })
            .collect();
        let now = events.last().unwrap().0;
        let from = now - 6 * HOUR;
        let name = |c: NameId| format!("C{c}");
        let id = |name: &str| name[1..].parse::<NameId>().unwrap();
        let mut whole = EngineState::default();
        let mut halves = [EngineState::default(), EngineState::default()];
        let mut visits = Vec::new();
        let trade_at = (from / 21_700 + 1) * 21_700;
        for &(t, u, c) in &events {
            if t == trade_at {
                // One trade, hours before the end: what each half scores
                // with from then on.
                for half in 0..2 {
                    let other = halves[1 - half].host_shares(t, 0, 2, &|u| Some(half_of(u)), &name)
                        [1 - half]
                        .clone();
                    halves[half].set_shared_hosts(&other, id);
                }
            }
            let expected = whole.observe(t, u, c);
            let scored = halves[half_of(u)].observe(t, u, c);
            if t > from && expected.flags & authpulse_rules_sdk::FLAG_NEW_DEVICE_FOR_USER != 0 {
                visits.push((scored, expected));
            }
        }
        let counts: Vec<Vec<HostShare>> = halves
            .iter()
            .enumerate()
            .map(|(half, h)| {
                h.host_shares(now, now - from, 2, &|u| Some(half_of(u)), &name)[half].clone()
            })
            .collect();
        let judged_side = |f: &Features| {
            let [
                ever,
                _,
                _,
                new_24h,
                new_1h,
                tenure,
                baseline_users,
                baseline_s,
                flags,
            ] = host_side(f);
            [
                ever,
                new_24h,
                new_1h,
                tenure,
                baseline_users,
                baseline_s,
                flags,
            ]
        };
        assert!(visits.len() >= 10, "{}", visits.len());
        let stale = visits
            .iter()
            .filter(|(scored, expected)| judged_side(scored) != judged_side(expected))
            .count();
        assert!(stale > 0, "some were scored with stale counts");
        for (scored, expected) in &visits {
            let computer = format!("C{}", scored.computer);
            let all = HostCounts::sum(
                counts
                    .iter()
                    .flatten()
                    .filter(|s| s.computer == computer)
                    .map(|s| &s.counts),
            );
            let mut judged = *scored;
            all.judge_first_visit(&mut judged);
            assert_eq!(judged_side(&judged), judged_side(expected), "{computer}");
            // The user's side stays as scored.
            assert_eq!(judged.user_known_computers, scored.user_known_computers);
        }
    }
}
