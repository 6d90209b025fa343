//! Where results go: dead letters, alerts and scored events, each behind a small
//! trait so the pipeline does not care whether it writes files, memory (tests)
//! or, later, tables and AWS services.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use authpulse_rules_sdk::Features;
use serde::Serialize;

use crate::alerts::Alert;
use crate::event::{Event, EventId, Interner, TimeBase, format_time};
use crate::policy::RiskLevel;
use crate::rules::RuleSet;

/// A refused record: where it was, why, and what it said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// 1-based line number in the input.
    pub line: u64,
    /// Stable reason code (`late`, `bad_time`, `field_count`, ...).
    pub kind: String,
    pub reason: String,
    /// The record as read (lossy UTF-8, at most 4 KiB).
    pub raw: String,
}

/// Where a run stands at a checkpoint: recorded in the snapshot summary of
/// every table the checkpoint commits (property [`Progress::PROPERTY`]), so
/// that data, the source's position and the state snapshot move together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Progress {
    /// Checkpoints of the run so far, this one included.
    pub checkpoint: u64,
    /// The end of input was reached and everything is committed.
    pub complete: bool,
    /// The source and how far it was read: what it is (`identity`, e.g. a
    /// file's path and the hash of its first bytes) and where the next
    /// record starts (`position`, e.g. a byte offset and line number).
    pub source: serde_json::Value,
    /// The state snapshot of this checkpoint, if one was kept (its name in
    /// the state store).
    pub state: Option<String>,
}

impl Progress {
    /// The snapshot summary property that holds it (as JSON).
    pub const PROPERTY: &'static str = "authpulse.progress";

    /// The snapshot summary properties a table commit carries for it (none
    /// for a checkpoint without progress, as in tests).
    pub fn properties(&self) -> std::collections::HashMap<String, String> {
        if self.checkpoint == 0 {
            return Default::default();
        }
        let json = serde_json::to_string(self).expect("progress serialises");
        std::collections::HashMap::from([(Self::PROPERTY.to_string(), json)])
    }
}

/// The events a warehouse already stores, by `event_id`, for a run that
/// adds another input to it: an event stored before is not stored again.
/// Asked one day of event time at a time, as the input reaches it.
pub trait StoredEvents {
    /// The ids of the stored events whose event time falls in Unix day
    /// `day` (`event_time.div_euclid(86_400)`).
    fn ids_of_day(&mut self, day: i64) -> io::Result<rustc_hash::FxHashSet<u128>>;
}

/// The commit protocol every sink takes part in: at each checkpoint what it
/// was given becomes durable and visible, with the checkpoint's progress;
/// at the end of input, everything. A sink that keeps nothing back needs
/// neither (`impl Commit for MySink {}`).
pub trait Commit {
    /// Makes everything given so far durable and visible (commit interval),
    /// or starts to: it must be done by the next call or `flush`.
    fn checkpoint(&mut self, _progress: &Progress) -> io::Result<()> {
        self.flush()
    }
    /// End of input: everything given so far is durable.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refused records (`run --dead-letters`).
pub trait DeadLetterSink: Commit {
    fn write(&mut self, record: &DeadLetter) -> io::Result<()>;
}

/// Alert publications: an incident's opening, updates and closing.
pub trait AlertSink: Commit {
    fn send(&mut self, alert: &Alert) -> io::Result<()>;
}

/// A scored batch: parallel slices, one entry per event, in event-time order.
pub struct ScoredBatch<'a> {
    pub events: &'a [Event],
    pub features: &'a [Features],
    pub scores: &'a [u8],
    pub levels: &'a [RiskLevel],
    /// Rules that fired, bit `r` for rule `r` of `rules` (shadow rules too).
    pub flags: &'a [u32],
    /// The rule set that scored the batch: its version, flag labels, and each
    /// rule's verdicts for this batch (`rules.rules[r].verdicts[i]`).
    pub rules: &'a RuleSet,
    pub users: &'a Interner,
    pub computers: &'a Interner,
    pub time_base: TimeBase,
}

impl ScoredBatch<'_> {
    /// The `event_id` of event `i` (given by the input, or derived).
    pub fn event_id(&self, i: usize) -> EventId {
        self.events[i].event_id(self.time_base, self.users, self.computers)
    }

    /// The policy version the batch was scored with.
    pub fn policy_version(&self) -> &str {
        &self.rules.version
    }

    /// `risk_flags` for flag set `flags`: rule ids, `shadow:ID` for rules in
    /// shadow mode.
    pub fn flag_names(&self, flags: u32) -> impl Iterator<Item = &str> {
        self.rules
            .flag_labels
            .iter()
            .enumerate()
            .filter(move |(r, _)| flags & (1 << r) != 0)
            .map(|(_, id)| id.as_str())
    }
}

/// What admission made of a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Held for ordering, then scored.
    Accepted,
    /// The same (time, user, computer) was already accepted: not scored again.
    Duplicate,
    /// Behind the watermark: dead-lettered, not scored.
    Late,
    /// Dated too far ahead of the event clock: dead-lettered, not scored.
    Future,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Accepted => "accepted",
            Disposition::Duplicate => "duplicate",
            Disposition::Late => "late",
            Disposition::Future => "future",
        }
    }
}

/// A valid record as it arrived, before ordering and deduplication.
pub struct Received<'a> {
    /// 1-based position in the source (line number).
    pub line: u64,
    pub event: &'a Event,
    /// Where `event.user` and `event.computer` are named.
    pub users: &'a Interner,
    pub computers: &'a Interner,
    /// What `event.event_time` is counted from in a derived `event_id`.
    pub time_base: TimeBase,
    pub disposition: Disposition,
    /// The source's own id of the record (OCSF `metadata.uid`, ECS
    /// `event.id`), if it had one.
    pub source_event_id: Option<&'a str>,
}

impl Received<'_> {
    pub fn user(&self) -> &str {
        self.users.name(self.event.user)
    }

    pub fn computer(&self) -> &str {
        self.computers.name(self.event.computer)
    }
}

/// Every valid record as received (`auth_events_raw`).
pub trait ReceivedSink: Commit {
    fn receive(&mut self, record: &Received<'_>) -> io::Result<()>;
}

/// Scored events, batch by batch (the curated and aggregate tables).
pub trait ScoredSink: Commit {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()>;
    /// For a sink that keeps state across batches (open aggregation
    /// windows): adds it, under the sink's name, to the pipeline's state
    /// snapshot. Everything written before the call is part of it.
    fn snapshot_state(&mut self, _parts: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
        Ok(())
    }
    /// Takes back the state [`ScoredSink::snapshot_state`] kept (a resumed
    /// run), before any batch, with the names its ids stand for.
    fn restore_state(
        &mut self,
        _parts: &[(String, Vec<u8>)],
        _users: &Interner,
        _computers: &Interner,
    ) -> io::Result<()> {
        Ok(())
    }
    /// A stop before the end of input (a signal): waits until what the last
    /// checkpoint started is done, and leaves open what the input has not
    /// closed (the next start resumes it from the snapshot). For a sink
    /// without open windows that is what `flush` does after a checkpoint.
    fn settle(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// Discards everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Discard;

impl Commit for Discard {}

impl DeadLetterSink for Discard {
    fn write(&mut self, _: &DeadLetter) -> io::Result<()> {
        Ok(())
    }
}

impl AlertSink for Discard {
    fn send(&mut self, _: &Alert) -> io::Result<()> {
        Ok(())
    }
}

impl ScoredSink for Discard {
    fn write_batch(&mut self, _: &ScoredBatch<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// A JSON-lines file, created (with its directory) when the sink is, so
/// that a run with nothing to report still leaves its (empty) file: an
/// absent file then means the run did not get that far.
pub struct JsonLinesFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLinesFile {
    /// Creates (truncates) `path`.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        Ok(JsonLinesFile {
            path,
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    /// Opens `path` to carry on after its first `keep_lines` lines (a
    /// resumed run): anything after them, a torn last line included, is cut
    /// off. Fails if the file has fewer lines than that.
    pub fn resume(path: impl Into<PathBuf>, keep_lines: u64) -> io::Result<Self> {
        let path = path.into();
        let mut file = open_keeping(&path)?;
        let mut keep_bytes = 0u64;
        let mut lines = 0u64;
        if keep_lines > 0 {
            let mut reader = io::BufReader::new(&mut file);
            let mut line = Vec::new();
            while lines < keep_lines {
                line.clear();
                let n = io::BufRead::read_until(&mut reader, b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                keep_bytes += n as u64;
                lines += 1;
            }
        }
        if lines < keep_lines {
            return Err(io::Error::other(format!(
                "{} has {lines} complete lines, the resumed run's state counts {keep_lines}",
                path.display()
            )));
        }
        carry_on(path, file, keep_bytes)
    }

    /// Opens `path` to add to what it holds (created if missing); a torn
    /// last line (a crash mid-write) is cut off.
    pub fn append(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let mut file = open_keeping(&path)?;
        // Back from the end, a chunk at a time, to the last line's end.
        let mut whole = file.metadata()?.len();
        let mut chunk = vec![0u8; 1 << 16];
        while whole > 0 {
            let start = whole.saturating_sub(chunk.len() as u64);
            let part = &mut chunk[..(whole - start) as usize];
            io::Seek::seek(&mut file, io::SeekFrom::Start(start))?;
            io::Read::read_exact(&mut file, part)?;
            if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
                whole = start + at as u64 + 1;
                break;
            }
            whole = start;
        }
        carry_on(path, file, whole)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_json<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }

    fn flush_file(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Opens `path` (creating it and its directory) to read and write, keeping
/// what it holds.
fn open_keeping(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Cuts `file` at `len` bytes and goes on writing there.
fn carry_on(path: PathBuf, mut file: File, len: u64) -> io::Result<JsonLinesFile> {
    file.set_len(len)?;
    io::Seek::seek(&mut file, io::SeekFrom::Start(len))?;
    Ok(JsonLinesFile {
        path,
        out: BufWriter::with_capacity(1 << 16, file),
    })
}

impl Commit for JsonLinesFile {
    fn flush(&mut self) -> io::Result<()> {
        self.flush_file()
    }
}

impl DeadLetterSink for JsonLinesFile {
    fn write(&mut self, record: &DeadLetter) -> io::Result<()> {
        self.write_json(record)
    }
}

impl AlertSink for JsonLinesFile {
    /// Alerts are few and someone may be tailing the file: each goes out at once.
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.send_value(alert)
    }
}

impl JsonLinesFile {
    /// Writes one value as a line and flushes it at once (an alert in
    /// another form: someone may be tailing the file).
    pub fn send_value<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.write_json(value)?;
        self.flush_file()
    }
}

/// One scored event as a row (what the curated table holds, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ScoredRow {
    pub event_id: String,
    pub event_time: String,
    pub user_id: String,
    pub computer_id: String,
    pub user_logins_1h: u32,
    pub user_logins_24h: u32,
    pub user_distinct_computers_1h: u32,
    pub user_distinct_computers_24h: u32,
    pub user_new_computers_1h: u32,
    pub user_known_computers: u32,
    pub host_users_ever: u32,
    pub new_device: bool,
    pub risk_score: u8,
    pub risk_level: RiskLevel,
    pub risk_flags: Vec<String>,
    pub policy_version: String,
}

impl ScoredRow {
    pub fn from_batch(batch: &ScoredBatch<'_>, i: usize) -> ScoredRow {
        let e = &batch.events[i];
        let f = &batch.features[i];
        ScoredRow {
            event_id: batch.event_id(i).to_string(),
            event_time: format_time(e.event_time),
            user_id: batch.users.name(e.user).to_string(),
            computer_id: batch.computers.name(e.computer).to_string(),
            user_logins_1h: f.user_logins_1h,
            user_logins_24h: f.user_logins_24h,
            user_distinct_computers_1h: f.user_distinct_computers_1h,
            user_distinct_computers_24h: f.user_distinct_computers_24h,
            user_new_computers_1h: f.user_new_computers_1h,
            user_known_computers: f.user_known_computers,
            host_users_ever: f.host_users_ever,
            new_device: f.is_new_device(),
            risk_score: batch.scores[i],
            risk_level: batch.levels[i],
            risk_flags: batch
                .flag_names(batch.flags[i])
                .map(str::to_string)
                .collect(),
            policy_version: batch.policy_version().to_string(),
        }
    }
}

/// Scored events as JSON lines (`run --scored FILE`): for inspection and
/// small runs; the lakehouse tables are the production sink.
pub struct ScoredJsonLines(pub JsonLinesFile);

impl ScoredSink for ScoredJsonLines {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        for i in 0..batch.events.len() {
            self.0.write_json(&ScoredRow::from_batch(batch, i))?;
        }
        Ok(())
    }
}

impl Commit for ScoredJsonLines {
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush_file()
    }
}

/// Sends everything to several sinks in turn.
pub struct Tee<'a, S: ?Sized>(pub Vec<&'a mut S>);

impl<S: Commit + ?Sized> Commit for Tee<'_, S> {
    fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|sink| sink.checkpoint(progress))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.flush())
    }
}

impl AlertSink for Tee<'_, dyn AlertSink + '_> {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.send(alert))
    }
}

impl ScoredSink for Tee<'_, dyn ScoredSink + '_> {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|sink| sink.write_batch(batch))
    }
    fn settle(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.settle())
    }
    fn snapshot_state(&mut self, parts: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|sink| sink.snapshot_state(parts))
    }
    fn restore_state(
        &mut self,
        parts: &[(String, Vec<u8>)],
        users: &Interner,
        computers: &Interner,
    ) -> io::Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|sink| sink.restore_state(parts, users, computers))
    }
}

/// Keeps everything in memory (tests, `demo`).
#[derive(Default)]
pub struct Collect {
    pub dead_letters: Vec<DeadLetter>,
    pub alerts: Vec<Alert>,
    pub rows: Vec<ScoredRow>,
}

impl Commit for Collect {}

impl DeadLetterSink for Collect {
    fn write(&mut self, record: &DeadLetter) -> io::Result<()> {
        self.dead_letters.push(record.clone());
        Ok(())
    }
}

impl AlertSink for Collect {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.alerts.push(alert.clone());
        Ok(())
    }
}

impl ScoredSink for Collect {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        self.rows
            .extend((0..batch.events.len()).map(|i| ScoredRow::from_batch(batch, i)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records which calls reached it.
    #[derive(Default)]
    struct Calls(Vec<&'static str>);

    impl Commit for Calls {
        fn checkpoint(&mut self, _: &Progress) -> io::Result<()> {
            self.0.push("checkpoint");
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.push("flush");
            Ok(())
        }
    }

    impl ScoredSink for Calls {
        fn write_batch(&mut self, _: &ScoredBatch<'_>) -> io::Result<()> {
            self.0.push("write");
            Ok(())
        }
    }

    impl AlertSink for Calls {
        fn send(&mut self, _: &Alert) -> io::Result<()> {
            self.0.push("send");
            Ok(())
        }
    }

    /// A checkpoint through a tee must stay a checkpoint: table sinks only
    /// start their commit there, while a flush waits for it, which would stall
    /// the pipeline at every commit interval.
    #[test]
    fn tees_pass_checkpoints_on_as_checkpoints() {
        let (mut a, mut b) = (Calls::default(), Calls::default());
        {
            let mut tee: Tee<dyn ScoredSink> = Tee(vec![&mut a, &mut b]);
            tee.checkpoint(&Progress::default()).unwrap();
            tee.flush().unwrap();
        }
        assert_eq!(a.0, ["checkpoint", "flush"]);
        assert_eq!(b.0, ["checkpoint", "flush"]);

        let (mut a, mut b) = (Calls::default(), Calls::default());
        {
            let mut tee: Tee<dyn AlertSink> = Tee(vec![&mut a, &mut b]);
            tee.checkpoint(&Progress::default()).unwrap();
            tee.flush().unwrap();
        }
        assert_eq!(a.0, ["checkpoint", "flush"]);
        assert_eq!(b.0, ["checkpoint", "flush"]);
    }

    /// A fleet worker's next attempt adds to its files: what they held
    /// stays, a torn last line goes.
    #[test]
    fn an_appended_file_keeps_its_whole_lines() {
        let dir = std::env::temp_dir().join(format!("authpulse-append-{}", std::process::id()));
        let path = dir.join("alerts.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let mut file = JsonLinesFile::append(&path).unwrap();
        file.send_value(&serde_json::json!({"a": 3})).unwrap();
        drop(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
        // Missing: created; a line longer than the chunk read back is kept.
        std::fs::remove_file(&path).unwrap();
        let long = format!("{}\n", "x".repeat(100_000));
        JsonLinesFile::append(&path).unwrap();
        std::fs::write(&path, format!("{long}{}", "y".repeat(70_000))).unwrap();
        drop(JsonLinesFile::append(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), long);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
