//! Event-time ordering: the watermark, deduplication and the reorder buffer.
//!
//! Events are held until the watermark (the event clock's time, see
//! [`crate::clock`], minus the allowed lateness) passes them, then released in
//! `(event_time, user name, computer name, detail)` order. So everything downstream
//! sees one total order that depends only on the set of events, not on how
//! they were batched, interleaved across shards, or reordered within the
//! lateness. An event older than the watermark on arrival is late; an event
//! whose `(time, user, computer)` and detail (source, logon type, outcome)
//! are already held is a duplicate. The
//! watermark follows the clock, not the latest event: an event dated ahead
//! is held until its time comes, and moves nothing.
//!
//! `event_id` is a hash of exactly `(time, user, computer)` and the detail a
//! richer record adds, so deduplicating on the interned fields is
//! deduplicating on `event_id`, without hashing strings.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::event::{Event, Interner};
use crate::logon::Detail;

/// The time, user and computer of an event as one number.
#[inline]
fn key(event: &Event) -> u128 {
    ((event.event_time as u64 as u128) << 64)
        | (u128::from(event.user) << 32)
        | u128::from(event.computer)
}

/// The events held or claimed, by what makes one a duplicate of another:
/// the same time, user and computer, and the same detail (a failed and a
/// successful logon in the same second are two events). Events without
/// detail (every LANL line) are keyed by the triple alone, as cheaply as
/// before richer records.
#[derive(Default)]
struct Held {
    plain: FxHashSet<u128>,
    detailed: FxHashSet<(u128, Detail)>,
}

impl Held {
    #[inline]
    fn insert(&mut self, event: &Event) -> bool {
        if event.detail.is_empty() {
            self.plain.insert(key(event))
        } else {
            self.detailed.insert((key(event), event.detail))
        }
    }

    #[inline]
    fn remove(&mut self, event: &Event) {
        if event.detail.is_empty() {
            self.plain.remove(&key(event));
        } else {
            self.detailed.remove(&(key(event), event.detail));
        }
    }

    fn len(&self) -> usize {
        self.plain.len() + self.detailed.len()
    }
}

/// What happened to an event offered to the orderer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    Duplicate,
    Late { watermark: i64 },
}

/// An [`Orderer`]'s contents, as state snapshots keep them (the clock's
/// time it was last advanced to is kept beside, see [`crate::snapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrdererSnapshot {
    pub max_time: Option<i64>,
    /// Events before it are late whatever the lateness: the earliest held
    /// events were released early (too many held).
    pub floor: Option<i64>,
    pub held: Vec<Event>,
}

/// Seconds of held events kept in per-second buckets (past it, in a map):
/// more than the longest allowed lateness plus the event clock's reach.
const DENSE_SECONDS: usize = 1 << 20;

pub struct Orderer {
    lateness: i64,
    /// The latest event time accepted.
    max_time: Option<i64>,
    /// The event clock's time, as last advanced to.
    clock: Option<i64>,
    /// Event time of `buckets[0]`.
    first_second: i64,
    /// One bucket per second from `first_second` on.
    buckets: VecDeque<Vec<Event>>,
    /// Events more than [`DENSE_SECONDS`] past `first_second`, by second:
    /// a record dated far ahead must not cost a bucket per second between.
    /// Every key is past the last bucket.
    far: BTreeMap<i64, Vec<Event>>,
    spare: Vec<Vec<Event>>,
    held: Held,
    /// See [`OrdererSnapshot::floor`].
    floor: Option<i64>,
    /// Held events past which the earliest are released early.
    max_held: usize,
    /// Events released early since last taken.
    forced: u64,
}

impl Orderer {
    /// `lateness_s`: how far behind the latest event time an event may arrive.
    pub fn new(lateness_s: u64) -> Self {
        Orderer {
            lateness: lateness_s.min(i64::MAX as u64 / 4) as i64,
            max_time: None,
            clock: None,
            first_second: 0,
            buckets: VecDeque::new(),
            far: BTreeMap::new(),
            spare: Vec::new(),
            held: Held::default(),
            floor: None,
            max_held: crate::limits::StateLimits::default().max_held_events,
            forced: 0,
        }
    }

    /// Holds at most `max` events (see [`crate::limits::StateLimits`]).
    pub fn set_max_held(&mut self, max: usize) {
        self.max_held = max.max(1);
    }

    /// Events released early since the last call.
    pub fn take_forced_releases(&mut self) -> u64 {
        std::mem::take(&mut self.forced)
    }

    /// The clock's time minus the lateness (or the floor, if higher):
    /// older events are late.
    pub fn watermark(&self) -> Option<i64> {
        let from_clock = self.clock.map(|now| now.saturating_sub(self.lateness));
        from_clock.max(self.floor)
    }

    /// The event clock's time, as last advanced to.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// The event clock says it is `now`: every held event the watermark
    /// passes is appended to `out`, in order.
    #[inline]
    pub fn advance(&mut self, now: i64, names: (&Interner, &Interner), out: &mut Vec<Event>) {
        if self.clock.is_some_and(|clock| clock >= now) {
            return;
        }
        self.clock = Some(now);
        self.release_before(now.saturating_sub(self.lateness), names, out);
    }

    /// The latest event time accepted so far.
    pub fn latest(&self) -> Option<i64> {
        self.max_time
    }

    /// Event time of the earliest event held, if any.
    pub fn earliest_held(&self) -> Option<i64> {
        match self.buckets.iter().position(|b| !b.is_empty()) {
            Some(empty_seconds) => Some(self.first_second + empty_seconds as i64),
            None => self.far.keys().next().copied(),
        }
    }

    /// Events held, waiting for the watermark.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Offers an event. Only too many held events release any (the
    /// earliest, to `out`); the clock moves the watermark ([`Orderer::advance`]).
    #[inline]
    pub fn offer(
        &mut self,
        event: Event,
        names: (&Interner, &Interner),
        out: &mut Vec<Event>,
    ) -> Admission {
        // A late event is never held, so never a duplicate of one held.
        if !self.claim(&event) {
            return Admission::Duplicate;
        }
        self.offer_claimed(event, names, out)
    }

    /// Claims `event`'s `(time, user, computer)` ahead of its admission
    /// (while the event clock waits for its neighbours): false if an event
    /// with the same one is held or claimed, i.e. a duplicate.
    #[inline]
    pub fn claim(&mut self, event: &Event) -> bool {
        self.held.insert(event)
    }

    /// Gives up a claim: the event will not be offered (the clock refused
    /// it, or the warehouse already stores it).
    pub fn unclaim(&mut self, event: &Event) {
        self.held.remove(event);
    }

    /// [`Orderer::offer`] for a claimed event: it is late (and its claim
    /// given up), or held.
    #[inline]
    pub fn offer_claimed(
        &mut self,
        event: Event,
        names: (&Interner, &Interner),
        out: &mut Vec<Event>,
    ) -> Admission {
        if let Some(watermark) = self.watermark()
            && event.event_time < watermark
        {
            self.unclaim(&event);
            return Admission::Late { watermark };
        }
        if self.max_time.is_none_or(|m| event.event_time > m) {
            self.max_time = Some(event.event_time);
        }
        self.hold(event);
        if self.held.len() > self.max_held {
            self.release_earliest(names, out);
        }
        Admission::Accepted
    }

    /// Too many held: releases the earliest second's events and raises the
    /// floor past it, so that nothing is scored before what was released.
    #[cold]
    fn release_earliest(&mut self, names: (&Interner, &Interner), out: &mut Vec<Event>) {
        let Some(earliest) = self.earliest_held() else {
            return;
        };
        let before = out.len();
        self.release_before(earliest + 1, names, out);
        self.forced += (out.len() - before) as u64;
        self.floor = Some(self.floor.unwrap_or(i64::MIN).max(earliest + 1));
    }

    /// What a state snapshot keeps: the latest event time and the events
    /// held, in arrival order within each second (the clock is kept
    /// beside).
    pub fn snapshot(&self) -> OrdererSnapshot {
        OrdererSnapshot {
            max_time: self.max_time,
            floor: self.floor,
            held: self
                .buckets
                .iter()
                .chain(self.far.values())
                .flatten()
                .copied()
                .collect(),
        }
    }

    /// The orderer `snapshot` was taken of, at clock time `clock`, with
    /// `lateness_s`.
    pub fn restore(lateness_s: u64, snapshot: OrdererSnapshot, clock: Option<i64>) -> Orderer {
        let mut orderer = Orderer::new(lateness_s);
        orderer.max_time = snapshot.max_time;
        orderer.clock = clock;
        orderer.floor = snapshot.floor;
        for event in snapshot.held {
            if orderer.held.insert(&event) {
                orderer.hold(event);
            }
        }
        orderer
    }

    /// Puts an accepted event in its second's bucket.
    fn hold(&mut self, event: Event) {
        let time = event.event_time;
        if self.buckets.is_empty() {
            if self
                .far
                .first_key_value()
                .is_some_and(|(&first, _)| first < time)
            {
                self.far.entry(time).or_default().push(event);
                return;
            }
            self.first_second = time;
        } else if time < self.first_second {
            let span = self.first_second.abs_diff(time) + self.buckets.len() as u64;
            if span > DENSE_SECONDS as u64 {
                // What is held is far ahead of this event (a record dated
                // ahead came first): the buckets start again from here.
                self.move_buckets_to_far();
                self.first_second = time;
            } else {
                while time < self.first_second {
                    let bucket = self.spare.pop().unwrap_or_default();
                    self.buckets.push_front(bucket);
                    self.first_second -= 1;
                }
            }
        }
        let index = time.abs_diff(self.first_second);
        if index >= DENSE_SECONDS as u64 {
            self.far.entry(time).or_default().push(event);
            return;
        }
        let index = index as usize;
        while self.buckets.len() <= index {
            let second = self.first_second + self.buckets.len() as i64;
            let bucket = self
                .far
                .remove(&second)
                .unwrap_or_else(|| self.spare.pop().unwrap_or_default());
            self.buckets.push_back(bucket);
        }
        self.buckets[index].push(event);
    }

    /// Moves every held second of the buckets into the map.
    #[cold]
    fn move_buckets_to_far(&mut self) {
        let first = self.first_second;
        for (i, bucket) in self.buckets.drain(..).enumerate() {
            if bucket.is_empty() {
                self.spare.push(bucket);
            } else {
                self.far.insert(first + i as i64, bucket);
            }
        }
    }

    /// Appends every held event to `out`, in order (end of input).
    pub fn release_all(&mut self, names: (&Interner, &Interner), out: &mut Vec<Event>) {
        self.release_before(i64::MAX, names, out);
    }

    fn release_before(
        &mut self,
        watermark: i64,
        (users, computers): (&Interner, &Interner),
        out: &mut Vec<Event>,
    ) {
        loop {
            if self.buckets.is_empty() {
                // The next held second may be in the map: the buckets go on
                // from it.
                match self.far.first_key_value() {
                    Some((&second, _)) if second < watermark => {
                        let (_, bucket) = self.far.pop_first().expect("a first entry");
                        self.first_second = second;
                        self.buckets.push_back(bucket);
                    }
                    _ => break,
                }
            }
            if self.first_second >= watermark {
                break;
            }
            let Some(mut bucket) = self.buckets.pop_front() else {
                break;
            };
            self.first_second += 1;
            if bucket.is_empty() {
                self.spare.push(bucket);
                continue;
            }
            // Names, not ids: ids depend on arrival order, names do not.
            if bucket.len() > 1 {
                bucket.sort_unstable_by(|a, b| {
                    users
                        .cmp_names(a.user, b.user)
                        .then_with(|| computers.cmp_names(a.computer, b.computer))
                        .then_with(|| a.detail.cmp_by_names(&b.detail, users, computers))
                });
            }
            for event in bucket.drain(..) {
                self.held.remove(&event);
                out.push(event);
            }
            self.spare.push(bucket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (Interner, Interner) {
        let mut users = Interner::default();
        let mut computers = Interner::default();
        for i in 0..10 {
            users.intern(format!("U{i}").as_bytes());
            computers.intern(format!("C{i}").as_bytes());
        }
        (users, computers)
    }

    fn ev(t: i64, u: u32, c: u32) -> Event {
        Event {
            event_time: t,
            user: u,
            computer: c,
            ingestion_time: 0,
            event_id: None,
            detail: Detail::default(),
        }
    }

    /// Offers `e`, then moves the clock to it (as a clock over sorted input would).
    fn offer_and_advance(
        o: &mut Orderer,
        e: Event,
        n: (&Interner, &Interner),
        out: &mut Vec<Event>,
    ) -> Admission {
        let admission = o.offer(e, n, out);
        if admission == Admission::Accepted {
            o.advance(e.event_time, n, out);
        }
        admission
    }

    #[test]
    fn releases_in_event_time_order_after_watermark() {
        let (users, computers) = names();
        let mut o = Orderer::new(10);
        let mut out = Vec::new();
        let n = (&users, &computers);
        for e in [ev(100, 1, 1), ev(95, 2, 2), ev(105, 0, 0), ev(100, 0, 3)] {
            assert_eq!(
                offer_and_advance(&mut o, e, n, &mut out),
                Admission::Accepted
            );
        }
        assert!(out.is_empty(), "nothing is older than 105 - 10 yet");
        assert_eq!(
            offer_and_advance(&mut o, ev(112, 0, 0), n, &mut out),
            Admission::Accepted
        );
        // Watermark 102: 95, then both at 100 ordered by user name.
        assert_eq!(out, [ev(95, 2, 2), ev(100, 0, 3), ev(100, 1, 1)]);
        out.clear();
        o.release_all((&users, &computers), &mut out);
        assert_eq!(out, [ev(105, 0, 0), ev(112, 0, 0)]);
        assert_eq!(o.held(), 0);
    }

    #[test]
    fn duplicates_and_late_events() {
        let (users, computers) = names();
        let mut o = Orderer::new(5);
        let mut out = Vec::new();
        let n = (&users, &computers);
        let mut offer = |o: &mut Orderer, e| offer_and_advance(o, e, n, &mut out);
        assert_eq!(offer(&mut o, ev(10, 1, 1)), Admission::Accepted);
        assert_eq!(offer(&mut o, ev(10, 1, 1)), Admission::Duplicate);
        assert_eq!(offer(&mut o, ev(20, 1, 1)), Admission::Accepted);
        assert_eq!(
            offer(&mut o, ev(14, 1, 1)),
            Admission::Late { watermark: 15 }
        );
        assert_eq!(offer(&mut o, ev(15, 1, 2)), Admission::Accepted);
        // A repeat after release is late, not a second copy.
        assert_eq!(
            offer(&mut o, ev(10, 1, 1)),
            Admission::Late { watermark: 15 }
        );
        assert_eq!(out, [ev(10, 1, 1)]);
    }

    #[test]
    fn an_event_dated_ahead_of_the_clock_moves_nothing() {
        let (users, computers) = names();
        let mut o = Orderer::new(300);
        let mut out = Vec::new();
        let n = (&users, &computers);
        assert_eq!(
            offer_and_advance(&mut o, ev(1_000, 0, 0), n, &mut out),
            Admission::Accepted
        );
        // Accepted (the clock vouched for it elsewhere) but the clock stays.
        assert_eq!(
            o.offer(ev(31_536_000, 1, 1), n, &mut out),
            Admission::Accepted
        );
        assert_eq!(o.watermark(), Some(700));
        assert_eq!(o.offer(ev(900, 2, 2), n, &mut out), Admission::Accepted);
        assert_eq!(o.latest(), Some(31_536_000));
        o.advance(1_400, n, &mut out);
        assert_eq!(out, [ev(900, 2, 2), ev(1_000, 0, 0)]);
    }

    #[test]
    fn big_time_jump_stays_bounded() {
        let (users, computers) = names();
        let mut o = Orderer::new(300);
        let mut out = Vec::new();
        let n = (&users, &computers);
        offer_and_advance(&mut o, ev(0, 0, 0), n, &mut out);
        offer_and_advance(&mut o, ev(10_000_000, 0, 0), n, &mut out);
        assert_eq!(out, [ev(0, 0, 0)]);
        assert!(o.buckets.len() <= 301);
    }

    #[test]
    fn events_held_far_apart_cost_no_bucket_per_second_between() {
        let (users, computers) = names();
        let mut o = Orderer::new(300);
        let mut out = Vec::new();
        let n = (&users, &computers);
        // Dated far ahead, then the present, then far ahead again.
        o.offer(ev(250_000_000_000, 3, 3), n, &mut out);
        for t in [1_000, 999, 1_001] {
            o.offer(ev(t, 1, 1), n, &mut out);
        }
        o.offer(ev(90_000_000, 2, 2), n, &mut out);
        assert!(o.buckets.len() <= 3, "{}", o.buckets.len());
        assert_eq!(o.earliest_held(), Some(999));
        o.advance(1_400, n, &mut out);
        assert_eq!(out, [ev(999, 1, 1), ev(1_000, 1, 1), ev(1_001, 1, 1)]);
        assert_eq!(o.earliest_held(), Some(90_000_000));
        let snapshot = o.snapshot();
        let mut restored = Orderer::restore(300, snapshot, o.clock());
        out.clear();
        restored.release_all(n, &mut out);
        assert_eq!(out, [ev(90_000_000, 2, 2), ev(250_000_000_000, 3, 3)]);
        assert_eq!(restored.held(), 0);
    }
}
