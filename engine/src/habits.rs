//! What an entity's longer history says is usual, beyond the 1h and 24h
//! windows of [`crate::state`]: each user's new computers over three days
//! and over their history before that, split by kind (rarely used
//! computers apart), the accounts a user shares computers with (their
//! peers), and the population's own pace and daily rhythm, which is what a
//! short history is shrunk toward.
//!
//! Rules meet these as the fields ABI version 3 added to the feature record
//! (`user_new_computers_72h` on). Per event the work is a few counters; a
//! user's first logon to a computer (two to four in a thousand events) also
//! looks at who else used that computer.

use std::collections::VecDeque;

use authpulse_rules_sdk::Features;
use serde::{Deserialize, Serialize};

use crate::event::{DAY, HOUR};

/// A computer with 1 to this many earlier users is *rarely used*.
pub const RARE_MAX_USERS: u32 = 2;
/// A computer with more users than this is shared by many (a file server,
/// a domain controller): using it makes no one a peer.
pub const SHARED_MIN_USERS: u32 = 20;
/// The longer window: three days.
pub const RECENT_S: i64 = 3 * DAY;
/// At most this many of a user's discoveries are kept for the windows (an
/// account discovering more within three days saturates its counts).
const MAX_RECENT: usize = 1024;
/// At most this many earlier users of a computer are asked whether they are
/// the user's peers, and at most this many device lookups spent asking.
const MAX_PEERS_EXAMINED: usize = 64;
const MAX_PEER_LOOKUPS: usize = 4096;
/// The population's pace of new computers follows the last weeks: its
/// counts halve every week.
const POPULATION_HALF_LIFE_H: f64 = 168.0;

/// `UserHabits::recent` entry bit: a rarely used computer.
const RARE: u8 = 1;

/// One logon as the habits need it.
pub struct Logon {
    pub time: i64,
    pub user: usize,
    pub computer: usize,
    /// The user's first logon to the computer, and how many users it had before.
    pub new_device: bool,
    pub host_users_before: u32,
    pub user_first_seen: i64,
    /// The user's previous logon (`None` for their first), and the
    /// computers they knew before this one.
    pub user_last_seen: Option<i64>,
    pub known_before: u32,
    /// The user's logins before this one, ever and within the last hour.
    pub user_logins_before: u32,
    pub user_logins_1h_before: u32,
}

#[derive(Default, Serialize, Deserialize)]
pub struct Habits {
    users: Vec<UserHabits>,
    population: Population,
    /// Per user, their computers in first-use order; per computer, its
    /// users. Rebuilt from the device history when a state is read.
    #[serde(skip)]
    computers_of: Vec<Vec<u32>>,
    #[serde(skip)]
    users_of: Vec<Vec<u32>>,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct UserHabits {
    /// Discoveries after the user's first day within the last three days,
    /// oldest first: time and bits.
    recent: VecDeque<(i64, u8)>,
    /// Index in `recent` of the first discovery of the last 24 hours.
    day_start: usize,
    rare_24h: u32,
    rare_72h: u32,
    /// The population's logins before the user's first.
    population_logins_at_first: u64,
    /// Discoveries after the user's first day, ever (all, rare).
    later: u32,
    later_rare: u32,
    /// When an entry next leaves a window.
    due: i64,
}

#[derive(Default, Serialize, Deserialize)]
struct Population {
    /// Clock hour (since the epoch) the counts were last decayed at.
    hour: i64,
    /// Days each user past their first day knew each of their computers,
    /// summed (decayed), and their discoveries in that time (all, rare).
    known_days: f64,
    discoveries: f64,
    rare_discoveries: f64,
    logins_by_hour: [u64; 24],
    logins: u64,
    /// Logins per minute of the last hour (a ring by minute since the
    /// epoch), their sum, and the minute last counted.
    by_minute: Vec<u32>,
    last_hour: u64,
    minute: i64,
}

impl Habits {
    /// Grows the tables for ids `user` and `computer`.
    #[inline]
    fn make_room(&mut self, user: usize, computer: usize) {
        // Each grows on its own: after a state is read, `users` has its
        // length and the pairs are rebuilt from nothing.
        if user >= self.users.len() {
            self.users.resize_with(user + 1, UserHabits::default);
        }
        if user >= self.computers_of.len() {
            self.computers_of.resize_with(user + 1, Vec::new);
        }
        if computer >= self.users_of.len() {
            self.users_of.resize_with(computer + 1, Vec::new);
        }
    }

    /// Counts `logon` and writes what the history says of it into the
    /// version-3 fields of `f`. For a new device, call [`Habits::peers`]
    /// first: it asks about the users before.
    #[inline]
    pub fn observe(&mut self, logon: &Logon, f: &mut Features) {
        let (u, c, time) = (logon.user, logon.computer, logon.time);
        self.make_room(u, c);
        let population = &mut self.population;
        population.decay_to(time);
        let logins_1h_before = population.advance_minute(time);
        let logins_before = population.logins;
        let hour = (time.rem_euclid(DAY) / HOUR) as usize;
        population.logins_by_hour[hour] += 1;
        population.logins += 1;
        let first_day_end = logon.user_first_seen + DAY;
        if let Some(last) = logon.user_last_seen {
            let from = last.max(first_day_end);
            if time > from {
                population.known_days +=
                    f64::from(logon.known_before) * (time - from) as f64 / DAY as f64;
            }
        }

        let user = &mut self.users[u];
        user.expire(time);
        if logon.user_last_seen.is_none() {
            user.population_logins_at_first = logins_before;
        }
        // The user's share of the others' logins since they were first
        // seen, applied to the others' last hour (their own burst must not
        // raise the measure of it).
        let paced = match logon.user_last_seen {
            Some(_) => {
                let since_first = logins_before.saturating_sub(user.population_logins_at_first);
                let others_since = since_first.saturating_sub(u64::from(logon.user_logins_before));
                let others_1h =
                    logins_1h_before.saturating_sub(u64::from(logon.user_logins_1h_before));
                (f64::from(logon.user_logins_before) * others_1h as f64
                    / others_since.max(1) as f64)
                    .round()
                    .min(f64::from(u32::MAX)) as u32
            }
            None => 0,
        };
        // Discoveries on the user's first day are what they already had
        // (after a first start, every computer): the windows and the
        // history count the ones after it.
        if logon.new_device && time >= first_day_end {
            let rare = (1..=RARE_MAX_USERS).contains(&logon.host_users_before);
            user.recent.push_back((time, u8::from(rare) * RARE));
            user.rare_24h += u32::from(rare);
            user.rare_72h += u32::from(rare);
            user.later += 1;
            user.later_rare += u32::from(rare);
            population.discoveries += 1.0;
            population.rare_discoveries += f64::from(u32::from(rare));
            if user.recent.len() > MAX_RECENT {
                user.drop_oldest();
            }
            user.due = user.due.min(time + DAY);
        }
        if logon.new_device {
            self.computers_of[u].push(c as u32);
            self.users_of[c].push(u as u32);
        }

        let history_s = time - first_day_end - RECENT_S;
        let (history_new, history_rare) = if history_s > 0 {
            (
                user.later.saturating_sub(user.recent.len() as u32),
                user.later_rare.saturating_sub(user.rare_72h),
            )
        } else {
            (0, 0)
        };
        f.user_new_computers_72h = user.recent.len() as u32;
        f.user_rare_new_computers_24h = user.rare_24h;
        f.user_rare_new_computers_72h = user.rare_72h;
        f.user_history_s = history_s.clamp(0, i64::from(u32::MAX)) as u32;
        f.user_history_new_computers = history_new;
        f.user_history_rare_new_computers = history_rare;
        f.population_new_per_known_ppm = population.new_per_known_ppm();
        f.population_rare_share_ppm = ppm(population.rare_discoveries, population.discoveries);
        let logins = population.logins as f64;
        f.population_hour_share_ppm = ppm(population.logins_by_hour[hour] as f64, logins);
        f.population_previous_hour_share_ppm =
            ppm(population.logins_by_hour[(hour + 23) % 24] as f64, logins);
        f.user_paced_logins_1h = paced;
    }

    /// Of the users of `computer` so far, how many share a computer with
    /// `user` (one that at most [`SHARED_MIN_USERS`] use, as
    /// `users_of_computer` says), and how many were asked (the most recent
    /// [`MAX_PEERS_EXAMINED`]). `has_device(v, k)` says whether user `v`
    /// has used computer `k`. Nothing for a computer shared by many.
    pub fn peers(
        &self,
        user: usize,
        computer: usize,
        users_of_computer: impl Fn(u32) -> u32,
        has_device: impl Fn(u32, u32) -> bool,
    ) -> (u32, u32) {
        let Some(others) = self.users_of.get(computer) else {
            return (0, 0);
        };
        if others.len() > SHARED_MIN_USERS as usize {
            return (0, 0);
        }
        let no_computers = Vec::new();
        let mine = self.computers_of.get(user).unwrap_or(&no_computers);
        let (mut peers, mut examined, mut lookups) = (0, 0, 0);
        for &other in others.iter().rev().take(MAX_PEERS_EXAMINED) {
            examined += 1;
            let theirs = &self.computers_of[other as usize];
            // Walk the shorter list, ask the other side's device history.
            let (walk, ask) = if mine.len() <= theirs.len() {
                (mine, other)
            } else {
                (theirs, user as u32)
            };
            for &k in walk {
                if lookups >= MAX_PEER_LOOKUPS {
                    return (peers, examined);
                }
                if users_of_computer(k) > SHARED_MIN_USERS {
                    continue;
                }
                lookups += 1;
                if has_device(ask, k) {
                    peers += 1;
                    break;
                }
            }
        }
        (peers, examined)
    }

    /// Rebuilds who-used-what from the device history's `(user, computer)`
    /// pairs in first-use order (after a state was read, split or merged).
    pub fn rebuild_pairs(&mut self, pairs: impl Iterator<Item = (u32, u32)>) {
        self.computers_of.iter_mut().for_each(Vec::clear);
        self.users_of.iter_mut().for_each(Vec::clear);
        for (user, computer) in pairs {
            self.make_room(user as usize, computer as usize);
            self.computers_of[user as usize].push(computer);
            self.users_of[computer as usize].push(user);
        }
    }

    /// Forgets the users `cleared` says (their history; their pairs go with
    /// the next [`Habits::rebuild_pairs`]).
    pub fn clear_users(&mut self, cleared: impl Fn(usize) -> bool) {
        for (id, user) in self.users.iter_mut().enumerate() {
            if cleared(id) {
                *user = UserHabits::default();
            }
        }
    }

    /// Moves user `source` of `from` to `target` here.
    pub fn take_user(&mut self, from: &mut Habits, source: usize, target: usize) {
        let Some(state) = from.users.get_mut(source) else {
            return;
        };
        let state = std::mem::take(state);
        self.make_room(target, 0);
        self.users[target] = state;
    }

    /// A history for a state read from an older snapshot, which kept none:
    /// each user's discoveries after their first day, not split by kind.
    pub fn from_counts(later: impl Iterator<Item = u32>) -> Habits {
        Habits {
            users: later
                .map(|later| UserHabits {
                    later,
                    ..UserHabits::default()
                })
                .collect(),
            ..Habits::default()
        }
    }

    /// Heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let lists = |lists: &Vec<Vec<u32>>| {
            lists.capacity() * size_of::<Vec<u32>>()
                + lists.iter().map(|l| l.capacity() * 4).sum::<usize>()
        };
        self.users.capacity() * size_of::<UserHabits>()
            + self
                .users
                .iter()
                .map(|u| u.recent.capacity() * size_of::<(i64, u8)>())
                .sum::<usize>()
            + lists(&self.computers_of)
            + lists(&self.users_of)
    }
}

impl UserHabits {
    /// Lets discoveries older than 24h and 72h leave their windows.
    #[inline]
    fn expire(&mut self, now: i64) {
        if now < self.due {
            return;
        }
        while let Some(&(time, bits)) = self.recent.get(self.day_start)
            && time <= now - DAY
        {
            self.rare_24h -= u32::from(bits & RARE != 0);
            self.day_start += 1;
        }
        while let Some(&(time, _)) = self.recent.front()
            && time <= now - RECENT_S
        {
            self.drop_oldest();
        }
        self.due = self
            .recent
            .get(self.day_start)
            .map_or(i64::MAX, |&(t, _)| t + DAY)
            .min(self.recent.front().map_or(i64::MAX, |&(t, _)| t + RECENT_S));
    }

    fn drop_oldest(&mut self) {
        let Some((_, bits)) = self.recent.pop_front() else {
            return;
        };
        let rare = u32::from(bits & RARE != 0);
        if self.day_start == 0 {
            self.rare_24h -= rare;
        } else {
            self.day_start -= 1;
        }
        self.rare_72h -= rare;
    }
}

impl Population {
    #[inline]
    fn decay_to(&mut self, time: i64) {
        let hour = time.div_euclid(HOUR);
        if hour <= self.hour {
            return;
        }
        let hours = (hour - self.hour).min(24 * 365) as f64;
        let keep = (-hours * std::f64::consts::LN_2 / POPULATION_HALF_LIFE_H).exp();
        self.known_days *= keep;
        self.discoveries *= keep;
        self.rare_discoveries *= keep;
        self.hour = hour;
    }

    /// Moves the last hour's ring to the minute of `time` and counts a
    /// login in it; returns the logins of the last hour before this one.
    #[inline]
    fn advance_minute(&mut self, time: i64) -> u64 {
        let minute = time.div_euclid(60);
        if self.by_minute.len() != 60 {
            self.by_minute = vec![0; 60];
            self.last_hour = 0;
        }
        if minute > self.minute {
            let gone = (minute - self.minute).min(60);
            for m in 1..=gone {
                let slot = &mut self.by_minute[(self.minute + m).rem_euclid(60) as usize];
                self.last_hour -= u64::from(*slot);
                *slot = 0;
            }
            self.minute = minute;
        }
        let before = self.last_hour;
        self.by_minute[minute.rem_euclid(60) as usize] += 1;
        self.last_hour += 1;
        before
    }

    fn new_per_known_ppm(&self) -> u32 {
        // Under a day's worth of one user's computers says nothing yet.
        if self.known_days < 1.0 {
            return 0;
        }
        ppm(self.discoveries, self.known_days)
    }
}

/// `part / whole` in millionths (0 when `whole` is 0).
fn ppm(part: f64, whole: f64) -> u32 {
    if whole <= 0.0 {
        return 0;
    }
    (part / whole * 1e6).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(h: &mut Habits, logon: Logon) -> Features {
        let mut f = Features::default();
        h.observe(&logon, &mut f);
        f
    }

    fn logon(time: i64, new_device: bool, host_users_before: u32) -> Logon {
        Logon {
            time,
            user: 0,
            computer: 1,
            new_device,
            host_users_before,
            user_first_seen: 0,
            user_last_seen: Some(time - 6 * HOUR),
            known_before: 10,
            user_logins_before: 5,
            user_logins_1h_before: 1,
        }
    }

    #[test]
    fn discoveries_fill_the_windows_and_the_history_by_kind() {
        let mut h = Habits::default();
        // First day: a discovery that is not "later".
        observe(&mut h, logon(HOUR, true, 1));
        // Day 2 and day 6: later discoveries, one rare.
        observe(&mut h, logon(DAY + HOUR, true, 1));
        observe(&mut h, logon(DAY + 2 * HOUR, true, 7));
        let f = observe(&mut h, logon(6 * DAY, true, 0));
        // The first day's discovery is in no window and no history.
        assert_eq!(f.user_new_computers_72h, 1);
        assert_eq!(f.user_rare_new_computers_72h, 0);
        // History: from day 1 to day 3; the two of day 2 in it.
        assert_eq!(f.user_history_s as i64, 6 * DAY - DAY - RECENT_S);
        assert_eq!(
            (
                f.user_history_new_computers,
                f.user_history_rare_new_computers
            ),
            (2, 1)
        );
        let f = observe(&mut h, logon(6 * DAY + HOUR, true, 2));
        assert_eq!(
            (f.user_new_computers_72h, f.user_rare_new_computers_24h),
            (2, 1)
        );
        // A day on, the rare one left the day but not the three days.
        let f = observe(&mut h, logon(7 * DAY + 2 * HOUR, false, 3));
        assert_eq!(
            (
                f.user_new_computers_72h,
                f.user_rare_new_computers_24h,
                f.user_rare_new_computers_72h
            ),
            (2, 0, 1)
        );
        let f = observe(&mut h, logon(10 * DAY, false, 3));
        assert_eq!(f.user_new_computers_72h, 0);
        assert_eq!(f.user_history_new_computers, 4);
        assert_eq!(f.user_history_rare_new_computers, 2);
        assert!(f.population_new_per_known_ppm > 0);
        // Two of four later discoveries rare (weighed by age: a week halves).
        assert!((499_000..501_000).contains(&f.population_rare_share_ppm));
        // Two of the seven logins at this hour of day.
        assert_eq!(f.population_hour_share_ppm, 285_714);
    }

    #[test]
    fn peers_are_earlier_users_who_share_a_computer_with_the_user() {
        let mut h = Habits::default();
        // User 0 and user 1 share computer 10; user 2 uses computer 11 only.
        h.rebuild_pairs([(0, 10), (1, 10), (1, 20), (2, 11), (2, 20)].into_iter());
        let pairs = [(0u32, 10u32), (1, 10), (1, 20), (2, 11), (2, 20)];
        let has = |v: u32, k: u32| pairs.contains(&(v, k));
        let few = |_: u32| 2;
        // Computer 20: users 1 (a peer) and 2 (not).
        assert_eq!(h.peers(0, 20, few, has), (1, 2));
        // Computer 10: user 1 shares computer 20 with user 2, unless many
        // use computer 20 (a shared computer makes no peers).
        assert_eq!(h.peers(2, 10, few, has), (1, 2));
        assert_eq!(
            h.peers(2, 10, |k| if k == 20 { 50 } else { 2 }, has),
            (0, 2)
        );
    }
}
