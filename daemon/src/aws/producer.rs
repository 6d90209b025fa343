//! The Kinesis producer behind `authpulse replay`: events in, `PutRecords`
//! calls out.
//!
//! - Up to 500 records and 5 MiB per call (the API's limits).
//! - Only the records a call reports as failed (throttled, internal error)
//!   are sent again, with backoff, up to `max_attempts`; a call that fails as
//!   a whole is retried whole. Records that still fail are handed back to the
//!   caller, which keeps them: nothing is dropped silently.
//! - `PartitionKey = user_id`, so a user's events share a shard and keep
//!   their order. (A retried record can land after a later one of the same
//!   user; the pipeline's event-time ordering puts it back.)
//! - Optionally KPL aggregation ([`super::aggregation`]): events are grouped
//!   by the shard their key hashes to (MD5 of the key, as Kinesis does) and
//!   packed up to `aggregate_bytes` per record, so they still reach the same
//!   shard as unaggregated ones. An aggregate is also closed once the stream
//!   has moved `AGGREGATE_SPAN` of event time past its first event (what the
//!   KPL's buffering time does in wall-clock time): on a quiet shard an
//!   aggregate would otherwise hold hours of events, and reach the reader
//!   after events far newer from the other shards, too late for the
//!   watermark.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::aggregation::{Aggregate, MAX_RECORD_BYTES};
use super::shards::{HashRange, list_ranges, partition_hash};
use super::{AwsSettings, Backoff, error_text};

/// `PutRecords` limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// KPL's default aggregate size.
pub const DEFAULT_AGGREGATE_BYTES: usize = 50 * 1024;

/// Event time an open aggregate may fall behind the newest event sent, in
/// seconds: well inside the daemon's default 5-minute watermark.
pub const AGGREGATE_SPAN: i64 = 60;

#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub stream: String,
    pub aws: AwsSettings,
    /// Pack events into KPL aggregates of at most this many bytes.
    pub aggregate_bytes: Option<usize>,
    /// Sends of one record before it counts as failed.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl ProducerConfig {
    pub fn new(stream: impl Into<String>) -> Self {
        ProducerConfig {
            stream: stream.into(),
            aws: AwsSettings::default(),
            aggregate_bytes: None,
            max_attempts: 10,
            backoff: Backoff::DEFAULT,
        }
    }
}

/// Counts of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProducerReport {
    /// Events accepted by Kinesis.
    pub events_sent: u64,
    /// Kinesis records written (fewer than events when aggregating).
    pub records_sent: u64,
    /// Record sends repeated after a failure.
    pub retried: u64,
    /// Events given up on (handed back to the caller).
    pub events_failed: u64,
    pub put_calls: u64,
    pub bytes_sent: u64,
}

/// One Kinesis record to write, and the events in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub partition_key: String,
    pub data: Vec<u8>,
    /// The events packed in `data` (for aggregates; else 1).
    pub events: u32,
}

impl Entry {
    fn size(&self) -> usize {
        self.partition_key.len() + self.data.len()
    }
}

/// What part of a call went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub events: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Splits a call's entries by the per-record results (`error_codes`, one per
/// entry, in order): the ones to send again, and what went through. A result
/// list of the wrong length fails every entry rather than guess.
pub fn failed_entries(entries: Vec<Entry>, error_codes: &[Option<&str>]) -> (Vec<Entry>, Sent) {
    if entries.len() != error_codes.len() {
        return (entries, Sent::default());
    }
    let mut failed = Vec::new();
    let mut sent = Sent::default();
    for (entry, code) in entries.into_iter().zip(error_codes) {
        match code {
            Some(_) => failed.push(entry),
            None => {
                sent.events += u64::from(entry.events);
                sent.records += 1;
                sent.bytes += entry.data.len() as u64;
            }
        }
    }
    (failed, sent)
}

pub struct Producer {
    runtime: tokio::runtime::Runtime,
    client: Client,
    config: ProducerConfig,
    batch: Vec<Entry>,
    batch_bytes: usize,
    /// With aggregation: the open shards' hash ranges and one aggregate each.
    shards: Vec<(HashRange, Aggregate)>,
    /// Event time of the first event of each shard's open aggregate.
    open_since: Vec<Option<i64>>,
    report: ProducerReport,
    /// Events given up on, as sent (JSON), for the caller to keep.
    given_up: Vec<Entry>,
}

impl Producer {
    pub fn connect(config: ProducerConfig) -> Result<Producer, String> {
        let runtime = crate::net::runtime("kinesis-producer").map_err(|e| e.to_string())?;
        let sdk = runtime.block_on(config.aws.load());
        let client = Client::new(&sdk);
        let described = runtime
            .block_on(
                client
                    .describe_stream_summary()
                    .stream_name(&config.stream)
                    .send(),
            )
            .map_err(|e| format!("Kinesis stream `{}`: {}", config.stream, error_text(&e)))?;
        if let Some(summary) = described.stream_description_summary {
            tracing::info!(stream = %config.stream, status = %summary.stream_status, open_shards = summary.open_shard_count, "writing to stream");
        }
        let mut shards = Vec::new();
        if config.aggregate_bytes.is_some() {
            let listed = runtime.block_on(list_ranges(&client, &config.stream))?;
            for shard in listed.into_iter().filter(|s| !s.closed) {
                shards.push((shard.range, Aggregate::default()));
            }
            if shards.is_empty() {
                return Err(format!("stream `{}` has no open shard", config.stream));
            }
        }
        Ok(Producer {
            runtime,
            client,
            config,
            batch: Vec::with_capacity(MAX_RECORDS_PER_CALL),
            batch_bytes: 0,
            open_since: vec![None; shards.len()],
            shards,
            report: ProducerReport::default(),
            given_up: Vec::new(),
        })
    }

    pub fn report(&self) -> ProducerReport {
        self.report
    }

    /// Events that failed every attempt since the last call (to be kept).
    pub fn take_given_up(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.given_up)
    }

    /// Queues one event (`event_time`: Unix seconds); sends when a call is
    /// full.
    pub fn send(&mut self, partition_key: &str, event: &[u8], event_time: i64) {
        let Some(limit) = self.config.aggregate_bytes else {
            self.push(Entry {
                partition_key: partition_key.to_string(),
                data: event.to_vec(),
                events: 1,
            });
            return;
        };
        let hash = partition_hash(partition_key);
        let shard = self
            .shards
            .iter()
            .position(|(range, _)| range.contains(hash))
            .unwrap_or(0);
        for i in 0..self.shards.len() {
            if self.open_since[i].is_some_and(|since| event_time - since > AGGREGATE_SPAN) {
                self.close_aggregate(i);
            }
        }
        let limit = limit.min(MAX_RECORD_BYTES);
        let aggregate = &self.shards[shard].1;
        if !aggregate.is_empty() && aggregate.size_with(partition_key, event) > limit {
            self.close_aggregate(shard);
        }
        self.shards[shard].1.push(partition_key, event);
        self.open_since[shard].get_or_insert(event_time);
    }

    fn close_aggregate(&mut self, shard: usize) {
        self.open_since[shard] = None;
        let aggregate = &mut self.shards[shard].1;
        if !aggregate.is_empty() {
            let entry = finish(aggregate);
            self.push(entry);
        }
    }

    fn push(&mut self, entry: Entry) {
        if self.batch.len() == MAX_RECORDS_PER_CALL
            || self.batch_bytes + entry.size() > MAX_BYTES_PER_CALL
        {
            self.send_batch();
        }
        self.batch_bytes += entry.size();
        self.batch.push(entry);
    }

    /// Sends everything queued (open aggregates included) and waits.
    pub fn flush(&mut self) {
        for shard in 0..self.shards.len() {
            self.close_aggregate(shard);
        }
        self.send_batch();
    }

    /// One `PutRecords` round for the batch, then retries of what failed.
    fn send_batch(&mut self) {
        let mut pending = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            if attempt > 0 {
                self.report.retried += pending.len() as u64;
                let delay = self.config.backoff.jittered(attempt - 1);
                std::thread::sleep(delay);
            }
            attempt += 1;
            let entries: Vec<PutRecordsRequestEntry> = pending
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&e.partition_key)
                        .data(Blob::new(e.data.clone()))
                        .build()
                        .expect("partition key and data are set")
                })
                .collect();
            self.report.put_calls += 1;
            let result = self.runtime.block_on(
                self.client
                    .put_records()
                    .stream_name(&self.config.stream)
                    .set_records(Some(entries))
                    .send(),
            );
            let (failed, sent) = match result {
                Ok(output) => {
                    let codes: Vec<Option<&str>> = output
                        .records
                        .iter()
                        .map(|r| r.error_code.as_deref())
                        .collect();
                    let first_code = codes.iter().flatten().next().map(|c| c.to_string());
                    let (failed, sent) = failed_entries(pending, &codes);
                    if !failed.is_empty() {
                        tracing::debug!(failed = failed.len(), code = ?first_code, "PutRecords partly failed; resending the failed records");
                    }
                    (failed, sent)
                }
                Err(error) => {
                    tracing::warn!(stream = %self.config.stream, error = %error_text(&error), records = pending.len(), "PutRecords failed; retrying the call");
                    (pending, Sent::default())
                }
            };
            self.report.events_sent += sent.events;
            self.report.records_sent += sent.records;
            self.report.bytes_sent += sent.bytes;
            pending = failed;
            if attempt >= self.config.max_attempts && !pending.is_empty() {
                let events: u64 = pending.iter().map(|e| u64::from(e.events)).sum();
                tracing::error!(stream = %self.config.stream, records = pending.len(), events, attempts = attempt, "records still failing; giving up on them");
                self.report.events_failed += events;
                self.given_up.append(&mut pending);
            }
        }
    }
}

fn finish(aggregate: &mut Aggregate) -> Entry {
    let events = aggregate.len() as u32;
    let partition_key = aggregate.partition_key().unwrap_or("-").to_string();
    Entry {
        partition_key,
        data: aggregate.finish(),
        events,
    }
}

/// Pacing for `--rate` and `--speedup`: when an event is due.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as the stream takes them.
    Unlimited,
    /// Events per second.
    Rate(f64),
    /// Event time passes this many times faster than real time.
    Speedup(f64),
}

impl Pace {
    /// When event number `index` (0-based) at `event_time` (Unix seconds) is
    /// due, counted from the replay's start; `first_time`: the first event's.
    pub fn due(self, index: u64, event_time: i64, first_time: i64) -> Duration {
        match self {
            Pace::Unlimited => Duration::ZERO,
            Pace::Rate(rate) => Duration::from_secs_f64(index as f64 / rate),
            Pace::Speedup(speedup) => {
                Duration::from_secs_f64((event_time - first_time).max(0) as f64 / speedup)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            partition_key: key.into(),
            data: key.as_bytes().to_vec(),
            events: 1,
        }
    }

    #[test]
    fn only_failed_records_are_resent() {
        let entries = vec![entry("a"), entry("b"), entry("c")];
        let (failed, sent) = failed_entries(
            entries.clone(),
            &[None, Some("ProvisionedThroughputExceededException"), None],
        );
        assert_eq!(failed, vec![entry("b")]);
        assert_eq!((sent.events, sent.records, sent.bytes), (2, 2, 2));
        let (failed, sent) = failed_entries(entries.clone(), &[None]);
        assert_eq!(
            (failed, sent),
            (entries, Sent::default()),
            "a short answer fails all"
        );
    }

    #[test]
    fn pace() {
        assert_eq!(Pace::Rate(100.0).due(50, 0, 0), Duration::from_millis(500));
        assert_eq!(
            Pace::Speedup(60.0).due(0, 1_000 + 120, 1_000),
            Duration::from_secs(2)
        );
        assert_eq!(Pace::Unlimited.due(9, 9, 0), Duration::ZERO);
    }
}
