//! `auth_events_curated`: every scored event with its features and score.
//!
//! The pipeline thread copies each scored event into a fixed-size
//! [`ScoredRow`] (features, interned ids, score, flag bits; no strings, no
//! allocation per row); every chunk of rows goes to the table's writer
//! thread, whose [`CuratedEncoder`] builds the Arrow columns (names, hex ids,
//! flag lists), and the end of input commits them.

use std::io;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{ArrowError, DataType, SchemaRef};
use authpulse_rules_sdk::{Features, NO_PREVIOUS_LOGIN};

use super::columns::{
    NameLog, Names, NewNames, RowIdentity, detail_columns, event_ids, int32s, micros, strings,
    timestamps,
};
use super::sinks::{Role, TableSink};
use super::writer::{Chunked, Encoder, ROWS_PER_CHUNK, RowBuffer, TableWriter, WriterStats};
use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::event::{EventId, TimeBase};
use authpulse_engine::logon::Detail;
use authpulse_engine::policy::RiskLevel;
use authpulse_engine::sinks::{Commit, Progress, ScoredBatch, ScoredSink};

/// A [`ScoredSink`] writing `auth_events_curated`.
pub struct CuratedSink {
    table: Chunked<CuratedRows>,
}

impl CuratedSink {
    pub fn start(warehouse: &Warehouse) -> Result<CuratedSink, LakehouseError> {
        let writer = TableWriter::start_with(warehouse, tables::CURATED, |schema| {
            CuratedEncoder::new(schema)
        })?;
        Ok(CuratedSink {
            table: Chunked::new(CuratedRows::default(), writer),
        })
    }

    pub fn stats(&self) -> &WriterStats {
        self.table.stats()
    }
}

impl Commit for CuratedSink {
    /// Start committing everything written so far (waited for at the next
    /// checkpoint or at the end).
    fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.table.start_commit(Some(progress.properties()))
    }

    /// End of input: commit everything written.
    fn flush(&mut self) -> io::Result<()> {
        self.table.commit_pending()
    }
}

impl ScoredSink for CuratedSink {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.table.rows.append(batch);
        self.table.appended(batch.events.len())
    }
}

/// One scored event, as the pipeline hands it to the writer.
#[derive(Clone, Copy)]
pub(super) struct ScoredRow {
    /// Event time, user and computer ids, and the feature columns.
    features: KeptFeatures,
    /// `None`: derived by the writer.
    event_id: Option<EventId>,
    ingestion_time: i64,
    processing_us: i64,
    /// Rule bits, named by policy `policy`'s flag labels.
    flags: u32,
    /// Index of the scoring policy in the order the writer learnt them.
    policy: u32,
    score: u8,
    level: RiskLevel,
    detail: Detail,
}

/// The part of the feature record the table keeps: a quarter of its bytes,
/// so the pipeline copies and ships a quarter.
#[derive(Clone, Copy)]
struct KeptFeatures {
    event_time: i64,
    user: u32,
    computer: u32,
    user_logins_1h: u32,
    user_logins_24h: u32,
    user_distinct_computers_1h: u32,
    user_distinct_computers_24h: u32,
    user_new_computers_1h: u32,
    user_new_computers_24h: u32,
    user_known_computers: u32,
    user_tenure_s: u32,
    user_gap_s: u32,
    host_users_ever: u32,
    host_users_today: u32,
    new_device: bool,
    new_computer: bool,
}

impl From<&Features> for KeptFeatures {
    #[inline]
    fn from(f: &Features) -> Self {
        KeptFeatures {
            event_time: f.event_time,
            user: f.user,
            computer: f.computer,
            user_logins_1h: f.user_logins_1h,
            user_logins_24h: f.user_logins_24h,
            user_distinct_computers_1h: f.user_distinct_computers_1h,
            user_distinct_computers_24h: f.user_distinct_computers_24h,
            user_new_computers_1h: f.user_new_computers_1h,
            user_new_computers_24h: f.user_new_computers_24h,
            user_known_computers: f.user_known_computers,
            user_tenure_s: f.user_tenure_s,
            user_gap_s: f.user_gap_s,
            host_users_ever: f.host_users_ever,
            host_users_today: f.host_users_today,
            new_device: f.is_new_device(),
            new_computer: f.is_new_computer(),
        }
    }
}

/// What a rule set's rows need to name their flags and version.
pub(super) struct PolicyLabels {
    version: Box<str>,
    /// `risk_flags` entry of rule bit `r`: the rule id, or `shadow:ID`.
    flags: Vec<Box<str>>,
}

/// A chunk of scored rows with what the writer has not seen yet.
pub struct ScoredChunk {
    rows: Vec<ScoredRow>,
    time_base: TimeBase,
    names: NewNames,
    new_policies: Vec<PolicyLabels>,
}

/// The pipeline side: rows collected since the last chunk left.
#[derive(Default)]
struct CuratedRows {
    rows: Vec<ScoredRow>,
    time_base: TimeBase,
    names: NameLog,
    /// The latest policy version seen, and its index.
    policy: Option<(Box<str>, u32)>,
    new_policies: Vec<PolicyLabels>,
}

impl CuratedRows {
    fn append(&mut self, batch: &ScoredBatch<'_>) {
        self.names.catch_up(batch.users, batch.computers);
        self.time_base = batch.time_base;
        let policy = self.policy_index(batch);
        let processing_us = unix_micros_now();
        self.rows.reserve(batch.events.len());
        for (i, (event, features)) in batch.events.iter().zip(batch.features).enumerate() {
            debug_assert_eq!(features.event_time, event.event_time);
            self.rows.push(ScoredRow {
                features: features.into(),
                event_id: event.event_id,
                ingestion_time: event.ingestion_time,
                processing_us,
                flags: batch.flags[i],
                policy,
                score: batch.scores[i],
                level: batch.levels[i],
                detail: event.detail,
            });
        }
    }

    /// The index of the batch's policy, noting its labels when it is new.
    fn policy_index(&mut self, batch: &ScoredBatch<'_>) -> u32 {
        if let Some((version, index)) = &self.policy
            && **version == *batch.policy_version()
        {
            return *index;
        }
        // Versions are numbered in the order they appear.
        let index = self.policy.as_ref().map_or(0, |(_, index)| index + 1);
        self.policy = Some((batch.policy_version().into(), index));
        self.new_policies.push(PolicyLabels {
            version: batch.policy_version().into(),
            flags: batch
                .rules
                .flag_labels
                .iter()
                .map(|l| l.as_str().into())
                .collect(),
        });
        index
    }
}

impl RowBuffer for CuratedRows {
    type Encoder = CuratedEncoder;

    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn take(&mut self) -> ScoredChunk {
        ScoredChunk {
            rows: std::mem::replace(&mut self.rows, Vec::with_capacity(ROWS_PER_CHUNK)),
            names: self.names.take(),
            new_policies: std::mem::take(&mut self.new_policies),
            time_base: self.time_base,
        }
    }
}

/// The writer side: names and policies seen so far.
pub struct CuratedEncoder {
    names: Names,
    policies: Vec<PolicyLabels>,
    /// `risk_flags`' element field, with its Iceberg field id.
    flag_field: Arc<arrow_schema::Field>,
}

impl CuratedEncoder {
    fn new(schema: &SchemaRef) -> Self {
        CuratedEncoder {
            names: Names::default(),
            policies: Vec::new(),
            flag_field: list_element(schema, "risk_flags"),
        }
    }

    fn flag_lists(&self, rows: &[ScoredRow]) -> ArrayRef {
        let mut lists = ListBuilder::with_capacity(StringBuilder::new(), rows.len())
            .with_field(Arc::clone(&self.flag_field));
        for row in rows {
            let mut bits = row.flags;
            let labels = &self.policies[row.policy as usize].flags;
            while bits != 0 {
                let r = bits.trailing_zeros() as usize;
                lists.values().append_value(&labels[r]);
                bits &= bits - 1;
            }
            lists.append(true);
        }
        Arc::new(lists.finish())
    }
}

impl Encoder for CuratedEncoder {
    type Rows = ScoredChunk;

    fn encode(
        &mut self,
        chunk: ScoredChunk,
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        self.names.learn(chunk.names);
        self.policies.extend(chunk.new_policies);
        let rows = &chunk.rows[..];
        let f = |get: fn(&KeptFeatures) -> u32| -> ArrayRef {
            Arc::new(int32s(rows.iter().map(|r| get(&r.features))))
        };
        let details: Vec<Detail> = rows.iter().map(|r| r.detail).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(event_ids(rows.iter().map(|r| {
                let row = RowIdentity {
                    event_time: r.features.event_time,
                    user: r.features.user,
                    computer: r.features.computer,
                    detail: r.detail,
                };
                self.names.event_id(chunk.time_base, r.event_id, row)
            }))),
            Arc::new(timestamps(rows.iter().map(|r| r.features.event_time))),
            Arc::new(self.names.users(rows.iter().map(|r| r.features.user))),
            Arc::new(
                self.names
                    .computers(rows.iter().map(|r| r.features.computer)),
            ),
            Arc::new(timestamps(rows.iter().map(|r| r.ingestion_time))),
            f(|f| f.user_logins_1h),
            f(|f| f.user_logins_24h),
            f(|f| f.user_distinct_computers_1h),
            f(|f| f.user_distinct_computers_24h),
            f(|f| f.user_new_computers_1h),
            f(|f| f.user_new_computers_24h),
            f(|f| f.user_known_computers),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| i64::from(r.features.user_tenure_s)),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| {
                let gap = r.features.user_gap_s;
                (gap != NO_PREVIOUS_LOGIN).then_some(i64::from(gap))
            }))),
            f(|f| f.host_users_ever),
            f(|f| f.host_users_today),
            Arc::new(BooleanArray::new(
                BooleanBuffer::collect_bool(rows.len(), |i| rows[i].features.new_device),
                None,
            )),
            Arc::new(BooleanArray::new(
                BooleanBuffer::collect_bool(rows.len(), |i| rows[i].features.new_computer),
                None,
            )),
            Arc::new(int32s(rows.iter().map(|r| u32::from(r.score)))),
            Arc::new(strings(rows.iter().map(|r| r.level.as_str()))),
            self.flag_lists(rows),
            Arc::new(strings(
                rows.iter()
                    .map(|r| &*self.policies[r.policy as usize].version),
            )),
            Arc::new(micros(rows.iter().map(|r| r.processing_us))),
        ];
        columns.extend(detail_columns(&self.names, &details));
        RecordBatch::try_new(Arc::clone(schema), columns)
    }
}

/// The element field (with its Iceberg field id) of list column `name`.
fn list_element(schema: &SchemaRef, name: &str) -> Arc<arrow_schema::Field> {
    match schema.field_with_name(name).map(|f| f.data_type()) {
        Ok(DataType::List(element)) => Arc::clone(element),
        other => panic!("{name} must be a list column, found {other:?}"),
    }
}

/// A list-of-strings builder whose element field (with its Iceberg field id)
/// matches column `name` of `schema`.
pub(super) fn list_builder(schema: &SchemaRef, name: &str) -> ListBuilder<StringBuilder> {
    ListBuilder::new(StringBuilder::new()).with_field(list_element(schema, name))
}

pub(super) fn unix_micros_now() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl TableSink for CuratedSink {
    fn role(&mut self) -> Role<'_> {
        Role::Scored(self)
    }

    fn stats(&self) -> Vec<&WriterStats> {
        vec![CuratedSink::stats(self)]
    }
}
