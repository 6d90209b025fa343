//! `auth_events_raw`: every valid record as it arrived, before ordering and
//! deduplication, with what admission made of it (`accepted`, `duplicate`,
//! `late`) and where it came from. Together with the dead-letter file it
//! accounts for every input line; with `auth_events_curated` it lets an
//! investigator reconcile what was received against what was scored. A
//! record's own id in the system that sent it (OCSF `metadata.uid`, ECS
//! `event.id`) is kept as `source_event_id`, so that a row leads back to it.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, SchemaRef};

use super::columns::{
    NameLog, Names, NewNames, RowIdentity, detail_columns, event_ids, strings, timestamps,
};
use super::sinks::{Role, TableSink};
use super::writer::{Chunked, Encoder, ROWS_PER_CHUNK, RowBuffer, TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::event::{EventId, NameId, TimeBase};
use authpulse_engine::logon::Detail;
use authpulse_engine::sinks::{Commit, Disposition, Progress, Received, ReceivedSink};

/// A [`ReceivedSink`] writing `auth_events_raw`.
pub struct RawSink {
    table: Chunked<RawRows>,
}

impl RawSink {
    /// `source` names the input in every row (`file:NAME`, `stdin`, ...).
    pub fn start(warehouse: &Warehouse, source: &str) -> Result<RawSink, LakehouseError> {
        let source: Arc<str> = source.into();
        let writer = TableWriter::start_with(warehouse, tables::RAW, |_| RawEncoder {
            source,
            names: Names::default(),
        })?;
        Ok(RawSink {
            table: Chunked::new(RawRows::default(), writer),
        })
    }
}

impl RawSink {
    pub fn stats(&self) -> &WriterStats {
        self.table.stats()
    }
}

impl Commit for RawSink {
    fn checkpoint(&mut self, progress: &Progress) -> std::io::Result<()> {
        self.table.start_commit(Some(progress.properties()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.table.commit_pending()
    }
}

impl ReceivedSink for RawSink {
    fn receive(&mut self, record: &Received<'_>) -> std::io::Result<()> {
        self.table.rows.append(record);
        self.table.appended(1)
    }
}

/// One received record, as the pipeline hands it to the writer.
#[derive(Clone, Copy)]
pub(super) struct RawRow {
    /// `None`: derived by the writer.
    event_id: Option<EventId>,
    event_time: i64,
    ingestion_time: i64,
    line: u64,
    user: NameId,
    computer: NameId,
    disposition: Disposition,
    detail: Detail,
    /// Where the record's own id is in the chunk's `source_ids`.
    source_event_id: Option<(u32, u32)>,
}

pub struct RawChunk {
    rows: Vec<RawRow>,
    time_base: TimeBase,
    names: NewNames,
    /// The records' own ids, one after another (rows point into it).
    source_ids: String,
}

#[derive(Default)]
struct RawRows {
    rows: Vec<RawRow>,
    time_base: TimeBase,
    names: NameLog,
    source_ids: String,
}

impl RawRows {
    #[inline]
    fn append(&mut self, record: &Received<'_>) {
        self.names.catch_up(record.users, record.computers);
        self.time_base = record.time_base;
        let source_event_id = record.source_event_id.map(|id| {
            let start = self.source_ids.len();
            self.source_ids.push_str(id);
            (start as u32, id.len() as u32)
        });
        self.rows.push(RawRow {
            event_id: record.event.event_id,
            event_time: record.event.event_time,
            ingestion_time: record.event.ingestion_time,
            line: record.line,
            user: record.event.user,
            computer: record.event.computer,
            disposition: record.disposition,
            detail: record.event.detail,
            source_event_id,
        });
    }
}

impl RowBuffer for RawRows {
    type Encoder = RawEncoder;

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn take(&mut self) -> RawChunk {
        RawChunk {
            rows: std::mem::replace(&mut self.rows, Vec::with_capacity(ROWS_PER_CHUNK)),
            names: self.names.take(),
            source_ids: std::mem::take(&mut self.source_ids),
            time_base: self.time_base,
        }
    }
}

pub struct RawEncoder {
    source: Arc<str>,
    names: Names,
}

impl Encoder for RawEncoder {
    type Rows = RawChunk;

    fn encode(&mut self, chunk: RawChunk, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        self.names.learn(chunk.names);
        let rows = &chunk.rows[..];
        // One source per run: built whole rather than copied per row.
        let details: Vec<Detail> = rows.iter().map(|r| r.detail).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(event_ids(rows.iter().map(|r| {
                let row = RowIdentity {
                    event_time: r.event_time,
                    user: r.user,
                    computer: r.computer,
                    detail: r.detail,
                };
                self.names.event_id(chunk.time_base, r.event_id, row)
            }))),
            Arc::new(timestamps(rows.iter().map(|r| r.event_time))),
            Arc::new(self.names.users(rows.iter().map(|r| r.user))),
            Arc::new(self.names.computers(rows.iter().map(|r| r.computer))),
            Arc::new(timestamps(rows.iter().map(|r| r.ingestion_time))),
            Arc::new(StringArray::new_repeated(&*self.source, rows.len())),
            Arc::new(Int64Array::from_iter_values(
                rows.iter()
                    .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX)),
            )),
            Arc::new(strings(rows.iter().map(|r| r.disposition.as_str()))),
        ];
        columns.extend(detail_columns(&self.names, &details));
        let ids = &chunk.source_ids;
        columns.push(Arc::new(StringArray::from_iter(rows.iter().map(|r| {
            r.source_event_id
                .map(|(start, len)| &ids[start as usize..(start + len) as usize])
        }))));
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

impl TableSink for RawSink {
    fn role(&mut self) -> Role<'_> {
        Role::Received(self)
    }

    fn stats(&self) -> Vec<&WriterStats> {
        vec![RawSink::stats(self)]
    }
}
