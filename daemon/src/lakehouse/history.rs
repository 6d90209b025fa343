//! The curated table read back as input, for `state build --from-tables`
//! (a warm start from what a deployment already stores) and `rules
//! backtest`. Its events come day
//! partition by day partition, each day sorted by event time (then user and
//! computer, the order a run scores them in), as JSON event lines with
//! their `event_id`, so the pipeline reads them as it reads any input.

use std::io;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use futures::TryStreamExt;
use iceberg::expr::Reference;
use iceberg::spec::Datum;
use iceberg::table::Table;

use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::input::{Line, Source};

const DAY_MICROS: i64 = 86_400_000_000;

pub struct TableHistory {
    table: Table,
    snapshot: Option<i64>,
    runtime: Arc<tokio::runtime::Runtime>,
    /// The next day partition to read, and the last one.
    next_day: i64,
    last_day: i64,
    /// The current day's lines, one after another, and where each ends.
    text: Vec<u8>,
    ends: Vec<usize>,
    next_line: usize,
    lines: u64,
    bytes: u64,
}

impl TableHistory {
    /// The curated table as of now, from its first event's day through its
    /// last one's.
    pub fn open(warehouse: &Warehouse) -> Result<TableHistory, LakehouseError> {
        let table = warehouse.load(tables::CURATED)?;
        let snapshot = table.metadata().current_snapshot_id();
        let mut history = TableHistory {
            table,
            snapshot,
            runtime: Arc::clone(warehouse.runtime()),
            next_day: 0,
            last_day: -1,
            text: Vec::new(),
            ends: Vec::new(),
            next_line: 0,
            lines: 0,
            bytes: 0,
        };
        if let Some((first, last)) = history.time_range()? {
            history.next_day = first.div_euclid(DAY_MICROS);
            history.last_day = last.div_euclid(DAY_MICROS);
        }
        Ok(history)
    }

    /// The first day it covers (days since the epoch, UTC).
    pub fn first_day(&self) -> i64 {
        self.next_day
    }

    /// Days it covers.
    pub fn days(&self) -> i64 {
        (self.last_day - self.next_day + 1).max(0)
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

    /// Reads the next day that holds events into `text`; false at the end.
    fn read_day(&mut self) -> Result<bool, LakehouseError> {
        while self.next_day <= self.last_day {
            let day = self.next_day;
            self.next_day += 1;
            let columns = ["event_id", "event_time", "user_id", "computer_id"];
            let mut rows: Vec<(i64, String, String, String)> = Vec::new();
            for batch in self.batches(&columns, Some(day))? {
                let ids = batch.column(0).as_string::<i32>();
                let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
                let users = batch.column(2).as_string::<i32>();
                let computers = batch.column(3).as_string::<i32>();
                for i in 0..batch.num_rows() {
                    if times.is_null(i) || users.is_null(i) || computers.is_null(i) {
                        continue;
                    }
                    rows.push((
                        times.value(i),
                        users.value(i).to_string(),
                        computers.value(i).to_string(),
                        ids.value(i).to_string(),
                    ));
                }
            }
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable();
            self.text.clear();
            self.ends.clear();
            self.next_line = 0;
            for (micros, user, computer, id) in rows {
                let time = chrono::DateTime::from_timestamp_micros(micros)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                    .unwrap_or_default();
                serde_json::to_writer(
                    &mut self.text,
                    &serde_json::json!({
                        "event_id": id,
                        "event_time": time,
                        "user_id": user,
                        "computer_id": computer,
                    }),
                )
                .expect("JSON to memory");
                self.ends.push(self.text.len());
            }
            tracing::debug!(day, events = self.ends.len(), "history day read");
            return Ok(true);
        }
        Ok(false)
    }
}

impl Source for TableHistory {
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.next_line == self.ends.len() && !self.read_day().map_err(io::Error::other)? {
            return Ok(None);
        }
        let start = match self.next_line {
            0 => 0,
            n => self.ends[n - 1],
        };
        let end = self.ends[self.next_line];
        self.next_line += 1;
        self.lines += 1;
        self.bytes += (end - start) as u64;
        Ok(Some(Line::Complete(&self.text[start..end])))
    }

    fn line_no(&self) -> u64 {
        self.lines
    }

    fn bytes_consumed(&self) -> u64 {
        self.bytes
    }
}
