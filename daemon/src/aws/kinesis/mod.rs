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
//!
//! This file is the source the pipeline reads; `readers` holds the tasks
//! that list the shards and read each one.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::Shard;

use super::aggregation::deaggregate;
use super::checkpoint::{Checkpoint, UnsavedPositions};
use super::merge::{Next, ShardMerge, ShardRecord};
use super::{AwsSettings, error_text};
use authpulse_engine::input::{Frontier, Line, Source};

mod readers;

use readers::coordinate;
pub use readers::event_time_ms;

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
        let runtime = crate::net::runtime("kinesis")?;
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
