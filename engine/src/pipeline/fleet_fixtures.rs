//! Another worker of a fleet as a worker's trades show it, and a worker to
//! test against it (the fleet parts' tests).

use std::io;

use super::shared_hosts::{Progress, Traded};
use super::shared_risk::ComputerRisk;
use super::{HostExchange, Outputs, Pipeline, PipelineOptions};
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
