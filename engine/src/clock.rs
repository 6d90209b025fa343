//! The event clock: how far event time has got, as the input's majority
//! says, so that no single record can move it.
//!
//! Event time is input: anyone who can write one record to the stream can
//! date it a year ahead. A watermark that follows the latest event time
//! would jump a year, and every real event after it would be "late". So the
//! watermark follows this clock instead, and a record too far ahead of it is
//! refused as `future`.
//!
//! Each arrival is judged against its neighbours in arrival order: the
//! [`SIDE`] arrivals before it and the [`SIDE`] after it (so a decision
//! waits for [`SIDE`] more records, or the end of input, or a quiet source).
//!
//! - An arrival at most `max_ahead` past the clock is admitted at once.
//! - One further ahead is admitted only if at least half of its neighbours
//!   are within `max_ahead` of it (the whole stream moved on: a gap in the
//!   data, the first records of an input); otherwise it is `future`.
//! - The clock moves to an admitted arrival's time only if at least half of
//!   its neighbours are at or past that time. A lone record dated ahead,
//!   even one within `max_ahead`, is scored in its turn but never moves the
//!   clock; to move it an attacker must write most of the stream.
//!
//! A live source (a followed file, a Kinesis stream) has a clock of its own
//! to trust as well: an arrival more than `max_ahead` past the wall clock is
//! `future` at once. Once a source has been quiet for the allowed lateness
//! (wall clock), the clock moves on without votes by the time it has been
//! quiet (never past the wall clock, on a live source), as far as the
//! latest admitted event plus the lateness. That is what lets the last
//! events of a quiet stream be scored before more arrive, while a pause
//! between two bursts of a replay changes nothing.
//!
//! Decisions depend only on the order of arrival (and, for quiet sources,
//! on when they were quiet), never on batching.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Neighbours on each side an arrival is judged against.
pub const SIDE: usize = 8;

/// Decided times the clock lets pile up before it drops them in one go.
const SPARE_TIMES: usize = 64;

/// How the clock judges arrivals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockOptions {
    /// How far past the clock (and, live, past the wall clock) an event may
    /// be dated, in seconds.
    pub max_ahead_s: i64,
    /// The source is live: its events happen now, so the wall clock bounds
    /// them too.
    pub wall_clock: bool,
    /// The policy's allowed lateness, in seconds (the pipeline sets it). A
    /// source quiet this long (wall clock) lets the clock run on by the time
    /// it has been quiet, as far as a second past the latest admitted event
    /// plus this, so that its last events are all released.
    pub lateness_s: i64,
}

impl ClockOptions {
    /// Default `max_ahead`: five minutes, the clock skew Kerberos tolerates
    /// between a domain's computers, and the default allowed lateness.
    pub const DEFAULT_MAX_AHEAD_S: i64 = 300;
}

impl Default for ClockOptions {
    fn default() -> Self {
        ClockOptions {
            max_ahead_s: Self::DEFAULT_MAX_AHEAD_S,
            wall_clock: false,
            lateness_s: 0,
        }
    }
}

/// A record waiting for its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    pub event: Event,
    /// Its line (position in the source), for a dead letter.
    pub line: u64,
}

/// What the clock made of an arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// More than `max_ahead` seconds past `bound`: the event clock, or
    /// (`wall_clock`) the wall clock, when it was judged.
    Future {
        bound: i64,
        max_ahead: i64,
        wall_clock: bool,
    },
}

/// The clock's state, as state snapshots keep it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockSnapshot {
    pub now: Option<i64>,
    pub latest_admitted: Option<i64>,
    pub recent: Vec<i64>,
    pub pending: Vec<Arrival>,
}

pub struct EventClock {
    options: ClockOptions,
    /// What event time it is, as the majority of arrivals says.
    now: Option<i64>,
    /// The latest event time admitted: how far a quiet source lets the
    /// clock run.
    latest_admitted: Option<i64>,
    /// Times of the last [`SIDE`] arrivals decided, then of those pending,
    /// in arrival order, from `start` on: the neighbourhood as one
    /// contiguous run, so that a vote is a count over one short slice.
    /// Times before `start` are dropped now and then, not at each decision.
    times: Vec<i64>,
    start: usize,
    /// How many of `times` are decided arrivals' (the rest are the pending
    /// ones').
    decided: usize,
    /// Arrivals not yet decided, oldest first.
    pending: VecDeque<Arrival>,
    /// While the source is quiet: the wall time it went quiet and the clock
    /// then.
    quiet_since: Option<(i64, Option<i64>)>,
}

impl EventClock {
    pub fn new(options: ClockOptions) -> EventClock {
        EventClock {
            options: ClockOptions {
                max_ahead_s: options.max_ahead_s.max(0),
                lateness_s: options.lateness_s.max(0),
                ..options
            },
            now: None,
            latest_admitted: None,
            times: Vec::with_capacity(SPARE_TIMES + 2 * SIDE + 2),
            start: 0,
            decided: 0,
            pending: VecDeque::with_capacity(SIDE + 1),
            quiet_since: None,
        }
    }

    pub fn options(&self) -> ClockOptions {
        self.options
    }

    /// What event time it is, as far as the input testifies (`None` before
    /// anything is admitted).
    pub fn now(&self) -> Option<i64> {
        self.now
    }

    /// Arrivals waiting for their neighbours.
    pub fn pending(&self) -> std::collections::vec_deque::Iter<'_, Arrival> {
        self.pending.iter()
    }

    /// Takes an arrival; appends every arrival decided because of it to
    /// `out`, in arrival order. `wall_now`: the wall clock, Unix seconds.
    #[inline]
    pub fn arrive(&mut self, arrival: Arrival, wall_now: i64, out: &mut Vec<(Arrival, Verdict)>) {
        self.quiet_since = None;
        let ahead = self.options.max_ahead_s;
        if self.options.wall_clock && arrival.event.event_time > wall_now.saturating_add(ahead) {
            // Dated past the wall clock: nothing will ever vouch for it, and
            // it is no neighbour of the rest.
            let verdict = Verdict::Future {
                bound: wall_now,
                max_ahead: ahead,
                wall_clock: true,
            };
            out.push((arrival, verdict));
            return;
        }
        self.times.push(arrival.event.event_time);
        self.pending.push_back(arrival);
        // More than one waits past its neighbours only after a merge of
        // two parts' snapshots.
        while self.pending.len() > SIDE {
            self.decide_first(SIDE, out);
        }
    }

    /// Decides the first pending arrival against the last [`SIDE`] decided
    /// ones and the `after` pending after it. Near the end of what there is
    /// (`after` < [`SIDE`]) as many before it are asked as after it.
    fn decide_first(&mut self, after: usize, out: &mut Vec<(Arrival, Verdict)>) {
        let arrival = self.pending.pop_front().expect("an arrival is pending");
        let time = arrival.event.event_time;
        let centre = self.decided;
        let after = after.min(self.pending.len());
        let before = if after >= SIDE {
            centre
        } else {
            centre.min(after)
        };
        let count = before + after;
        let times = &self.times[self.start..];
        let neighbourhood = &times[centre - before..centre + 1 + after];
        // Steady state: all of them, a fixed size the compiler unrolls.
        let whole: Option<&[i64; 2 * SIDE + 1]> = neighbourhood.try_into().ok();
        // How many neighbours are at `earliest` or later (the centre, at
        // `time`, is, whatever `earliest` is asked).
        let at_least = |earliest: i64| -> usize {
            let at = |t: &i64| usize::from(*t >= earliest);
            match whole {
                Some(whole) => whole.iter().map(at).sum::<usize>() - 1,
                None => neighbourhood.iter().map(at).sum::<usize>() - 1,
            }
        };
        let majority = |n: usize| n * 2 >= count;
        let ahead = self.options.max_ahead_s;
        let admitted = self
            .now
            .is_some_and(|now| time <= now.saturating_add(ahead))
            || count == 0
            || majority(at_least(time.saturating_sub(ahead)));
        // In order, as most input is, every later neighbour is at or past
        // it: that half is the majority without counting the rest.
        let later_all_past =
            || 2 * after >= count && neighbourhood[before + 1..].iter().all(|&t| t >= time);
        let verdict = if admitted {
            if self.now.is_none_or(|now| time > now)
                && count > 0
                && (later_all_past() || majority(at_least(time)))
            {
                self.now = Some(time);
            }
            if self.latest_admitted.is_none_or(|latest| time > latest) {
                self.latest_admitted = Some(time);
            }
            Verdict::Admitted
        } else {
            Verdict::Future {
                bound: self.now.unwrap_or(time),
                max_ahead: ahead,
                wall_clock: false,
            }
        };
        // The centre joins the decided; the oldest of them leaves.
        if self.decided == SIDE {
            self.start += 1;
            if self.start == SPARE_TIMES {
                self.times.drain(..SPARE_TIMES);
                self.start = 0;
            }
        } else {
            self.decided += 1;
        }
        out.push((arrival, verdict));
    }

    /// The source is quiet (`wall_now`: the wall clock, Unix seconds):
    /// decides what waits with the neighbours there are, except an arrival
    /// with none after it that is too far ahead to vouch for itself, and
    /// moves the clock on as a quiet source lets it.
    pub fn quiet(&mut self, wall_now: i64, out: &mut Vec<(Arrival, Verdict)>) {
        while self.pending.len() > 1 {
            let after = self.pending.len() - 1;
            self.decide_first(after, out);
        }
        let (since, clock_then) = *self.quiet_since.get_or_insert((wall_now, self.now));
        let quiet_for = (wall_now - since).max(0);
        // What event time it is by now, had the stream gone on (from the
        // latest event, for a stream too short to have set the clock), and
        // never past the wall clock on a live source.
        let estimate = clock_then
            .or(self.now)
            .or(self.latest_admitted)
            .map(|then| then.saturating_add(quiet_for))
            .map(|estimate| match self.options.wall_clock {
                true => estimate.min(wall_now),
                false => estimate,
            });
        if let Some(last) = self.pending.front() {
            let time = last.event.event_time;
            // A live source checked it against the wall clock on arrival.
            let vouched = self.options.wall_clock
                || estimate.is_none_or(|now| time <= now.saturating_add(self.options.max_ahead_s));
            if vouched {
                self.decide_first(0, out);
            }
        }
        // Only once it has been quiet for as long as an event may be late
        // does the clock run on without votes: a pause between two bursts
        // changes nothing.
        let lateness = self.options.lateness_s;
        if quiet_for < lateness {
            return;
        }
        if let (Some(latest), Some(estimate)) = (self.latest_admitted, estimate) {
            let moved = estimate.min(latest.saturating_add(lateness + 1));
            if self.now.is_none_or(|now| moved > now) {
                self.now = Some(moved);
            }
        }
    }

    /// End of input: decides every arrival still waiting, with the
    /// neighbours there are. The last one has none after it and nothing
    /// after it to mislead: it is admitted.
    pub fn finish(&mut self, out: &mut Vec<(Arrival, Verdict)>) {
        while !self.pending.is_empty() {
            let after = self.pending.len() - 1;
            self.decide_first(after, out);
        }
    }

    /// Admits every arrival still waiting, without a vote and without
    /// moving the clock. For a restored state whose clock was forgotten
    /// (a fleet worker's, [`crate::shards::Snapshot::rewind_clock`]): its
    /// waiting arrivals may be hours from where the next arrivals set the
    /// clock, and as neighbours of those they would move the clock there
    /// and make the next ones late. At most [`SIDE`] per shard go unjudged.
    pub fn admit_pending(&mut self, out: &mut Vec<(Arrival, Verdict)>) {
        for arrival in self.pending.drain(..) {
            let time = arrival.event.event_time;
            self.latest_admitted = Some(self.latest_admitted.map_or(time, |t| t.max(time)));
            out.push((arrival, Verdict::Admitted));
        }
        self.times.truncate(self.start + self.decided);
    }

    pub fn snapshot(&self) -> ClockSnapshot {
        ClockSnapshot {
            now: self.now,
            latest_admitted: self.latest_admitted,
            recent: self.times[self.start..self.start + self.decided].to_vec(),
            pending: self.pending.iter().copied().collect(),
        }
    }

    pub fn restore(options: ClockOptions, snapshot: ClockSnapshot) -> EventClock {
        let mut clock = EventClock::new(options);
        clock.now = snapshot.now;
        clock.latest_admitted = snapshot.latest_admitted;
        let recent = &snapshot.recent[snapshot.recent.len().saturating_sub(SIDE)..];
        clock.times.extend_from_slice(recent);
        clock.decided = recent.len();
        clock
            .times
            .extend(snapshot.pending.iter().map(|a| a.event.event_time));
        clock.pending.extend(snapshot.pending);
        clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(t: i64, line: u64) -> Arrival {
        Arrival {
            event: Event {
                event_time: t,
                user: 0,
                computer: 0,
                ingestion_time: 0,
                event_id: None,
                detail: Default::default(),
            },
            line,
        }
    }

    /// Feeds `times` in order, then ends the input; returns the future lines.
    fn futures(options: ClockOptions, times: &[i64]) -> (Vec<u64>, EventClock) {
        let mut clock = EventClock::new(options);
        let mut out = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            clock.arrive(arrival(t, i as u64 + 1), 0, &mut out);
        }
        clock.finish(&mut out);
        assert_eq!(out.len(), times.len(), "every arrival is decided once");
        let lines = out
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Future { .. }))
            .map(|(a, _)| a.line)
            .collect();
        (lines, clock)
    }

    fn replay() -> ClockOptions {
        ClockOptions::default()
    }

    /// Arrivals a rewound state kept waiting, a day ahead of the next
    /// ones, are admitted as they are and leave the clock to the next.
    #[test]
    fn waiting_arrivals_of_a_rewound_state_do_not_set_the_clock() {
        let mut kept = EventClock::new(replay());
        let mut out = Vec::new();
        for (i, t) in (0..SIDE as i64).enumerate() {
            kept.arrive(arrival(86_400 + t, i as u64 + 1), 0, &mut out);
        }
        assert!(out.is_empty() && kept.pending().count() == SIDE);
        let snapshot = ClockSnapshot {
            pending: kept.snapshot().pending,
            ..ClockSnapshot::default()
        };
        let mut clock = EventClock::restore(replay(), snapshot);
        clock.admit_pending(&mut out);
        assert_eq!(out.len(), SIDE);
        assert!(out.iter().all(|(_, v)| *v == Verdict::Admitted));
        assert_eq!(clock.now(), None);
        out.clear();
        for i in 0..4 * SIDE as u64 {
            clock.arrive(arrival(100 + i as i64, 100 + i), 0, &mut out);
        }
        assert!(out.iter().all(|(_, v)| *v == Verdict::Admitted));
        assert!(
            clock.now().is_some_and(|now| now < 1_000),
            "{:?}",
            clock.now()
        );
    }

    #[test]
    fn a_lone_record_far_ahead_is_future_and_moves_nothing() {
        let mut times: Vec<i64> = (0..1000).collect();
        times.insert(500, 31_536_000);
        let (future, clock) = futures(replay(), &times);
        assert_eq!(future, [501]);
        // The last record has nothing after it to vouch for it.
        assert_eq!(clock.now(), Some(998));
    }

    #[test]
    fn a_record_just_within_reach_is_admitted_but_does_not_move_the_clock() {
        let mut clock = EventClock::new(replay());
        let mut out = Vec::new();
        for i in 0..100 {
            clock.arrive(arrival(1000 + i % 3, i as u64), 0, &mut out);
        }
        clock.arrive(arrival(1000 + 299, 100), 0, &mut out);
        for i in 101..120 {
            clock.arrive(arrival(1000 + i % 3, i as u64), 0, &mut out);
        }
        assert!(out.iter().all(|(_, v)| *v == Verdict::Admitted));
        assert!(clock.now().unwrap() <= 1002, "{:?}", clock.now());
    }

    #[test]
    fn the_first_record_cannot_set_the_clock_alone() {
        let mut times = vec![99_999_999];
        times.extend(0..50);
        let (future, clock) = futures(replay(), &times);
        assert_eq!(future, [1]);
        assert_eq!(clock.now(), Some(48));
    }

    #[test]
    fn a_gap_in_the_data_is_crossed_without_loss() {
        let mut times: Vec<i64> = (0..100).collect();
        times.extend(86_400..86_500);
        let (future, clock) = futures(replay(), &times);
        assert!(future.is_empty(), "{future:?}");
        assert_eq!(clock.now(), Some(86_498));
    }

    #[test]
    fn sparse_sorted_data_is_all_admitted() {
        let times = [
            0, 0, 0, 100, 3600, 172_800, 432_000, 694_800, 698_400, 864_000,
        ];
        let (future, _) = futures(replay(), &times);
        assert!(future.is_empty(), "{future:?}");
    }

    #[test]
    fn an_attacker_needs_most_of_the_stream_to_walk_the_clock() {
        // Every fourth record walks ahead by just under max_ahead.
        let mut clock = EventClock::new(replay());
        let mut out = Vec::new();
        let mut walk = 0;
        for i in 0..4000i64 {
            let t = if i % 4 == 0 {
                walk += 299;
                1_000 + walk
            } else {
                1_000 + i / 100
            };
            clock.arrive(arrival(t, i as u64), 0, &mut out);
        }
        assert!(clock.now().unwrap() <= 1_040, "{:?}", clock.now());
    }

    #[test]
    fn the_wall_clock_bounds_a_live_source() {
        let live = ClockOptions {
            wall_clock: true,
            lateness_s: 60,
            ..ClockOptions::default()
        };
        let mut clock = EventClock::new(live);
        let mut out = Vec::new();
        clock.arrive(arrival(2_000, 1), 1_000, &mut out);
        assert_eq!(
            out,
            [(
                arrival(2_000, 1),
                Verdict::Future {
                    bound: 1_000,
                    max_ahead: 300,
                    wall_clock: true,
                }
            )]
        );
        out.clear();
        for (i, t) in [(2, 900), (3, 1_200)] {
            clock.arrive(arrival(t, i), 1_000, &mut out);
        }
        clock.quiet(1_000, &mut out);
        assert_eq!(
            out,
            [
                (arrival(900, 2), Verdict::Admitted),
                (arrival(1_200, 3), Verdict::Admitted)
            ]
        );
        assert_eq!(clock.now(), Some(900));
        // Quiet as long as the lateness (60 s): the clock runs on with the
        // time spent quiet, never past the wall clock.
        clock.quiet(1_059, &mut out);
        assert_eq!(clock.now(), Some(900));
        clock.quiet(1_060, &mut out);
        assert_eq!(clock.now(), Some(960));
        clock.quiet(1_150, &mut out);
        assert_eq!(clock.now(), Some(1_050));
        clock.quiet(2_000, &mut out);
        assert_eq!(clock.now(), Some(1_261), "the latest event's lateness past");
        // Events dated a little ahead of the wall clock: quiet, the clock
        // does not run past it.
        let mut ahead = EventClock::new(live);
        for (i, t) in [(1, 1_250), (2, 1_260), (3, 1_270)] {
            ahead.arrive(arrival(t, i), 1_000, &mut out);
        }
        ahead.quiet(1_000, &mut out);
        assert_eq!(ahead.now(), Some(1_260));
        ahead.quiet(1_100, &mut out);
        assert_eq!(ahead.now(), Some(1_260));
    }

    #[test]
    fn a_quiet_stream_moves_on_with_the_time_it_has_been_quiet() {
        let mut clock = EventClock::new(ClockOptions {
            lateness_s: 5,
            ..replay()
        });
        let mut out = Vec::new();
        for (i, t) in [100, 101, 102, 110].into_iter().enumerate() {
            clock.arrive(arrival(t, i as u64), 50_000, &mut out);
        }
        assert!(out.is_empty(), "waiting for neighbours");
        clock.quiet(50_000, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(clock.now(), Some(102));
        clock.quiet(50_004, &mut out);
        assert_eq!(clock.now(), Some(102), "not quiet for the lateness yet");
        clock.quiet(50_005, &mut out);
        assert_eq!(clock.now(), Some(107));
        clock.quiet(50_100, &mut out);
        assert_eq!(
            clock.now(),
            Some(116),
            "the lateness and a second past the latest"
        );
    }

    #[test]
    fn a_quiet_stream_keeps_a_far_ahead_last_record_waiting() {
        let mut clock = EventClock::new(replay());
        let mut out = Vec::new();
        for (i, t) in [100, 101, 102, 1_000_000].into_iter().enumerate() {
            clock.arrive(arrival(t, i as u64), 0, &mut out);
        }
        clock.quiet(0, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(clock.pending().count(), 1);
        for (i, t) in (103..120).enumerate() {
            clock.arrive(arrival(t, 10 + i as u64), 0, &mut out);
        }
        clock.finish(&mut out);
        let future: Vec<_> = out
            .iter()
            .filter(|(_, v)| *v != Verdict::Admitted)
            .map(|(a, _)| a.event.event_time)
            .collect();
        assert_eq!(future, [1_000_000]);
    }

    #[test]
    fn snapshot_and_restore_decide_the_same() {
        let mut times: Vec<i64> = (0..300).map(|i| i / 2).collect();
        times.insert(150, 40_000_000);
        times.insert(40, 9_000);
        let (whole, _) = futures(replay(), &times);
        let mut clock = EventClock::new(replay());
        let mut out = Vec::new();
        for (i, &t) in times.iter().enumerate() {
            if i == 145 {
                clock = EventClock::restore(replay(), clock.snapshot());
            }
            clock.arrive(arrival(t, i as u64 + 1), 0, &mut out);
        }
        clock.finish(&mut out);
        let parts: Vec<u64> = out
            .iter()
            .filter(|(_, v)| *v != Verdict::Admitted)
            .map(|(a, _)| a.line)
            .collect();
        assert_eq!(whole, parts);
        assert_eq!(whole, [41, 152]);
    }
}
