//! Event-time ordering: the watermark, deduplication and the reorder buffer.
//!
//! Events are held until the watermark (latest event time seen minus the allowed
//! lateness) passes them, then released in `(event_time, user name, computer name)`
//! order. So everything downstream sees one total order that depends only on the
//! set of events, not on how they were batched, interleaved across shards, or
//! reordered within the lateness. An event older than the watermark on arrival
//! is late; an event whose `(time, user, computer)` is already held is a duplicate.
//!
//! `event_id` is a hash of exactly `(time, user, computer)`, so deduplicating on the
//! interned triple is deduplicating on `event_id`, without hashing strings.

use std::collections::VecDeque;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::event::{EventId, Interner, NameId, TimeBase};

/// An accepted event waiting for the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub event_time: i64,
    pub user: NameId,
    pub computer: NameId,
    /// Unix seconds the event was ingested.
    pub ingestion_time: i64,
    /// As given by the input; derived on output otherwise.
    pub event_id: Option<EventId>,
}

impl Pending {
    /// Its `event_id`: as given by the input, or derived from the record.
    pub fn event_id(&self, base: TimeBase, users: &Interner, computers: &Interner) -> EventId {
        self.event_id.unwrap_or_else(|| {
            EventId::derive(
                base.to_lanl(self.event_time),
                users.name(self.user),
                computers.name(self.computer),
            )
        })
    }

    #[inline]
    fn key(&self) -> u128 {
        ((self.event_time as u64 as u128) << 64)
            | (u128::from(self.user) << 32)
            | u128::from(self.computer)
    }
}

/// What happened to an event offered to the orderer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    Duplicate,
    Late { watermark: i64 },
}

/// An [`Orderer`]'s contents, as state snapshots keep them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrdererSnapshot {
    pub max_time: Option<i64>,
    /// Events before it are late whatever the lateness: the earliest held
    /// events were released early (too many held).
    pub floor: Option<i64>,
    pub held: Vec<Pending>,
}

pub struct Orderer {
    lateness: i64,
    max_time: Option<i64>,
    /// Event time of `buckets[0]`.
    first_second: i64,
    /// One bucket per second from `first_second` on.
    buckets: VecDeque<Vec<Pending>>,
    spare: Vec<Vec<Pending>>,
    held: FxHashSet<u128>,
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
            first_second: 0,
            buckets: VecDeque::new(),
            spare: Vec::new(),
            held: FxHashSet::default(),
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

    /// Latest event time minus the lateness (or the floor, if higher):
    /// older events are late.
    pub fn watermark(&self) -> Option<i64> {
        self.max_time
            .map(|m| (m - self.lateness).max(self.floor.unwrap_or(i64::MIN)))
    }

    /// The latest event time accepted so far.
    pub fn latest(&self) -> Option<i64> {
        self.max_time
    }

    /// Event time of the earliest event held, if any.
    pub fn earliest_held(&self) -> Option<i64> {
        let empty_seconds = self.buckets.iter().position(|b| !b.is_empty())?;
        Some(self.first_second + empty_seconds as i64)
    }

    /// Events held, waiting for the watermark.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Offers an event. An accepted event may advance the watermark: every held
    /// event it passes is appended to `out`, in order, before the event is held
    /// (so the buffer never spans more than the lateness).
    #[inline]
    pub fn offer(
        &mut self,
        event: Pending,
        names: (&Interner, &Interner),
        out: &mut Vec<Pending>,
    ) -> Admission {
        if let Some(watermark) = self.watermark()
            && event.event_time < watermark
        {
            return Admission::Late { watermark };
        }
        if !self.held.insert(event.key()) {
            return Admission::Duplicate;
        }
        if self.max_time.is_none_or(|m| event.event_time > m) {
            self.max_time = Some(event.event_time);
            self.release_before(event.event_time - self.lateness, names, out);
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
    fn release_earliest(&mut self, names: (&Interner, &Interner), out: &mut Vec<Pending>) {
        let Some(earliest) = self.earliest_held() else {
            return;
        };
        let before = out.len();
        self.release_before(earliest + 1, names, out);
        self.forced += (out.len() - before) as u64;
        self.floor = Some(self.floor.unwrap_or(i64::MIN).max(earliest + 1));
    }

    /// What a state snapshot keeps: the latest event time and the events
    /// held, in arrival order within each second.
    pub fn snapshot(&self) -> OrdererSnapshot {
        OrdererSnapshot {
            max_time: self.max_time,
            floor: self.floor,
            held: self.buckets.iter().flatten().copied().collect(),
        }
    }

    /// The orderer `snapshot` was taken of, with `lateness_s`.
    pub fn restore(lateness_s: u64, snapshot: OrdererSnapshot) -> Orderer {
        let mut orderer = Orderer::new(lateness_s);
        orderer.max_time = snapshot.max_time;
        orderer.floor = snapshot.floor;
        for event in snapshot.held {
            if orderer.held.insert(event.key()) {
                orderer.hold(event);
            }
        }
        orderer
    }

    /// Puts an accepted event in its second's bucket.
    fn hold(&mut self, event: Pending) {
        if self.buckets.is_empty() {
            self.first_second = event.event_time;
        }
        while event.event_time < self.first_second {
            let bucket = self.spare.pop().unwrap_or_default();
            self.buckets.push_front(bucket);
            self.first_second -= 1;
        }
        let index = (event.event_time - self.first_second) as usize;
        while self.buckets.len() <= index {
            let bucket = self.spare.pop().unwrap_or_default();
            self.buckets.push_back(bucket);
        }
        self.buckets[index].push(event);
    }

    /// Appends every held event to `out`, in order (end of input).
    pub fn release_all(&mut self, names: (&Interner, &Interner), out: &mut Vec<Pending>) {
        self.release_before(i64::MAX, names, out);
    }

    fn release_before(
        &mut self,
        watermark: i64,
        (users, computers): (&Interner, &Interner),
        out: &mut Vec<Pending>,
    ) {
        while self.first_second < watermark {
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
                });
            }
            for event in bucket.drain(..) {
                self.held.remove(&event.key());
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

    fn ev(t: i64, u: u32, c: u32) -> Pending {
        Pending {
            event_time: t,
            user: u,
            computer: c,
            ingestion_time: 0,
            event_id: None,
        }
    }

    #[test]
    fn releases_in_event_time_order_after_watermark() {
        let (users, computers) = names();
        let mut o = Orderer::new(10);
        let mut out = Vec::new();
        let n = (&users, &computers);
        for e in [ev(100, 1, 1), ev(95, 2, 2), ev(105, 0, 0), ev(100, 0, 3)] {
            assert_eq!(o.offer(e, n, &mut out), Admission::Accepted);
        }
        assert!(out.is_empty(), "nothing is older than 105 - 10 yet");
        assert_eq!(o.offer(ev(112, 0, 0), n, &mut out), Admission::Accepted);
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
        assert_eq!(o.offer(ev(10, 1, 1), n, &mut out), Admission::Accepted);
        assert_eq!(o.offer(ev(10, 1, 1), n, &mut out), Admission::Duplicate);
        assert_eq!(o.offer(ev(20, 1, 1), n, &mut out), Admission::Accepted);
        assert_eq!(
            o.offer(ev(14, 1, 1), n, &mut out),
            Admission::Late { watermark: 15 }
        );
        assert_eq!(o.offer(ev(15, 1, 2), n, &mut out), Admission::Accepted);
        assert_eq!(out, [ev(10, 1, 1)]);
        // A repeat after release is late, not a second copy.
        assert_eq!(
            o.offer(ev(10, 1, 1), n, &mut out),
            Admission::Late { watermark: 15 }
        );
    }

    #[test]
    fn big_time_jump_stays_bounded() {
        let (users, computers) = names();
        let mut o = Orderer::new(300);
        let mut out = Vec::new();
        let n = (&users, &computers);
        o.offer(ev(0, 0, 0), n, &mut out);
        o.offer(ev(10_000_000, 0, 0), n, &mut out);
        assert_eq!(out, [ev(0, 0, 0)]);
        assert!(o.buckets.len() <= 301);
    }
}
