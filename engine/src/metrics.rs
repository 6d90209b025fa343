//! Operational metrics the pipeline keeps for publishers (CloudWatch, the
//! log): cumulative counters, and the distribution of processing lag (event
//! time to the time the pipeline read the event) since the last look.
//!
//! Recording is one subtraction and one array increment per event; the
//! histogram has fixed buckets, so quantiles come out without keeping values.

use std::time::Duration;

/// Lag in whole seconds, exact to 15 s, then in 8 steps per doubling (a
/// quantile is within 9% of the true value) up to 2^40 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LagHistogram {
    counts: Vec<u64>,
    total: u64,
}

const EXACT: u64 = 16;
const STEPS_PER_DOUBLING: u64 = 8;
const DOUBLINGS: u64 = 36;
const BUCKETS: usize = (EXACT + STEPS_PER_DOUBLING * DOUBLINGS) as usize;

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl LagHistogram {
    fn bucket(seconds: u64) -> usize {
        if seconds < EXACT {
            return seconds as usize;
        }
        let power = 63 - u64::from(seconds.leading_zeros()); // >= 4
        let step = (seconds >> (power - 3)) & (STEPS_PER_DOUBLING - 1);
        let bucket = EXACT + (power - 4) * STEPS_PER_DOUBLING + step;
        (bucket as usize).min(BUCKETS - 1)
    }

    /// The smallest value of bucket `b`.
    fn lower_bound(b: usize) -> u64 {
        let b = b as u64;
        if b < EXACT {
            return b;
        }
        let power = (b - EXACT) / STEPS_PER_DOUBLING + 4;
        let step = (b - EXACT) % STEPS_PER_DOUBLING;
        (1 << power) + (step << (power - 3))
    }

    /// Records one lag; negative lags (clock skew, future events) count as 0.
    #[inline]
    pub fn record(&mut self, seconds: i64) {
        self.counts[Self::bucket(seconds.max(0) as u64)] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The lag at quantile `q` (0..=1), as its bucket's lower bound; `None`
    /// when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::lower_bound(b));
            }
        }
        None
    }

    /// What was recorded after `earlier`, a copy of this histogram taken
    /// before.
    pub fn since(&self, earlier: &LagHistogram) -> LagHistogram {
        LagHistogram {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
            total: self.total.saturating_sub(earlier.total),
        }
    }

    /// Non-empty buckets as (representative seconds, count): what CloudWatch's
    /// `Values`/`Counts` take, so that it computes percentiles itself.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(b, &count)| (Self::lower_bound(b), count))
    }
}

/// Cumulative counts since start, lag included: a reader that wants an
/// interval's lag takes [`LagHistogram::since`] its previous snapshot's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub events_read: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Refused as dated too far ahead.
    pub future: u64,
    pub events_scored: u64,
    pub alerts: u64,
    pub rule_failures: u64,
    pub batches: u64,
    /// Summed time spent scoring batches.
    pub batch_time: Duration,
    /// Processing lag of every event read.
    pub lag: LagHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_close() {
        for seconds in 0..100_000u64 {
            let b = LagHistogram::bucket(seconds);
            let low = LagHistogram::lower_bound(b);
            assert!(low <= seconds, "{seconds} in bucket from {low}");
            assert!(LagHistogram::lower_bound(b + 1) > seconds, "{seconds}");
            assert!(
                (seconds - low) as f64 <= 0.125 * seconds as f64,
                "{seconds}: {low}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for seconds in 1..=100 {
            h.record(seconds);
        }
        h.record(-5);
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(0.0), Some(0));
        assert_eq!(h.quantile(0.5), Some(48), "50 lands in [48, 52)");
        assert_eq!(h.quantile(0.95), Some(88), "95 lands in [88, 96)");
        assert_eq!(h.quantile(1.0), Some(96));
        let total: u64 = h.buckets().map(|(_, n)| n).sum();
        assert_eq!(total, 101);
        let earlier = h.clone();
        for _ in 0..10 {
            h.record(1000);
        }
        let interval = h.since(&earlier);
        assert_eq!(interval.count(), 10);
        assert_eq!(
            interval.quantile(0.5),
            Some(960),
            "1000 lands in [960, 1024)"
        );
    }
}
