//! How a fleet worker keeps in step with the others: when it trades (by
//! wall time, and in a backfill by event time scored), how far it may score
//! ahead of the slowest other shard, and, at the end of a backfill, waiting
//! for the others to finish so that its last decisions take all of their
//! evidence. The trades themselves are [`super::shared_hosts`].

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Pipeline;
use crate::event::{DAY, HOUR};

/// A worker that has scored this much event time since its last trade
/// trades again (in the background) once [`MIN_TRADE_GAP`] has passed: in a
/// backfill a second is hours of event time, and computer features a second
/// old would be hours behind the other shards.
const TRADE_EVERY_EVENT_S: i64 = 300;

/// The least wall time between two trades, however fast event time goes:
/// what bounds a backfill's requests (a live stream trades every
/// [`FleetPace::trade_every`]).
const MIN_TRADE_GAP: Duration = Duration::from_millis(100);

/// How often a worker at the end of its input looks whether the others
/// have reached theirs.
const FINISH_WAIT_STEP: Duration = Duration::from_millis(100);

/// Which trade of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trade {
    /// Before the first event: the others' shares count from it on.
    First,
    /// While reading, every [`FleetPace::trade_every`]: in the background.
    While,
    /// At the end of input.
    Last,
}

/// How a fleet worker keeps in step with the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetPace {
    /// How often shares and progress are traded while reading (and, in a
    /// backfill, also after every five minutes of event time scored, ten
    /// times a second at most).
    pub trade_every: Duration,
    /// How far (event time, seconds) a worker may score ahead of the
    /// slowest other shard; `None`: no bound.
    pub max_drift_s: Option<i64>,
}

impl FleetPace {
    /// How far behind a worker's event time the workers reading its shares
    /// may score: the drift bound and an hour for the batch it is checked
    /// after (a day without a bound).
    pub(super) fn readers_behind_s(&self) -> i64 {
        self.max_drift_s.map_or(DAY, |drift| drift + HOUR)
    }
}

impl Pipeline<'_> {
    /// Trades if it is time to; says whether this worker is now too far
    /// ahead of the slowest other shard to go on. `idle`: the source has
    /// nothing to read now.
    pub(super) fn keep_pace(&mut self, idle: bool) -> bool {
        let Some(fleet) = self.fleet.as_mut() else {
            return false;
        };
        fleet.caught_up = idle;
        let since = fleet.last_trade.elapsed();
        let scored = self.closed_through.saturating_sub(fleet.traded_through);
        if since >= fleet.pace.trade_every
            || (since >= MIN_TRADE_GAP && scored >= TRADE_EVERY_EVENT_S)
        {
            self.trade_hosts(Trade::While);
        }
        let Some(fleet) = self.fleet.as_mut() else {
            return false;
        };
        let ahead = match (fleet.pace.max_drift_s, fleet.slowest) {
            (Some(drift), Some(slowest)) => self.closed_through > slowest.saturating_add(drift),
            _ => false,
        };
        match (ahead, fleet.waiting_since) {
            (true, None) => {
                fleet.waiting_since = Some(Instant::now());
                tracing::debug!(
                    scored_through = self.closed_through,
                    slowest = fleet.slowest,
                    "ahead of the fleet: waiting for the slowest shard"
                );
            }
            (false, Some(since)) => {
                fleet.waiting_since = None;
                self.counters.fleet.waited += since.elapsed();
            }
            _ => {}
        }
        ahead
    }

    /// At the end of a backfill: scores the events still held, then trades
    /// as a worker with nothing left to read until no other shard's worker
    /// has events left either, `stop` is set or `at_most` has passed.
    /// Without it a worker that finished first would decide its computers
    /// without the others' last evidence, which nobody would decide after
    /// it (an attack in the last hours of a backfill went unseen). Returns
    /// whether every other shard's worker finished. Outside a fleet: true.
    pub fn wait_for_fleet_to_finish(
        &mut self,
        stop: &AtomicBool,
        at_most: Duration,
    ) -> io::Result<bool> {
        if self.fleet.is_none() {
            return Ok(true);
        }
        self.release_held()?;
        let started = Instant::now();
        // The wait is counted whole, whatever the drift check in
        // `keep_pace` counted of it.
        let waited_before = self.counters.fleet.waited;
        let mut told = false;
        loop {
            self.keep_pace(true);
            let Some(fleet) = self.fleet.as_mut() else {
                return Ok(true);
            };
            let finished = fleet.slowest.is_none();
            let stopped = stop.load(Ordering::Relaxed);
            let timed_out = started.elapsed() >= at_most;
            if finished || stopped || timed_out {
                fleet.waiting_since = None;
                let waited = started.elapsed();
                self.counters.fleet.waited = waited_before + waited;
                let waited_s = waited.as_secs_f64();
                if finished && told {
                    tracing::info!(waited_s, "every other shard's worker has finished");
                } else if stopped && !finished {
                    tracing::info!(
                        waited_s,
                        "asked to stop while waiting for the other shards' workers"
                    );
                } else if !finished {
                    tracing::warn!(
                        slowest = fleet.slowest,
                        waited_s,
                        "finishing before every other shard's worker has: the computers this worker decides miss their last evidence"
                    );
                }
                return Ok(finished);
            }
            if !told {
                told = true;
                tracing::info!(
                    slowest = fleet.slowest,
                    "at the end of the input: waiting for the other shards' workers to reach theirs"
                );
            }
            std::thread::sleep(FINISH_WAIT_STEP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Line;
    use crate::pipeline::fleet_fixtures::{Other, an_hour_on_c1, worker};

    /// In a backfill, five minutes of event time scored make a trade, long
    /// before the wall-clock interval would.
    #[test]
    fn a_backfill_trades_by_event_time() {
        let mut other = Other {
            slowest: Default::default(),
            shares: Vec::new(),
            published: Vec::new(),
            finished: None,
        };
        let mut sinks = Default::default();
        let mut pipeline = worker(&mut sinks);
        let pace = FleetPace {
            trade_every: Duration::from_secs(3600),
            max_drift_s: None,
        };
        pipeline.share_hosts(&mut other, pace);
        let push_until = |pipeline: &mut Pipeline<'_>, from: i64, until: i64| {
            for t in (from..until).step_by(10) {
                let line = format!("{t},U1,C1");
                pipeline
                    .push_line(t as u64, Line::Complete(line.as_bytes()))
                    .unwrap();
            }
        };
        // The watermark holds five minutes: scored through ~4 minutes.
        push_until(&mut pipeline, 0, 540);
        std::thread::sleep(MIN_TRADE_GAP);
        pipeline.keep_pace(false);
        push_until(&mut pipeline, 540, 1_000);
        pipeline.keep_pace(false);
        std::thread::sleep(MIN_TRADE_GAP);
        pipeline.keep_pace(false);
        drop(pipeline);
        // The first trade (nothing scored), one once events are scored, none
        // within the least gap, then one five minutes of event time on.
        let through: Vec<i64> = other
            .published
            .iter()
            .map(|(_, p)| p.scored_through)
            .collect();
        assert_eq!(through.len(), 3, "{through:?}");
        assert!(
            through[2] - through[1] >= TRADE_EVERY_EVENT_S,
            "{through:?}"
        );
    }

    /// At the end of a backfill a worker scores what it holds, says it has
    /// finished, and trades until the other shards' workers have finished
    /// too; its last decisions then reach the last of their events.
    #[test]
    fn a_worker_at_the_end_waits_for_the_others() {
        let unix = |t: i64| crate::event::TimeBase::DEFAULT.to_unix(t);
        let mut other = Other {
            slowest: std::rc::Rc::new(std::cell::Cell::new(Some(0))),
            shares: Vec::new(),
            published: Vec::new(),
            finished: Some((5, unix(4_000))),
        };
        let mut sinks = Default::default();
        let mut pipeline = worker(&mut sinks);
        let pace = FleetPace {
            trade_every: Duration::ZERO,
            max_drift_s: None,
        };
        pipeline.share_hosts(&mut other, pace);
        an_hour_on_c1(&mut pipeline);
        assert!(
            pipeline.closed_through < unix(3_600),
            "the last minutes are held"
        );
        let stop = AtomicBool::new(false);
        let finished = pipeline
            .wait_for_fleet_to_finish(&stop, Duration::from_secs(60))
            .unwrap();
        assert!(finished);
        assert_eq!(
            pipeline.closed_through,
            unix(3_600),
            "everything held is scored"
        );
        pipeline.end_of_input().unwrap();
        let judged = pipeline.fleet.as_ref().unwrap().decisions.judged_through();
        assert_eq!(
            judged,
            unix(4_000),
            "decided through the others' last event"
        );
        drop(pipeline);
        // The first trade, then trades as a worker that has finished until
        // the others have, and the last.
        let waiting = &other.published[1..];
        assert!(waiting.len() >= 5, "{:?}", other.published);
        assert!(
            waiting
                .iter()
                .all(|(_, p)| p.caught_up && p.scored_through == unix(3_600)),
            "{waiting:?}"
        );

        // Asked to stop (or past its bound), it finishes without them.
        let mut other = Other {
            slowest: std::rc::Rc::new(std::cell::Cell::new(Some(0))),
            shares: Vec::new(),
            published: Vec::new(),
            finished: None,
        };
        let mut sinks = Default::default();
        let mut pipeline = worker(&mut sinks);
        pipeline.share_hosts(&mut other, pace);
        let stop = AtomicBool::new(true);
        let wait = pipeline.wait_for_fleet_to_finish(&stop, Duration::from_secs(60));
        assert!(!wait.unwrap());
        let stop = AtomicBool::new(false);
        let wait = pipeline.wait_for_fleet_to_finish(&stop, Duration::from_millis(300));
        assert!(!wait.unwrap());
    }
}
