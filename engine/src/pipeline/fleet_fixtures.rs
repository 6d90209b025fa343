//! Another worker of a fleet as a worker's trades show it, and a worker to
//! test against it (the fleet parts' tests).

use std::io;

use super::shared_hosts::{Progress, Traded};
use super::shared_risk::ComputerRisk;
use super::{HostExchange, Outputs, Pipeline, PipelineOptions};
use crate::input::Line;
use crate::policy::Policy;
use crate::sinks::Collect;
use crate::state::HostShare;

/// Another worker, as the trades show it.
pub(super) struct Other {
    pub(super) slowest: std::rc::Rc<std::cell::Cell<Option<i64>>>,
    pub(super) shares: Vec<HostShare>,
    pub(super) published: Vec<(usize, Progress)>,
    /// From this many trades on, every other shard is read to its end,
    /// through this time.
    pub(super) finished: Option<(usize, i64)>,
}

impl HostExchange for Other {
    fn shards(&self) -> usize {
        1
    }

    fn shard_of(&self, _user: &str) -> Option<usize> {
        Some(0)
    }

    fn opens_computer(&self, _computer: &str) -> bool {
        true
    }

    fn exchange(
        &mut self,
        shares: Vec<Vec<HostShare>>,
        _risk: Vec<Vec<ComputerRisk>>,
        progress: Progress,
        _wait: bool,
    ) -> io::Result<Option<Traded>> {
        self.published.push((shares[0].len(), progress));
        let latest = self
            .finished
            .filter(|&(after, _)| self.published.len() >= after)
            .map(|(_, through)| through);
        Ok(Some(Traded {
            shares: self.shares.clone(),
            risk: Vec::new(),
            slowest: self.slowest.get().filter(|_| latest.is_none()),
            latest,
        }))
    }
}

/// A pipeline scoring each event as it is released (native rules, into
/// `(scored, dead letters, alerts)`).
pub(super) fn worker((scored, dead, alerts): &mut (Collect, Collect, Collect)) -> Pipeline<'_> {
    Pipeline::new(
        Policy::builtin(),
        PipelineOptions {
            engine: crate::rules::Engine::Native,
            batch_size: 1,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: dead,
            alerts,
            scored,
            received: None,
        },
    )
    .unwrap()
}

/// An hour of logons to `C1` by three users in turn, one a minute (LANL
/// time 0 to 3,600).
pub(super) fn an_hour_on_c1(pipeline: &mut Pipeline<'_>) {
    for (n, t) in (0..=3_600).step_by(60).enumerate() {
        let line = format!("{t},U{},C1", n % 3);
        pipeline
            .push_line(n as u64 + 1, Line::Complete(line.as_bytes()))
            .unwrap();
    }
}

/// A pipeline whose computers are decided apart, as a fleet worker's.
pub(super) fn fleet_worker(
    (scored, dead, alerts): &mut (Collect, Collect, Collect),
) -> Pipeline<'_> {
    let mut pipeline = Pipeline::new(
        Policy::builtin(),
        PipelineOptions::default(),
        Outputs {
            dead_letters: dead,
            alerts,
            scored,
            received: None,
        },
    )
    .unwrap();
    pipeline.alerts.set_computers_apart();
    pipeline
}
