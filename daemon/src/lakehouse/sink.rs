//! Scored events into `auth_events_curated`.
//!
//! The pipeline thread appends each batch's rows to Arrow column builders (no
//! per-row allocation: strings are copied into the builders' buffers). Every
//! `rows_per_chunk` rows the columns become a `RecordBatch` that goes, through a
//! bounded channel, to a writer thread. That thread splits it by partition
//! (day of `event_time`) and streams it into rolling Parquet files; a commit
//! closes the files and appends them to the table in one Iceberg snapshot. So
//! encoding and compression run beside the pipeline, on the second core, and
//! a slow disk slows the pipeline down instead of buffering without bound.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use authpulse_rules_sdk::NO_PREVIOUS_LOGIN;
use iceberg::Catalog;
use iceberg::arrow::{RecordBatchPartitionSplitter, UTC_TIME_ZONE, schema_to_arrow_schema};
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{LakehouseError, Warehouse, tables};
use crate::sinks::{ScoredBatch, ScoredSink};

/// Rows per Arrow batch handed to the writer thread.
const DEFAULT_ROWS_PER_CHUNK: usize = 256 * 1024;
/// Target size of one Parquet data file.
const TARGET_FILE_BYTES: usize = 256 * 1024 * 1024;

/// What one commit added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    pub snapshot_id: Option<i64>,
    pub data_files: usize,
    pub rows: u64,
}

enum Command {
    Write(RecordBatch),
    Commit {
        properties: HashMap<String, String>,
        done: SyncSender<Result<CommitInfo, String>>,
    },
}

/// A [`ScoredSink`] writing `auth_events_curated`.
pub struct LakehouseSink {
    columns: CuratedColumns,
    rows_per_chunk: usize,
    to_writer: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<Result<(), LakehouseError>>>,
    rows_since_commit: u64,
    last_commit: CommitInfo,
}

impl LakehouseSink {
    /// Starts the writer thread for `auth_events_curated` in `warehouse`.
    pub fn start(warehouse: &Warehouse) -> Result<LakehouseSink, LakehouseError> {
        let table = warehouse.load(tables::CURATED)?;
        let arrow_schema: SchemaRef =
            Arc::new(schema_to_arrow_schema(table.metadata().current_schema())?);
        let (to_writer, commands) = sync_channel(2);
        let runtime = Arc::clone(warehouse.runtime());
        let catalog = Arc::clone(warehouse.catalog());
        let writer = std::thread::Builder::new()
            .name("curated-writer".into())
            .spawn(move || write_loop(&runtime, catalog.as_ref(), table, &commands))
            .map_err(LakehouseError::Runtime)?;
        Ok(LakehouseSink {
            columns: CuratedColumns::new(arrow_schema),
            rows_per_chunk: DEFAULT_ROWS_PER_CHUNK,
            to_writer: Some(to_writer),
            writer: Some(writer),
            rows_since_commit: 0,
            last_commit: CommitInfo::default(),
        })
    }

    /// What the last commit added.
    pub fn last_commit(&self) -> &CommitInfo {
        &self.last_commit
    }

    fn send(&mut self, command: Command) -> io::Result<()> {
        let sent = self
            .to_writer
            .as_ref()
            .is_some_and(|tx| tx.send(command).is_ok());
        if sent {
            return Ok(());
        }
        Err(io::Error::other(self.writer_failure()))
    }

    /// The writer thread's error, once it has stopped.
    fn writer_failure(&mut self) -> String {
        self.to_writer = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => format!("writing auth_events_curated failed: {e}"),
            Some(Err(_)) => "the auth_events_curated writer panicked".into(),
            _ => "the auth_events_curated writer has stopped".into(),
        }
    }

    fn ship_chunk(&mut self) -> io::Result<()> {
        if self.columns.rows() == 0 {
            return Ok(());
        }
        let batch = self.columns.finish().map_err(io::Error::other)?;
        self.send(Command::Write(batch))
    }

    /// Writes out buffered rows and commits them as one snapshot carrying
    /// `properties` in its summary.
    pub fn commit(&mut self, properties: HashMap<String, String>) -> io::Result<CommitInfo> {
        self.ship_chunk()?;
        let (done, result) = sync_channel(1);
        self.send(Command::Commit { properties, done })?;
        let info = match result.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(message)) => return Err(io::Error::other(message)),
            Err(_) => return Err(io::Error::other(self.writer_failure())),
        };
        tracing::info!(rows = info.rows, files = info.data_files, snapshot = ?info.snapshot_id, "committed auth_events_curated");
        self.rows_since_commit = 0;
        self.last_commit = info.clone();
        Ok(info)
    }
}

impl ScoredSink for LakehouseSink {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.columns.append(batch);
        self.rows_since_commit += batch.events.len() as u64;
        if self.columns.rows() >= self.rows_per_chunk {
            self.ship_chunk()?;
        }
        Ok(())
    }

    /// End of input: commit everything written.
    fn flush(&mut self) -> io::Result<()> {
        if self.rows_since_commit > 0 || self.columns.rows() > 0 {
            self.commit(HashMap::new())?;
        }
        Ok(())
    }
}

impl Drop for LakehouseSink {
    fn drop(&mut self) {
        self.to_writer = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

type CuratedWriter = FanoutWriter<
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>,
>;

fn new_writer(table: &Table) -> Result<CuratedWriter, LakehouseError> {
    let schema = table.metadata().current_schema().clone();
    // Event ids are random: a dictionary would only cost time and space.
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_column_dictionary_enabled(ColumnPath::from("event_id"), false)
        .build();
    let file_names = DefaultFileNameGenerator::new(
        "authpulse".to_string(),
        Some(uuid_suffix()),
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(properties, schema),
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        DefaultLocationGenerator::new(table.metadata())?,
        file_names,
    );
    Ok(FanoutWriter::new(DataFileWriterBuilder::new(rolling)))
}

/// A unique suffix per writer, so files of different commits never collide.
fn uuid_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

fn write_loop(
    runtime: &tokio::runtime::Runtime,
    catalog: &dyn Catalog,
    mut table: Table,
    commands: &Receiver<Command>,
) -> Result<(), LakehouseError> {
    let schema = table.metadata().current_schema().clone();
    let spec = table.metadata().default_partition_spec().clone();
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
    let mut writer: Option<CuratedWriter> = None;
    let mut rows: u64 = 0;
    for command in commands {
        match command {
            Command::Write(batch) => {
                if writer.is_none() {
                    writer = Some(new_writer(&table)?);
                }
                let open = writer.as_mut().expect("created above");
                rows += batch.num_rows() as u64;
                for (key, part) in splitter.split(&batch)? {
                    runtime.block_on(open.write(key, part))?;
                }
            }
            Command::Commit { properties, done } => {
                let outcome = commit(
                    runtime,
                    catalog,
                    &mut table,
                    writer.take(),
                    properties,
                    rows,
                );
                rows = 0;
                let failed = outcome.as_ref().err().map(ToString::to_string);
                let _ = done.send(outcome.map_err(|e| e.to_string()));
                if let Some(message) = failed {
                    return Err(LakehouseError::WriterGone(message));
                }
            }
        }
    }
    Ok(())
}

fn commit(
    runtime: &tokio::runtime::Runtime,
    catalog: &dyn Catalog,
    table: &mut Table,
    writer: Option<CuratedWriter>,
    properties: HashMap<String, String>,
    rows: u64,
) -> Result<CommitInfo, LakehouseError> {
    let Some(writer) = writer else {
        return Ok(CommitInfo::default());
    };
    let files = runtime.block_on(writer.close())?;
    if files.is_empty() {
        return Ok(CommitInfo::default());
    }
    let data_files = files.len();
    let transaction = Transaction::new(table);
    let append = transaction
        .fast_append()
        .add_data_files(files)
        .set_snapshot_properties(properties);
    let transaction = append.apply(transaction)?;
    *table = runtime.block_on(transaction.commit(catalog))?;
    Ok(CommitInfo {
        snapshot_id: table.metadata().current_snapshot_id(),
        data_files,
        rows,
    })
}

/// Column builders in the order of the curated schema.
struct CuratedColumns {
    schema: SchemaRef,
    flag_field: Arc<Field>,
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
        let flag_field = match schema.field_with_name("risk_flags").map(|f| f.data_type()) {
            Ok(DataType::List(element)) => Arc::clone(element),
            other => panic!("risk_flags must be a list in the curated schema, found {other:?}"),
        };
        CuratedColumns {
            risk_flags: ListBuilder::new(StringBuilder::new()).with_field(Arc::clone(&flag_field)),
            flag_field,
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

    fn rows(&self) -> usize {
        self.event_id.len()
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
            self.policy_version.append_value(batch.policy_version);
            self.processing_time.append_value(processing_us);
        }
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
        debug_assert!(matches!(self.flag_field.data_type(), DataType::Utf8));
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

#[inline]
fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn unix_micros_now() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
