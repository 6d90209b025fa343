//! The host shares a fleet's workers trade (the engine's
//! `state::HostShare`: what one shard's users make of each computer). One
//! object per shard beside the state snapshots, `hosts-<shard>.json`, is
//! written whole by the worker holding the shard at each of its
//! checkpoints and read by every other worker at each of theirs. A PUT
//! replaces the object at once, and a share holds absolute numbers, so a
//! share written again (a retry, a zombie before its next refused commit,
//! the taker of the shard) is never counted twice: the last one counts.
//! A finished shard's users are its children's, so only unfinished shards'
//! shares are read.
//!
//! With the counts go the shard's users' contributions to computers' risk,
//! for the worker that opens each computer's incidents
//! (`engine::pipeline::shared_risk`).
//!
//! A share also says how far in event time its worker has scored, and
//! whether it has anything left to read: the slowest worker that has is the
//! one the others keep pace with (`engine::pipeline::FleetPace`). A share
//! not rewritten for a while (its worker died, its lease not yet taken
//! over) holds nobody back.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::LiveShards;
use crate::aws::shards::{HashRange, partition_hash};
use authpulse_engine::pipeline::{ComputerRisk, FleetProgress, HostExchange, Traded};
use authpulse_engine::snapshot::SnapshotFiles;
use authpulse_engine::state::HostShare;

/// One shard's object.
#[derive(Serialize, Deserialize)]
struct ShareFile {
    shard: String,
    /// The writer (`worker/run`) that wrote it.
    writer: String,
    /// Event time its worker had scored through (Unix seconds).
    scored_through: i64,
    /// Its worker had nothing more to read.
    caught_up: bool,
    /// When it was written (Unix milliseconds, the writer's clock).
    written_ms: i64,
    shares: Vec<HostShare>,
    /// The shard's users' contributions to computers' risk, for the
    /// workers that open those computers' incidents.
    #[serde(default)]
    risk: Vec<ComputerRisk>,
}

/// Where a fleet worker publishes its shards' shares and reads the others'.
pub struct ShareFiles {
    files: Arc<dyn SnapshotFiles>,
    writer: String,
    /// The shards held, with their users' hash-key ranges.
    held: Vec<(String, HashRange)>,
    live: LiveShards,
    /// A share older than this holds nobody back.
    stale_after: std::time::Duration,
    /// The other shards' shares, as last read.
    others: BTreeMap<String, ShareFile>,
}

impl ShareFiles {
    pub fn new(
        files: Arc<dyn SnapshotFiles>,
        writer: &str,
        held: Vec<(String, HashRange)>,
        live: LiveShards,
        stale_after: std::time::Duration,
    ) -> ShareFiles {
        ShareFiles {
            files,
            writer: writer.to_string(),
            held,
            live,
            stale_after,
            others: BTreeMap::new(),
        }
    }

    fn name(shard: &str) -> String {
        format!("hosts-{shard}.json")
    }

    fn read(&self, shard: &str) -> io::Result<Option<ShareFile>> {
        let name = Self::name(shard);
        if !self.files.exists(&name)? {
            return Ok(None);
        }
        let file: ShareFile = serde_json::from_reader(self.files.open(&name)?)
            .map_err(|e| io::Error::other(format!("{}: {e}", self.files.location(&name))))?;
        Ok(Some(file))
    }
}

impl HostExchange for ShareFiles {
    fn shards(&self) -> usize {
        self.held.len()
    }

    fn shard_of(&self, user: &str) -> Option<usize> {
        let hash = partition_hash(user);
        self.held.iter().position(|(_, range)| range.contains(hash))
    }

    /// The worker holding the shard whose range holds the computer's name,
    /// as if it were a partition key: the live shards' ranges split the
    /// hash-key space, so exactly one worker says yes.
    fn opens_computer(&self, computer: &str) -> bool {
        let hash = partition_hash(computer);
        self.held.iter().any(|(_, range)| range.contains(hash))
    }

    fn exchange(
        &mut self,
        shares: Vec<Vec<HostShare>>,
        risk: Vec<Vec<ComputerRisk>>,
        progress: FleetProgress,
    ) -> io::Result<Traded> {
        let now_ms = unix_ms();
        for (((shard, _), shares), risk) in self.held.iter().zip(shares).zip(risk) {
            let file = ShareFile {
                shard: shard.clone(),
                writer: self.writer.clone(),
                scored_through: progress.scored_through,
                caught_up: progress.caught_up,
                written_ms: now_ms,
                shares,
                risk,
            };
            let bytes = serde_json::to_vec(&file).map_err(io::Error::from)?;
            self.files.put(&Self::name(shard), &|out| {
                out.write_all(&bytes)?;
                Ok(bytes.len() as u64)
            })?;
        }
        let live = self.live.get();
        let others: Vec<&String> = live
            .iter()
            .filter(|shard| !self.held.iter().any(|(held, _)| held == *shard))
            .collect();
        self.others.retain(|shard, _| others.contains(&shard));
        for shard in others {
            // A shard nobody has published yet adds nothing; one that
            // cannot be read now keeps its last share.
            if let Some(file) = self.read(shard)? {
                self.others.insert(shard.clone(), file);
            }
        }
        let fresh_since = now_ms - self.stale_after.as_millis() as i64;
        let slowest = self
            .others
            .values()
            .filter(|file| !file.caught_up && file.written_ms >= fresh_since)
            .map(|file| file.scored_through)
            .min();
        Ok(Traded {
            shares: self
                .others
                .values()
                .flat_map(|file| file.shares.iter().cloned())
                .collect(),
            risk: self
                .others
                .values()
                .flat_map(|file| file.risk.iter().cloned())
                .collect(),
            slowest,
        })
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
