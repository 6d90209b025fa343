//! A table of few rows (alert publications: the `alerts` and
//! `ocsf_findings` tables): its rows are buffered and written as one batch
//! per commit, and every checkpoint commits, with its progress, even
//! without rows, so that every table records every checkpoint.

use std::collections::HashMap;
use std::io;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

use super::writer::{TableWriter, WriterStats};
use super::{LakehouseError, Warehouse};
use authpulse_engine::sinks::Progress;

/// What turns the buffered rows into the table's batch.
pub(super) type Encode<T> = fn(&SchemaRef, &[T]) -> Result<RecordBatch, ArrowError>;

pub(super) struct Buffered<T> {
    writer: TableWriter,
    encode: Encode<T>,
    pending: Vec<T>,
    /// The latest checkpoint's progress, which every commit carries.
    properties: HashMap<String, String>,
}

impl<T> Buffered<T> {
    pub(super) fn start(
        warehouse: &Warehouse,
        table: &'static str,
        encode: Encode<T>,
    ) -> Result<Buffered<T>, LakehouseError> {
        Ok(Buffered {
            writer: TableWriter::start(warehouse, table)?,
            encode,
            pending: Vec::new(),
            properties: HashMap::new(),
        })
    }

    pub(super) fn push(&mut self, row: T) {
        self.pending.push(row);
    }

    pub(super) fn stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Writes and commits the rows since the last commit, recording the
    /// checkpoint's progress (a commit without rows records it too).
    pub(super) fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.properties = progress.properties();
        self.commit(!self.properties.is_empty())
    }

    /// End of input: write and commit what is buffered.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        self.commit(false)
    }

    /// Writes what is pending and commits it, or commits nothing new but
    /// the progress when `always`.
    fn commit(&mut self, always: bool) -> io::Result<()> {
        if self.pending.is_empty() && !always {
            return Ok(());
        }
        if !self.pending.is_empty() {
            let batch = (self.encode)(self.writer.arrow_schema(), &self.pending)
                .map_err(|e| io::Error::other(LakehouseError::Arrow(e)))?;
            self.writer.write(batch)?;
        }
        self.writer.commit(self.properties.clone())?;
        self.pending.clear();
        Ok(())
    }
}
