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

use arrow_array::builder::{
    Date32Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use iceberg::arrow::UTC_TIME_ZONE;
use rustc_hash::FxHashSet;

use super::writer::{TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use crate::event::NameId;
use crate::sinks::{ScoredBatch, ScoredSink};
use crate::state::{DAY, HOUR};

#[derive(Default, Clone, Copy)]
struct UserHour {
    logins: u64,
    distinct_computers: u32,
    new_devices: u32,
    max_risk: u8,
    sum_risk: u64,
}

#[derive(Default, Clone, Copy)]
struct HostDay {
    logins: u64,
    distinct_users: u32,
    first_time_users: u32,
    users_ever: u32,
}

/// A [`ScoredSink`] maintaining and writing both aggregate tables.
pub struct AggregateSink {
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
    /// Names by id, copied once on first sight, so rows can close without the
    /// pipeline's interners (at the end of input).
    user_names: Vec<Option<Box<str>>>,
    computer_names: Vec<Option<Box<str>>>,
    /// Closed rows waiting to be written, with names resolved.
    hourly_rows: Vec<(String, i64, UserHour)>,
    daily_rows: Vec<(String, i64, HostDay)>,
}

impl AggregateSink {
    pub fn start(warehouse: &Warehouse) -> Result<AggregateSink, LakehouseError> {
        Ok(AggregateSink {
            hourly: TableWriter::start(warehouse, tables::USER_HOURLY)?,
            daily: TableWriter::start(warehouse, tables::HOST_DAILY)?,
            hour: None,
            day: None,
            users: Vec::new(),
            touched_users: Vec::new(),
            pairs_this_hour: FxHashSet::default(),
            hosts: Vec::new(),
            touched_hosts: Vec::new(),
            user_names: Vec::new(),
            computer_names: Vec::new(),
            hourly_rows: Vec::new(),
            daily_rows: Vec::new(),
        })
    }

    /// The hourly and the daily table's writer totals.
    pub fn stats(&self) -> [&WriterStats; 2] {
        [self.hourly.stats(), self.daily.stats()]
    }

    fn close_hour(&mut self, hour: i64) {
        let rows = close(
            &mut self.touched_users,
            &mut self.users,
            &self.user_names,
            hour,
        );
        self.hourly_rows.extend(rows);
        self.pairs_this_hour.clear();
    }

    fn close_day(&mut self, day: i64) {
        let rows = close(
            &mut self.touched_hosts,
            &mut self.hosts,
            &self.computer_names,
            day,
        );
        self.daily_rows.extend(rows);
    }

    fn write_closed(&mut self) -> io::Result<()> {
        if !self.hourly_rows.is_empty() {
            let batch = hourly_batch(&self.hourly, &self.hourly_rows).map_err(io::Error::other)?;
            self.hourly.write(batch)?;
            self.hourly_rows.clear();
        }
        if !self.daily_rows.is_empty() {
            let batch = daily_batch(&self.daily, &self.daily_rows).map_err(io::Error::other)?;
            self.daily.write(batch)?;
            self.daily_rows.clear();
        }
        Ok(())
    }

    /// Rows buffered before they go to the writers (bounded: about one day of hosts).
    const WRITE_AT_ROWS: usize = 64 * 1024;
}

impl ScoredSink for AggregateSink {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        for (i, event) in batch.events.iter().enumerate() {
            let hour = event.event_time.div_euclid(HOUR);
            let day = event.event_time.div_euclid(DAY);
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

            remember(&mut self.user_names, event.user, || {
                batch.users.name(event.user)
            });
            remember(&mut self.computer_names, event.computer, || {
                batch.computers.name(event.computer)
            });
            let f = &batch.features[i];
            let score = batch.scores[i];
            let user = slot(&mut self.users, &mut self.touched_users, event.user, |u| {
                u.logins == 0
            });
            user.logins += 1;
            if self
                .pairs_this_hour
                .insert((u64::from(event.user) << 32) | u64::from(event.computer))
            {
                user.distinct_computers += 1;
            }
            user.new_devices += u32::from(f.is_new_device());
            user.max_risk = user.max_risk.max(score);
            user.sum_risk += u64::from(score);

            let host = slot(
                &mut self.hosts,
                &mut self.touched_hosts,
                event.computer,
                |h| h.logins == 0,
            );
            host.logins += 1;
            host.distinct_users = host.distinct_users.max(f.host_users_today);
            host.first_time_users += u32::from(f.is_new_device());
            host.users_ever = host.users_ever.max(f.host_users_ever);
        }
        if self.hourly_rows.len() + self.daily_rows.len() >= Self::WRITE_AT_ROWS {
            self.write_closed()?;
        }
        Ok(())
    }

    /// Commits the closed hours and days (the open ones stay in memory).
    fn checkpoint(&mut self) -> io::Result<()> {
        self.write_closed()?;
        self.hourly.commit(HashMap::new())?;
        self.daily.commit(HashMap::new())?;
        Ok(())
    }

    /// End of input: the watermark passes everything, so the open hour and day
    /// close too; both tables are committed.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(hour) = self.hour.take() {
            self.close_hour(hour);
        }
        if let Some(day) = self.day.take() {
            self.close_day(day);
        }
        self.checkpoint()
    }
}

/// Takes the window's rows (those touched), named and sorted by name, and
/// leaves their slots empty for the next window.
fn close<T: Default>(
    touched: &mut Vec<NameId>,
    rows: &mut [T],
    names: &[Option<Box<str>>],
    window: i64,
) -> Vec<(String, i64, T)> {
    let mut closed: Vec<_> = touched
        .drain(..)
        .map(|id| {
            (
                cached(names, id),
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

/// Copies `id`'s name the first time it is seen.
#[inline]
fn remember<'a>(names: &mut Vec<Option<Box<str>>>, id: NameId, name: impl FnOnce() -> &'a str) {
    let i = id as usize;
    if i >= names.len() {
        names.resize(i + 1, None);
    }
    if names[i].is_none() {
        names[i] = Some(name().into());
    }
}

fn cached(names: &[Option<Box<str>>], id: NameId) -> String {
    names
        .get(id as usize)
        .and_then(|n| n.as_deref())
        .unwrap_or_default()
        .to_string()
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
