//! Engine state and feature computation: per-user sliding windows (1h, 24h),
//! device history (every computer each user has used, with first-seen time),
//! host popularity (distinct users per computer, ever, per UTC day and per
//! clock hour; users new to it in the last hour and day), and each entity's
//! own baselines: a user's busiest hour, their logins by hour of day and
//! their usual rate of new computers; a computer's busiest hour and its usual
//! rate of new users.
//!
//! Events must arrive in event-time order (the [`Orderer`](crate::order::Orderer)
//! guarantees it). Per event the work is one hash lookup (the user/computer pair)
//! plus amortised O(1) window upkeep; nothing allocates once the windows and maps
//! have grown to their working size.
//!
//! **Baseline periods.** An entity's first day shows most of what it already
//! had (after a first start every computer a user touches is new to the
//! pipeline), and the last 24 hours are what a rule is judging. So the usual
//! rate of new computers (of new users, for a computer) is counted between
//! the two: from the end of its first day to the start of the last 24 hours.
//! Discoveries after the first day are counted (`later`); those of the
//! baseline period are `later` less the ones still in the 24h window.
//!
//! Beside it: `window` (a user's last 24 hours of events, compact, and how
//! they go into a snapshot), `upkeep` (sliding the windows as event time
//! moves on), `logons` (what richer records add: logon types, failures,
//! sources), `handoff` (moving users' state between the parts of a
//! sharded stream) and `shared_hosts` (what the other workers of a fleet
//! add to each computer's popularity).

use std::collections::VecDeque;

use authpulse_rules_sdk::{
    FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER, FLAG_NEW_USER, Features, NO_PREVIOUS_LOGIN,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::NameId;
use crate::habits::{Habits, Logon};

mod handoff;
mod logons;
mod shared_hosts;
mod upkeep;
mod window;

use shared_hosts::SharedHosts;
pub use shared_hosts::{HostCounts, HostShare};

use upkeep::{expire, expire_host, trim_oldest};
use window::Window;
pub(crate) use window::{Layout as WindowLayout, in_layout as in_window_layout};

pub(crate) use logons::Logons;

/// Seconds in an hour and a day: the window lengths.
pub use crate::event::{DAY, HOUR};

/// One (user, computer) pair: an entry of the user's device history.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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

#[derive(Default, Serialize, Deserialize)]
struct UserState {
    first_seen: i64,
    /// Time of the latest event (meaningful once `logins` > 0).
    last_seen: i64,
    next_seq: u32,
    /// Events of the last 24h, oldest first; `window[hour_start..]` is the last hour.
    window: Window,
    hour_start: usize,
    /// The event time at which an entry next leaves a window: until then
    /// the windows are not touched (they live in memory of their own, and
    /// looking costs a cache miss per event).
    due: i64,
    distinct_1h: u32,
    distinct_24h: u32,
    new_1h: u32,
    new_24h: u32,
    known_computers: u32,
    /// Computers first used after the user's first day.
    later_computers: u32,
    busiest: BusiestHour,
    logins: u32,
}

/// Activity in the current clock hour and in the busiest one before it.
#[derive(Default, Clone, Copy, Serialize, Deserialize)]
struct BusiestHour {
    /// Hours since the epoch.
    hour: i64,
    current: u32,
    peak: u32,
}

impl BusiestHour {
    /// Moves to the clock hour of `time`, closing the previous one.
    #[inline]
    fn at(&mut self, time: i64) {
        let hour = time.div_euclid(HOUR);
        if hour != self.hour {
            self.peak = self.peak.max(self.current);
            self.hour = hour;
            self.current = 0;
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct HostState {
    users_ever: u32,
    day: i64,
    users_today: u32,
    first_seen: i64,
    /// As for users: when an entry next leaves one of the windows.
    due: i64,
    /// When each user first logged on to it, within the last 24h; the last
    /// hour's are `firsts[firsts_hour_start..]`.
    firsts: VecDeque<i64>,
    firsts_hour_start: usize,
    /// Users new to it after its first day.
    later_users: u32,
    /// Distinct users per clock hour.
    busiest: BusiestHour,
}

/// Bytes of a hashbrown table holding `capacity` entries of `entry` bytes:
/// buckets (a power of two, at most 7/8 full) of the entry plus a control byte.
pub(crate) fn hash_table_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two();
    buckets * (entry + 1)
}

/// A user's state in brief, for the operations API.
#[derive(Clone, Debug, Serialize)]
pub struct UserProfile {
    /// Unix seconds.
    pub first_seen: i64,
    pub last_seen: i64,
    pub logins: u32,
    /// Computers the user has ever used.
    pub known_computers: u32,
    /// Of them, those first used after the user's first day.
    pub later_computers: u32,
    pub events_1h: u32,
    pub events_24h: u32,
    pub distinct_computers_1h: u32,
    pub distinct_computers_24h: u32,
    pub new_computers_1h: u32,
    pub new_computers_24h: u32,
    /// Most logins in one clock hour so far.
    pub busiest_hour_logins: u32,
    /// Logins per hour of day (UTC).
    pub logins_by_hour: [u32; 24],
}

/// All state the features are computed from. Serialised whole into state
/// snapshots (`crate::snapshot`).
#[derive(Default, Serialize, Deserialize)]
pub struct EngineState {
    users: Vec<UserState>,
    /// Per user, logins per hour of day (UTC): apart from `users`, whose
    /// fields every event reads, as an event reads one of these 24 only.
    logins_by_hour: Vec<[u32; 24]>,
    hosts: Vec<HostState>,
    devices: Vec<Device>,
    device_index: FxHashMap<u64, u32>,
    /// The longer history (snapshot format 4 keeps it after the body).
    #[serde(skip)]
    pub(crate) habits: Habits,
    /// What richer records add (snapshot formats 5 and 6 keep it last).
    #[serde(skip)]
    pub(crate) logons: Logons,
    /// The pipeline's bound on a user's window (not part of a snapshot).
    #[serde(skip)]
    max_window: MaxWindow,
    /// Entries that left a window early for it, since last taken.
    #[serde(skip)]
    trimmed: u64,
    /// In a fleet: what the shards other workers hold add to each computer
    /// (not part of a snapshot: published and read at each checkpoint).
    #[serde(skip)]
    shared: SharedHosts,
}

/// [`crate::limits::StateLimits::max_window_events`], its default until the
/// pipeline sets it.
#[derive(Clone, Copy)]
struct MaxWindow(usize);

impl Default for MaxWindow {
    fn default() -> Self {
        MaxWindow(crate::limits::StateLimits::default().max_window_events)
    }
}

impl EngineState {
    /// Bounds each user's window to `max` events.
    pub fn set_max_window_events(&mut self, max: usize) {
        self.max_window = MaxWindow(max.max(1));
    }

    /// Window entries that left early since the last call.
    pub fn take_window_trims(&mut self) -> u64 {
        std::mem::take(&mut self.trimmed)
    }

    /// Number of distinct (user, computer) pairs seen.
    pub fn device_pairs(&self) -> usize {
        self.devices.len()
    }

    /// What the state says of `user` as of the user's latest event (the
    /// windows move on only with the user's own events).
    pub fn user_profile(&self, user: NameId) -> Option<UserProfile> {
        let u = self.users.get(user as usize).filter(|u| u.logins > 0)?;
        Some(UserProfile {
            first_seen: u.first_seen,
            last_seen: u.last_seen,
            logins: u.logins,
            known_computers: u.known_computers,
            later_computers: u.later_computers,
            events_1h: (u.window.len() - u.hour_start) as u32,
            events_24h: u.window.len() as u32,
            distinct_computers_1h: u.distinct_1h,
            distinct_computers_24h: u.distinct_24h,
            new_computers_1h: u.new_1h,
            new_computers_24h: u.new_24h,
            busiest_hour_logins: u.busiest.peak.max(u.busiest.current),
            logins_by_hour: self.logins_by_hour[user as usize],
        })
    }

    /// Whether `user` has state (an event scored).
    pub fn has_user(&self, user: NameId) -> bool {
        self.users.get(user as usize).is_some_and(|u| u.logins > 0)
    }

    /// Heap memory the state holds, in bytes (allocated capacity, the hash
    /// index estimated from its capacity at hashbrown's 7/8 load).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let windows: usize = self.users.iter().map(|u| u.window.heap_bytes()).sum();
        let firsts: usize = self
            .hosts
            .iter()
            .map(|h| h.firsts.capacity() * size_of::<i64>())
            .sum();
        self.users.capacity() * size_of::<UserState>()
            + windows
            + self.logins_by_hour.capacity() * size_of::<[u32; 24]>()
            + self.hosts.capacity() * size_of::<HostState>()
            + firsts
            + self.devices.capacity() * size_of::<Device>()
            + hash_table_bytes(self.device_index.capacity(), size_of::<(u64, u32)>())
            + self.habits.heap_bytes()
            + self.logons.heap_bytes()
    }

    /// When `user` first used `computer`, if ever.
    pub fn first_seen(&self, user: NameId, computer: NameId) -> Option<i64> {
        let key = (u64::from(user) << 32) | u64::from(computer);
        self.device_index
            .get(&key)
            .map(|&id| self.devices[id as usize].first_seen)
    }

    /// Grows the per-user and per-computer tables to hold ids `user` and
    /// `computer`.
    #[inline]
    fn make_room(&mut self, user: usize, computer: usize) {
        if user >= self.users.len() {
            self.users.resize_with(user + 1, UserState::default);
            self.logins_by_hour.resize(user + 1, [0; 24]);
        }
        if computer >= self.hosts.len() {
            self.hosts.resize_with(computer + 1, HostState::default);
        }
    }

    /// Updates the state with one event, with what a richer record says
    /// ([`crate::logon::Detail`]), and returns its features. A failed logon
    /// changes none of the user's windows, device history or the computer's
    /// popularity (the user did not log on); it counts among the failures.
    #[inline]
    pub fn observe_event(&mut self, event: &crate::event::Event) -> Features {
        if event.detail.is_empty() {
            return self.observe(event.event_time, event.user, event.computer);
        }
        self.observe_detailed(event)
    }

    /// [`EngineState::observe_event`] for an event with detail: apart, so
    /// that the plain path keeps `observe` inlined.
    #[inline(never)]
    fn observe_detailed(&mut self, event: &crate::event::Event) -> Features {
        let detail = &event.detail;
        let mut features = if detail.is_failure() {
            self.failed(event.event_time, event.user, event.computer)
        } else {
            self.observe(event.event_time, event.user, event.computer)
        };
        self.logons.observe(
            event.event_time,
            event.user,
            event.computer,
            detail,
            &mut features,
        );
        features
    }

    /// The features of a failed logon: who, where and when, and what the
    /// state knows of both, unchanged.
    #[cold]
    fn failed(&self, time: i64, user: NameId, computer: NameId) -> Features {
        let user_state = self.users.get(user as usize).filter(|u| u.logins > 0);
        let host = self
            .hosts
            .get(computer as usize)
            .filter(|h| h.users_ever > 0);
        Features {
            event_time: time,
            user,
            computer,
            user_known_computers: user_state.map_or(0, |u| u.known_computers),
            user_tenure_s: user_state.map_or(0, |u| saturate(time - u.first_seen)),
            user_logins_before: user_state.map_or(0, |u| u.logins),
            host_users_ever: host.map_or(0, |h| h.users_ever)
                + self.shared.added_at(computer as usize, time).users_ever,
            host_tenure_s: host.map_or(0, |h| saturate(time - h.first_seen)),
            ..Features::default()
        }
    }

    /// Updates the state with one event and returns its features.
    #[inline]
    pub fn observe(&mut self, time: i64, user: NameId, computer: NameId) -> Features {
        let (u, c) = (user as usize, computer as usize);
        self.make_room(u, c);
        let devices = &mut self.devices;
        let user_state = &mut self.users[u];
        let host = &mut self.hosts[c];
        let mut flags = 0;
        if user_state.logins == 0 {
            user_state.first_seen = time;
            flags |= FLAG_NEW_USER;
        }
        if host.users_ever == 0 {
            host.first_seen = time;
        }
        expire(user_state, devices, time);
        expire_host(host, time);
        let user_last_seen = (user_state.logins > 0).then_some(user_state.last_seen);
        let known_before = user_state.known_computers;
        let host_users_before = host.users_ever;

        // In a fleet, the other workers' users of the computer; its first
        // use is the earliest any shard saw.
        let shared = if self.shared.is_empty() {
            shared_hosts::Added::default()
        } else {
            self.shared.added_at(c, time)
        };
        let host_first_seen = shared
            .first_seen
            .map_or(host.first_seen, |t| t.min(host.first_seen));

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
            host.firsts.push_back(time);
            host.due = host.due.min(time + HOUR);
            if time >= host_first_seen + DAY {
                host.later_users += 1;
            }
            user_state.known_computers += 1;
            user_state.new_1h += 1;
            user_state.new_24h += 1;
            if time >= user_state.first_seen + DAY {
                user_state.later_computers += 1;
            }
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
        host.busiest.at(time);
        if device.last_seen < host.busiest.hour * HOUR {
            host.busiest.current += 1;
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

        user_state.window.push_back(time, device_id, seq);
        if user_state.window.len() > self.max_window.0 {
            trim_oldest(user_state, devices);
            self.trimmed += 1;
        }
        user_state.due = user_state.due.min(time + HOUR);
        user_state.next_seq = seq.wrapping_add(1);
        let gap = if user_state.logins == 0 {
            NO_PREVIOUS_LOGIN
        } else {
            saturate(time - user_state.last_seen)
        };
        user_state.last_seen = time;
        user_state.busiest.at(time);
        user_state.busiest.current += 1;
        let hour_of_day = (time.rem_euclid(DAY) / HOUR) as usize;
        let logins_before = user_state.logins;
        let by_hour = &mut self.logins_by_hour[u];
        let logins_at_previous_hour_before = by_hour[(hour_of_day + 23) % 24];
        let at_hour = &mut by_hour[hour_of_day];
        let logins_at_hour_before = *at_hour;
        user_state.logins = logins_before.saturating_add(1);
        *at_hour = logins_at_hour_before.saturating_add(1);

        let (user_baseline_new_computers, user_baseline_s) = baseline(
            user_state.first_seen,
            time,
            user_state.later_computers,
            user_state.new_24h,
        );
        let new_device = flags & FLAG_NEW_DEVICE_FOR_USER != 0;
        let user_first_seen = user_state.first_seen;
        let host_new_users_24h = host.firsts.len() as u32;
        // Every shard's users count in the computer's usual rate of new
        // users, as they do in its last hour and day.
        let (host_baseline_new_users, host_baseline_s) = baseline(
            host_first_seen,
            time,
            host.later_users + shared.later_users,
            host_new_users_24h + shared.new_users_24h,
        );

        let (host_peer_users, host_peers_asked) = if new_device {
            let (hosts, index, shared) = (&self.hosts, &self.device_index, &self.shared);
            self.habits.peers(
                u,
                c,
                |k| {
                    hosts.get(k as usize).map_or(0, |h| h.users_ever)
                        + shared.users_ever(k as usize)
                },
                |v, k| index.contains_key(&((u64::from(v) << 32) | u64::from(k))),
            )
        } else {
            (0, 0)
        };
        if shared.users_ever > 0 {
            flags &= !FLAG_NEW_COMPUTER;
        }
        let logon = Logon {
            time,
            user: u,
            computer: c,
            new_device,
            host_users_before: host_users_before + shared.users_ever,
            user_first_seen,
            user_last_seen,
            known_before,
            user_logins_before: logins_before,
            user_logins_1h_before: (user_state.window.len() - user_state.hour_start) as u32 - 1,
        };
        let user_state = &self.users[u];
        let host = &self.hosts[c];

        let mut features = Features {
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
            host_users_ever: host.users_ever + shared.users_ever,
            host_users_today: host.users_today + shared.users_today,
            flags,
            user_peak_logins_1h: user_state.busiest.peak,
            user_logins_before: logins_before,
            user_logins_at_hour_before: logins_at_hour_before,
            user_baseline_new_computers,
            user_baseline_s,
            host_users_this_hour: host.busiest.current + shared.users_this_hour,
            host_new_users_1h: (host.firsts.len() - host.firsts_hour_start) as u32
                + shared.new_users_1h,
            host_new_users_24h: host_new_users_24h + shared.new_users_24h,
            host_baseline_new_users,
            host_baseline_s,
            host_tenure_s: saturate(time - host_first_seen),
            host_peak_users_hour: host.busiest.peak,
            reserved: [0; 2],
            host_peer_users,
            host_peers_asked,
            user_logins_at_previous_hour_before: logins_at_previous_hour_before,
            ..Features::default()
        };
        self.habits.observe(&logon, &mut features);
        features
    }
}

/// New computers (or users) of an entity's baseline period, and its length:
/// from the end of its first day (`first_seen + 1 day`) to `now - 1 day`.
/// `later` counts the discoveries after the first day, `last_24h` those in
/// the 24h window, which all fall after the first day once the period is
/// not empty.
#[inline]
fn baseline(first_seen: i64, now: i64, later: u32, last_24h: u32) -> (u32, u32) {
    let length = now - first_seen - 2 * DAY;
    if length <= 0 {
        return (0, 0);
    }
    (later.saturating_sub(last_24h), saturate(length))
}

#[inline]
fn saturate(seconds: i64) -> u32 {
    seconds.clamp(0, i64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;
