//! One writer thread per table: the pipeline thread hands it chunks of rows
//! through a bounded channel; the thread turns them into Arrow record batches
//! (the table's [`Encoder`]), splits those by the table's partition spec and
//! streams them into rolling Parquet files; a commit closes the files and
//! appends them to the table as one Iceberg snapshot.
//!
//! The event tables' chunks are compact fixed-size rows (interned ids, times,
//! features), so building the string columns, hex ids included, and the
//! Parquet encoding and compression all run beside the pipeline, not on it.
//! A slow disk slows the pipeline down (the channel is bounded) instead of
//! buffering without end.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{ArrowError, SchemaRef};
use iceberg::Catalog;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{
    DataFile, DataFileFormat, Literal, PartitionKey, PrimitiveType, Struct, Transform, Type,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::tables::ColumnLayout;
use super::{LakehouseError, Warehouse, tables};

/// Target size of one Parquet data file.
const TARGET_FILE_BYTES: usize = 256 * 1024 * 1024;

/// What one commit added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    pub snapshot_id: Option<i64>,
    pub data_files: usize,
    pub rows: u64,
    /// Parquet bytes written.
    pub bytes: u64,
    /// Writer-thread time spent partitioning and encoding since the last commit.
    pub busy: Duration,
    /// When the snapshot was in the catalog (`None`: nothing to commit).
    pub landed: Option<Instant>,
}

/// One table writer's totals, for benchmarks and the run's log.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriterStats {
    pub table: &'static str,
    pub rows: u64,
    pub data_files: usize,
    pub bytes: u64,
    /// Writer-thread time spent partitioning, encoding and compressing.
    pub busy_s: f64,
    /// Wall time of each commit with rows, from the request to the new
    /// snapshot in the catalog: the chunks queued before the request, closing
    /// the open files, and the catalog commit.
    pub commit_s: Vec<f64>,
}

/// Turns the rows a sink collects on the pipeline thread into Arrow record
/// batches, on the table's writer thread.
pub trait Encoder: Send + 'static {
    /// One chunk of rows as the pipeline hands it over.
    type Rows: Send + 'static;
    fn encode(&mut self, rows: Self::Rows, schema: &SchemaRef) -> Result<RecordBatch, ArrowError>;
}

/// For tables whose few rows are built into record batches by the sink itself
/// (alerts, aggregates).
pub struct Prebuilt;

impl Encoder for Prebuilt {
    type Rows = RecordBatch;
    fn encode(&mut self, rows: RecordBatch, _: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        Ok(rows)
    }
}

enum Command<R> {
    Write(R),
    Commit {
        properties: HashMap<String, String>,
        done: SyncSender<Result<CommitInfo, Arc<LakehouseError>>>,
    },
}

/// The pipeline side of one table's writer thread.
pub struct TableWriter<E: Encoder = Prebuilt> {
    table: &'static str,
    stats: WriterStats,
    arrow_schema: SchemaRef,
    writer: Worker<Command<E::Rows>>,
}

impl TableWriter<Prebuilt> {
    /// Starts the writer thread for `table` in `warehouse`, taking record batches.
    pub fn start(
        warehouse: &Warehouse,
        table: &'static str,
    ) -> Result<TableWriter<Prebuilt>, LakehouseError> {
        TableWriter::start_with(warehouse, table, |_| Prebuilt)
    }
}

impl<E: Encoder> TableWriter<E> {
    /// Starts the writer thread for `table` in `warehouse`, with the encoder
    /// `encoder` makes for the table's Arrow schema.
    pub(super) fn start_with(
        warehouse: &Warehouse,
        table: &'static str,
        encoder: impl FnOnce(&SchemaRef) -> E,
    ) -> Result<TableWriter<E>, LakehouseError> {
        let layouts = tables::definition(table).map_or(&[][..], |t| t.layouts);
        let loaded = warehouse.load(table)?;
        let arrow_schema: SchemaRef =
            Arc::new(schema_to_arrow_schema(loaded.metadata().current_schema())?);
        let runtime = Arc::clone(warehouse.runtime());
        let catalog = Arc::clone(warehouse.catalog());
        let encoder = encoder(&arrow_schema);
        let schema = Arc::clone(&arrow_schema);
        let what = format!("the {table} writer");
        let writer = Worker::spawn(format!("{table}-writer"), what, move |commands| {
            let sink = TableSink {
                runtime: &runtime,
                catalog: catalog.as_ref(),
                layouts,
            };
            sink.run(loaded, encoder, &schema, &commands)
        })?;
        Ok(TableWriter {
            table,
            stats: WriterStats {
                table,
                ..WriterStats::default()
            },
            arrow_schema,
            writer,
        })
    }

    /// Totals so far.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// The table's schema as Arrow (with Iceberg field ids), for building batches.
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// Queues rows for writing (blocks while the writer is two chunks behind).
    pub fn write(&mut self, rows: E::Rows) -> io::Result<()> {
        self.send(Command::Write(rows))
    }

    fn send(&mut self, command: Command<E::Rows>) -> io::Result<()> {
        self.writer.send(command)
    }

    /// Asks the writer thread to commit everything written so far as one
    /// snapshot carrying `properties` in its summary, without waiting for it:
    /// the pipeline goes on while the files are closed and the catalog
    /// updated, and the tables' writers commit side by side.
    pub fn request_commit(
        &mut self,
        properties: HashMap<String, String>,
    ) -> io::Result<PendingCommit> {
        let (done, result) = sync_channel(1);
        self.send(Command::Commit { properties, done })?;
        Ok(PendingCommit {
            requested: Instant::now(),
            result,
        })
    }

    /// Waits for a commit [`TableWriter::request_commit`] asked for.
    pub fn await_commit(&mut self, pending: PendingCommit) -> io::Result<CommitInfo> {
        let info = match pending.result.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(io::Error::other(LakehouseError::Shared(e))),
            Err(_) => return Err(io::Error::other(self.writer.failure())),
        };
        self.stats.busy_s += info.busy.as_secs_f64();
        let landed = info.landed.unwrap_or_else(Instant::now);
        let took = landed.duration_since(pending.requested).as_secs_f64();
        crate::ops::prometheus::count_commit(self.table, info.rows, info.bytes, took);
        if info.rows > 0 {
            self.stats.rows += info.rows;
            self.stats.data_files += info.data_files;
            self.stats.bytes += info.bytes;
            self.stats.commit_s.push(took);
            tracing::info!(table = self.table, rows = info.rows, files = info.data_files, snapshot = ?info.snapshot_id, "committed");
        }
        Ok(info)
    }

    /// Commits everything written so far and waits for the snapshot.
    pub fn commit(&mut self, properties: HashMap<String, String>) -> io::Result<CommitInfo> {
        let pending = self.request_commit(properties)?;
        self.await_commit(pending)
    }
}

/// The table error an I/O error of [`TableWriter`] carries (every one it
/// returns does), for a thread that reports table errors.
pub(super) fn table_error(error: io::Error) -> LakehouseError {
    if error.get_ref().is_some_and(|e| e.is::<LakehouseError>()) {
        let inner = error.into_inner().expect("checked above");
        return *inner.downcast::<LakehouseError>().expect("checked above");
    }
    LakehouseError::WriterGone(error.to_string())
}

/// A commit the writer thread has been asked for and not yet reported on.
pub struct PendingCommit {
    requested: Instant,
    result: Receiver<Result<CommitInfo, Arc<LakehouseError>>>,
}

/// A thread fed through a bounded channel (two messages deep, so a slow
/// thread slows its sender down instead of buffering without end), joined on
/// drop; a send to a thread that has stopped reports why it stopped.
pub(super) struct Worker<M> {
    /// What the thread is, for messages (`the auth_events_raw writer`).
    what: String,
    to_thread: Option<SyncSender<M>>,
    thread: Option<JoinHandle<Result<(), LakehouseError>>>,
}

impl<M: Send + 'static> Worker<M> {
    /// Starts `run` on a thread called `name` (short: Linux keeps 15
    /// characters); `what` names it in messages.
    pub(super) fn spawn(
        name: String,
        what: String,
        run: impl FnOnce(Receiver<M>) -> Result<(), LakehouseError> + Send + 'static,
    ) -> Result<Worker<M>, LakehouseError> {
        let (to_thread, messages) = sync_channel(2);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(messages))
            .map_err(LakehouseError::Runtime)?;
        Ok(Worker {
            what,
            to_thread: Some(to_thread),
            thread: Some(thread),
        })
    }

    /// Sends `message`, blocking while the thread is two messages behind.
    pub(super) fn send(&mut self, message: M) -> io::Result<()> {
        let sent = self
            .to_thread
            .as_ref()
            .is_some_and(|tx| tx.send(message).is_ok());
        if sent {
            return Ok(());
        }
        Err(io::Error::other(self.failure()))
    }

    /// Why the thread stopped (it has, or is stopping).
    pub(super) fn failure(&mut self) -> LakehouseError {
        self.to_thread = None;
        let what = self.what.clone();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => LakehouseError::Writer {
                what,
                source: Box::new(e),
            },
            Some(Err(_)) => LakehouseError::WriterPanicked(what),
            _ => LakehouseError::WriterGone(what),
        }
    }
}

impl<M> Drop for Worker<M> {
    fn drop(&mut self) {
        self.to_thread = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where a sink collects one table's rows on the pipeline thread.
pub(super) trait RowBuffer {
    type Encoder: Encoder;
    fn rows(&self) -> usize;
    /// The rows collected so far as one chunk; the buffer starts empty again.
    fn take(&mut self) -> <Self::Encoder as Encoder>::Rows;
}

/// Rows per chunk handed to a writer thread: large enough to amortise the
/// per-chunk costs, small enough to keep the buffers in flight modest (about
/// 6 MiB of curated rows).
pub(super) const ROWS_PER_CHUNK: usize = 64 * 1024;

/// Rows collected on the pipeline thread leave for the writer thread
/// every [`ROWS_PER_CHUNK`] rows, and are committed on checkpoint or at the end.
///
/// A checkpoint only starts its commit ([`Chunked::start_commit`]); the next
/// checkpoint, or [`Chunked::commit_pending`] at the end, waits for it. So the
/// pipeline does not stall on file closes and catalog round trips, and at the
/// end all tables commit at once rather than one after another.
pub(super) struct Chunked<B: RowBuffer> {
    pub(super) rows: B,
    writer: TableWriter<B::Encoder>,
    uncommitted: u64,
    in_flight: Option<PendingCommit>,
    /// The snapshot summary properties of the latest checkpoint (its
    /// progress), which every commit carries.
    properties: HashMap<String, String>,
}

impl<B: RowBuffer> Chunked<B> {
    pub(super) fn new(rows: B, writer: TableWriter<B::Encoder>) -> Self {
        Chunked {
            rows,
            writer,
            uncommitted: 0,
            in_flight: None,
            properties: HashMap::new(),
        }
    }

    /// Call after adding `rows` rows to the buffer.
    pub(super) fn appended(&mut self, rows: usize) -> io::Result<()> {
        self.uncommitted += rows as u64;
        if self.rows.rows() >= ROWS_PER_CHUNK {
            self.ship()?;
        }
        Ok(())
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.rows.rows() == 0 {
            return Ok(());
        }
        let chunk = self.rows.take();
        self.writer.write(chunk)
    }

    /// Starts committing what was appended since the last commit, once the
    /// previous commit has landed; does not wait. With new `properties` (a
    /// checkpoint's progress) it commits even with no rows, so that every
    /// table records every checkpoint.
    pub(super) fn start_commit(
        &mut self,
        properties: Option<HashMap<String, String>>,
    ) -> io::Result<()> {
        self.settle()?;
        let new_progress = properties.as_ref().is_some_and(|p| !p.is_empty());
        if let Some(properties) = properties {
            self.properties = properties;
        }
        if self.uncommitted > 0 || self.rows.rows() > 0 || new_progress {
            self.ship()?;
            self.in_flight = Some(self.writer.request_commit(self.properties.clone())?);
            self.uncommitted = 0;
        }
        Ok(())
    }

    /// Waits for the commit in flight, if any.
    fn settle(&mut self) -> io::Result<()> {
        if let Some(pending) = self.in_flight.take() {
            self.writer.await_commit(pending)?;
        }
        Ok(())
    }

    pub(super) fn stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Commits what is pending and waits until every commit has landed.
    pub(super) fn commit_pending(&mut self) -> io::Result<()> {
        self.start_commit(None)?;
        self.settle()
    }
}

type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Rows per Parquet row group. A file's open row group is held in memory,
/// encoded, until it is full; parquet's default (1Mi rows) held hundreds of
/// MB across the tables' open files.
const MAX_ROW_GROUP_ROWS: usize = 256 * 1024;

/// The same bound in bytes, whichever comes first: 256Ki rows of the
/// curated table are 20-25 MB in memory, and with both tables' open files
/// the row groups held 280 MB at full scale.
const MAX_ROW_GROUP_BYTES: usize = 12 << 20;

/// Partitions whose files stay open at once. Rows reach a table in (nearly)
/// the order of its partition column (event or ingestion time), so the
/// partitions in use at any moment are the current one and perhaps its
/// neighbour; keeping every partition of a long run open held each one's
/// unflushed row group in memory (1.4 GB for 14 days of `auth_events_raw`'s
/// 336 hours), and a third open partition cost 40-80 MB at full scale for
/// the same files.
const MAX_OPEN_PARTITIONS: usize = 2;

/// Writes each partition's rows to its own rolling files, like iceberg's
/// `FanoutWriter`, but keeps at most [`MAX_OPEN_PARTITIONS`] open: writing to
/// another closes the one written least recently (its files are kept for
/// the commit). Rows that come back to a closed partition start a new file
/// in it, which Iceberg allows; memory stays bounded whatever the order.
pub(super) struct PartitionedWriter {
    builder: FileWriterBuilder,
    /// Open writers, least recently written first.
    open: Vec<(Struct, <FileWriterBuilder as IcebergWriterBuilder>::R)>,
    closed: Vec<DataFile>,
}

impl PartitionedWriter {
    fn new(builder: FileWriterBuilder) -> PartitionedWriter {
        PartitionedWriter {
            builder,
            open: Vec::new(),
            closed: Vec::new(),
        }
    }

    pub(super) async fn write(
        &mut self,
        key: PartitionKey,
        batch: RecordBatch,
    ) -> iceberg::Result<()> {
        let position = self.open.iter().position(|(p, _)| p == key.data());
        let mut entry = match position {
            Some(i) => self.open.remove(i),
            None => {
                if self.open.len() == MAX_OPEN_PARTITIONS {
                    let (_, mut oldest) = self.open.remove(0);
                    self.closed.extend(oldest.close().await?);
                }
                let writer = self.builder.build(Some(key.clone())).await?;
                (key.data().clone(), writer)
            }
        };
        let written = entry.1.write(batch).await;
        self.open.push(entry);
        written
    }

    /// Closes every file; returns all of them, the ones closed before too.
    pub(super) async fn close(mut self) -> iceberg::Result<Vec<DataFile>> {
        for (_, mut writer) in self.open.drain(..) {
            self.closed.extend(writer.close().await?);
        }
        Ok(self.closed)
    }
}

pub(super) fn new_writer(
    table: &Table,
    layouts: &[(&str, ColumnLayout)],
) -> Result<PartitionedWriter, LakehouseError> {
    let schema = table.metadata().current_schema().clone();
    let properties = writer_properties(layouts);
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
    Ok(PartitionedWriter::new(DataFileWriterBuilder::new(rolling)))
}

/// How a table's files are written, column by column as `layouts` says.
fn writer_properties(layouts: &[(&str, ColumnLayout)]) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        // zstd level 3 cost 20% throughput for a smaller file.
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid zstd level"),
        ))
        // Version 2 data pages (every engine that reads Iceberg reads them):
        // the columns without a dictionary below are delta encoded, which is
        // smaller and cheaper to compress than plain values.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        // What a dictionary column would fall back to. Version 2's default
        // is a delta encoder, which the Parquet writer creates with every
        // row group of every column, reserving 1-2 MiB each whether or not
        // the dictionary ever fills: ~100 MB across the open files at full
        // scale. The dictionary columns here (names, counts, levels) never
        // leave their dictionary within a row group, so plain is only a
        // fallback, and costs nothing until it is used.
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES));
    for (column, layout) in layouts {
        let path = || ColumnPath::from(*column);
        properties = match layout {
            ColumnLayout::RandomId => properties
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), Encoding::DELTA_BYTE_ARRAY)
                .set_column_statistics_enabled(path(), EnabledStatistics::None),
            ColumnLayout::Unordered => {
                properties.set_column_statistics_enabled(path(), EnabledStatistics::None)
            }
            ColumnLayout::Ascending => properties
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED),
        };
    }
    properties.build()
}

/// A unique suffix per writer, so files of different commits never collide.
pub(super) fn uuid_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

/// Cuts record batches into one batch per partition.
///
/// The tables that carry volume are partitioned by `hour` or `day` of a
/// timestamp column, and their rows arrive in (or nearly in) that column's
/// order, so a batch is a few runs of equal partition value: those are cut as
/// zero-copy slices, with the partition value computed by integer division.
/// Any other spec, or a batch whose rows are scattered across partitions,
/// goes through iceberg's general splitter (which computes every row's value
/// and copies rows into per-partition batches).
pub(super) struct Splitter {
    runs: Option<RunSplit>,
    general: RecordBatchPartitionSplitter,
}

struct RunSplit {
    column: usize,
    unit_micros: i64,
    key: PartitionKey,
}

/// More runs than this in one batch: the rows are not ordered by partition.
const MAX_RUNS: usize = 64;

impl Splitter {
    pub(super) fn new(table: &Table) -> Result<Splitter, LakehouseError> {
        let schema = table.metadata().current_schema().clone();
        let spec = table.metadata().default_partition_spec().clone();
        let runs = match spec.fields() {
            [field] => {
                let unit_micros = match field.transform {
                    Transform::Hour => Some(3_600_000_000),
                    Transform::Day => Some(86_400_000_000),
                    _ => None,
                };
                let source = schema.field_by_id(field.source_id);
                let column = schema
                    .as_struct()
                    .fields()
                    .iter()
                    .position(|f| f.id == field.source_id);
                let is_timestamp = source.is_some_and(|f| {
                    matches!(
                        *f.field_type,
                        Type::Primitive(PrimitiveType::Timestamptz | PrimitiveType::Timestamp)
                    )
                });
                match (unit_micros, column, is_timestamp) {
                    (Some(unit_micros), Some(column), true) => Some(RunSplit {
                        column,
                        unit_micros,
                        key: PartitionKey::new(
                            (*spec).clone(),
                            Arc::clone(&schema),
                            Struct::from_iter([Some(Literal::int(0))]),
                        ),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        let general = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
        Ok(Splitter { runs, general })
    }

    pub(super) fn split(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(PartitionKey, RecordBatch)>, LakehouseError> {
        if let Some(runs) = &self.runs
            && let Some(parts) = runs.split(batch)
        {
            return Ok(parts);
        }
        Ok(self.general.split(batch)?)
    }
}

impl RunSplit {
    /// `None` when the batch has too many runs to be worth slicing.
    fn split(&self, batch: &RecordBatch) -> Option<Vec<(PartitionKey, RecordBatch)>> {
        let times = batch
            .column(self.column)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()?;
        if times.null_count() > 0 {
            return None;
        }
        let values = times.values();
        let mut parts = Vec::new();
        let mut start = 0;
        while start < values.len() {
            let value = values[start].div_euclid(self.unit_micros);
            let run = values[start..]
                .iter()
                .position(|t| t.div_euclid(self.unit_micros) != value)
                .unwrap_or(values.len() - start);
            if parts.len() == MAX_RUNS {
                return None;
            }
            let partition = i32::try_from(value).ok()?;
            parts.push((
                self.key
                    .copy_with_data(Struct::from_iter([Some(Literal::int(partition))])),
                batch.slice(start, run),
            ));
            start += run;
        }
        Some(parts)
    }
}

/// The writer thread's side: encodes, partitions and writes chunks, and
/// commits on request.
struct TableSink<'a> {
    runtime: &'a tokio::runtime::Runtime,
    catalog: &'a dyn Catalog,
    layouts: &'static [(&'static str, ColumnLayout)],
}

impl TableSink<'_> {
    fn run<E: Encoder>(
        &self,
        mut table: Table,
        mut encoder: E,
        schema: &SchemaRef,
        commands: &Receiver<Command<E::Rows>>,
    ) -> Result<(), LakehouseError> {
        let splitter = Splitter::new(&table)?;
        let mut writer: Option<PartitionedWriter> = None;
        let mut rows: u64 = 0;
        let mut busy = Duration::ZERO;
        for command in commands {
            match command {
                Command::Write(chunk) => {
                    let started = Instant::now();
                    let batch = encoder.encode(chunk, schema)?;
                    if writer.is_none() {
                        writer = Some(new_writer(&table, self.layouts)?);
                    }
                    let open = writer.as_mut().expect("created above");
                    rows += batch.num_rows() as u64;
                    for (key, part) in splitter.split(&batch)? {
                        self.runtime.block_on(open.write(key, part))?;
                    }
                    busy += started.elapsed();
                }
                Command::Commit { properties, done } => {
                    let outcome = commit(
                        self.runtime,
                        self.catalog,
                        &mut table,
                        writer.take(),
                        properties,
                        rows,
                    )
                    .map(|info| CommitInfo { busy, ..info });
                    rows = 0;
                    busy = Duration::ZERO;
                    match outcome {
                        Ok(info) => {
                            let _ = done.send(Ok(info));
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            let _ = done.send(Err(Arc::clone(&e)));
                            return Err(LakehouseError::Shared(e));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Closes `writer`'s files and commits them to `table` in one snapshot
/// carrying `properties` (a commit without files still records them).
pub(super) fn commit(
    runtime: &tokio::runtime::Runtime,
    catalog: &dyn Catalog,
    table: &mut Table,
    writer: Option<PartitionedWriter>,
    properties: HashMap<String, String>,
    rows: u64,
) -> Result<CommitInfo, LakehouseError> {
    let files = match writer {
        Some(writer) => runtime.block_on(writer.close())?,
        None => Vec::new(),
    };
    // A commit without rows still records its properties (a checkpoint's
    // progress) in a snapshot of its own.
    if files.is_empty() && properties.is_empty() {
        return Ok(CommitInfo::default());
    }
    let data_files = files.len();
    let bytes = files.iter().map(|f| f.file_size_in_bytes()).sum();
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
        bytes,
        busy: Duration::ZERO,
        landed: Some(Instant::now()),
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lakehouse::WarehouseConfig;
    use arrow_array::{ArrayRef, Int64Array, StringArray};

    #[test]
    fn only_columns_without_a_dictionary_are_delta_encoded() {
        let properties = writer_properties(&[
            ("event_id", ColumnLayout::RandomId),
            ("user_id", ColumnLayout::Unordered),
            ("event_time", ColumnLayout::Ascending),
        ]);
        let column = |name: &str| ColumnPath::from(name);
        let id = column("event_id");
        assert!(!properties.dictionary_enabled(&id));
        assert_eq!(properties.encoding(&id), Some(Encoding::DELTA_BYTE_ARRAY));
        let time = column("event_time");
        assert!(!properties.dictionary_enabled(&time));
        assert_eq!(
            properties.encoding(&time),
            Some(Encoding::DELTA_BINARY_PACKED)
        );
        // Names and every column not listed (the features) keep their
        // dictionary, with a fallback that reserves nothing up front.
        for name in ["user_id", "user_logins_1h"] {
            assert!(properties.dictionary_enabled(&column(name)), "{name}");
            assert_eq!(
                properties.encoding(&column(name)),
                Some(Encoding::PLAIN),
                "{name}"
            );
        }
    }

    /// A raw-table batch whose ingestion times cover three hours, the last
    /// hour's rows interleaved with the second's.
    pub(in crate::lakehouse) fn raw_batch(schema: &SchemaRef) -> RecordBatch {
        const HOUR: i64 = 3_600_000_000;
        let base = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
        let ingestion: Vec<i64> = (0..10)
            .map(|i| base + i * HOUR / 4)
            .chain([base + 2 * HOUR, base + HOUR + 5, base + 2 * HOUR + 7])
            .collect();
        let n = ingestion.len();
        let text = |prefix: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{prefix}{i}")),
            ))
        };
        let times = |values: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("+00:00"))
        };
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                text("e"),
                times(vec![base; n]),
                text("U"),
                text("C"),
                times(ingestion),
                text("s"),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                text("a"),
            ]
            .into_iter()
            // The six detail columns and source_event_id: none said.
            .chain((0..7).map(|_| arrow_array::new_null_array(&arrow_schema::DataType::Utf8, n)))
            .collect(),
        )
        .unwrap()
    }

    fn summary(parts: &[(PartitionKey, RecordBatch)]) -> Vec<(String, Vec<i64>)> {
        let mut out: Vec<(String, Vec<i64>)> = Vec::new();
        for (key, batch) in parts {
            let lines = batch
                .column(6)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec();
            let path = key.to_path();
            match out.iter_mut().find(|(p, _)| *p == path) {
                Some((_, rows)) => rows.extend(lines),
                None => out.push((path, lines)),
            }
        }
        out.sort();
        out
    }

    /// Rows spread over more partitions than may stay open: every row is
    /// in a file of its own partition, a partition written again after it
    /// was closed gets a second file, and no more than the limit is open.
    #[test]
    fn partitions_beyond_the_open_limit_are_closed_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        let table = warehouse.load(tables::RAW).unwrap();
        let splitter = Splitter::new(&table).unwrap();
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
        let parts = splitter.split(&raw_batch(&schema)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut writer = new_writer(&table, &[]).unwrap();
        // Hours 0, 1, 2, 1, 2 as sliced, then hour 0 again after three more
        // partitions (shifted by days) pushed it out.
        let mut expected_rows = 0;
        for (key, part) in parts.iter().cloned() {
            expected_rows += part.num_rows();
            runtime.block_on(writer.write(key, part)).unwrap();
        }
        let (first_key, first_part) = parts[0].clone();
        for day in 1..=3 {
            let hour = 473_352 + 24 * day;
            let key = first_key.copy_with_data(Struct::from_iter([Some(Literal::int(hour))]));
            expected_rows += first_part.num_rows();
            runtime
                .block_on(writer.write(key, first_part.clone()))
                .unwrap();
            assert!(writer.open.len() <= MAX_OPEN_PARTITIONS);
        }
        expected_rows += first_part.num_rows();
        runtime
            .block_on(writer.write(first_key, first_part))
            .unwrap();
        let files = runtime.block_on(writer.close()).unwrap();
        let rows: u64 = files.iter().map(|f| f.record_count()).sum();
        assert_eq!(rows, expected_rows as u64);
        let hour_0 = files
            .iter()
            .filter(|f| f.partition() == parts[0].0.data())
            .count();
        assert_eq!(hour_0, 2, "hour 0 was closed, then written again");
        assert_eq!(files.len(), 3 + 3 + 1);
    }

    #[test]
    fn run_slicing_partitions_like_the_general_splitter() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        let table = warehouse.load(tables::RAW).unwrap();
        let splitter = Splitter::new(&table).unwrap();
        assert!(
            splitter.runs.is_some(),
            "hour(ingestion_time) is sliced by runs"
        );
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
        let batch = raw_batch(&schema);

        let runs = splitter.runs.as_ref().unwrap().split(&batch).unwrap();
        assert_eq!(runs.len(), 5, "hours 0, 1, 2, then 1 and 2 again");
        let general = splitter.general.split(&batch).unwrap();
        assert_eq!(summary(&runs), summary(&general));
        assert_eq!(summary(&runs).len(), 3, "three hours");
        // Hours since the epoch: 2024-01-01T00 is hour 473,352.
        assert_eq!(summary(&runs)[0].0, "ingestion_hour=473352");
    }
}
