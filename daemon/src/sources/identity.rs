//! What a source is and how far it was read, as a checkpoint's progress
//! records them ([`authpulse_engine::sinks::Progress`]): typed here, stored
//! as the same JSON the tables of earlier releases hold.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::aws::checkpoint::ShardCheckpoint;

/// How much of a file's head its identity hashes.
pub const IDENTITY_HEAD_BYTES: u64 = 1 << 16;

/// What a run reads: recorded with every checkpoint, so that a restart
/// resumes only the input it was reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SourceIdentity {
    /// A regular file: its path and the sha256 of its first bytes (a file
    /// that grew since is the same input; another one at the path is not).
    File {
        file: PathBuf,
        #[serde(default = "default_head_bytes")]
        head_bytes: u64,
        head_sha256: String,
    },
    /// Every shard of a Kinesis stream.
    Kinesis { kinesis: String },
    /// Standard input: read once, never resumed.
    Stdin { stdin: bool },
    /// A pipe or fifo: read once, never resumed.
    Stream { stream: PathBuf },
    /// Parquet files below a location: read whole; read again, only the
    /// events the tables lack are added.
    Parquet { parquet: String },
}

fn default_head_bytes() -> u64 {
    IDENTITY_HEAD_BYTES
}

impl SourceIdentity {
    /// A regular file's identity, from its first [`IDENTITY_HEAD_BYTES`].
    pub fn of_file(path: &Path) -> io::Result<SourceIdentity> {
        let (head_bytes, head_sha256) = head_sha256(path, IDENTITY_HEAD_BYTES)?;
        Ok(SourceIdentity::File {
            file: path.to_path_buf(),
            head_bytes,
            head_sha256,
        })
    }

    /// The identity a progress record holds (`None`: none this release
    /// reads, so not this run's input).
    pub fn recorded(progress_source: &serde_json::Value) -> Option<SourceIdentity> {
        serde_json::from_value(progress_source["identity"].clone()).ok()
    }

    /// As the progress record stores it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an identity is plain data")
    }

    /// Whether `recorded` (from a progress record) names the input this
    /// identity does: the same stream, or the same path starting with the
    /// same bytes as far as the record hashed them.
    pub fn is_same_input(&self, recorded: &SourceIdentity) -> io::Result<bool> {
        match (self, recorded) {
            (SourceIdentity::Kinesis { kinesis: a }, SourceIdentity::Kinesis { kinesis: b }) => {
                Ok(a == b)
            }
            (
                SourceIdentity::File { file: path, .. },
                SourceIdentity::File {
                    file,
                    head_bytes,
                    head_sha256: sha,
                },
            ) if path == file => {
                let (read, current) = head_sha256(path, *head_bytes)?;
                Ok(read == *head_bytes && current == *sha)
            }
            _ => Ok(false),
        }
    }

    /// True for a stream, which has no end: a run that read it to its tip
    /// goes on from there.
    pub fn is_stream(&self) -> bool {
        matches!(self, SourceIdentity::Kinesis { .. })
    }
}

/// The length and sha256 of a file's first `limit` bytes (fewer if it is
/// shorter): what tells a file apart from another one at the same path.
fn head_sha256(path: &Path, limit: u64) -> io::Result<(u64, String)> {
    use sha2::Digest;
    let mut head = Vec::with_capacity(limit as usize);
    std::fs::File::open(path)
        .and_then(|file| file.take(limit).read_to_end(&mut head))
        .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", path.display())))?;
    Ok((
        head.len() as u64,
        format!("{:x}", sha2::Sha256::digest(&head)),
    ))
}

/// Where a source's next record starts, as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SourcePosition {
    /// A file: the byte offset of the next line, and its number.
    File { offset: u64, line: u64 },
    /// A stream: per shard, after which record, and how many events of the
    /// next one were read.
    Stream {
        shards: BTreeMap<String, ShardCheckpoint>,
    },
    /// An Iceberg table read to the end of one of its snapshots: a later
    /// run reads only the data files added since.
    Table {
        table_uuid: String,
        table_snapshot: i64,
    },
}

impl SourcePosition {
    /// The position a progress record holds, if it holds one.
    pub fn recorded(progress_source: &serde_json::Value) -> Option<SourcePosition> {
        serde_json::from_value(progress_source["position"].clone()).ok()
    }

    /// A file's committed length (`None` for a stream).
    pub fn file_offset(&self) -> Option<u64> {
        match self {
            SourcePosition::File { offset, .. } => Some(*offset),
            SourcePosition::Stream { .. } | SourcePosition::Table { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_earlier_releases_recorded() {
        let file = serde_json::json!({"identity": {"file": "ev.csv", "head_bytes": 10, "head_sha256": "ab"}, "position": {"offset": 10, "line": 2}});
        assert_eq!(
            SourceIdentity::recorded(&file),
            Some(SourceIdentity::File {
                file: "ev.csv".into(),
                head_bytes: 10,
                head_sha256: "ab".into()
            })
        );
        assert_eq!(
            SourcePosition::recorded(&file),
            Some(SourcePosition::File {
                offset: 10,
                line: 2
            })
        );
        let stream = serde_json::json!({"identity": {"kinesis": "s"}, "position": {"shards": {"shardId-0": {"sequence": "42", "skip": 1}}}});
        let identity = SourceIdentity::recorded(&stream).unwrap();
        assert!(identity.is_stream());
        assert_eq!(identity.to_json(), stream["identity"]);
        let Some(SourcePosition::Stream { shards }) = SourcePosition::recorded(&stream) else {
            panic!("a stream's position");
        };
        assert_eq!(shards["shardId-0"].skip, 1);
        assert_eq!(
            SourceIdentity::recorded(&serde_json::json!({"identity": {"stdin": true}})),
            Some(SourceIdentity::Stdin { stdin: true })
        );
        assert_eq!(SourceIdentity::recorded(&serde_json::json!({})), None);
        assert_eq!(
            SourcePosition::recorded(&serde_json::json!({"position": {}})),
            None
        );
        let table = serde_json::json!({"position": {"table_uuid": "9c1e", "table_snapshot": 42}});
        assert_eq!(
            SourcePosition::recorded(&table),
            Some(SourcePosition::Table {
                table_uuid: "9c1e".into(),
                table_snapshot: 42
            })
        );
        assert_eq!(
            SourcePosition::recorded(&table).unwrap().file_offset(),
            None
        );
    }

    #[test]
    fn a_file_is_the_same_input_while_its_head_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        std::fs::write(&path, "1,U1,C1\n").unwrap();
        let recorded = SourceIdentity::of_file(&path).unwrap();
        std::fs::write(&path, "1,U1,C1\n2,U2,C2\n").unwrap();
        // Grown: the head the record hashed is unchanged.
        let now = SourceIdentity::of_file(&path).unwrap();
        assert!(now.is_same_input(&recorded).unwrap());
        std::fs::write(&path, "9,U9,C9\n").unwrap();
        let other = SourceIdentity::of_file(&path).unwrap();
        assert!(!other.is_same_input(&recorded).unwrap());
        let stream = SourceIdentity::Kinesis {
            kinesis: "s".into(),
        };
        assert!(!stream.is_same_input(&recorded).unwrap());
    }
}
