//! Kinesis read positions on disk: per shard, the sequence number of the last
//! record whose events are all in the tables, and whether the (closed) shard
//! was read to its end. Written atomically (temporary file, then rename) when
//! a commit has landed and at the end, so `--from checkpoint` resumes there.
//!
//! Positions are saved late, not early ([`UnsavedPositions`]): a position is
//! saved only once every event read before it is in a commit that has
//! landed. Events the watermark still holds are not in a commit yet, so the
//! saved positions trail the ones read by about the allowed lateness, and a
//! restart after a crash re-reads some events rather than skip any.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::merge::ShardPosition;
use authpulse_engine::input::Frontier;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stream: String,
    /// When it was written (RFC 3339).
    pub written: String,
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// Last processed record; `None`: none yet.
    pub sequence: Option<String>,
    /// Events of the record after `sequence` (or of the shard's first
    /// record) already processed: a record can hold several.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u32,
    /// The shard is closed and every record of it was processed.
    #[serde(default)]
    pub ended: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Checkpoint {
    /// Reads a checkpoint file; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> io::Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a Kinesis checkpoint: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Where reading is once it has got from this checkpoint (where it
    /// started) to `positions` (the merge's, which count from that start):
    /// a shard keeps its start until it has handed out a whole record, and
    /// the events of a record it started in add up.
    pub fn advanced(&self, positions: &[ShardPosition]) -> Checkpoint {
        let mut next = self.clone();
        for position in positions {
            let entry = next.shards.entry(position.shard_id.clone()).or_default();
            match &position.sequence {
                Some(sequence) => {
                    entry.sequence = Some(sequence.clone());
                    entry.skip = position.skip;
                }
                None => entry.skip += position.skip,
            }
            entry.ended |= position.ended;
        }
        next.written = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        next
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = temporary(path);
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

/// Positions read at each checkpoint, held until their events are committed.
#[derive(Debug)]
pub struct UnsavedPositions {
    /// Positions at each checkpoint since the last one saved, with the
    /// latest event time read by then.
    taken: VecDeque<(Vec<ShardPosition>, Option<i64>)>,
    /// Events before this event time are in the commit started at the last
    /// checkpoint.
    committing_before: i64,
}

impl Default for UnsavedPositions {
    fn default() -> Self {
        UnsavedPositions {
            taken: VecDeque::new(),
            committing_before: i64::MIN,
        }
    }
}

impl UnsavedPositions {
    /// A checkpoint has started with `frontier`, at `positions`; the commit
    /// started at the checkpoint before has landed (each checkpoint waits for
    /// the one before). Returns the newest positions that are now safe: taken
    /// at an earlier checkpoint, and every event read before them scored
    /// before that previous checkpoint. The positions taken now never are:
    /// what was read since the previous checkpoint is in no landed commit,
    /// so a start from them after a crash could skip events.
    pub fn checkpoint(
        &mut self,
        positions: Vec<ShardPosition>,
        frontier: Frontier,
    ) -> Option<Vec<ShardPosition>> {
        let durable_before = std::mem::replace(&mut self.committing_before, frontier.scored_before);
        let mut safe = None;
        while let Some((_, latest)) = self.taken.front() {
            if latest.is_some_and(|t| t >= durable_before) {
                break;
            }
            safe = self.taken.pop_front().map(|(positions, _)| positions);
        }
        self.taken.push_back((positions, frontier.latest_read));
        safe
    }
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sequence: &str) -> Vec<ShardPosition> {
        vec![ShardPosition {
            shard_id: "s0".into(),
            sequence: Some(sequence.into()),
            skip: 0,
            ended: false,
            millis_behind: None,
            events: 0,
        }]
    }

    fn frontier(latest_read: i64, scored_before: i64) -> Frontier {
        Frontier {
            latest_read: Some(latest_read),
            scored_before,
        }
    }

    #[test]
    fn positions_are_saved_once_their_events_are_committed() {
        let mut unsaved = UnsavedPositions::default();
        // Read up to t=100; the watermark holds t>=40, so the commit started
        // now holds events before 40 only.
        assert_eq!(unsaved.checkpoint(at("a"), frontier(100, 40)), None);
        // That commit has landed, but it holds nothing past 40: "a" (read up
        // to 100) is not safe yet.
        assert_eq!(unsaved.checkpoint(at("b"), frontier(130, 70)), None);
        // Now events before 70 are in: still not 100.
        assert_eq!(unsaved.checkpoint(at("c"), frontier(160, 105)), None);
        // Events before 105 landed: "a" (100) is safe, "b" (130) not.
        assert_eq!(
            unsaved.checkpoint(at("d"), frontier(170, 165)),
            Some(at("a"))
        );
        // Before 165: "b" and "c" are; the newest wins.
        assert_eq!(
            unsaved.checkpoint(at("e"), frontier(170, i64::MAX)),
            Some(at("c"))
        );
        // Everything was scored by "e": the next checkpoint saves "e",
        // not "f", read since and in no landed commit yet ...
        assert_eq!(
            unsaved.checkpoint(at("f"), frontier(170, i64::MAX)),
            Some(at("e"))
        );
        // ... which the one after saves.
        assert_eq!(
            unsaved.checkpoint(at("g"), frontier(180, i64::MAX)),
            Some(at("f"))
        );
    }

    #[test]
    fn round_trips_and_keeps_old_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinesis-checkpoint.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut checkpoint = Checkpoint {
            stream: "auth".into(),
            ..Checkpoint::default()
        };
        let position = |id: &str, sequence: Option<&str>, skip, ended| ShardPosition {
            shard_id: id.into(),
            sequence: sequence.map(str::to_string),
            skip,
            ended,
            millis_behind: None,
            events: 0,
        };
        checkpoint = checkpoint.advanced(&[
            position("s0", Some("42"), 0, false),
            position("s1", None, 2, false),
        ]);
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(loaded, checkpoint);
        // Resumed from there: s0 has handed out nothing new yet and ends; s1
        // two more events of the record it was in, then s0 ...
        let later = loaded.advanced(&[
            position("s0", None, 0, true),
            position("s1", None, 3, false),
        ]);
        assert_eq!(later.shards["s0"].sequence.as_deref(), Some("42"));
        assert!(later.shards["s0"].ended);
        assert_eq!(later.shards["s1"].sequence, None);
        assert_eq!(later.shards["s1"].skip, 5, "the record's events add up");
        let after = loaded.advanced(&[position("s1", Some("43"), 1, false)]);
        assert_eq!(after.shards["s1"].sequence.as_deref(), Some("43"));
        assert_eq!(after.shards["s1"].skip, 1, "a new record counts afresh");

        std::fs::write(&path, b"{").unwrap();
        let error = Checkpoint::load(&path).unwrap_err();
        assert!(
            error.to_string().contains("not a Kinesis checkpoint"),
            "{error}"
        );
    }
}
