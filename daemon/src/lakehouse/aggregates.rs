//! `user_behavior_hourly` and `host_popularity_daily`: tumbling aggregates of the
//! scored events.
//!
//! Scored events arrive in event-time order (the orderer releases them only
//! once the watermark has passed), so an hour or a day is complete as soon as
//! an event of a later one is scored: its rows are emitted then, and whatever
//! is open is emitted at the end of input. The results therefore do not depend
//! on batching, like everything downstream of the orderer.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow_array::builder::{
    Date32Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use iceberg::arrow::UTC_TIME_ZONE;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use super::columns::{NameLog, Names, NewNames};
use super::sinks::{Role, TableSink};
use super::writer::{ROWS_PER_CHUNK, TableWriter, Worker, WriterStats, table_error};
use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::event::{Interner, NameId};
use authpulse_engine::sinks::{Commit, Progress, ScoredBatch, ScoredSink};
use authpulse_engine::state::{DAY, HOUR};

#[derive(Default, Clone, Copy, Serialize, Deserialize)]
struct UserHour {
    logins: u64,
    distinct_computers: u32,
    new_devices: u32,
    max_risk: u8,
    sum_risk: u64,
}

#[derive(Default, Clone, Copy, Serialize, Deserialize)]
struct HostDay {
    logins: u64,
    distinct_users: u32,
    first_time_users: u32,
    users_ever: u32,
}

/// What the aggregates need of one scored event.
#[derive(Clone, Copy)]
struct AggRow {
    event_time: i64,
    user: NameId,
    computer: NameId,
    host_users_today: u32,
    host_users_ever: u32,
    score: u8,
    new_device: bool,
}

enum Message {
    Rows {
        rows: Vec<AggRow>,
        names: NewNames,
    },
    /// Send back the open hour and day (postcard), for a state snapshot.
    Snapshot {
        done: SyncSender<Vec<u8>>,
    },
    /// Take back the open hour and day of a snapshot (a resumed run).
    Restore(Vec<u8>),
    /// Write the closed windows and commit both tables, carrying
    /// `properties` (the checkpoint's progress); `end` closes the open ones
    /// first (end of input).
    Commit {
        end: bool,
        properties: HashMap<String, String>,
        done: SyncSender<Result<[WriterStats; 2], Arc<LakehouseError>>>,
    },
}

/// A [`ScoredSink`] maintaining and writing both aggregate tables.
///
/// The pipeline thread only copies what the aggregates need of each event;
/// the aggregation, the row building and the two tables' writers run on an
/// `aggregates` thread.
pub struct AggregateSink {
    rows: Vec<AggRow>,
    names: NameLog,
    thread: Worker<Message>,
    in_flight: Option<Receiver<Result<[WriterStats; 2], Arc<LakehouseError>>>>,
    stats: [WriterStats; 2],
    /// The latest checkpoint's progress, which every commit carries.
    properties: HashMap<String, String>,
    /// The open hour and day were closed and committed (end of input).
    ended: bool,
}

impl AggregateSink {
    /// The name of its part of a state snapshot.
    const STATE: &'static str = "aggregates";

    pub fn start(warehouse: &Warehouse) -> Result<AggregateSink, LakehouseError> {
        let mut aggregator = Aggregator::new(
            TableWriter::start(warehouse, tables::USER_HOURLY)?,
            TableWriter::start(warehouse, tables::HOST_DAILY)?,
        );
        let stats = [
            aggregator.hourly.stats().clone(),
            aggregator.daily.stats().clone(),
        ];
        let thread = Worker::spawn(
            "aggregates".into(),
            "the aggregates thread".into(),
            move |messages| aggregator.run(&messages),
        )?;
        Ok(AggregateSink {
            rows: Vec::with_capacity(ROWS_PER_CHUNK),
            names: NameLog::default(),
            thread,
            in_flight: None,
            stats,
            properties: HashMap::new(),
            ended: false,
        })
    }

    /// The hourly and the daily table's writer totals, as of the last commit.
    pub fn stats(&self) -> [&WriterStats; 2] {
        [&self.stats[0], &self.stats[1]]
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(ROWS_PER_CHUNK));
        let message = Message::Rows {
            rows,
            names: self.names.take(),
        };
        self.thread.send(message)
    }

    /// Ships what is buffered and asks for a commit, after the one in flight
    /// has landed; `end` also closes the open hour and day.
    fn start_commit(&mut self, end: bool) -> io::Result<()> {
        self.settle()?;
        self.ship()?;
        let (done, result) = sync_channel(1);
        self.thread.send(Message::Commit {
            end,
            properties: self.properties.clone(),
            done,
        })?;
        self.in_flight = Some(result);
        Ok(())
    }

    fn settle(&mut self) -> io::Result<()> {
        if let Some(result) = self.in_flight.take() {
            match result.recv() {
                Ok(Ok(stats)) => self.stats = stats,
                Ok(Err(e)) => return Err(io::Error::other(LakehouseError::Shared(e))),
                Err(_) => return Err(io::Error::other(self.thread.failure())),
            }
        }
        Ok(())
    }
}

impl Commit for AggregateSink {
    /// Starts committing the closed hours and days (the open ones stay in
    /// memory); waited for at the next checkpoint or at the end.
    /// The last checkpoint (at the end of input) closes the open hour and
    /// day too, so that the commit that says the run is complete holds
    /// them.
    fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.properties = progress.properties();
        self.start_commit(progress.complete)?;
        self.ended = progress.complete;
        Ok(())
    }

    /// End of input: the watermark passes everything, so the open hour and day
    /// close too; both tables are committed.
    fn flush(&mut self) -> io::Result<()> {
        if !self.ended {
            self.start_commit(true)?;
        }
        AggregateSink::settle(self)
    }
}

impl ScoredSink for AggregateSink {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.names.catch_up(batch.users, batch.computers);
        self.rows.extend(
            batch
                .events
                .iter()
                .zip(batch.features)
                .zip(batch.scores)
                .map(|((event, f), &score)| AggRow {
                    event_time: event.event_time,
                    user: event.user,
                    computer: event.computer,
                    host_users_today: f.host_users_today,
                    host_users_ever: f.host_users_ever,
                    score,
                    new_device: f.is_new_device(),
                }),
        );
        if self.rows.len() >= ROWS_PER_CHUNK {
            self.ship()?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, parts: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
        self.ship()?;
        let (done, open) = sync_channel(1);
        self.thread.send(Message::Snapshot { done })?;
        let open = open
            .recv()
            .map_err(|_| io::Error::other(self.thread.failure()))?;
        parts.push((Self::STATE.to_string(), open));
        Ok(())
    }

    fn restore_state(
        &mut self,
        parts: &[(String, Vec<u8>)],
        users: &Interner,
        computers: &Interner,
    ) -> io::Result<()> {
        if let Some((_, open)) = parts.iter().find(|(name, _)| name == Self::STATE) {
            // The open windows name users and computers by id: the writer
            // learns the names first (a resumed run may read no event
            // before it closes them).
            self.names.catch_up(users, computers);
            self.thread.send(Message::Rows {
                rows: Vec::new(),
                names: self.names.take(),
            })?;
            self.thread.send(Message::Restore(open.clone()))?;
        }
        Ok(())
    }

    /// A stop: the open hour and day stay open (they are in the snapshot).
    fn settle(&mut self) -> io::Result<()> {
        AggregateSink::settle(self)
    }
}

/// The open hour and day, as state snapshots keep them.
#[derive(Serialize, Deserialize)]
struct OpenWindows {
    hour: Option<i64>,
    day: Option<i64>,
    users: Vec<(NameId, UserHour)>,
    pairs_this_hour: Vec<u64>,
    hosts: Vec<(NameId, HostDay)>,
}

/// The `aggregates` thread's state: the open hour and day, and the tables'
/// writers.
struct Aggregator {
    hourly: TableWriter,
    daily: TableWriter,
    hour: Option<i64>,
    day: Option<i64>,
    /// Indexed by the dense interned ids; `touched_*` lists the ids with a
    /// row in the open hour/day, so closing costs what was used, not all ids.
    users: Vec<UserHour>,
    touched_users: Vec<NameId>,
    pairs_this_hour: FxHashSet<u64>,
    hosts: Vec<HostDay>,
    touched_hosts: Vec<NameId>,
    names: Names,
    /// Closed rows waiting to be written, with names resolved.
    hourly_rows: Vec<(String, i64, UserHour)>,
    daily_rows: Vec<(String, i64, HostDay)>,
}

impl Aggregator {
    /// Rows buffered before they go to the writers (bounded: about one day of hosts).
    const WRITE_AT_ROWS: usize = 64 * 1024;

    fn new(hourly: TableWriter, daily: TableWriter) -> Aggregator {
        Aggregator {
            hourly,
            daily,
            hour: None,
            day: None,
            users: Vec::new(),
            touched_users: Vec::new(),
            pairs_this_hour: FxHashSet::default(),
            hosts: Vec::new(),
            touched_hosts: Vec::new(),
            names: Names::default(),
            hourly_rows: Vec::new(),
            daily_rows: Vec::new(),
        }
    }

    fn run(&mut self, messages: &Receiver<Message>) -> Result<(), LakehouseError> {
        for message in messages {
            match message {
                Message::Rows { rows, names } => {
                    self.names.learn(names);
                    self.add(&rows);
                    if self.hourly_rows.len() + self.daily_rows.len() >= Self::WRITE_AT_ROWS {
                        self.write_closed()?;
                    }
                }
                Message::Snapshot { done } => {
                    let open = postcard::to_allocvec(&self.open_windows()).map_err(|e| {
                        LakehouseError::Corrupt(format!("encode the aggregates' state: {e}"))
                    })?;
                    let _ = done.send(open);
                }
                Message::Restore(bytes) => {
                    let open: OpenWindows = postcard::from_bytes(&bytes).map_err(|e| {
                        LakehouseError::Corrupt(format!("the aggregates' state: {e}"))
                    })?;
                    self.restore_windows(open);
                }
                Message::Commit {
                    end,
                    properties,
                    done,
                } => match self.commit(end, properties) {
                    Ok(stats) => {
                        let _ = done.send(Ok(stats));
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        let _ = done.send(Err(Arc::clone(&e)));
                        return Err(LakehouseError::Shared(e));
                    }
                },
            }
        }
        Ok(())
    }

    /// The open hour and day: what a state snapshot keeps of the
    /// aggregates (closed rows not yet written belong to the next commit).
    fn open_windows(&self) -> OpenWindows {
        let mut pairs: Vec<u64> = self.pairs_this_hour.iter().copied().collect();
        pairs.sort_unstable();
        OpenWindows {
            hour: self.hour,
            day: self.day,
            users: self
                .touched_users
                .iter()
                .map(|&id| (id, self.users[id as usize]))
                .collect(),
            pairs_this_hour: pairs,
            hosts: self
                .touched_hosts
                .iter()
                .map(|&id| (id, self.hosts[id as usize]))
                .collect(),
        }
    }

    fn restore_windows(&mut self, open: OpenWindows) {
        self.hour = open.hour;
        self.day = open.day;
        for (id, row) in open.users {
            *slot(&mut self.users, &mut self.touched_users, id, |_| true) = row;
        }
        self.pairs_this_hour = open.pairs_this_hour.into_iter().collect();
        for (id, row) in open.hosts {
            *slot(&mut self.hosts, &mut self.touched_hosts, id, |_| true) = row;
        }
    }

    fn add(&mut self, rows: &[AggRow]) {
        for row in rows {
            let hour = row.event_time.div_euclid(HOUR);
            let day = row.event_time.div_euclid(DAY);
            if let Some(open) = self.hour
                && open != hour
            {
                self.close_hour(open);
            }
            if let Some(open) = self.day
                && open != day
            {
                self.close_day(open);
            }
            self.hour = Some(hour);
            self.day = Some(day);

            let user = slot(&mut self.users, &mut self.touched_users, row.user, |u| {
                u.logins == 0
            });
            user.logins += 1;
            if self
                .pairs_this_hour
                .insert((u64::from(row.user) << 32) | u64::from(row.computer))
            {
                user.distinct_computers += 1;
            }
            user.new_devices += u32::from(row.new_device);
            user.max_risk = user.max_risk.max(row.score);
            user.sum_risk += u64::from(row.score);

            let host = slot(
                &mut self.hosts,
                &mut self.touched_hosts,
                row.computer,
                |h| h.logins == 0,
            );
            host.logins += 1;
            host.distinct_users = host.distinct_users.max(row.host_users_today);
            host.first_time_users += u32::from(row.new_device);
            host.users_ever = host.users_ever.max(row.host_users_ever);
        }
    }

    fn close_hour(&mut self, hour: i64) {
        let rows = close(
            &mut self.touched_users,
            &mut self.users,
            |id| self.names.user(id),
            hour,
        );
        self.hourly_rows.extend(rows);
        self.pairs_this_hour.clear();
    }

    fn close_day(&mut self, day: i64) {
        let rows = close(
            &mut self.touched_hosts,
            &mut self.hosts,
            |id| self.names.computer(id),
            day,
        );
        self.daily_rows.extend(rows);
    }

    fn write_closed(&mut self) -> Result<(), LakehouseError> {
        if !self.hourly_rows.is_empty() {
            let batch = hourly_batch(&self.hourly, &self.hourly_rows)?;
            self.hourly.write(batch).map_err(table_error)?;
            self.hourly_rows.clear();
        }
        if !self.daily_rows.is_empty() {
            let batch = daily_batch(&self.daily, &self.daily_rows)?;
            self.daily.write(batch).map_err(table_error)?;
            self.daily_rows.clear();
        }
        Ok(())
    }

    /// Commits the closed windows (and at the end, the open ones too).
    fn commit(
        &mut self,
        end: bool,
        properties: HashMap<String, String>,
    ) -> Result<[WriterStats; 2], LakehouseError> {
        if end {
            if let Some(hour) = self.hour.take() {
                self.close_hour(hour);
            }
            if let Some(day) = self.day.take() {
                self.close_day(day);
            }
        }
        self.write_closed()?;
        self.hourly
            .commit(properties.clone())
            .map_err(table_error)?;
        self.daily.commit(properties).map_err(table_error)?;
        Ok([self.hourly.stats().clone(), self.daily.stats().clone()])
    }
}

/// Takes the window's rows (those touched), named and sorted by name, and
/// leaves their slots empty for the next window.
fn close<'a, T: Default>(
    touched: &mut Vec<NameId>,
    rows: &mut [T],
    name: impl Fn(NameId) -> &'a str,
    window: i64,
) -> Vec<(String, i64, T)> {
    let mut closed: Vec<_> = touched
        .drain(..)
        .map(|id| {
            (
                name(id).to_string(),
                window,
                std::mem::take(&mut rows[id as usize]),
            )
        })
        .collect();
    closed.sort_by(|a, b| a.0.cmp(&b.0));
    closed
}

/// The open row of `id`, noting it as touched when it was empty.
#[inline]
fn slot<'a, T: Default + Clone>(
    rows: &'a mut Vec<T>,
    touched: &mut Vec<NameId>,
    id: NameId,
    is_empty: impl Fn(&T) -> bool,
) -> &'a mut T {
    let i = id as usize;
    if i >= rows.len() {
        rows.resize(i + 1, T::default());
    }
    if is_empty(&rows[i]) {
        touched.push(id);
    }
    &mut rows[i]
}

fn hourly_batch(
    writer: &TableWriter,
    rows: &[(String, i64, UserHour)],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut user = StringBuilder::new();
    let mut start = TimestampMicrosecondBuilder::new();
    let mut end = TimestampMicrosecondBuilder::new();
    let mut logins = Int64Builder::new();
    let mut ints: [Int32Builder; 3] = Default::default();
    let mut sum = Int64Builder::new();
    for (name, hour, agg) in rows {
        user.append_value(name);
        start.append_value(hour * HOUR * 1_000_000);
        end.append_value((hour + 1) * HOUR * 1_000_000);
        logins.append_value(agg.logins as i64);
        ints[0].append_value(agg.distinct_computers as i32);
        ints[1].append_value(agg.new_devices as i32);
        ints[2].append_value(i32::from(agg.max_risk));
        sum.append_value(agg.sum_risk as i64);
    }
    let tz = || Some(Arc::<str>::from(UTC_TIME_ZONE));
    let [distinct, new_devices, max_risk] = &mut ints;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user.finish()),
        Arc::new(start.finish().with_timezone_opt(tz())),
        Arc::new(end.finish().with_timezone_opt(tz())),
        Arc::new(logins.finish()),
        Arc::new(distinct.finish()),
        Arc::new(new_devices.finish()),
        Arc::new(max_risk.finish()),
        Arc::new(sum.finish()),
    ];
    RecordBatch::try_new(Arc::clone(writer.arrow_schema()), columns)
}

fn daily_batch(
    writer: &TableWriter,
    rows: &[(String, i64, HostDay)],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut computer = StringBuilder::new();
    let mut day = Date32Builder::new();
    let mut ints: [Int32Builder; 3] = Default::default();
    let mut logins = Int64Builder::new();
    for (name, d, agg) in rows {
        computer.append_value(name);
        day.append_value(*d as i32);
        ints[0].append_value(agg.distinct_users as i32);
        logins.append_value(agg.logins as i64);
        ints[1].append_value(agg.first_time_users as i32);
        ints[2].append_value(agg.users_ever as i32);
    }
    let [distinct, first_time, ever] = &mut ints;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(computer.finish()),
        Arc::new(day.finish()),
        Arc::new(distinct.finish()),
        Arc::new(logins.finish()),
        Arc::new(first_time.finish()),
        Arc::new(ever.finish()),
    ];
    RecordBatch::try_new(Arc::clone(writer.arrow_schema()), columns)
}

impl TableSink for AggregateSink {
    fn role(&mut self) -> Role<'_> {
        Role::Scored(self)
    }

    fn stats(&self) -> Vec<&WriterStats> {
        AggregateSink::stats(self).to_vec()
    }
}
