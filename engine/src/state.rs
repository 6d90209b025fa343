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

use std::collections::VecDeque;

use authpulse_rules_sdk::{
    FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER, FLAG_NEW_USER, Features, NO_PREVIOUS_LOGIN,
};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::event::NameId;
use crate::habits::{Habits, Logon};

/// Seconds in an hour and a day: the window lengths.
pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

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

/// One of a user's events inside their 24h window.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct WindowEntry {
    time: i64,
    device: u32,
    seq: u32,
}

#[derive(Default, Serialize, Deserialize)]
struct UserState {
    first_seen: i64,
    /// Time of the latest event (meaningful once `logins` > 0).
    last_seen: i64,
    next_seq: u32,
    /// Events of the last 24h, oldest first; `window[hour_start..]` is the last hour.
    #[serde(with = "window_columns")]
    window: VecDeque<WindowEntry>,
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

/// How a user's window goes into a state snapshot: as columns of small
/// numbers (times and sequence numbers as differences from the entry before,
/// both ascending), which encode in a byte or two each and compress well,
/// instead of one 16-byte entry after another. The windows are most of a
/// snapshot (an entry per event of the last 24 hours).
mod window_columns {
    use std::collections::VecDeque;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::WindowEntry;

    #[derive(Serialize, Deserialize)]
    struct Columns {
        first_time: i64,
        first_seq: u32,
        time_steps: Vec<u32>,
        seq_steps: Vec<u32>,
        devices: Vec<u32>,
    }

    pub fn serialize<S: Serializer>(
        window: &VecDeque<WindowEntry>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let first = window.front();
        let mut columns = Columns {
            first_time: first.map_or(0, |e| e.time),
            first_seq: first.map_or(0, |e| e.seq),
            time_steps: Vec::with_capacity(window.len()),
            seq_steps: Vec::with_capacity(window.len()),
            devices: Vec::with_capacity(window.len()),
        };
        let (mut time, mut seq) = (columns.first_time, columns.first_seq);
        for entry in window {
            // Entries are in event-time order, within 24 hours of each other.
            columns
                .time_steps
                .push(u32::try_from(entry.time - time).unwrap_or(u32::MAX));
            columns.seq_steps.push(entry.seq.wrapping_sub(seq));
            columns.devices.push(entry.device);
            (time, seq) = (entry.time, entry.seq);
        }
        columns.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VecDeque<WindowEntry>, D::Error> {
        let columns = Columns::deserialize(deserializer)?;
        let n = columns.devices.len();
        if columns.time_steps.len() != n || columns.seq_steps.len() != n {
            return Err(serde::de::Error::custom(
                "window columns of different lengths",
            ));
        }
        let (mut time, mut seq) = (columns.first_time, columns.first_seq);
        let mut window = VecDeque::with_capacity(n);
        for i in 0..n {
            time += i64::from(columns.time_steps[i]);
            seq = seq.wrapping_add(columns.seq_steps[i]);
            window.push_back(WindowEntry {
                time,
                device: columns.devices[i],
                seq,
            });
        }
        Ok(window)
    }
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
    /// The pipeline's bound on a user's window (not part of a snapshot).
    #[serde(skip)]
    max_window: MaxWindow,
    /// Entries that left a window early for it, since last taken.
    #[serde(skip)]
    trimmed: u64,
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

    /// For each of another state's computers (mapped to ids here by
    /// `computers`), whether this state has seen it.
    pub(crate) fn computers_with_state(&self, computers: &[NameId]) -> Vec<bool> {
        computers
            .iter()
            .map(|&c| self.hosts.get(c as usize).is_some_and(|h| h.users_ever > 0))
            .collect()
    }

    /// Forgets the user-side state (window, device history, baselines) of
    /// every user `cleared` says; their ids stay, as names without state.
    /// Computer-side state is kept whole.
    pub(crate) fn clear_users(&mut self, cleared: impl Fn(NameId) -> bool) {
        for (id, user) in self.users.iter_mut().enumerate() {
            if cleared(id as NameId) {
                *user = UserState::default();
                self.logins_by_hour[id] = [0; 24];
            }
        }
        let mut pairs: Vec<(u64, u32)> = self.device_index.drain().collect();
        pairs.sort_unstable_by_key(|&(_, id)| id);
        let mut renumbered = vec![u32::MAX; self.devices.len()];
        let mut devices = Vec::with_capacity(pairs.len());
        for (key, old) in pairs {
            if cleared((key >> 32) as NameId) {
                continue;
            }
            renumbered[old as usize] = devices.len() as u32;
            self.device_index.insert(key, devices.len() as u32);
            devices.push(self.devices[old as usize]);
        }
        self.devices = devices;
        for user in &mut self.users {
            for entry in &mut user.window {
                entry.device = renumbered[entry.device as usize];
            }
        }
        self.habits.clear_users(|id| cleared(id as NameId));
        self.rebuild_pairs();
    }

    /// Rebuilds the habits' who-used-what from the device history (after a
    /// state was read, split or merged).
    pub(crate) fn rebuild_pairs(&mut self) {
        let mut pairs: Vec<(u32, u64)> = self
            .device_index
            .iter()
            .map(|(&key, &id)| (id, key))
            .collect();
        pairs.sort_unstable();
        self.habits.rebuild_pairs(
            pairs
                .into_iter()
                .map(|(_, key)| ((key >> 32) as u32, key as u32)),
        );
    }

    /// Takes the longer history a snapshot kept, or (an older snapshot)
    /// starts one from the discoveries counted so far.
    pub(crate) fn restore_habits(&mut self, habits: Option<Habits>) {
        self.habits = habits
            .unwrap_or_else(|| Habits::from_counts(self.users.iter().map(|u| u.later_computers)));
        self.rebuild_pairs();
    }

    /// Moves the user-side state of `users` (`(id in from, id here)`) out of
    /// `from`, and the computer-side state of each computer only `from` has
    /// seen (`computers` maps `from`'s computer ids to ids here). A user who
    /// already has state here is an error, returned by id here, with nothing
    /// changed.
    pub(crate) fn take_users(
        &mut self,
        from: &mut EngineState,
        users: &[(NameId, NameId)],
        computers: &[NameId],
    ) -> Result<(), NameId> {
        let has_state = |state: &EngineState, id: NameId| {
            state.users.get(id as usize).is_some_and(|u| u.logins > 0)
        };
        if let Some(&(_, taken)) = users
            .iter()
            .find(|&&(source, target)| has_state(from, source) && has_state(self, target))
        {
            return Err(taken);
        }
        let mut devices_of: FxHashMap<NameId, Vec<(NameId, u32)>> = FxHashMap::default();
        for (&key, &device) in &from.device_index {
            devices_of
                .entry((key >> 32) as NameId)
                .or_default()
                .push((key as NameId, device));
        }
        for &(source, target) in users {
            let Some(state) = from.users.get_mut(source as usize) else {
                continue;
            };
            let mut state = std::mem::take(state);
            if state.logins == 0 {
                continue;
            }
            let (t, mut renumbered) = (target as usize, FxHashMap::default());
            for &(computer, device) in devices_of.get(&source).into_iter().flatten() {
                let id = self.devices.len() as u32;
                let key = (u64::from(target) << 32) | u64::from(computers[computer as usize]);
                self.devices.push(from.devices[device as usize]);
                self.device_index.insert(key, id);
                renumbered.insert(device, id);
            }
            for entry in &mut state.window {
                entry.device = renumbered[&entry.device];
            }
            self.make_room(t, 0);
            self.users[t] = state;
            self.logins_by_hour[t] = from.logins_by_hour[source as usize];
            self.habits
                .take_user(&mut from.habits, source as usize, target as usize);
        }
        for (source, host) in from.hosts.iter_mut().enumerate() {
            let t = computers[source] as usize;
            if host.users_ever == 0 || self.hosts.get(t).is_some_and(|h| h.users_ever > 0) {
                continue;
            }
            self.make_room(0, t);
            self.hosts[t] = std::mem::take(host);
        }
        self.rebuild_pairs();
        from.rebuild_pairs();
        Ok(())
    }

    /// Heap memory the state holds, in bytes (allocated capacity, the hash
    /// index estimated from its capacity at hashbrown's 7/8 load).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let windows: usize = self
            .users
            .iter()
            .map(|u| u.window.capacity() * size_of::<WindowEntry>())
            .sum();
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
            if time >= host.first_seen + DAY {
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

        user_state.window.push_back(WindowEntry {
            time,
            device: device_id,
            seq,
        });
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
        let (host_baseline_new_users, host_baseline_s) =
            baseline(host.first_seen, time, host.later_users, host_new_users_24h);

        let (host_peer_users, host_peers_asked) = if new_device {
            let (hosts, index) = (&self.hosts, &self.device_index);
            self.habits.peers(
                u,
                c,
                |k| hosts.get(k as usize).map_or(0, |h| h.users_ever),
                |v, k| index.contains_key(&((u64::from(v) << 32) | u64::from(k))),
            )
        } else {
            (0, 0)
        };
        let logon = Logon {
            time,
            user: u,
            computer: c,
            new_device,
            host_users_before,
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
            host_users_ever: host.users_ever,
            host_users_today: host.users_today,
            flags,
            user_peak_logins_1h: user_state.busiest.peak,
            user_logins_before: logins_before,
            user_logins_at_hour_before: logins_at_hour_before,
            user_baseline_new_computers,
            user_baseline_s,
            host_users_this_hour: host.busiest.current,
            host_new_users_1h: (host.firsts.len() - host.firsts_hour_start) as u32,
            host_new_users_24h,
            host_baseline_new_users,
            host_baseline_s,
            host_tenure_s: saturate(time - host.first_seen),
            host_peak_users_hour: host.busiest.peak,
            reserved: [0; 4],
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

/// Slides the user's windows to end at `now`: entries at or before `now - 1h`
/// leave the hour, entries at or before `now - 24h` leave the day.
#[inline]
fn expire(user: &mut UserState, devices: &[Device], now: i64) {
    if now < user.due {
        return;
    }
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
    // A burst leaves a large buffer behind; give most of it back once the
    // window is a quarter full, so memory follows the last day's events
    // rather than the busiest day ever.
    let capacity = user.window.capacity();
    if capacity > 256 && user.window.len() < capacity / 4 {
        user.window.shrink_to(user.window.len() * 2);
    }
    user.due = due(
        user.window.get(user.hour_start).map(|e| e.time),
        user.window.front().map(|e| e.time),
    );
}

/// Lets the oldest entry of a full window leave before its time, as if it had
/// expired: the counts stay those of the entries still in the window. If it
/// was its computer's latest occurrence, the next one enters the windows
/// again.
#[cold]
fn trim_oldest(user: &mut UserState, devices: &mut [Device]) {
    let Some(entry) = user.window.pop_front() else {
        return;
    };
    if user.hour_start == 0 {
        leave(entry, devices, &mut user.distinct_1h, &mut user.new_1h);
    } else {
        user.hour_start -= 1;
    }
    leave(entry, devices, &mut user.distinct_24h, &mut user.new_24h);
    let device = &mut devices[entry.device as usize];
    if device.last_seq == entry.seq {
        device.last_seen = i64::MIN;
    }
    user.due = due(
        user.window.get(user.hour_start).map(|e| e.time),
        user.window.front().map(|e| e.time),
    );
}

/// When the next entry leaves: the oldest of the last hour an hour after
/// it, the oldest of the last day a day after it.
#[inline]
fn due(oldest_of_hour: Option<i64>, oldest_of_day: Option<i64>) -> i64 {
    oldest_of_hour
        .map_or(i64::MAX, |t| t + HOUR)
        .min(oldest_of_day.map_or(i64::MAX, |t| t + DAY))
}

/// Slides the computer's windows to end at `now`: first uses leave its hour
/// and its day.
#[inline]
fn expire_host(host: &mut HostState, now: i64) {
    if now < host.due {
        return;
    }
    while let Some(&first) = host.firsts.get(host.firsts_hour_start)
        && first <= now - HOUR
    {
        host.firsts_hour_start += 1;
    }
    while let Some(&first) = host.firsts.front()
        && first <= now - DAY
    {
        host.firsts.pop_front();
        host.firsts_hour_start -= 1;
    }
    host.due = due(
        host.firsts.get(host.firsts_hour_start).copied(),
        host.firsts.front().copied(),
    );
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

    proptest! {
        /// With a bounded window, the counts stay those of the entries
        /// still in it, whatever leaves early: logins, distinct and new
        /// computers per hour and day, recounted from the window.
        #[test]
        fn a_bounded_window_counts_what_it_holds(
            max in 1usize..6,
            events in proptest::collection::vec((0i64..600, 0u32..4), 1..200),
        ) {
            let mut s = EngineState::default();
            s.set_max_window_events(max);
            let mut time = 0;
            for (step, computer) in events {
                time += step;
                let f = s.observe(time, 0, computer);
                let user = &s.users[0];
                prop_assert!(user.window.len() <= max);
                prop_assert_eq!(f.user_logins_24h as usize, user.window.len());
                let recount = |entries: &[WindowEntry]| {
                    let mut distinct = std::collections::HashSet::new();
                    let mut new = 0;
                    for e in entries {
                        let device = &s.devices[e.device as usize];
                        distinct.insert(e.device);
                        new += u32::from(device.first_seq == e.seq);
                    }
                    (distinct.len() as u32, new)
                };
                let window: Vec<WindowEntry> = user.window.iter().copied().collect();
                let hour = &window[user.hour_start..];
                prop_assert_eq!(
                    (f.user_distinct_computers_24h, f.user_new_computers_24h),
                    recount(&window)
                );
                prop_assert_eq!(
                    (f.user_distinct_computers_1h, f.user_new_computers_1h),
                    recount(hour)
                );
            }
        }
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

    /// The baselines and the computer's windows, counted from scratch:
    /// (user peak clock hour before this one, logins before, logins at this
    /// hour of day before, user baseline (count, seconds), host users this
    /// clock hour, host new users 1h and 24h, host baseline (count, seconds),
    /// host busiest clock hour's distinct users before this one).
    #[allow(clippy::type_complexity)]
    fn brute_force_v2(
        history: &[(i64, u32, u32)],
        now: i64,
        user: u32,
        computer: u32,
    ) -> (u32, u32, u32, (u32, u32), u32, u32, u32, (u32, u32), u32) {
        let (past, _) = history.split_at(history.len() - 1);
        let mine: Vec<_> = past.iter().filter(|e| e.1 == user).collect();
        let hour = now.div_euclid(HOUR);
        let mut per_hour = std::collections::BTreeMap::<i64, u32>::new();
        for e in mine.iter().filter(|e| e.0.div_euclid(HOUR) < hour) {
            *per_hour.entry(e.0.div_euclid(HOUR)).or_default() += 1;
        }
        let hod = |t: i64| t.rem_euclid(DAY) / HOUR;
        // First use of each pair, in the whole history so far.
        let mut firsts = std::collections::BTreeMap::<(u32, u32), i64>::new();
        for e in history {
            firsts.entry((e.1, e.2)).or_insert(e.0);
        }
        let baseline = |times: Vec<i64>, first_seen: i64| {
            let (from, to) = (first_seen + DAY, now - DAY);
            if to <= from {
                return (0, 0);
            }
            let n = times.iter().filter(|&&t| t >= from && t <= to).count() as u32;
            (n, (to - from) as u32)
        };
        let user_first = history.iter().find(|e| e.1 == user).unwrap().0;
        let user_discoveries: Vec<i64> = firsts
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|(_, &t)| t)
            .collect();
        let host_first = history.iter().find(|e| e.2 == computer).unwrap().0;
        let host_discoveries: Vec<i64> = firsts
            .iter()
            .filter(|((_, c), _)| *c == computer)
            .map(|(_, &t)| t)
            .collect();
        let mut users_this_hour: Vec<u32> = history
            .iter()
            .filter(|e| e.2 == computer && e.0.div_euclid(HOUR) == hour)
            .map(|e| e.1)
            .collect();
        users_this_hour.sort();
        users_this_hour.dedup();
        let new_users_in =
            |w: i64| host_discoveries.iter().filter(|&&t| t > now - w).count() as u32;
        let mut host_hours = std::collections::BTreeMap::<i64, Vec<u32>>::new();
        for e in past
            .iter()
            .filter(|e| e.2 == computer && e.0.div_euclid(HOUR) < hour)
        {
            let users = host_hours.entry(e.0.div_euclid(HOUR)).or_default();
            if !users.contains(&e.1) {
                users.push(e.1);
            }
        }
        (
            per_hour.values().copied().max().unwrap_or(0),
            mine.len() as u32,
            mine.iter().filter(|e| hod(e.0) == hod(now)).count() as u32,
            baseline(user_discoveries, user_first),
            users_this_hour.len() as u32,
            new_users_in(HOUR),
            new_users_in(DAY),
            baseline(host_discoveries, host_first),
            host_hours
                .values()
                .map(|u| u.len() as u32)
                .max()
                .unwrap_or(0),
        )
    }

    proptest! {
        #[test]
        fn baselines_and_host_windows_match_brute_force(steps in prop::collection::vec((0i64..20_000, 0u32..3, 0u32..4), 1..150)) {
            let mut s = EngineState::default();
            let mut history: Vec<(i64, u32, u32)> = Vec::new();
            let mut t = 0;
            for (dt, user, computer) in steps {
                t += dt;
                // Deduplicated input, as the orderer hands it on.
                if history.contains(&(t, user, computer)) {
                    continue;
                }
                let f = s.observe(t, user, computer);
                history.push((t, user, computer));
                let expected = brute_force_v2(&history, t, user, computer);
                prop_assert_eq!(
                    (f.user_peak_logins_1h, f.user_logins_before, f.user_logins_at_hour_before,
                     (f.user_baseline_new_computers, f.user_baseline_s), f.host_users_this_hour,
                     f.host_new_users_1h, f.host_new_users_24h,
                     (f.host_baseline_new_users, f.host_baseline_s), f.host_peak_users_hour),
                    expected
                );
            }
        }

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
