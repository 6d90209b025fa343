//! `auth_events_curated`: every scored event with its features and score.
//!
//! The pipeline thread appends each batch's rows to Arrow column builders (no
//! per-row allocation: strings are copied into the builders' buffers); every
//! chunk of rows they become a record batch for the table's writer
//! thread, and the end of input commits them.

use std::io;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use authpulse_rules_sdk::NO_PREVIOUS_LOGIN;
use iceberg::arrow::UTC_TIME_ZONE;

use super::writer::{Chunked, Columns, TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use crate::sinks::{ScoredBatch, ScoredSink};

/// A [`ScoredSink`] writing `auth_events_curated`.
pub struct CuratedSink {
    table: Chunked<CuratedColumns>,
}

impl CuratedSink {
    pub fn start(warehouse: &Warehouse) -> Result<CuratedSink, LakehouseError> {
        let writer = TableWriter::start(warehouse, tables::CURATED)?;
        let columns = CuratedColumns::new(Arc::clone(writer.arrow_schema()));
        Ok(CuratedSink {
            table: Chunked::new(columns, writer),
        })
    }

    pub fn stats(&self) -> &WriterStats {
        self.table.stats()
    }
}

impl ScoredSink for CuratedSink {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.table.columns.append(batch);
        self.table.appended(batch.events.len())
    }

    /// Start committing everything written so far (waited for at the next
    /// checkpoint or at the end).
    fn checkpoint(&mut self) -> io::Result<()> {
        self.table.start_commit()
    }

    /// End of input: commit everything written.
    fn flush(&mut self) -> io::Result<()> {
        self.table.commit_pending()
    }
}

/// Column builders in the order of the curated schema.
struct CuratedColumns {
    schema: SchemaRef,
    event_id: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    user_id: StringBuilder,
    computer_id: StringBuilder,
    ingestion_time: TimestampMicrosecondBuilder,
    counts: [Int32Builder; 7],
    user_tenure_s: Int64Builder,
    user_gap_s: Int64Builder,
    host_users_ever: Int32Builder,
    host_users_today: Int32Builder,
    new_device: BooleanBuilder,
    new_computer: BooleanBuilder,
    risk_score: Int32Builder,
    risk_level: StringBuilder,
    risk_flags: ListBuilder<StringBuilder>,
    policy_version: StringBuilder,
    processing_time: TimestampMicrosecondBuilder,
}

impl CuratedColumns {
    fn new(schema: SchemaRef) -> Self {
        CuratedColumns {
            risk_flags: list_builder(&schema, "risk_flags"),
            schema,
            event_id: StringBuilder::new(),
            event_time: TimestampMicrosecondBuilder::new(),
            user_id: StringBuilder::new(),
            computer_id: StringBuilder::new(),
            ingestion_time: TimestampMicrosecondBuilder::new(),
            counts: Default::default(),
            user_tenure_s: Int64Builder::new(),
            user_gap_s: Int64Builder::new(),
            host_users_ever: Int32Builder::new(),
            host_users_today: Int32Builder::new(),
            new_device: BooleanBuilder::new(),
            new_computer: BooleanBuilder::new(),
            risk_score: Int32Builder::new(),
            risk_level: StringBuilder::new(),
            policy_version: StringBuilder::new(),
            processing_time: TimestampMicrosecondBuilder::new(),
        }
    }

    fn append(&mut self, batch: &ScoredBatch<'_>) {
        let processing_us = unix_micros_now();
        let mut hex = [0u8; 32];
        for (i, (event, f)) in batch.events.iter().zip(batch.features).enumerate() {
            self.event_id
                .append_value(batch.event_id(i).write_hex(&mut hex));
            self.event_time.append_value(event.event_time * 1_000_000);
            self.user_id.append_value(batch.users.name(event.user));
            self.computer_id
                .append_value(batch.computers.name(event.computer));
            self.ingestion_time
                .append_value(event.ingestion_time * 1_000_000);
            let counts = [
                f.user_logins_1h,
                f.user_logins_24h,
                f.user_distinct_computers_1h,
                f.user_distinct_computers_24h,
                f.user_new_computers_1h,
                f.user_new_computers_24h,
                f.user_known_computers,
            ];
            for (builder, value) in self.counts.iter_mut().zip(counts) {
                builder.append_value(clamp_i32(value));
            }
            self.user_tenure_s.append_value(i64::from(f.user_tenure_s));
            if f.user_gap_s == NO_PREVIOUS_LOGIN {
                self.user_gap_s.append_null();
            } else {
                self.user_gap_s.append_value(i64::from(f.user_gap_s));
            }
            self.host_users_ever
                .append_value(clamp_i32(f.host_users_ever));
            self.host_users_today
                .append_value(clamp_i32(f.host_users_today));
            self.new_device.append_value(f.is_new_device());
            self.new_computer.append_value(f.is_new_computer());
            self.risk_score.append_value(i32::from(batch.scores[i]));
            self.risk_level.append_value(batch.levels[i].as_str());
            for flag in batch.flag_names(batch.flags[i]) {
                self.risk_flags.values().append_value(flag);
            }
            self.risk_flags.append(true);
            self.policy_version.append_value(batch.policy_version());
            self.processing_time.append_value(processing_us);
        }
    }
}

impl Columns for CuratedColumns {
    fn rows(&self) -> usize {
        self.event_id.len()
    }

    fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let tz = || Some(Arc::<str>::from(UTC_TIME_ZONE));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.event_time.finish().with_timezone_opt(tz())),
            Arc::new(self.user_id.finish()),
            Arc::new(self.computer_id.finish()),
            Arc::new(self.ingestion_time.finish().with_timezone_opt(tz())),
        ];
        columns.extend(
            self.counts
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend([
            Arc::new(self.user_tenure_s.finish()) as ArrayRef,
            Arc::new(self.user_gap_s.finish()),
            Arc::new(self.host_users_ever.finish()),
            Arc::new(self.host_users_today.finish()),
            Arc::new(self.new_device.finish()),
            Arc::new(self.new_computer.finish()),
            Arc::new(self.risk_score.finish()),
            Arc::new(self.risk_level.finish()),
            Arc::new(self.risk_flags.finish()),
            Arc::new(self.policy_version.finish()),
            Arc::new(self.processing_time.finish().with_timezone_opt(tz())),
        ]);
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// A list-of-strings builder whose element field (with its Iceberg field id)
/// matches column `name` of `schema`.
pub(super) fn list_builder(schema: &SchemaRef, name: &str) -> ListBuilder<StringBuilder> {
    match schema.field_with_name(name).map(|f| f.data_type()) {
        Ok(DataType::List(element)) => {
            ListBuilder::new(StringBuilder::new()).with_field(Arc::clone(element))
        }
        other => panic!("{name} must be a list column, found {other:?}"),
    }
}

#[inline]
fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

pub(super) fn unix_micros_now() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
