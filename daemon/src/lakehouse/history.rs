//! The curated table read back as input, for `state build --from-tables`
//! (a warm start from what a deployment already stores) and `rules
//! backtest`. Its events come day
//! partition by day partition, each day sorted by event time (then user and
//! computer, the order a run scores them in), handed to the pipeline as
//! decoded records with their `event_id` ([`Line::Record`]): checked as any
//! input is, but never written out as text and parsed again. A day's
//! columns stay as Arrow read them; a row whose id is not one the pipeline
//! can take goes as a JSON line instead, so the pipeline dead-letters it
//! with its reason. Several readers can share
//! one pass over the table ([`HistoryDays::share`]): a day is read and
//! sorted once, on its own thread, and each reader walks it at its own pace.

use std::io::{self, Write as _};
use std::sync::Arc;
use std::sync::mpsc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use futures::TryStreamExt;
use iceberg::expr::Reference;
use iceberg::spec::Datum;
use iceberg::table::Table;

use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::event::EventId;
use authpulse_engine::input::{Line, Record, Source};
use authpulse_engine::logon::RecordDetail;

const DAY_MICROS: i64 = 86_400_000_000;

/// The curated table's days, one after another, each read and sorted.
pub struct HistoryDays {
    table: Table,
    snapshot: Option<i64>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// The next day partition to read, and the last one.
    next_day: i64,
    last_day: i64,
}

/// One day of the table: its rows as read, in the order a run scores them.
struct Day {
    batches: Vec<DayBatch>,
    /// (batch, row), sorted.
    order: Vec<(u32, u32)>,
    /// `YYYY-MM-DDT`, the start of every event time of the day.
    date: String,
}

impl HistoryDays {
    /// The curated table as of now, from its first event's day through its
    /// last one's.
    pub fn open(warehouse: &Warehouse) -> Result<HistoryDays, LakehouseError> {
        let table = warehouse.load(tables::CURATED)?;
        let snapshot = table.metadata().current_snapshot_id();
        let mut days = HistoryDays {
            table,
            snapshot,
            runtime: Arc::clone(warehouse.runtime()),
            next_day: 0,
            last_day: -1,
        };
        if let Some((first, last)) = days.time_range()? {
            days.next_day = first.div_euclid(DAY_MICROS);
            days.last_day = last.div_euclid(DAY_MICROS);
        }
        Ok(days)
    }

    /// The first day it covers (days since the epoch, UTC).
    pub fn first_day(&self) -> i64 {
        self.next_day
    }

    /// Days it covers.
    pub fn days(&self) -> i64 {
        (self.last_day - self.next_day + 1).max(0)
    }

    /// One reader, reading on the caller's thread.
    pub fn reader(self) -> TableHistory {
        TableHistory::new(Feed::Own(Box::new(self)))
    }

    /// `readers` readers of one pass over the table: a thread reads and
    /// sorts each day once and hands it to every reader; it stays at most
    /// a day ahead of the slowest one.
    pub fn share(mut self, readers: usize) -> Vec<TableHistory> {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..readers).map(|_| mpsc::sync_channel(1)).unzip();
        std::thread::spawn(move || {
            loop {
                let next = self.read_day().map(|day| day.map(Arc::new));
                let more = matches!(next, Ok(Some(_)));
                let next = next.map_err(Arc::new);
                // A reader that stopped early no longer listens; when none
                // does, the pass ends.
                let listening = senders
                    .iter()
                    .filter(|sender| sender.send(next.clone()).is_ok())
                    .count();
                if !more || listening == 0 {
                    return;
                }
            }
        });
        receivers
            .into_iter()
            .map(|receiver| TableHistory::new(Feed::Shared(receiver)))
            .collect()
    }

    fn batches(
        &self,
        columns: &[&str],
        day: Option<i64>,
    ) -> Result<Vec<RecordBatch>, LakehouseError> {
        let Some(snapshot) = self.snapshot else {
            return Ok(Vec::new());
        };
        let mut scan = self
            .table
            .scan()
            .snapshot_id(snapshot)
            .select(columns.iter().copied());
        if let Some(day) = day {
            let event_time = || Reference::new("event_time");
            scan = scan.with_filter(
                event_time()
                    .greater_than_or_equal_to(Datum::timestamptz_micros(day * DAY_MICROS))
                    .and(event_time().less_than(Datum::timestamptz_micros((day + 1) * DAY_MICROS))),
            );
        }
        let scan = scan.build()?;
        Ok(self
            .runtime
            .block_on(async { scan.to_arrow().await?.try_collect().await })?)
    }

    /// The earliest and latest event time stored (Unix microseconds).
    fn time_range(&self) -> Result<Option<(i64, i64)>, LakehouseError> {
        let mut range: Option<(i64, i64)> = None;
        for batch in self.batches(&["event_time"], None)? {
            let times = batch.column(0).as_primitive::<TimestampMicrosecondType>();
            for t in times.iter().flatten() {
                range = Some(range.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))));
            }
        }
        Ok(range)
    }

    /// Reads the next day that holds events, sorted; `None` at the end.
    fn read_day(&mut self) -> Result<Option<Day>, LakehouseError> {
        while self.next_day <= self.last_day {
            let day = self.next_day;
            self.next_day += 1;
            let columns = ["event_id", "event_time", "user_id", "computer_id"];
            let mut batches = Vec::new();
            let mut order = Vec::new();
            for batch in self.batches(&columns, Some(day))? {
                let batch = DayBatch::of(&batch);
                let b = batches.len() as u32;
                order.extend(
                    (0..batch.times.len())
                        .filter(|&i| batch.complete(i))
                        .map(|i| (b, i as u32)),
                );
                batches.push(batch);
            }
            if order.is_empty() {
                continue;
            }
            let key = |&(b, i): &(u32, u32)| batches[b as usize].key(i as usize);
            order.sort_unstable_by(|x, y| key(x).cmp(&key(y)));
            let date = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .map(|t| t.format("%Y-%m-%dT").to_string())
                .unwrap_or_default();
            tracing::debug!(day, events = order.len(), "history day read");
            return Ok(Some(Day {
                batches,
                order,
                date,
            }));
        }
        Ok(None)
    }
}

/// Where a reader's days come from.
enum Feed {
    Own(Box<HistoryDays>),
    Shared(mpsc::Receiver<Result<Option<Arc<Day>>, Arc<LakehouseError>>>),
}

/// The curated table as input: its events in scoring order.
pub struct TableHistory {
    feed: Feed,
    day: Option<Arc<Day>>,
    next_row: usize,
    /// The line handed out last.
    line: Vec<u8>,
    lines: u64,
    bytes: u64,
}

impl TableHistory {
    /// One reader of the curated table (see [`HistoryDays`]).
    pub fn open(warehouse: &Warehouse) -> Result<TableHistory, LakehouseError> {
        Ok(HistoryDays::open(warehouse)?.reader())
    }

    fn new(feed: Feed) -> TableHistory {
        TableHistory {
            feed,
            day: None,
            next_row: 0,
            line: Vec::with_capacity(256),
            lines: 0,
            bytes: 0,
        }
    }

    /// Moves to the next day; false at the end.
    fn next_day(&mut self) -> io::Result<bool> {
        self.day = None;
        let next = match &mut self.feed {
            Feed::Own(days) => days.read_day().map_err(io::Error::other)?.map(Arc::new),
            Feed::Shared(receiver) => receiver
                .recv()
                .map_err(|_| io::Error::other("the table reader stopped"))?
                .map_err(io::Error::other)?,
        };
        self.next_row = 0;
        self.day = next;
        Ok(self.day.is_some())
    }

    /// Row `row` of `day` as a record, or `None` when its event id is not
    /// one (then [`TableHistory::write_line`] writes it as text).
    fn record(day: &Day, row: usize) -> Option<Record<'_>> {
        let (b, i) = day.order[row];
        let (batch, i) = (&day.batches[b as usize], i as usize);
        let event_id = if batch.ids.is_null(i) {
            None
        } else {
            Some(EventId::parse(batch.ids.value(i))?)
        };
        Some(Record {
            event_time: batch.times.value(i).div_euclid(1_000_000),
            user: batch.users.value(i).as_bytes(),
            computer: batch.computers.value(i).as_bytes(),
            event_id,
            ingestion_time: None,
            detail: RecordDetail::default(),
            source_event_id: None,
        })
    }

    /// Writes row `row` of `day` as a JSON event line into `line`.
    fn write_line(line: &mut Vec<u8>, day: &Day, row: usize) {
        let (b, i) = day.order[row];
        let (batch, i) = (&day.batches[b as usize], i as usize);
        line.clear();
        line.push(b'{');
        if !batch.ids.is_null(i) {
            line.extend_from_slice(b"\"event_id\":");
            serde_json::to_writer(&mut *line, batch.ids.value(i)).expect("JSON to memory");
            line.push(b',');
        }
        line.extend_from_slice(b"\"event_time\":\"");
        line.extend_from_slice(day.date.as_bytes());
        let micros = batch.times.value(i).rem_euclid(DAY_MICROS);
        let seconds = micros / 1_000_000;
        let fraction = micros % 1_000_000;
        let two = |line: &mut Vec<u8>, n: i64| {
            line.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        };
        two(line, seconds / 3600);
        line.push(b':');
        two(line, seconds / 60 % 60);
        line.push(b':');
        two(line, seconds % 60);
        // As RFC 3339 with `SecondsFormat::AutoSi`: no fraction, or
        // milliseconds, or microseconds, whichever is exact.
        if fraction % 1000 == 0 && fraction > 0 {
            write!(line, ".{:03}", fraction / 1000).expect("write to memory");
        } else if fraction > 0 {
            write!(line, ".{fraction:06}").expect("write to memory");
        }
        line.extend_from_slice(b"Z\",\"user_id\":");
        serde_json::to_writer(&mut *line, batch.users.value(i)).expect("JSON to memory");
        line.extend_from_slice(b",\"computer_id\":");
        serde_json::to_writer(&mut *line, batch.computers.value(i)).expect("JSON to memory");
        line.push(b'}');
    }
}

/// One batch of a day's rows: the four columns a history line needs.
struct DayBatch {
    ids: StringArray,
    times: TimestampMicrosecondArray,
    users: StringArray,
    computers: StringArray,
}

impl DayBatch {
    fn of(batch: &RecordBatch) -> DayBatch {
        DayBatch {
            ids: batch.column(0).as_string::<i32>().clone(),
            times: batch
                .column(1)
                .as_primitive::<TimestampMicrosecondType>()
                .clone(),
            users: batch.column(2).as_string::<i32>().clone(),
            computers: batch.column(3).as_string::<i32>().clone(),
        }
    }

    /// A row the pipeline can score: it has a time, a user and a computer.
    fn complete(&self, i: usize) -> bool {
        !(self.times.is_null(i) || self.users.is_null(i) || self.computers.is_null(i))
    }

    /// The order a run scores events in: time, user, computer (then id).
    fn key(&self, i: usize) -> (i64, &str, &str, &str) {
        (
            self.times.value(i),
            self.users.value(i),
            self.computers.value(i),
            self.ids.value(i),
        )
    }
}

impl Source for TableHistory {
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        let exhausted = self
            .day
            .as_ref()
            .is_none_or(|day| self.next_row == day.order.len());
        if exhausted && !self.next_day()? {
            return Ok(None);
        }
        let day = self.day.as_ref().expect("a day is loaded");
        let row = self.next_row;
        self.next_row += 1;
        self.lines += 1;
        if let Some(record) = Self::record(day, row) {
            // What the row would take as an event line, near enough for
            // progress: the names, a time and an id.
            self.bytes += (record.user.len() + record.computer.len() + 64) as u64;
            return Ok(Some(Line::Record(record)));
        }
        Self::write_line(&mut self.line, day, row);
        self.bytes += self.line.len() as u64;
        Ok(Some(Line::Complete(&self.line)))
    }

    fn line_no(&self) -> u64 {
        self.lines
    }

    fn bytes_consumed(&self) -> u64 {
        self.bytes
    }
}
