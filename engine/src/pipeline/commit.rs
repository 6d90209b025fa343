//! The commit protocol: checkpoints on the commit interval (sinks, the
//! state snapshot and the progress record together), the end of input,
//! and a stop.

use crate::input::Frontier;
use crate::sinks::Progress;
use crate::snapshot::SnapshotError;
use std::io;
use std::time::Instant;

use super::{Pipeline, Summary};

impl<'o> Pipeline<'o> {
    /// Checkpoints the sinks if the commit interval has passed; says whether
    /// it did. `position` is where the source's next record starts.
    pub fn maybe_checkpoint(&mut self, position: serde_json::Value) -> io::Result<bool> {
        if !self.checkpoint_due() {
            return Ok(false);
        }
        // A quiet source adds nothing to commit; the last commit is waited
        // for, so that it is reported (logged, counted) now rather than when
        // input comes again.
        if self.counters.events_read == self.read_at_checkpoint {
            self.last_checkpoint = Instant::now();
            if let Some(received) = self.outputs.received.as_deref_mut() {
                received.flush()?;
            }
            self.outputs.scored.settle()?;
            return Ok(false);
        }
        self.checkpoint(position)?;
        Ok(true)
    }

    /// Whether the commit interval has passed since the last checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        self.options
            .commit_interval
            .is_some_and(|interval| self.last_checkpoint.elapsed() >= interval)
    }

    /// How far scoring has got, in event time (for the source's positions).
    pub fn frontier(&self) -> Frontier {
        // Released events wait only in the batch (`offer` drains `ready`);
        // the rest are held by the orderer.
        // Arrivals the clock has not decided on wait too.
        let undecided = || self.clock.pending().map(|a| a.event.event_time);
        let waiting = [
            self.batch.events.first().map(|e| e.event_time),
            self.orderer.earliest_held(),
            undecided().min(),
        ];
        Frontier {
            latest_read: self.orderer.latest().max(undecided().max()),
            scored_before: waiting.into_iter().flatten().min().unwrap_or(i64::MAX),
        }
    }

    /// Makes everything scored so far durable and visible. Events still held
    /// by the orderer, or waiting in a partial batch, are not part of it
    /// (they are part of the raw table's commit: it records arrivals). Table
    /// sinks may only start their commit here and finish it by the next
    /// checkpoint or [`Pipeline::finish`].
    ///
    /// With a state store, the state is snapshotted first (which scores the
    /// partial batch) and every sink's commit records the [`Progress`]:
    /// `position` (where the source's next record starts), the snapshot's
    /// name and the checkpoint's number.
    pub fn checkpoint(&mut self, position: serde_json::Value) -> io::Result<()> {
        let progress = self.progress(position, false)?;
        self.checkpoint_sinks(&progress)
    }

    pub(super) fn checkpoint_sinks(&mut self, progress: &Progress) -> io::Result<()> {
        self.log_caps();
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.checkpoint(progress)?;
        }
        self.outputs.scored.checkpoint(progress)?;
        self.outputs.alerts.checkpoint(progress)?;
        self.outputs.dead_letters.flush()?;
        self.last_checkpoint = Instant::now();
        self.read_at_checkpoint = self.counters.events_read;
        Ok(())
    }

    /// The next checkpoint's progress record, its state snapshot kept.
    pub(super) fn progress(
        &mut self,
        position: serde_json::Value,
        complete: bool,
    ) -> io::Result<Progress> {
        self.checkpoints += 1;
        let checkpoint = self.checkpoints;
        let state = match self.state_store.take() {
            Some(store) => {
                let started = Instant::now();
                let saved = if complete {
                    // The run's last: written as it is encoded, so that its
                    // payload is not held on top of everything else.
                    self.with_snapshot_parts(|parts| {
                        store
                            .save_streamed(checkpoint, &|out| parts.write_to(out))
                            .map_err(SnapshotError::Io)
                    })
                    .map(|(_, name)| name)
                    .map_err(io::Error::from)
                } else {
                    store.buffer().and_then(|buffer| {
                        let (_, encoded) = self.encode_snapshot_into(buffer)?;
                        store.save(checkpoint, encoded)
                    })
                };
                self.state_store = Some(store);
                let name = saved?;
                tracing::debug!(checkpoint, state = %name, ms = started.elapsed().as_millis() as u64, "state snapshot encoded");
                Some(name)
            }
            None => None,
        };
        Ok(Progress {
            checkpoint,
            complete,
            source: serde_json::json!({
                "identity": self.source_identity,
                "position": position,
            }),
            state,
        })
    }

    /// End of input: releases and scores every held event and closes every
    /// incident (their alerts go out). [`Pipeline::finish`] does this too;
    /// calling it first lets a caller read the final [`Pipeline::metrics`].
    pub fn end_of_input(&mut self) -> io::Result<()> {
        self.release_held()?;
        self.last_trade();
        self.alerts.close_all();
        self.emit_alerts()
    }

    /// Releases and scores every event held for lateness or order.
    pub(super) fn release_held(&mut self) -> io::Result<()> {
        self.clock.finish(&mut self.decided);
        self.admit_decided()?;
        let mut ready = std::mem::take(&mut self.ready);
        self.orderer
            .release_all((&self.users, &self.computers), &mut ready);
        self.ready = ready;
        self.process_ready()?;
        self.score_batch()
    }

    /// End of input: [`Pipeline::end_of_input`], then flushes the sinks and
    /// returns the summary.
    pub fn finish(self) -> io::Result<Summary> {
        self.finish_at(serde_json::Value::Null)
    }

    /// [`Pipeline::finish`], recording `position` (the end of the source)
    /// as the run's last, complete, progress.
    pub fn finish_at(mut self, position: serde_json::Value) -> io::Result<Summary> {
        self.end_of_input()?;
        self.outputs.dead_letters.flush()?;
        let progress = if self.state_store.is_some() || !position.is_null() {
            self.progress(position, true)?
        } else {
            Progress::default()
        };
        // Start the raw table's commit first, so that it runs beside the
        // curated table's, then wait for each.
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.checkpoint(&progress)?;
        }
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.flush()?;
        }
        if progress.checkpoint > 0 {
            self.outputs.scored.checkpoint(&progress)?;
            self.outputs.alerts.checkpoint(&progress)?;
        }
        self.outputs.alerts.flush()?;
        self.outputs.scored.flush()?;
        if let Some(store) = self.state_store.as_deref_mut() {
            store.flush()?;
        }
        Ok(self.summary())
    }

    /// Stops before the end of input (a signal, not the end of the file):
    /// commits what is scored, with `position` and the state, and waits for
    /// it. The events the watermark holds and the open incidents and
    /// aggregation windows stay open, in the snapshot, so that the next
    /// start resumes as if there had been no stop. Without a state store
    /// there is nothing to resume from, and this is [`Pipeline::finish_at`].
    pub fn stop_at(mut self, position: serde_json::Value) -> io::Result<Summary> {
        if self.state_store.is_none() {
            return self.finish_at(position);
        }
        self.checkpoint(position)?;
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.flush()?;
        }
        self.outputs.scored.settle()?;
        self.outputs.alerts.flush()?;
        if let Some(store) = self.state_store.as_deref_mut() {
            store.flush()?;
        }
        Ok(self.summary())
    }
}
