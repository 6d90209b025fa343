//! A table's sink as a run meets it: which of the pipeline's outputs it
//! takes ([`Role`]) and what it wrote. Each table's file implements
//! [`TableSink`]; [`super::start_sinks`] lists them. A new table is a new
//! file with its sink and one line there.

use super::writer::WriterStats;
use authpulse_engine::sinks::{AlertSink, ReceivedSink, ScoredSink};

/// Which of the pipeline's outputs a table takes.
pub enum Role<'a> {
    /// Every valid record as received.
    Received(&'a mut dyn ReceivedSink),
    /// Scored events, batch by batch.
    Scored(&'a mut dyn ScoredSink),
    /// Alert publications.
    Alerts(&'a mut dyn AlertSink),
}

/// A table's (or a few tables') sink in a run.
pub trait TableSink {
    fn role(&mut self) -> Role<'_>;
    /// Its tables' writer totals, as of the last commit.
    fn stats(&self) -> Vec<&WriterStats>;
}
