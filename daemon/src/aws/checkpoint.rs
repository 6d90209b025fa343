//! Kinesis read positions on disk: per shard, the sequence number of the last
//! record the pipeline has processed, and whether the (closed) shard was read
//! to its end. Written atomically (temporary file, then rename) at every
//! pipeline checkpoint and at the end, so `--from checkpoint` resumes there.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::merge::ShardPosition;

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
    /// The shard is closed and every record of it was processed.
    #[serde(default)]
    pub ended: bool,
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

    /// Folds the merge's positions in (a shard keeps its old position until
    /// it has handed out a record).
    pub fn update(&mut self, positions: &[ShardPosition]) {
        for position in positions {
            let entry = self.shards.entry(position.shard_id.clone()).or_default();
            if position.sequence.is_some() {
                entry.sequence.clone_from(&position.sequence);
            }
            entry.ended |= position.ended;
        }
        self.written = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let tmp = temporary(path);
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
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

    #[test]
    fn round_trips_and_keeps_old_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kinesis-checkpoint.json");
        assert_eq!(Checkpoint::load(&path).unwrap(), None);
        let mut checkpoint = Checkpoint {
            stream: "auth".into(),
            ..Checkpoint::default()
        };
        let position = |id: &str, sequence: Option<&str>, ended| ShardPosition {
            shard_id: id.into(),
            sequence: sequence.map(str::to_string),
            ended,
            millis_behind: None,
        };
        checkpoint.update(&[
            position("s0", Some("42"), false),
            position("s1", None, false),
        ]);
        checkpoint.update(&[position("s0", None, true)]);
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap().unwrap();
        assert_eq!(loaded, checkpoint);
        assert_eq!(loaded.shards["s0"].sequence.as_deref(), Some("42"));
        assert!(loaded.shards["s0"].ended);
        assert_eq!(loaded.shards["s1"].sequence, None);

        std::fs::write(&path, b"{").unwrap();
        let error = Checkpoint::load(&path).unwrap_err();
        assert!(
            error.to_string().contains("not a Kinesis checkpoint"),
            "{error}"
        );
    }
}
