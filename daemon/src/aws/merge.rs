//! Merging the shards of a stream into one record sequence for the pipeline.
//!
//! Each shard reader delivers its records in batches, in shard order. The
//! merge hands the pipeline the buffered record with the earliest event time
//! across shards, and waits for a shard that is behind (has nothing buffered
//! and is not at its tip) rather than run ahead of it. So the pipeline sees
//! the stream in close to event-time order whatever the number of shards: a
//! backfill of a day from two shards does not see one shard an hour ahead of
//! the other (one `PutRecords` call of 500 events can span an hour of a
//! quiet day), which would make the other shard's events late for the
//! watermark.
//!
//! A shard at its tip is at its tip only as of the read that said so: a
//! record may have arrived since. So a record newer than anything such a
//! shard has brought waits until that shard has been read again after the
//! record's own read was asked for (at most one poll interval on a live
//! stream). Without this, a process that stalls (a pause, SIGSTOP, a
//! takeover of a shard with a backlog) resumes by handing out hours of one
//! shard before another's reader has looked again, and the other's events
//! are late.
//!
//! A batch's memory comes back to its reader as a credit once the batch is
//! consumed; a reader holds at most a few batches unconsumed, so the merge
//! buffers at most `credits x shards` batches.
//!
//! This file is synchronous and knows nothing of the SDK: it is tested with
//! hand-made batches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// One event as read: a whole Kinesis record, or one event of a record that
/// holds several (a KPL aggregate, newline-separated lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardRecord {
    pub data: Vec<u8>,
    /// On the last event of its Kinesis record only: the record's sequence
    /// number. Once that event is handed out the record is done with, and
    /// this is a position to resume after.
    pub resume_after: Option<String>,
    /// Merge order, Unix milliseconds: the event time of the record's first
    /// event, or its arrival time when that cannot be read.
    pub order_ms: i64,
}

/// A returned credit: lets a reader fetch one more batch.
pub trait Credit: Send + Sync {
    fn give_back(&self);
}

impl Credit for tokio::sync::Semaphore {
    fn give_back(&self) {
        self.add_permits(1);
    }
}

/// What shard readers (through their coordinator) tell the merge.
pub enum ShardMessage {
    /// A shard is being read from now on. Sent before its first batch, and
    /// for a child shard before its parent's `Ended`, so that the merge never
    /// believes the stream has run dry in between.
    Started {
        shard_id: String,
        credits: Arc<dyn Credit>,
        /// Closed by a reshard: it will end, and until it has, its children
        /// have not started, so the stream is not caught up.
        closed: bool,
    },
    /// The next records of a shard, in shard order.
    Records {
        shard_id: String,
        records: Vec<ShardRecord>,
        /// `MillisBehindLatest` of the response.
        millis_behind: Option<i64>,
        /// When the read was asked for, as a count of the source's reads
        /// (taken as each request is sent): which reads came after which.
        asked: u64,
    },
    /// The shard is closed (resharded) and every record of it was sent.
    Ended { shard_id: String },
    /// The reader cannot go on (the stream is gone, no permission, ...).
    Failed(String),
}

/// What the merge has for the pipeline.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<'a> {
    /// The next event.
    Record(&'a [u8]),
    /// Nothing arrived within the wait; ask again.
    Idle,
    /// With `until_caught_up`: every open shard has been read to its tip. Or:
    /// every shard of the stream has ended.
    Done,
}

struct Batch {
    records: Vec<ShardRecord>,
    /// See [`ShardMessage::Records`].
    asked: u64,
}

struct Shard {
    id: String,
    credits: Arc<dyn Credit>,
    batches: VecDeque<Batch>,
    /// Index of the next record of the front batch.
    next: usize,
    /// The last response had no records and no lag: nothing more to read,
    /// as of that read (its `asked`).
    tip_asked: Option<u64>,
    /// The latest merge order of the records received.
    newest_order: i64,
    closed: bool,
    ended: bool,
    /// Sequence number of the last record handed out.
    position: Option<String>,
    millis_behind: Option<i64>,
    /// Events handed out since reading started.
    handed: u64,
}

impl Shard {
    fn front(&self) -> Option<&ShardRecord> {
        self.batches.front().map(|batch| &batch.records[self.next])
    }

    fn is_open(&self) -> bool {
        !self.ended
    }
}

/// A shard's read position, for checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPosition {
    pub shard_id: String,
    /// Sequence number of the last record whose every event was handed to
    /// the pipeline (`None`: none since reading started).
    pub sequence: Option<String>,
    /// Events of the record after it (one that holds several) already
    /// handed out: a resumed reader drops that many.
    pub skip: u32,
    /// Every record of the (closed) shard has been handed out.
    pub ended: bool,
    pub millis_behind: Option<i64>,
    /// Events handed out since reading started.
    pub events: u64,
}

pub struct ShardMerge {
    messages: Receiver<ShardMessage>,
    shards: Vec<Shard>,
    until_caught_up: bool,
    wait: Duration,
    /// Shard of the record handed out last: its position is settled on the
    /// next call (the record's bytes are borrowed until then).
    handed_out: Option<usize>,
    disconnected: bool,
    /// Records to hand out before the channel is looked at again.
    until_poll: u32,
}

/// See [`ShardMerge::next_record`].
const POLL_EVERY: u32 = 1024;

impl ShardMerge {
    /// `wait`: how long [`ShardMerge::next_record`] waits for a message before
    /// returning [`Next::Idle`].
    pub fn new(messages: Receiver<ShardMessage>, until_caught_up: bool, wait: Duration) -> Self {
        ShardMerge {
            messages,
            shards: Vec::new(),
            until_caught_up,
            wait,
            handed_out: None,
            disconnected: false,
            until_poll: 0,
        }
    }

    /// The next record in arrival order across shards.
    pub fn next_record(&mut self) -> Result<Next<'_>, String> {
        if let Some(shard) = self.handed_out.take() {
            self.advance(shard);
        }
        // Idle once `wait` has passed without a record, however many
        // messages came meanwhile: the pipeline's idle work (commits, the
        // stop signal) must not wait on shards that keep answering empty.
        let mut idle_at: Option<std::time::Instant> = None;
        loop {
            // New batches only queue behind records already buffered, so
            // the channel is looked at every POLL_EVERY records, and always
            // before waiting or stopping: not once per event.
            let fresh = self.until_poll == 0;
            if fresh {
                while let Ok(message) = self.messages.try_recv() {
                    self.apply(message)?;
                }
                self.until_poll = POLL_EVERY;
            }
            match self.choose() {
                Choice::Record(shard) => {
                    self.until_poll -= 1;
                    self.handed_out = Some(shard);
                    let s = &mut self.shards[shard];
                    s.handed += 1;
                    let record = s.front().expect("chosen shard has a record");
                    return Ok(Next::Record(&record.data));
                }
                _ if !fresh => {
                    self.until_poll = 0;
                    continue;
                }
                Choice::Done => return Ok(Next::Done),
                Choice::Wait => {}
            }
            if self.disconnected {
                return Err("the Kinesis readers stopped".into());
            }
            let now = std::time::Instant::now();
            let idle_at = *idle_at.get_or_insert(now + self.wait);
            if now >= idle_at {
                return Ok(Next::Idle);
            }
            match self.messages.recv_timeout(idle_at - now) {
                Ok(message) => self.apply(message)?,
                Err(RecvTimeoutError::Timeout) => return Ok(Next::Idle),
                Err(RecvTimeoutError::Disconnected) => self.disconnected = true,
            }
        }
    }

    /// Every shard's position: the sequence number of the last record handed
    /// out (call it between two calls to [`ShardMerge::next_record`], once that
    /// record has been processed).
    pub fn positions(&self) -> Vec<ShardPosition> {
        self.shards
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let consumed = s.next + usize::from(self.handed_out == Some(i));
                // The last Kinesis record whose every event was handed out,
                // and how many events of the next one were.
                let front = s
                    .batches
                    .front()
                    .map_or(&[][..], |batch| &batch.records[..consumed]);
                let (sequence, skip) = match front.iter().rposition(|r| r.resume_after.is_some()) {
                    Some(last) => (front[last].resume_after.clone(), consumed - last - 1),
                    None => (s.position.clone(), consumed),
                };
                let drained = s.batches.is_empty()
                    || (s.batches.len() == 1 && consumed == s.batches[0].records.len());
                ShardPosition {
                    shard_id: s.id.clone(),
                    sequence,
                    skip: skip as u32,
                    ended: s.ended && drained,
                    millis_behind: s.millis_behind,
                    events: s.handed,
                }
            })
            .collect()
    }

    fn shard_index(&mut self, shard_id: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.id == shard_id)
    }

    fn apply(&mut self, message: ShardMessage) -> Result<(), String> {
        match message {
            ShardMessage::Started {
                shard_id,
                credits,
                closed,
            } => {
                if self.shard_index(&shard_id).is_none() {
                    self.shards.push(Shard {
                        id: shard_id,
                        credits,
                        batches: VecDeque::new(),
                        next: 0,
                        tip_asked: None,
                        newest_order: i64::MIN,
                        closed,
                        ended: false,
                        position: None,
                        millis_behind: None,
                        handed: 0,
                    });
                }
            }
            ShardMessage::Records {
                shard_id,
                records,
                millis_behind,
                asked,
            } => {
                let Some(i) = self.shard_index(&shard_id) else {
                    return Err(format!("records from shard {shard_id} before it started"));
                };
                let shard = &mut self.shards[i];
                shard.millis_behind = millis_behind;
                shard.tip_asked =
                    (records.is_empty() && millis_behind.unwrap_or(0) == 0).then_some(asked);
                if records.is_empty() {
                    shard.credits.give_back();
                } else {
                    let newest = records.iter().map(|r| r.order_ms).max();
                    shard.newest_order = shard.newest_order.max(newest.unwrap_or(i64::MIN));
                    shard.batches.push_back(Batch { records, asked });
                }
            }
            ShardMessage::Ended { shard_id } => {
                if let Some(i) = self.shard_index(&shard_id) {
                    self.shards[i].ended = true;
                }
            }
            ShardMessage::Failed(why) => return Err(why),
        }
        Ok(())
    }

    fn choose(&self) -> Choice {
        let mut best: Option<(i64, usize)> = None;
        for (i, shard) in self.shards.iter().enumerate() {
            match shard.front() {
                Some(record) if best.is_none_or(|(order, _)| record.order_ms < order) => {
                    best = Some((record.order_ms, i));
                }
                Some(_) => {}
                // Behind and nothing buffered: what it brings next may be
                // earlier than anything buffered elsewhere. A closed shard is
                // waited for until it has ended and its children started.
                None if shard.is_open() && (shard.tip_asked.is_none() || shard.closed) => {
                    return Choice::Wait;
                }
                None => {}
            }
        }
        if let Some((order, chosen)) = best {
            // A shard at its tip as of a read asked for before this record's
            // may have received newer records since: unless the record is no
            // newer than what that shard has brought, look again first.
            let asked = self.shards[chosen].batches[0].asked;
            let stale_tip = self.shards.iter().any(|s| {
                s.is_open()
                    && s.batches.is_empty()
                    && s.tip_asked.is_some_and(|tip| tip < asked)
                    && order > s.newest_order
            });
            if stale_tip {
                return Choice::Wait;
            }
            return Choice::Record(chosen);
        }
        if self.shards.is_empty() {
            return Choice::Wait;
        }
        let all_ended = self.shards.iter().all(|s| !s.is_open());
        if all_ended || self.until_caught_up {
            // Every open shard is at its tip with nothing buffered.
            Choice::Done
        } else {
            Choice::Wait
        }
    }

    fn advance(&mut self, shard: usize) {
        let s = &mut self.shards[shard];
        let batch_len = s.batches.front().map_or(0, |b| b.records.len());
        s.next += 1;
        if s.next == batch_len {
            let mut batch = s.batches.pop_front().expect("front batch");
            // A reader never splits a Kinesis record over two batches.
            s.position = batch.records.pop().and_then(|last| last.resume_after);
            s.next = 0;
            s.credits.give_back();
        }
    }
}

enum Choice {
    Record(usize),
    Wait,
    Done,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{Sender, channel};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Credit for Count {
        fn give_back(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn records(shard: &str, arrivals: &[i64]) -> ShardMessage {
        ShardMessage::Records {
            shard_id: shard.into(),
            records: arrivals
                .iter()
                .map(|&t| ShardRecord {
                    data: format!("{shard}@{t}").into_bytes(),
                    resume_after: Some(format!("{t}")),
                    order_ms: t,
                })
                .collect(),
            millis_behind: Some(1),
            asked: asked(),
        }
    }

    fn tip(shard: &str) -> ShardMessage {
        ShardMessage::Records {
            shard_id: shard.into(),
            records: Vec::new(),
            millis_behind: Some(0),
            asked: asked(),
        }
    }

    /// Reads are asked for in the order the test sends their answers.
    fn asked() -> u64 {
        static READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        READS.fetch_add(1, Ordering::Relaxed)
    }

    fn start(tx: &Sender<ShardMessage>, shard: &str) -> Arc<Count> {
        let credits = Arc::new(Count::default());
        tx.send(ShardMessage::Started {
            shard_id: shard.into(),
            credits: credits.clone(),
            closed: shard == "parent",
        })
        .unwrap();
        credits
    }

    fn drain(merge: &mut ShardMerge) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match merge.next_record().unwrap() {
                Next::Record(data) => out.push(String::from_utf8(data.to_vec()).unwrap()),
                Next::Idle => out.push("idle".into()),
                Next::Done => return out,
            }
        }
    }

    /// A shard that answers more often than the idle wait (empty, behind,
    /// so nothing may be handed out) still lets the pipeline have its idle
    /// turn: the stop signal and commits are looked at between records
    /// and idle answers only.
    #[test]
    fn idle_comes_however_often_shards_answer() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, false, Duration::from_millis(100));
        start(&tx, "a");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let chatter = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let behind = ShardMessage::Records {
                        shard_id: "a".into(),
                        records: Vec::new(),
                        millis_behind: Some(1_000),
                        asked: asked(),
                    };
                    if tx.send(behind).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let (answer, answered) = channel();
        let asker = std::thread::spawn(move || {
            let next = merge.next_record().map(|n| n == Next::Idle);
            let _ = answer.send(next);
        });
        let got = answered.recv_timeout(Duration::from_secs(30));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        chatter.join().unwrap();
        assert_eq!(got, Ok(Ok(true)), "next_record answers Idle");
        asker.join().unwrap();
    }

    #[test]
    fn merges_shards_in_time_order_and_waits_for_a_shard_behind() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, true, Duration::from_millis(1));
        let a = start(&tx, "a");
        start(&tx, "b");
        tx.send(records("a", &[1, 4, 6])).unwrap();
        // b has sent nothing yet: nothing may be handed out.
        assert_eq!(merge.next_record().unwrap(), Next::Idle);
        tx.send(records("b", &[2, 3])).unwrap();
        let first: Vec<String> = (0..3)
            .map(|_| match merge.next_record().unwrap() {
                Next::Record(data) => String::from_utf8(data.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(first, ["a@1", "b@2", "b@3"]);
        // b's batch is used up and b is not at its tip: wait for it.
        assert_eq!(merge.next_record().unwrap(), Next::Idle);
        tx.send(tip("b")).unwrap();
        tx.send(tip("a")).unwrap();
        assert_eq!(drain(&mut merge), ["a@4", "a@6"]);
        assert_eq!(
            a.0.load(Ordering::Relaxed),
            2,
            "a's batch and empty read returned"
        );
        let positions = merge.positions();
        assert_eq!(positions[0].sequence.as_deref(), Some("6"));
        assert_eq!(positions[1].sequence.as_deref(), Some("3"));
    }

    /// b said it was at its tip, then a's reader brought records asked for
    /// later (a stalled process resuming, a taken-over backlog, a producer
    /// writing meanwhile): what a holds that is newer than anything b
    /// brought waits for b's next read, which may have earlier records.
    #[test]
    fn a_tip_is_only_as_fresh_as_its_read() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, false, Duration::from_millis(1));
        start(&tx, "a");
        start(&tx, "b");
        tx.send(records("b", &[5])).unwrap();
        tx.send(tip("b")).unwrap();
        tx.send(records("a", &[3, 5, 20, 30])).unwrap();
        // No newer than what b has brought: safe to hand out.
        assert_eq!(drain_until_idle(&mut merge), ["a@3", "a@5", "b@5"]);
        // b's next read has an older record than a's 20.
        tx.send(records("b", &[10])).unwrap();
        tx.send(tip("b")).unwrap();
        assert_eq!(drain_until_idle(&mut merge), ["b@10", "a@20", "a@30"]);
        // Once b has been read after a's batch was asked for, a goes on.
        tx.send(records("a", &[40])).unwrap();
        assert_eq!(drain_until_idle(&mut merge), Vec::<String>::new());
        tx.send(tip("b")).unwrap();
        assert_eq!(drain_until_idle(&mut merge), ["a@40"]);
    }

    #[test]
    fn a_child_follows_its_ended_parent() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, true, Duration::from_millis(1));
        start(&tx, "parent");
        tx.send(records("parent", &[1, 2])).unwrap();
        tx.send(tip("parent")).unwrap();
        // The closed parent is at its tip but has not ended: its children
        // are yet to come, so the stream is not caught up.
        assert_eq!(drain_until_idle(&mut merge), ["parent@1", "parent@2"]);
        start(&tx, "child");
        tx.send(ShardMessage::Ended {
            shard_id: "parent".into(),
        })
        .unwrap();
        tx.send(records("child", &[3])).unwrap();
        tx.send(tip("child")).unwrap();
        assert_eq!(drain(&mut merge), ["child@3"]);
        let positions = merge.positions();
        assert!(positions[0].ended);
        assert!(!positions[1].ended);
    }

    fn drain_until_idle(merge: &mut ShardMerge) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match merge.next_record().unwrap() {
                Next::Record(data) => out.push(String::from_utf8(data.to_vec()).unwrap()),
                Next::Idle => return out,
                Next::Done => panic!("done too early, after {out:?}"),
            }
        }
    }

    #[test]
    fn a_record_of_several_events_is_a_position_only_once_done() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, true, Duration::from_millis(1));
        start(&tx, "a");
        let event = |sequence: &str, complete: bool| ShardRecord {
            data: b"e".to_vec(),
            resume_after: complete.then(|| sequence.into()),
            order_ms: 0,
        };
        tx.send(ShardMessage::Records {
            shard_id: "a".into(),
            records: vec![event("1", true), event("2", false), event("2", true)],
            millis_behind: Some(1),
            asked: asked(),
        })
        .unwrap();
        merge.next_record().unwrap();
        merge.next_record().unwrap();
        assert_eq!(
            merge.positions()[0].sequence.as_deref(),
            Some("1"),
            "record 2 half done"
        );
        merge.next_record().unwrap();
        assert_eq!(merge.positions()[0].sequence.as_deref(), Some("2"));
    }

    #[test]
    fn mid_batch_positions_and_failures() {
        let (tx, rx) = channel();
        let mut merge = ShardMerge::new(rx, false, Duration::from_millis(1));
        start(&tx, "a");
        tx.send(records("a", &[1, 2, 3])).unwrap();
        assert!(merge.positions().is_empty(), "nothing read yet");
        assert!(matches!(merge.next_record().unwrap(), Next::Record(_)));
        assert!(matches!(merge.next_record().unwrap(), Next::Record(_)));
        // Positions count the record handed out last as processed.
        assert_eq!(merge.positions()[0].sequence.as_deref(), Some("2"));
        assert!(matches!(merge.next_record().unwrap(), Next::Record(_)));
        assert_eq!(merge.positions()[0].sequence.as_deref(), Some("3"));
        tx.send(ShardMessage::Failed("stream deleted".into()))
            .unwrap();
        assert_eq!(merge.next_record().unwrap_err(), "stream deleted");
    }
}
