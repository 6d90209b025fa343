//! The tasks behind the Kinesis source: a coordinator that lists the
//! shards, starts a reader for each readable one and a child only after its
//! parents ended, and one reader per shard that follows its iterator with
//! backoff on throttling and transient errors, renewing an expired
//! iterator after the last sequence number read.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::ShardIteratorType;
use tokio::sync::Semaphore;

use super::{
    CREDITS_PER_SHARD, KinesisSourceConfig, MIN_CALL_GAP, StartAt, is_closed, list_shards,
    split_record,
};
use crate::aws::merge::{ShardMessage, ShardRecord};
use crate::aws::{Backoff, error_text};

/// Lists the shards, starts a reader for each readable one, and when a
/// shard ends starts its children before telling the merge it ended.
pub(super) async fn coordinate(
    client: Client,
    config: KinesisSourceConfig,
    tx: mpsc::Sender<ShardMessage>,
) {
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut finished: HashSet<String> = config
        .checkpoint
        .iter()
        .flat_map(|c| c.shards.iter())
        .filter(|(_, s)| s.ended)
        .map(|(id, _)| id.clone())
        .collect();
    let mut running: HashSet<String> = HashSet::new();
    let reads = Arc::new(AtomicU64::new(0));
    let mut just_ended: Option<String> = None;
    let mut attempt = 0;
    loop {
        let shards = match list_shards(&client, &config.stream).await {
            Ok(shards) => {
                attempt = 0;
                shards
            }
            Err(e) => {
                tracing::warn!(stream = %config.stream, error = %e, "cannot list the shards; retrying");
                tokio::time::sleep(Backoff::DEFAULT.jittered(attempt)).await;
                attempt += 1;
                continue;
            }
        };
        let listed: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
        for shard in &shards {
            let id = &shard.shard_id;
            if finished.contains(id) || running.contains(id) {
                continue;
            }
            // A fleet worker reads its leases' shards; the lease table
            // holds a child back until its parents are finished.
            if config.only.as_ref().is_some_and(|only| !only.contains(id)) {
                continue;
            }
            // Parents that have aged out of the stream no longer count.
            let parents_done = config.only.is_some()
                || [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
                    .into_iter()
                    .flatten()
                    .all(|p| finished.contains(p) || !listed.contains(p.as_str()));
            if !parents_done {
                continue;
            }
            // (A fleet worker is given a child only once its parents are
            // finished, by whoever read them.)
            let is_child =
                shard.parent_shard_id.is_some() && (just_ended.is_some() || config.only.is_some());
            let resume = config.checkpoint.as_ref().and_then(|c| c.shards.get(id));
            let skip = resume.map_or(0, |s| s.skip);
            let start = match (resume.and_then(|s| s.sequence.clone()), is_child) {
                (Some(sequence), _) => Position::After(sequence),
                // A child's first record follows its parent's last.
                (None, true) => Position::Start(StartAt::TrimHorizon),
                (None, false) => Position::Start(config.start.clone()),
            };
            let closed = is_closed(shard);
            let credits = Arc::new(Semaphore::new(CREDITS_PER_SHARD));
            if tx
                .send(ShardMessage::Started {
                    shard_id: id.clone(),
                    credits: credits.clone(),
                    closed,
                })
                .is_err()
            {
                return;
            }
            tracing::info!(stream = %config.stream, shard = %id, start = ?start, skip, "reading shard");
            running.insert(id.clone());
            tokio::spawn(read_shard(ShardReader {
                closed,
                client: client.clone(),
                stream: config.stream.clone(),
                shard_id: id.clone(),
                credits,
                tx: tx.clone(),
                ended: ended_tx.clone(),
                poll_interval: config.poll_interval,
                records_per_call: config.records_per_call,
                start,
                skip,
                reads: reads.clone(),
            }));
        }
        if let Some(id) = just_ended.take()
            && tx.send(ShardMessage::Ended { shard_id: id }).is_err()
        {
            return;
        }
        if running.is_empty() {
            tracing::info!(stream = %config.stream, "every shard has ended");
            return;
        }
        let Some(id) = ended_rx.recv().await else {
            return;
        };
        running.remove(&id);
        finished.insert(id.clone());
        just_ended = Some(id);
    }
}

#[derive(Clone, Debug)]
enum Position {
    Start(StartAt),
    After(String),
}

struct ShardReader {
    client: Client,
    stream: String,
    shard_id: String,
    credits: Arc<Semaphore>,
    tx: mpsc::Sender<ShardMessage>,
    ended: tokio::sync::mpsc::UnboundedSender<String>,
    poll_interval: Duration,
    records_per_call: i32,
    start: Position,
    /// Events of the first record read that were processed before (a
    /// resumed read in the middle of a record that holds several).
    skip: u32,
    /// The shard was already closed (resharded) when listed.
    closed: bool,
    /// Counts the source's reads as they are asked for (see
    /// [`ShardMessage::Records`]).
    reads: Arc<AtomicU64>,
}

async fn read_shard(reader: ShardReader) {
    let shard = reader.shard_id.clone();
    if let Err(why) = read_shard_records(&reader).await {
        let _ = reader
            .tx
            .send(ShardMessage::Failed(format!("shard {shard}: {why}")));
    }
}

async fn read_shard_records(reader: &ShardReader) -> Result<(), String> {
    let mut position = reader.start.clone();
    let mut iterator = shard_iterator(reader, &position).await?;
    let mut failures = 0u32;
    let mut last_arrival = 0i64;
    let mut skip = reader.skip as usize;
    loop {
        reader
            .credits
            .acquire()
            .await
            .map_err(|_| "stopped".to_string())?
            .forget();
        let asked = reader.reads.fetch_add(1, Ordering::Relaxed);
        let response = match reader
            .client
            .get_records()
            .shard_iterator(&iterator)
            .limit(reader.records_per_call)
            .send()
            .await
        {
            Ok(response) => {
                failures = 0;
                response
            }
            Err(error) => {
                reader.credits.add_permits(1);
                let service = error.as_service_error();
                if service.is_some_and(|e| e.is_expired_iterator_exception()) {
                    tracing::debug!(shard = %reader.shard_id, "shard iterator expired; renewing it");
                    iterator = shard_iterator(reader, &position).await?;
                    continue;
                }
                if service.is_some_and(|e| e.is_resource_not_found_exception()) {
                    return Err(format!("the stream is gone: {}", error_text(&error)));
                }
                let throttled = service.is_some_and(|e| {
                    e.is_provisioned_throughput_exceeded_exception()
                        || e.is_kms_throttling_exception()
                });
                let delay = Backoff::DEFAULT.jittered(failures);
                failures += 1;
                if throttled {
                    tracing::debug!(shard = %reader.shard_id, delay_ms = delay.as_millis() as u64, "throttled; backing off");
                } else {
                    tracing::warn!(shard = %reader.shard_id, error = %error_text(&error), delay_ms = delay.as_millis() as u64, "GetRecords failed; retrying");
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let millis_behind = response.millis_behind_latest;
        if let Some(last) = response.records.last() {
            position = Position::After(last.sequence_number.clone());
        }
        let mut records: Vec<ShardRecord> = Vec::with_capacity(response.records.len());
        for record in response.records {
            last_arrival = record
                .approximate_arrival_timestamp
                .and_then(|t| t.to_millis().ok())
                .unwrap_or(last_arrival);
            split_record(
                record.data.into_inner(),
                record.sequence_number,
                last_arrival,
                &mut records,
            );
            if skip > 0 {
                // Its last event (which carries the position) was never
                // processed, or the position would be past this record.
                let drop = skip.min(records.len().saturating_sub(1));
                records.drain(..drop);
                skip = 0;
            }
        }
        let got_records = !records.is_empty();
        let message = ShardMessage::Records {
            shard_id: reader.shard_id.clone(),
            records,
            millis_behind,
            asked,
        };
        if reader.tx.send(message).is_err() {
            return Ok(());
        }
        // Kinesis ends a closed shard with no next iterator. Some
        // Kinesis-compatible servers never do; for them a closed shard that
        // answers with nothing and no lag is read to its end as well.
        let drained = reader.closed && !got_records && millis_behind.unwrap_or(0) == 0;
        match response.next_shard_iterator.filter(|_| !drained) {
            Some(next) => iterator = next,
            None => {
                tracing::info!(stream = %reader.stream, shard = %reader.shard_id, "shard read to its end");
                let _ = reader.ended.send(reader.shard_id.clone());
                return Ok(());
            }
        }
        let behind = millis_behind.unwrap_or(0) > 0;
        let pause = if got_records && behind {
            MIN_CALL_GAP
        } else {
            reader.poll_interval.max(MIN_CALL_GAP)
        };
        tokio::time::sleep(pause).await;
    }
}

/// The event time of one event, in Unix milliseconds, read without a full
/// parse (this runs on the reader's thread, for the merge order): the
/// `event_time` of a JSON event, or the LANL seconds of a CSV line (ordered
/// among themselves). `None` if neither is there.
pub fn event_time_ms(data: &[u8]) -> Option<i64> {
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    let data = &data[start..];
    if data[0] == b'{' {
        const FIELD: &[u8] = b"\"event_time\"";
        let at = memchr::memmem::find(data, FIELD)? + FIELD.len();
        let rest = &data[at..];
        let open = memchr::memchr(b'"', rest)? + 1;
        let close = open + memchr::memchr(b'"', &rest[open..])?;
        let text = std::str::from_utf8(&rest[open..close]).ok()?;
        return chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis());
    }
    let end = memchr::memchr(b',', data)?;
    let seconds: i64 = std::str::from_utf8(&data[..end])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    seconds.checked_mul(1000)
}

async fn shard_iterator(reader: &ShardReader, position: &Position) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        let mut request = reader
            .client
            .get_shard_iterator()
            .stream_name(&reader.stream)
            .shard_id(&reader.shard_id);
        request = match position {
            Position::Start(StartAt::TrimHorizon) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            Position::Start(StartAt::Latest) => {
                request.shard_iterator_type(ShardIteratorType::Latest)
            }
            Position::Start(StartAt::Timestamp(millis)) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_millis(*millis)),
            Position::After(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
        };
        match request.send().await {
            Ok(response) => {
                return response
                    .shard_iterator
                    .ok_or_else(|| "GetShardIterator returned no iterator".to_string());
            }
            Err(error) => {
                let service = error.as_service_error();
                if service.is_some_and(|e| {
                    e.is_resource_not_found_exception() || e.is_invalid_argument_exception()
                }) {
                    return Err(error_text(&error));
                }
                let delay = Backoff::DEFAULT.jittered(attempt);
                attempt += 1;
                tracing::warn!(shard = %reader.shard_id, error = %error_text(&error), "GetShardIterator failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
