//! The event ids a warehouse already stores, for a run that adds another
//! input to it: read from `auth_events_curated` as of the commit the run
//! started from, one day partition at a time (the table is partitioned by
//! day of `event_time`, so a day's scan reads that day's files only).

use std::io;
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use futures::TryStreamExt;
use iceberg::expr::Reference;
use iceberg::spec::Datum;
use iceberg::table::Table;
use rustc_hash::FxHashSet;

use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::sinks::StoredEvents;

pub struct StoredIds {
    table: Table,
    /// The commit the run started from; `None`: the table is empty.
    snapshot: Option<i64>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl StoredIds {
    /// The curated table's events as of now.
    pub fn open(warehouse: &Warehouse) -> Result<StoredIds, LakehouseError> {
        let table = warehouse.load(tables::CURATED)?;
        let snapshot = table.metadata().current_snapshot_id();
        Ok(StoredIds {
            table,
            snapshot,
            runtime: Arc::clone(warehouse.runtime()),
        })
    }

    fn day(&self, day: i64) -> Result<FxHashSet<u128>, LakehouseError> {
        let mut ids = FxHashSet::default();
        let Some(snapshot) = self.snapshot else {
            return Ok(ids);
        };
        const DAY_MICROS: i64 = 86_400_000_000;
        let event_time = || Reference::new("event_time");
        let in_day = event_time()
            .greater_than_or_equal_to(Datum::timestamptz_micros(day * DAY_MICROS))
            .and(event_time().less_than(Datum::timestamptz_micros((day + 1) * DAY_MICROS)));
        let scan = self
            .table
            .scan()
            .snapshot_id(snapshot)
            .select(["event_id"])
            .with_filter(in_day)
            .build()?;
        let batches: Vec<_> = self
            .runtime
            .block_on(async { scan.to_arrow().await?.try_collect().await })?;
        for batch in batches {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| LakehouseError::Corrupt("event_id is not a string column".into()))?;
            for i in 0..column.len() {
                if column.is_valid(i)
                    && let Ok(id) = u128::from_str_radix(column.value(i), 16)
                {
                    ids.insert(id);
                }
            }
        }
        Ok(ids)
    }
}

impl StoredEvents for StoredIds {
    fn ids_of_day(&mut self, day: i64) -> io::Result<FxHashSet<u128>> {
        self.day(day).map_err(io::Error::other)
    }
}
