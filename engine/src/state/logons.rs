//! What richer records add to the state: each account's logon types so far,
//! failed logons on each account and from each source computer, and each
//! source computer's destinations (which it has reached, and how fast it
//! reaches new ones against its own baseline). Only records that say a
//! source, a logon type or an outcome touch it: a LANL `time,user,computer`
//! stream leaves it empty and costs one branch per event.
//!
//! Each account's sources ([`Origins`]: which computers it logs on from, and
//! how often) and the accounts each source serves are kept apart, encoded
//! after the rest in a snapshot (format 6 on).
//!
//! Short windows are this clock hour and the one before ([`TwoHours`]):
//! between one and two hours, exact, and a few bytes per entity. Distinct
//! counts (accounts a source failed on, sources failing on an account,
//! destinations of a source) keep, per pair, the last clock hour the pair
//! was seen in, so that a pair is counted once in the window however often
//! it repeats.

use authpulse_rules_sdk::Features;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{DAY, HOUR};
use crate::event::NameId;
use crate::logon::{Detail, Outcome};

/// Counts in the current clock hour and the one before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TwoHours {
    /// The current clock hour (hours since the epoch).
    hour: u32,
    /// This hour's count, and the hour before's.
    counts: [u32; 2],
}

impl TwoHours {
    /// Moves the window to end in clock hour `hour`.
    #[inline]
    fn roll(&mut self, hour: u32) {
        if hour == self.hour {
            return;
        }
        self.counts = if hour == self.hour + 1 {
            [0, self.counts[0]]
        } else {
            [0, 0]
        };
        self.hour = hour;
    }

    /// Counts one more in `hour`.
    #[inline]
    fn add(&mut self, hour: u32) {
        self.roll(hour);
        self.counts[0] += 1;
    }

    /// Counts a pair seen in `hour` that was last seen in `last` (if ever):
    /// once in the window, in the hour it was last seen.
    #[inline]
    fn add_distinct(&mut self, hour: u32, last: Option<u32>) {
        self.roll(hour);
        match last {
            Some(last) if last == hour => {}
            Some(last) if last + 1 == hour => {
                self.counts[1] = self.counts[1].saturating_sub(1);
                self.counts[0] += 1;
            }
            _ => self.counts[0] += 1,
        }
    }

    #[inline]
    fn total(&self) -> u32 {
        self.counts[0] + self.counts[1]
    }
}

/// An account's logon types so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Types {
    /// Bit `t` for logon type `t` (past 30: bit 31).
    seen: u32,
    /// Logons by type, for the types seen.
    counts: Vec<(u8, u32)>,
    /// Logons whose type was said.
    typed: u32,
}

/// Failed logons on an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AccountFailures {
    failures: TwoHours,
    sources: TwoHours,
}

/// What a computer did as the source of logons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Source {
    first_seen: i64,
    failures: TwoHours,
    failed_users: TwoHours,
    destinations: TwoHours,
    new_destinations: TwoHours,
    known_destinations: u32,
    /// New destinations after its first day.
    later_new: u32,
}

/// The state of [`crate::state::EngineState`] that richer records feed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Logons {
    types: FxHashMap<NameId, Types>,
    failures: FxHashMap<NameId, AccountFailures>,
    sources: FxHashMap<NameId, Source>,
    /// `(source << 32) | account` -> the last clock hour it failed.
    failed_from: FxHashMap<u64, u32>,
    /// `(account << 32) | source` -> the last clock hour it failed.
    failed_on: FxHashMap<u64, u32>,
    /// `(source << 32) | destination` -> the last clock hour it was reached.
    reached: FxHashMap<u64, u32>,
    /// Where accounts log on from (snapshot format 6 encodes it apart).
    #[serde(skip)]
    pub(crate) origins: Origins,
}

/// Which computers each account logs on from, and which accounts each
/// source computer serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Origins {
    accounts: FxHashMap<NameId, Sourced>,
    /// `(account << 32) | source` -> the account's logons from it.
    from: FxHashMap<u64, u32>,
    /// Per source: distinct accounts that logged on from it.
    served: FxHashMap<NameId, TwoHours>,
    /// `(source << 32) | account` -> the last clock hour the account logged
    /// on from it.
    served_last: FxHashMap<u64, u32>,
}

/// An account's logons that named a source, and how many sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sourced {
    logons: u32,
    sources: u32,
}

impl Origins {
    /// Adds what the account's sources say to `f`; a successful logon from
    /// `source` is learned.
    #[inline]
    fn observe(&mut self, hour: u32, user: NameId, source: NameId, failed: bool, f: &mut Features) {
        let account = self.accounts.entry(user).or_default();
        f.user_sourced_logins_before = account.logons;
        f.user_sources_before = account.sources;
        let served = self.served.entry(source).or_default();
        if failed {
            f.user_logins_from_source_before =
                self.from.get(&pair(user, source)).copied().unwrap_or(0);
            served.roll(hour);
        } else {
            let logons = self.from.entry(pair(user, source)).or_insert(0);
            f.user_logins_from_source_before = *logons;
            if *logons == 0 {
                account.sources += 1;
            }
            *logons = logons.saturating_add(1);
            account.logons = account.logons.saturating_add(1);
            let last = self.served_last.insert(pair(source, user), hour);
            served.add_distinct(hour, last);
        }
        f.source_users_2h = served.total();
    }

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let table = |capacity: usize, entry: usize| super::hash_table_bytes(capacity, entry);
        table(self.accounts.capacity(), size_of::<(NameId, Sourced)>())
            + table(self.from.capacity(), size_of::<(u64, u32)>())
            + table(self.served.capacity(), size_of::<(NameId, TwoHours)>())
            + table(self.served_last.capacity(), size_of::<(u64, u32)>())
    }

    fn clear_users(&mut self, cleared: &impl Fn(NameId) -> bool) {
        self.accounts.retain(|&u, _| !cleared(u));
        self.from.retain(|&key, _| !cleared((key >> 32) as NameId));
        self.served_last
            .retain(|&key, _| !cleared((key & 0xffff_ffff) as NameId));
    }

    /// [`Logons::take_users`] for the origins: the moved accounts' sources
    /// come along; `taken` are the sources only `from` had seen.
    fn take_users(
        &mut self,
        from: &mut Origins,
        renamed: &FxHashMap<NameId, NameId>,
        computers: &[NameId],
        taken: &rustc_hash::FxHashSet<NameId>,
    ) {
        for (&source, &target) in renamed {
            if let Some(sourced) = from.accounts.remove(&source) {
                self.accounts.insert(target, sourced);
            }
        }
        move_account_keys(&mut from.from, &mut self.from, renamed, computers);
        for &source in taken {
            if let Some(window) = from.served.remove(&source) {
                self.served.insert(computers[source as usize], window);
            }
        }
        copy_source_keys(
            &from.served_last,
            &mut self.served_last,
            taken,
            renamed,
            computers,
        );
    }
}

/// Copies the entries keyed `(source << 32) | account` whose source is one
/// of `taken` (the sources that come along whole) and whose account is one
/// `renamed` moves, both halves renamed.
fn copy_source_keys(
    from: &FxHashMap<u64, u32>,
    to: &mut FxHashMap<u64, u32>,
    taken: &rustc_hash::FxHashSet<NameId>,
    renamed: &FxHashMap<NameId, NameId>,
    computers: &[NameId],
) {
    for (&key, &value) in from {
        let (source, user) = ((key >> 32) as NameId, (key & 0xffff_ffff) as NameId);
        if let (true, Some(&user)) = (taken.contains(&source), renamed.get(&user)) {
            to.insert(pair(computers[source as usize], user), value);
        }
    }
}

fn pair(a: NameId, b: NameId) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// Moves the entries keyed `(account << 32) | computer` of the accounts
/// `renamed` names from `from` to `to`, both halves renamed (`computers`
/// maps `from`'s computer ids); the other accounts' stay.
fn move_account_keys(
    from: &mut FxHashMap<u64, u32>,
    to: &mut FxHashMap<u64, u32>,
    renamed: &FxHashMap<NameId, NameId>,
    computers: &[NameId],
) {
    for (key, value) in std::mem::take(from) {
        match renamed.get(&((key >> 32) as NameId)) {
            Some(&user) => {
                let computer = computers[(key & 0xffff_ffff) as usize];
                to.insert((u64::from(user) << 32) | u64::from(computer), value);
            }
            None => {
                from.insert(key, value);
            }
        }
    }
}

fn type_bit(logon_type: u8) -> u32 {
    1 << logon_type.min(31)
}

impl Logons {
    /// Adds a detailed event's fields to `f` (computed already, for a
    /// logon that happened) and its effect to the state. For a failure, `f`
    /// holds only who, where and when: the caller left the rest unchanged.
    pub(crate) fn observe(
        &mut self,
        time: i64,
        user: NameId,
        computer: NameId,
        detail: &Detail,
        f: &mut Features,
    ) {
        let hour = u32::try_from(time.div_euclid(HOUR)).unwrap_or(u32::MAX);
        f.source_computer = detail.source_computer.map_or(0, |c| c + 1);
        f.source_user = detail.source_user.map_or(0, |u| u + 1);
        f.logon_type = detail.logon_type.0;
        f.auth_package = detail.auth_package as u8;
        f.outcome = detail.outcome as u8;
        f.failure_reason = detail.failure_reason as u8;
        let failed = detail.outcome == Outcome::Failure;

        // The account's logon types: what it had before this event.
        let types = self.types.entry(user).or_default();
        f.user_logon_types_before = types.seen;
        f.user_typed_logins_before = types.typed;
        let logon_type = detail.logon_type.0;
        if logon_type != 0 {
            f.user_logins_this_type_before = types
                .counts
                .iter()
                .find(|(t, _)| *t == logon_type)
                .map_or(0, |(_, n)| *n);
            if !failed {
                types.seen |= type_bit(logon_type);
                types.typed += 1;
                match types.counts.iter_mut().find(|(t, _)| *t == logon_type) {
                    Some((_, n)) => *n += 1,
                    None => types.counts.push((logon_type, 1)),
                }
            }
        }

        let account = self.failures.entry(user).or_default();
        if failed {
            account.failures.add(hour);
            if let Some(source) = detail.source_computer {
                let last = self.failed_on.insert(pair(user, source), hour);
                account.sources.add_distinct(hour, last);
            }
        }
        account.failures.roll(hour);
        account.sources.roll(hour);
        f.user_failures_2h = account.failures.total();
        f.user_failed_sources_2h = account.sources.total();

        let Some(source_id) = detail.source_computer else {
            return;
        };
        self.origins.observe(hour, user, source_id, failed, f);
        let source = self.sources.entry(source_id).or_insert_with(|| Source {
            first_seen: time,
            ..Source::default()
        });
        if failed {
            source.failures.add(hour);
            let last = self.failed_from.insert(pair(source_id, user), hour);
            source.failed_users.add_distinct(hour, last);
        } else if source_id != computer {
            let last = self.reached.insert(pair(source_id, computer), hour);
            source.destinations.add_distinct(hour, last);
            if last.is_none() {
                source.known_destinations += 1;
                source.new_destinations.add(hour);
                if time >= source.first_seen + DAY {
                    source.later_new += 1;
                }
            }
        }
        for window in [
            &mut source.failures,
            &mut source.failed_users,
            &mut source.destinations,
            &mut source.new_destinations,
        ] {
            window.roll(hour);
        }
        f.source_failures_2h = source.failures.total();
        f.source_failed_users_2h = source.failed_users.total();
        f.source_destinations_2h = source.destinations.total();
        f.source_new_destinations_2h = source.new_destinations.total();
        f.source_known_destinations = source.known_destinations;
        f.source_tenure_s = super::saturate(time - source.first_seen);
        // Baseline: from the end of its first day to the start of the
        // clock hour before this one; the new destinations of the window
        // are left out (all of them fall after the first day once the
        // period is not empty).
        let window_start = (i64::from(hour) - 1) * HOUR;
        let length = window_start - (source.first_seen + DAY);
        if length > 0 {
            f.source_baseline_s = super::saturate(length);
            f.source_baseline_new_destinations = source
                .later_new
                .saturating_sub(source.new_destinations.total());
        }
    }

    /// Heap memory held, in bytes (hash tables estimated from capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let table = |capacity: usize, entry: usize| super::hash_table_bytes(capacity, entry);
        table(self.types.capacity(), size_of::<(NameId, Types)>())
            + self
                .types
                .values()
                .map(|t| t.counts.capacity() * size_of::<(u8, u32)>())
                .sum::<usize>()
            + table(
                self.failures.capacity(),
                size_of::<(NameId, AccountFailures)>(),
            )
            + table(self.sources.capacity(), size_of::<(NameId, Source)>())
            + table(self.failed_from.capacity(), size_of::<(u64, u32)>())
            + table(self.failed_on.capacity(), size_of::<(u64, u32)>())
            + table(self.reached.capacity(), size_of::<(u64, u32)>())
            + self.origins.heap_bytes()
    }

    /// Forgets the account-side state of the users `cleared` says (their
    /// logon types and failures); what sources did is computer-side, kept.
    pub(crate) fn clear_users(&mut self, cleared: impl Fn(NameId) -> bool) {
        self.types.retain(|&u, _| !cleared(u));
        self.failures.retain(|&u, _| !cleared(u));
        self.failed_on
            .retain(|&key, _| !cleared((key >> 32) as NameId));
        self.origins.clear_users(&cleared);
    }

    /// Takes the account-side state of `users` (`(id in from, id here)`)
    /// out of `from`; `computers` maps `from`'s computer ids to ids here.
    /// Sources only `from` has seen come along whole.
    pub(crate) fn take_users(
        &mut self,
        from: &mut Logons,
        users: &[(NameId, NameId)],
        computers: &[NameId],
    ) {
        let renamed: FxHashMap<NameId, NameId> = users.iter().copied().collect();
        for (&source, &target) in &renamed {
            if let Some(types) = from.types.remove(&source) {
                self.types.insert(target, types);
            }
            if let Some(failures) = from.failures.remove(&source) {
                self.failures.insert(target, failures);
            }
        }
        let computer = |c: u64| u64::from(computers[c as usize]);
        move_account_keys(
            &mut from.failed_on,
            &mut self.failed_on,
            &renamed,
            computers,
        );
        // Sources only `from` has seen come along, with the destinations
        // they reached and the accounts (of those moved) they failed on.
        let mut taken = rustc_hash::FxHashSet::default();
        for (source, state) in std::mem::take(&mut from.sources) {
            let here = computers[source as usize];
            if let std::collections::hash_map::Entry::Vacant(slot) = self.sources.entry(here) {
                slot.insert(state);
                taken.insert(source);
            }
        }
        for (key, hour) in &from.reached {
            if taken.contains(&((key >> 32) as NameId)) {
                let key = (computer(key >> 32) << 32) | computer(key & 0xffff_ffff);
                self.reached.insert(key, *hour);
            }
        }
        copy_source_keys(
            &from.failed_from,
            &mut self.failed_from,
            &taken,
            &renamed,
            computers,
        );
        self.origins
            .take_users(&mut from.origins, &renamed, computers, &taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logon::{FailureReason, LogonType};

    fn failure(source: NameId) -> Detail {
        Detail {
            source_computer: Some(source),
            outcome: Outcome::Failure,
            failure_reason: FailureReason::BadPassword,
            ..Detail::default()
        }
    }

    fn logon(source: NameId, logon_type: LogonType) -> Detail {
        Detail {
            source_computer: Some(source),
            logon_type,
            outcome: Outcome::Success,
            ..Detail::default()
        }
    }

    #[test]
    fn two_hours_count_distinct_pairs_once() {
        let mut w = TwoHours::default();
        w.add_distinct(10, None);
        w.add_distinct(10, Some(10));
        assert_eq!(w.total(), 1);
        w.add_distinct(11, Some(10));
        assert_eq!(w.total(), 1, "the same pair an hour later");
        w.roll(12);
        assert_eq!(w.total(), 1, "still in the window through its last hour");
        w.roll(13);
        assert_eq!(w.total(), 0);
        w.add(13);
        w.add(20);
        assert_eq!(w.total(), 1, "a gap empties the window");
    }

    #[test]
    fn a_source_failing_on_many_accounts() {
        let mut logons = Logons::default();
        let mut f = Features::default();
        let t = 100 * HOUR;
        for (i, user) in (0..12).enumerate() {
            f = Features::default();
            logons.observe(t + i as i64, user, 50, &failure(7), &mut f);
        }
        assert_eq!(f.source_failed_users_2h, 12);
        assert_eq!(f.source_failures_2h, 12);
        assert_eq!(f.user_failures_2h, 1);
        assert_eq!(f.source_computer, 8);
        // The same account again: failures grow, distinct accounts do not.
        logons.observe(t + 20, 3, 50, &failure(7), &mut f);
        assert_eq!((f.source_failures_2h, f.source_failed_users_2h), (13, 12));
        assert_eq!((f.user_failures_2h, f.user_failed_sources_2h), (2, 1));
        // Two hours on, the window is empty again.
        logons.observe(t + 2 * HOUR, 3, 50, &failure(7), &mut f);
        assert_eq!((f.source_failures_2h, f.source_failed_users_2h), (1, 1));
    }

    #[test]
    fn destinations_and_the_sources_baseline() {
        let mut logons = Logons::default();
        let mut f = Features::default();
        let start = 1000 * HOUR;
        // Day one: three destinations.
        for dest in 0..3 {
            logons.observe(
                start + dest,
                1,
                dest as NameId,
                &logon(9, LogonType::NETWORK),
                &mut f,
            );
        }
        // Days two to four: one new destination a day.
        for day in 1..4 {
            let t = start + day * DAY + 5;
            logons.observe(
                t,
                1,
                10 + day as NameId,
                &logon(9, LogonType::NETWORK),
                &mut f,
            );
        }
        assert_eq!(f.source_known_destinations, 6);
        // Day five: a burst of eight new destinations.
        let t = start + 5 * DAY;
        for dest in 0..8 {
            logons.observe(
                t + dest,
                1,
                100 + dest as NameId,
                &logon(9, LogonType::NETWORK),
                &mut f,
            );
        }
        assert_eq!(f.source_new_destinations_2h, 8);
        assert_eq!(f.source_destinations_2h, 8);
        assert_eq!(f.source_baseline_new_destinations, 3);
        assert_eq!(f.source_baseline_s as i64, 5 * DAY - HOUR - DAY);
        // A destination seen before is no new one.
        logons.observe(t + 9, 1, 0, &logon(9, LogonType::NETWORK), &mut f);
        assert_eq!(
            (f.source_new_destinations_2h, f.source_destinations_2h),
            (8, 9)
        );
    }

    #[test]
    fn where_accounts_log_on_from() {
        let mut logons = Logons::default();
        let mut f = Features::default();
        let t = 200 * HOUR;
        for i in 0..20 {
            f = Features::default();
            logons.observe(
                t + i,
                4,
                30 + i as NameId,
                &logon(2, LogonType::NETWORK),
                &mut f,
            );
        }
        assert_eq!(
            (f.user_sourced_logins_before, f.user_sources_before),
            (19, 1)
        );
        assert_eq!(f.user_logins_from_source_before, 19);
        // A computer it never came from; a failure from there teaches nothing.
        f = Features::default();
        logons.observe(t + 30, 4, 77, &failure(9), &mut f);
        assert_eq!(f.user_logins_from_source_before, 0);
        logons.observe(t + 31, 4, 77, &logon(9, LogonType::NETWORK), &mut f);
        assert_eq!(
            (f.user_logins_from_source_before, f.user_sources_before),
            (0, 1)
        );
        logons.observe(t + 32, 4, 78, &logon(9, LogonType::NETWORK), &mut f);
        assert_eq!(
            (f.user_logins_from_source_before, f.user_sources_before),
            (1, 2)
        );
        assert_eq!(f.user_sourced_logins_before, 21);
        // Source 2 served one account; others join it.
        for user in 5..8 {
            logons.observe(t + 40, user, 50, &logon(2, LogonType::NETWORK), &mut f);
        }
        assert_eq!(f.source_users_2h, 4);
        logons.observe(t + 41, 9, 50, &failure(2), &mut f);
        assert_eq!(f.source_users_2h, 4, "a failure serves nobody");
        assert_eq!(f.source_failed_users_2h, 1);
    }

    /// A hand-off moves an account's sources and failures with it, renamed,
    /// and leaves the other accounts' where they were.
    #[test]
    fn a_hand_off_moves_where_an_account_logs_on_from() {
        let mut from = Logons::default();
        let mut f = Features::default();
        let t = 300 * HOUR;
        for i in 0..5 {
            from.observe(t + i, 4, 30, &logon(2, LogonType::NETWORK), &mut f);
            from.observe(t + i, 6, 30, &logon(2, LogonType::NETWORK), &mut f);
        }
        from.observe(t + 9, 4, 30, &failure(2), &mut f);
        let mut here = Logons::default();
        // Account 4 becomes 0 here; computers 0..40 become 100..140.
        let computers: Vec<NameId> = (0..40).map(|c| c + 100).collect();
        here.take_users(&mut from, &[(4, 0)], &computers);
        here.observe(t + 10, 0, 130, &logon(102, LogonType::NETWORK), &mut f);
        assert_eq!(
            (
                f.user_logins_from_source_before,
                f.user_sourced_logins_before
            ),
            (5, 5)
        );
        // The source came along whole: the two accounts it served, the moved
        // one not counted twice.
        assert_eq!(f.source_users_2h, 2);
        here.observe(t + 11, 0, 130, &failure(102), &mut f);
        assert_eq!(f.user_failed_sources_2h, 1, "the failure came along");
        assert_eq!(
            f.source_failed_users_2h, 1,
            "... counted once at the source"
        );
        from.observe(t + 12, 6, 30, &logon(2, LogonType::NETWORK), &mut f);
        assert_eq!(
            f.user_logins_from_source_before, 5,
            "the other account stayed"
        );
        from.observe(t + 13, 4, 30, &logon(2, LogonType::NETWORK), &mut f);
        assert_eq!(f.user_logins_from_source_before, 0, "the moved one left");
    }

    #[test]
    fn logon_types_so_far_and_failures_leave_them() {
        let mut logons = Logons::default();
        let mut f = Features::default();
        for t in 0..30 {
            logons.observe(t, 4, 1, &logon(2, LogonType::NETWORK), &mut f);
        }
        f = Features::default();
        logons.observe(40, 4, 1, &logon(2, LogonType::REMOTE_INTERACTIVE), &mut f);
        assert!(f.is_new_logon_type(20));
        assert_eq!(f.user_logon_types_before, 1 << 3);
        assert_eq!(f.user_typed_logins_before, 30);
        let mut failed = failure(2);
        failed.logon_type = LogonType::BATCH;
        logons.observe(41, 4, 1, &failed, &mut f);
        logons.observe(42, 4, 1, &failed, &mut f);
        assert!(f.is_new_logon_type(20), "a failed logon teaches no type");
        assert_eq!(f.user_logon_types_before, (1 << 3) | (1 << 10));
    }
}
