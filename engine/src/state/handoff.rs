//! The shard hand-off of the state: forgetting the users another worker
//! takes, and taking a part's users (with their device history and the
//! computers only that part has seen) into this one. [`crate::shards`]
//! drives them on whole snapshots.

use rustc_hash::FxHashMap;

use super::{EngineState, UserState};
use crate::event::NameId;
use crate::habits::Habits;

impl EngineState {
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
            user.window
                .renumber_devices(|device| renumbered[device as usize]);
        }
        self.habits.clear_users(|id| cleared(id as NameId));
        self.logons.clear_users(&cleared);
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
            state.window.renumber_devices(|device| renumbered[&device]);
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
        self.logons.take_users(&mut from.logons, users, computers);
        self.rebuild_pairs();
        from.rebuild_pairs();
        Ok(())
    }
}
