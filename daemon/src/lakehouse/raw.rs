//! `auth_events_raw`: every valid record as it arrived, before ordering and
//! deduplication, with what admission made of it (`accepted`, `duplicate`,
//! `late`) and where it came from. Together with the dead-letter file it
//! accounts for every input line; with `auth_events_curated` it lets an
//! investigator reconcile what was received against what was scored.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use iceberg::arrow::UTC_TIME_ZONE;

use super::writer::{Chunked, Columns, TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use crate::sinks::{Received, ReceivedSink};

/// A [`ReceivedSink`] writing `auth_events_raw`.
pub struct RawSink {
    table: Chunked<RawColumns>,
}

impl RawSink {
    /// `source` names the input in every row (`file:NAME`, `stdin`, ...).
    pub fn start(warehouse: &Warehouse, source: &str) -> Result<RawSink, LakehouseError> {
        let writer = TableWriter::start(warehouse, tables::RAW)?;
        let columns = RawColumns::new(Arc::clone(writer.arrow_schema()), source);
        Ok(RawSink {
            table: Chunked::new(columns, writer),
        })
    }
}

impl RawSink {
    pub fn stats(&self) -> &WriterStats {
        self.table.stats()
    }
}

impl ReceivedSink for RawSink {
    fn receive(&mut self, record: &Received<'_>) -> std::io::Result<()> {
        self.table.columns.append(record);
        self.table.appended(1)
    }

    fn checkpoint(&mut self) -> std::io::Result<()> {
        self.table.start_commit()
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.table.commit_pending()
    }
}

struct RawColumns {
    schema: SchemaRef,
    source: String,
    event_id: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    user_id: StringBuilder,
    computer_id: StringBuilder,
    ingestion_time: TimestampMicrosecondBuilder,
    source_line: Int64Builder,
    admission: StringBuilder,
}

impl RawColumns {
    fn new(schema: SchemaRef, source: &str) -> Self {
        RawColumns {
            schema,
            source: source.to_string(),
            event_id: StringBuilder::new(),
            event_time: TimestampMicrosecondBuilder::new(),
            user_id: StringBuilder::new(),
            computer_id: StringBuilder::new(),
            ingestion_time: TimestampMicrosecondBuilder::new(),
            source_line: Int64Builder::new(),
            admission: StringBuilder::new(),
        }
    }

    #[inline]
    fn append(&mut self, record: &Received<'_>) {
        let mut hex = [0u8; 32];
        self.event_id
            .append_value(record.event_id.write_hex(&mut hex));
        self.event_time
            .append_value(record.event.event_time * 1_000_000);
        self.user_id.append_value(record.user);
        self.computer_id.append_value(record.computer);
        self.ingestion_time
            .append_value(record.event.ingestion_time * 1_000_000);
        self.source_line
            .append_value(i64::try_from(record.line).unwrap_or(i64::MAX));
        self.admission.append_value(record.disposition.as_str());
    }
}

impl Columns for RawColumns {
    fn rows(&self) -> usize {
        self.event_id.len()
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let tz = || Some(Arc::<str>::from(UTC_TIME_ZONE));
        let rows = self.rows();
        // One source per run: built whole here rather than copied per row.
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_time.finish().with_timezone_opt(tz())),
            Arc::new(self.user_id.finish()),
            Arc::new(self.computer_id.finish()),
            Arc::new(self.ingestion_time.finish().with_timezone_opt(tz())),
            Arc::new(StringArray::new_repeated(&self.source, rows)),
            Arc::new(self.source_line.finish()),
            Arc::new(self.admission.finish()),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}
