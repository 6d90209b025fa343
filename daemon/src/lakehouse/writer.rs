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
//! buffering without end. How the Parquet files themselves are laid out,
//! partitioned and rolled is `data_files`'.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use iceberg::Catalog;
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::data_files::{PartitionedWriter, Splitter, new_writer};
use super::tables::ColumnLayout;
use super::{LakehouseError, Warehouse, tables};

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

/// Messages a [`Worker`]'s channel holds: eight chunks of a table's rows
/// (64Ki rows, 7 MiB of curated rows) smooth out a writer's pauses, and a
/// slow thread still slows its sender down instead of buffering without end.
const MESSAGES_IN_FLIGHT: usize = 8;

/// A thread fed through a bounded channel ([`MESSAGES_IN_FLIGHT`] deep),
/// joined on drop; a send to a thread that has stopped reports why it
/// stopped.
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
        let (to_thread, messages) = sync_channel(MESSAGES_IN_FLIGHT);
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

    /// Sends `message`, blocking while the thread is [`MESSAGES_IN_FLIGHT`]
    /// messages behind.
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
/// per-chunk costs, small enough that the writer's pass over the rows for
/// each column reads them from the second-level cache (900 KiB of curated
/// rows; chunks of 64Ki rows, 7 MiB, cost the writers up to 5% more CPU and the
/// process 50 MB more memory).
pub(super) const ROWS_PER_CHUNK: usize = 8 * 1024;

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
