//! Engine state and feature computation: per-user sliding windows (1h, 24h),
//! device history (every computer each user has used, with first-seen time) and
//! host popularity (distinct users per computer, ever and per UTC day).
//!
//! Events must arrive in event-time order (the [`Orderer`](crate::order::Orderer)
//! guarantees it). Per event the work is one hash lookup (the user/computer pair)
//! plus amortised O(1) window upkeep; nothing allocates once the windows and maps
//! have grown to their working size.

use std::collections::VecDeque;

use authpulse_rules_sdk::{
    FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER, FLAG_NEW_USER, Features, NO_PREVIOUS_LOGIN,
};
use rustc_hash::FxHashMap;

use crate::event::NameId;

/// Seconds in an hour and a day: the window lengths.
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

/// One (user, computer) pair: an entry of the user's device history.
#[derive(Clone, Copy, Debug)]
struct Device {
    first_seen: i64,
    last_seen: i64,
    /// User-local sequence numbers of the pair's first and latest event: a window
    /// entry with the same sequence number is that first / latest occurrence.
    first_seq: u32,
    last_seq: u32,
    /// UTC day of the latest event, for per-day host popularity.
    last_day: i64,
}

/// One of a user's events inside their 24h window.
#[derive(Clone, Copy, Debug)]
struct WindowEntry {
    time: i64,
    device: u32,
    seq: u32,
}

#[derive(Default)]
struct UserState {
    first_seen: i64,
    last_seen: Option<i64>,
    next_seq: u32,
    /// Events of the last 24h, oldest first; `window[hour_start..]` is the last hour.
    window: VecDeque<WindowEntry>,
    hour_start: usize,
    distinct_1h: u32,
    distinct_24h: u32,
    new_1h: u32,
    new_24h: u32,
    known_computers: u32,
}

#[derive(Default, Clone, Copy)]
struct HostState {
    users_ever: u32,
    day: i64,
    users_today: u32,
}

/// All state the features are computed from.
#[derive(Default)]
pub struct EngineState {
    users: Vec<UserState>,
    hosts: Vec<HostState>,
    devices: Vec<Device>,
    device_index: FxHashMap<u64, u32>,
}

impl EngineState {
    /// Number of distinct (user, computer) pairs seen.
    pub fn device_pairs(&self) -> usize {
        self.devices.len()
    }

    /// When `user` first used `computer`, if ever.
    pub fn first_seen(&self, user: NameId, computer: NameId) -> Option<i64> {
        let key = (u64::from(user) << 32) | u64::from(computer);
        self.device_index
            .get(&key)
            .map(|&id| self.devices[id as usize].first_seen)
    }

    /// Updates the state with one event and returns its features.
    #[inline]
    pub fn observe(&mut self, time: i64, user: NameId, computer: NameId) -> Features {
        let (u, c) = (user as usize, computer as usize);
        if u >= self.users.len() {
            self.users.resize_with(u + 1, UserState::default);
        }
        if c >= self.hosts.len() {
            self.hosts.resize(c + 1, HostState::default());
        }
        let devices = &mut self.devices;
        let user_state = &mut self.users[u];
        let mut flags = 0;
        if user_state.last_seen.is_none() {
            user_state.first_seen = time;
            flags |= FLAG_NEW_USER;
        }
        expire(user_state, devices, time);

        let host = &mut self.hosts[c];
        let seq = user_state.next_seq;
        let key = (u64::from(user) << 32) | u64::from(computer);
        let device_id = *self.device_index.entry(key).or_insert_with(|| {
            let id = u32::try_from(devices.len()).expect("fewer than 2^32 user/computer pairs");
            devices.push(Device {
                first_seen: time,
                last_seen: i64::MIN,
                first_seq: seq,
                last_seq: seq,
                last_day: i64::MIN,
            });
            flags |= FLAG_NEW_DEVICE_FOR_USER;
            if host.users_ever == 0 {
                flags |= FLAG_NEW_COMPUTER;
            }
            host.users_ever += 1;
            user_state.known_computers += 1;
            user_state.new_1h += 1;
            user_state.new_24h += 1;
            id
        });
        let device = &mut devices[device_id as usize];
        // A pair enters a window when its latest occurrence had left it.
        if device.last_seen <= time - HOUR {
            user_state.distinct_1h += 1;
        }
        if device.last_seen <= time - DAY {
            user_state.distinct_24h += 1;
        }
        device.last_seen = time;
        device.last_seq = seq;
        let day = time.div_euclid(DAY);
        if host.day != day {
            host.day = day;
            host.users_today = 0;
        }
        if device.last_day != day {
            device.last_day = day;
            host.users_today += 1;
        }

        user_state.window.push_back(WindowEntry {
            time,
            device: device_id,
            seq,
        });
        user_state.next_seq = seq.wrapping_add(1);
        let gap = user_state
            .last_seen
            .map_or(NO_PREVIOUS_LOGIN, |prev| saturate(time - prev));
        user_state.last_seen = Some(time);

        Features {
            event_time: time,
            user,
            computer,
            user_logins_1h: (user_state.window.len() - user_state.hour_start) as u32,
            user_logins_24h: user_state.window.len() as u32,
            user_distinct_computers_1h: user_state.distinct_1h,
            user_distinct_computers_24h: user_state.distinct_24h,
            user_new_computers_1h: user_state.new_1h,
            user_new_computers_24h: user_state.new_24h,
            user_known_computers: user_state.known_computers,
            user_tenure_s: saturate(time - user_state.first_seen),
            user_gap_s: gap,
            host_users_ever: host.users_ever,
            host_users_today: host.users_today,
            flags,
        }
    }
}

/// Slides the user's windows to end at `now`: entries at or before `now - 1h`
/// leave the hour, entries at or before `now - 24h` leave the day.
#[inline]
fn expire(user: &mut UserState, devices: &[Device], now: i64) {
    while let Some(&entry) = user.window.get(user.hour_start)
        && entry.time <= now - HOUR
    {
        leave(entry, devices, &mut user.distinct_1h, &mut user.new_1h);
        user.hour_start += 1;
    }
    while let Some(&entry) = user.window.front()
        && entry.time <= now - DAY
    {
        leave(entry, devices, &mut user.distinct_24h, &mut user.new_24h);
        user.window.pop_front();
        user.hour_start -= 1;
    }
}

/// Accounts for `entry` leaving a window: the pair leaves the window's distinct
/// computers if this was its latest occurrence, and its new computers if this
/// was its first occurrence ever.
#[inline]
fn leave(entry: WindowEntry, devices: &[Device], distinct: &mut u32, new: &mut u32) {
    let device = &devices[entry.device as usize];
    if device.last_seq == entry.seq {
        *distinct -= 1;
    }
    if device.first_seq == entry.seq {
        *new -= 1;
    }
}

#[inline]
fn saturate(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_count_logins_distinct_and_new_computers() {
        let mut s = EngineState::default();
        let f = s.observe(0, 0, 0);
        assert_eq!(
            f.flags,
            FLAG_NEW_USER | FLAG_NEW_DEVICE_FOR_USER | FLAG_NEW_COMPUTER
        );
        assert_eq!(
            (
                f.user_logins_1h,
                f.user_distinct_computers_1h,
                f.user_new_computers_1h
            ),
            (1, 1, 1)
        );
        let f = s.observe(10, 0, 0);
        assert_eq!(f.flags, 0);
        assert_eq!(
            (f.user_logins_1h, f.user_distinct_computers_1h, f.user_gap_s),
            (2, 1, 10)
        );
        let f = s.observe(20, 0, 1);
        assert_eq!(
            (
                f.user_distinct_computers_1h,
                f.user_new_computers_1h,
                f.user_known_computers
            ),
            (2, 2, 2)
        );
        // One hour after t=10: events at 0 and 10 left the hour, computer 0 with them.
        let f = s.observe(3_610, 0, 1);
        assert_eq!((f.user_logins_1h, f.user_logins_24h), (2, 4));
        assert_eq!(
            (f.user_distinct_computers_1h, f.user_distinct_computers_24h),
            (1, 2)
        );
        assert_eq!((f.user_new_computers_1h, f.user_new_computers_24h), (1, 2));
        assert_eq!(f.user_tenure_s, 3_610);
        // A day later everything but the newest left the day.
        let f = s.observe(3_610 + DAY, 0, 0);
        assert_eq!(
            (
                f.user_logins_24h,
                f.user_distinct_computers_24h,
                f.user_new_computers_24h
            ),
            (1, 1, 0)
        );
        assert_eq!(
            f.flags & FLAG_NEW_DEVICE_FOR_USER,
            0,
            "computer 0 is in the history forever"
        );
        assert_eq!((s.first_seen(0, 1), s.first_seen(1, 0)), (Some(20), None));
    }

    #[test]
    fn host_popularity_ever_and_today() {
        let mut s = EngineState::default();
        assert_eq!(s.observe(0, 0, 7).host_users_ever, 1);
        let f = s.observe(5, 1, 7);
        assert_eq!(
            (
                f.host_users_ever,
                f.host_users_today,
                f.flags & FLAG_NEW_COMPUTER
            ),
            (2, 2, 0)
        );
        assert_eq!(s.observe(6, 1, 7).host_users_today, 2);
        let next_day = s.observe(DAY + 1, 1, 7);
        assert_eq!(
            (next_day.host_users_ever, next_day.host_users_today),
            (2, 1)
        );
    }

    /// The incremental windows agree with counting from scratch.
    fn brute_force(
        history: &[(i64, u32, u32)],
        now: i64,
        user: u32,
    ) -> (u32, u32, u32, u32, u32, u32) {
        let mine: Vec<_> = history.iter().filter(|e| e.1 == user).collect();
        let first_use = |c: u32| mine.iter().find(|e| e.2 == c).map(|e| e.0).unwrap();
        let within = |w: i64| mine.iter().filter(move |e| e.0 > now - w);
        let distinct = |w: i64| {
            let mut cs: Vec<u32> = within(w).map(|e| e.2).collect();
            cs.sort();
            cs.dedup();
            cs
        };
        let new_in = |w: i64| {
            distinct(w)
                .into_iter()
                .filter(|&c| first_use(c) > now - w)
                .count() as u32
        };
        (
            within(HOUR).count() as u32,
            within(DAY).count() as u32,
            distinct(HOUR).len() as u32,
            distinct(DAY).len() as u32,
            new_in(HOUR),
            new_in(DAY),
        )
    }

    proptest! {
        #[test]
        fn incremental_windows_match_brute_force(steps in prop::collection::vec((0i64..5_000, 0u32..3, 0u32..6), 1..200)) {
            let mut s = EngineState::default();
            let mut history = Vec::new();
            let mut t = 0;
            for (dt, user, computer) in steps {
                t += dt;
                let f = s.observe(t, user, computer);
                history.push((t, user, computer));
                let expected = brute_force(&history, t, user);
                prop_assert_eq!(
                    (f.user_logins_1h, f.user_logins_24h, f.user_distinct_computers_1h,
                     f.user_distinct_computers_24h, f.user_new_computers_1h, f.user_new_computers_24h),
                    expected
                );
            }
        }
    }
}
