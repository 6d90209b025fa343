//! The Kinesis source: every shard of a stream, read with `GetRecords`,
//! merged in event-time order ([`super::merge`]) and handed to the pipeline one
//! event at a time through the same [`Source`] seam as a file.
//!
//! - One reader task per open shard; a coordinator task lists the shards and
//!   starts a child shard only once each of its parents has been read to its
//!   end, so that a user's events (partition key `user_id`) stay in order
//!   across a split or a merge.
//! - Throttling (`ProvisionedThroughputExceeded`) and transient errors are
//!   retried with backoff from the same iterator; an expired iterator is
//!   renewed after the last sequence number read. A reader never skips.
//! - A record may hold one event, several newline-separated events, or a KPL
//!   aggregate ([`super::aggregation`]).
//! - Positions are saved to a checkpoint file at every pipeline checkpoint.
//! - A fleet worker reads only its leases' shards (`only`): the lease table
//!   orders parents before children ([`crate::fleet`]), and its positions
//!   name the writer, for the tables' fence ([`crate::lakehouse::shard_log`]).

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use tokio::sync::Semaphore;

use super::aggregation::deaggregate;
use super::checkpoint::{Checkpoint, UnsavedPositions};
use super::merge::{Next, ShardMerge, ShardMessage, ShardRecord};
use super::{AwsSettings, Backoff, error_text};
use authpulse_engine::input::{Frontier, Line, Source};

/// Where reading starts in shards that have no checkpointed position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still retained.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
    /// Records that arrived at or after this time (Unix milliseconds).
    Timestamp(i64),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().replace('_', "-").as_str() {
            "trim-horizon" | "oldest" => Ok(StartAt::TrimHorizon),
            "latest" => Ok(StartAt::Latest),
            _ => chrono::DateTime::parse_from_rfc3339(value)
                .map(|t| StartAt::Timestamp(t.timestamp_millis()))
                .map_err(|_| {
                    format!(
                        "`{value}` is not trim-horizon, latest or an RFC 3339 time (2024-01-01T00:00:00Z)"
                    )
                }),
        }
    }
}

/// How to read a stream.
#[derive(Clone, Debug)]
pub struct KinesisSourceConfig {
    pub stream: String,
    /// For shards the checkpoint does not name (all of them without one).
    pub start: StartAt,
    /// Resume from here: per shard, after its last processed record.
    pub checkpoint: Option<Checkpoint>,
    /// Where positions are saved; `None` when the tables keep them (their
    /// commits' progress), so that no second record can disagree.
    pub checkpoint_path: Option<PathBuf>,
    /// Stop once every open shard has been read to its tip.
    pub until_caught_up: bool,
    /// Wait between reads of a shard that is at its tip.
    pub poll_interval: Duration,
    /// Records per `GetRecords` call (at most 10,000).
    pub records_per_call: i32,
    /// Read only these shards (a fleet worker's readable leases); `None`:
    /// every shard, children after their parents.
    pub only: Option<BTreeSet<String>>,
    /// The fleet writer (`worker/attempt`) the positions are recorded
    /// for, so that the tables' fence knows whose commit it is.
    pub writer: Option<String>,
    /// Also told the positions whenever they are saved (a fleet worker
    /// records them in its leases).
    pub on_saved: Option<OnSaved>,
    pub aws: AwsSettings,
}

/// Told the positions once every event read before them is committed.
#[derive(Clone)]
pub struct OnSaved(pub Arc<dyn Fn(&Checkpoint) + Send + Sync>);

impl std::fmt::Debug for OnSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSaved")
    }
}

impl KinesisSourceConfig {
    pub fn new(stream: impl Into<String>, checkpoint_path: Option<PathBuf>) -> Self {
        KinesisSourceConfig {
            stream: stream.into(),
            start: StartAt::TrimHorizon,
            checkpoint: None,
            checkpoint_path,
            until_caught_up: false,
            poll_interval: Duration::from_secs(1),
            records_per_call: 10_000,
            only: None,
            writer: None,
            on_saved: None,
            aws: AwsSettings::default(),
        }
    }
}

/// Batches a reader may hold unconsumed (memory bound per shard).
const CREDITS_PER_SHARD: usize = 3;

/// Kinesis allows 5 `GetRecords` calls per second per shard.
const MIN_CALL_GAP: Duration = Duration::from_millis(200);

/// How long the pipeline waits for records before doing its idle work.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// The pipeline's view of a stream.
pub struct KinesisSource {
    // Dropped first: stops the readers before the merge goes away.
    runtime: Option<tokio::runtime::Runtime>,
    merge: ShardMerge,
    /// Where reading started: the merge's positions count from here.
    start: Checkpoint,
    checkpoint_path: Option<PathBuf>,
    /// Positions read but not yet safe to save.
    unsaved: UnsavedPositions,
    writer: Option<String>,
    on_saved: Option<OnSaved>,
    /// Events handed out (the "line number" of dead letters).
    events: u64,
    bytes: u64,
    stopped: bool,
}

impl KinesisSource {
    /// Connects, lists the shards and starts reading.
    pub fn start(config: KinesisSourceConfig) -> io::Result<KinesisSource> {
        let runtime = super::runtime("kinesis")?;
        let sdk = runtime.block_on(config.aws.load());
        let client = Client::new(&sdk);
        // Fail fast on a wrong stream name or missing permission.
        runtime
            .block_on(list_shards(&client, &config.stream))
            .map_err(|e| io::Error::other(format!("Kinesis stream `{}`: {e}", config.stream)))?;
        let (tx, rx) = mpsc::channel();
        let merge = ShardMerge::new(rx, config.until_caught_up, IDLE_WAIT);
        let start = config.checkpoint.clone().unwrap_or_else(|| Checkpoint {
            stream: config.stream.clone(),
            ..Checkpoint::default()
        });
        let checkpoint_path = config.checkpoint_path.clone();
        let writer = config.writer.clone();
        let on_saved = config.on_saved.clone();
        runtime.spawn(coordinate(client, config, tx));
        Ok(KinesisSource {
            runtime: Some(runtime),
            merge,
            start,
            checkpoint_path,
            unsaved: UnsavedPositions::default(),
            writer,
            on_saved,
            events: 0,
            bytes: 0,
            stopped: false,
        })
    }
}

impl Source for KinesisSource {
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        if self.stopped {
            return Ok(None);
        }
        match self.merge.next_record().map_err(io::Error::other)? {
            Next::Idle => Ok(Some(Line::Idle)),
            Next::Done => {
                self.stopped = true;
                Ok(None)
            }
            Next::Record(data) => {
                self.events += 1;
                self.bytes += data.len() as u64;
                Ok(Some(Line::Complete(data)))
            }
        }
    }

    fn line_no(&self) -> u64 {
        self.events
    }

    fn bytes_consumed(&self) -> u64 {
        self.bytes
    }

    /// Per shard, where the next event starts (the sequence number of the
    /// last record read whole, and the events of the next one read), as
    /// the progress record of a commit keeps it; a fleet writer's also
    /// names the writer.
    fn position(&self) -> serde_json::Value {
        let at = self.start.advanced(&self.merge.positions());
        match &self.writer {
            Some(writer) => serde_json::json!({ "writer": writer, "shards": at.shards }),
            None => serde_json::json!({ "shards": at.shards }),
        }
    }

    fn checkpointed(&mut self, frontier: Frontier) -> io::Result<()> {
        if self.checkpoint_path.is_none() && self.on_saved.is_none() {
            return Ok(());
        }
        match self.unsaved.checkpoint(self.merge.positions(), frontier) {
            Some(positions) => self.save(&self.start.advanced(&positions)),
            None => Ok(()),
        }
    }

    fn finished(&mut self) -> io::Result<()> {
        self.unsaved = UnsavedPositions::default();
        self.save(&self.start.advanced(&self.merge.positions()))
    }

    fn events_by_partition(&self) -> Vec<(String, u64)> {
        self.merge
            .positions()
            .into_iter()
            .map(|p| (p.shard_id, p.events))
            .collect()
    }

    fn iterator_ages_ms(&self) -> Vec<(String, i64)> {
        self.merge
            .positions()
            .into_iter()
            .filter(|p| !p.ended)
            .filter_map(|p| Some((p.shard_id, p.millis_behind?)))
            .collect()
    }
}

impl KinesisSource {
    fn save(&self, at: &Checkpoint) -> io::Result<()> {
        if let Some(OnSaved(tell)) = &self.on_saved {
            tell(at);
        }
        match &self.checkpoint_path {
            Some(path) => at.save(path),
            None => Ok(()),
        }
    }
}

/// The events of one Kinesis record, each with its own merge order: the
/// events of a KPL aggregate, or the non-blank lines of a plain record (one
/// event, usually, whose bytes are moved, not copied). An aggregate that fails
/// its checks is handed on whole, to be dead-lettered with the reason. The
/// record's sequence number goes on its last event only.
pub fn split_record(data: Vec<u8>, sequence: String, arrival_ms: i64, out: &mut Vec<ShardRecord>) {
    let first = out.len();
    let event = |data: Vec<u8>, order_ms: Option<i64>| ShardRecord {
        order_ms: order_ms.unwrap_or(arrival_ms),
        data,
        resume_after: None,
    };
    match deaggregate(&data) {
        Ok(Some(events)) => {
            for e in events {
                out.push(event(e.to_vec(), event_time_ms(e)));
            }
        }
        Ok(None) if memchr::memchr(b'\n', data.trim_ascii_end()).is_none() => {
            if !data.iter().all(u8::is_ascii_whitespace) {
                let order = event_time_ms(&data);
                out.push(event(data, order));
            }
        }
        Ok(None) => {
            for line in data.split(|&b| b == b'\n') {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    out.push(event(line.to_vec(), event_time_ms(line)));
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, sequence = %sequence, "undecodable aggregated Kinesis record");
            out.push(event(data, None));
        }
    }
    // (A record of blanks only has no event to carry its position.)
    if let Some(last) = out[first..].last_mut() {
        last.resume_after = Some(sequence);
    }
}

impl Drop for KinesisSource {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether a listed shard was closed by a reshard (it has an end).
pub fn is_closed(shard: &Shard) -> bool {
    shard
        .sequence_number_range
        .as_ref()
        .is_some_and(|r| r.ending_sequence_number.is_some())
}

/// Every shard of the stream (all pages).
pub(crate) async fn list_shards(client: &Client, stream: &str) -> Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // A next token and the stream name may not be given together.
        let request = match &token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(|e| error_text(&e))?;
        shards.extend(page.shards.unwrap_or_default());
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(shards),
        }
    }
}

/// Lists the shards, starts a reader for each readable one, and when a
/// shard ends starts its children before telling the merge it ended.
async fn coordinate(client: Client, config: KinesisSourceConfig, tx: mpsc::Sender<ShardMessage>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_into_events() {
        let mut out = Vec::new();
        split_record(b"1,U1,C1\n\n2,U2,C2\n".to_vec(), "7".into(), 5, &mut out);
        let mut aggregate = crate::aws::aggregation::Aggregate::default();
        aggregate.push("U3", b"3,U3,C3");
        aggregate.push("U4", b"{}");
        split_record(aggregate.finish(), "8".into(), 5, &mut out);
        split_record(b" \n ".to_vec(), "9".into(), 5, &mut out);
        let got: Vec<(&[u8], Option<&str>, i64)> = out
            .iter()
            .map(|r| (&r.data[..], r.resume_after.as_deref(), r.order_ms))
            .collect();
        assert_eq!(
            got,
            [
                (&b"1,U1,C1"[..], None, 1000),
                (&b"2,U2,C2"[..], Some("7"), 2000),
                (&b"3,U3,C3"[..], None, 3000),
                (&b"{}"[..], Some("8"), 5),
            ]
        );
    }

    #[test]
    fn event_times_for_the_merge() {
        let json = br#"{"event_id":"x","event_time":"2024-01-01T00:00:01Z","user_id":"U1"}"#;
        assert_eq!(event_time_ms(json), Some(1_704_067_201_000));
        assert_eq!(event_time_ms(b"61,U1,C1"), Some(61_000));
        assert_eq!(event_time_ms(b"{\"user_id\":\"U1\"}"), None);
        assert_eq!(event_time_ms(b"garbage"), None);
    }

    #[test]
    fn start_positions_parse() {
        assert_eq!("TRIM_HORIZON".parse::<StartAt>(), Ok(StartAt::TrimHorizon));
        assert_eq!("latest".parse::<StartAt>(), Ok(StartAt::Latest));
        assert_eq!(
            "2024-01-01T00:00:01Z".parse::<StartAt>(),
            Ok(StartAt::Timestamp(1_704_067_201_000))
        );
        let error = "yesterday".parse::<StartAt>().unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
    }
}
