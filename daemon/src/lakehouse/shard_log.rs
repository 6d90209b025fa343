//! Which commit last wrote each Kinesis shard's rows, as a table's snapshot
//! summaries record it, and the fence every commit of a fleet's writer
//! passes.
//!
//! Workers that share a stream commit to the same tables. A commit's
//! progress names its writer (`source.position.writer`: one attempt of one
//! worker) and the positions of the shards that writer reads. In a table, a
//! shard's commits are the snapshots on the main lineage whose progress
//! names it, less those whose files a later snapshot removed
//! ([`REVERTED`] lists them): a taker removes a dead writer's checkpoint
//! that did not reach every table.
//!
//! **The fence.** A writer's checkpoint `c` may be committed to a table only
//! if, for every shard it names, the shard's newest commit there is the
//! same writer's checkpoint `c - 1` (its claim, for its first). A worker
//! that lost a shard to one that has claimed it since (a zombie), or whose
//! commit a taker removed, fails the check and commits nothing. The
//! catalog's compare-and-swap makes the check and the commit one step
//! ([`super::catalog::fenced`]).

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::{Snapshot, TableMetadata};

use super::LakehouseError;
use super::progress::progress_of;
use authpulse_engine::sinks::Progress;
use authpulse_engine::snapshot::SnapshotStore;

/// Snapshot summary property: the snapshots (a JSON array of ids) whose
/// added files this snapshot removed.
pub const REVERTED: &str = "authpulse.reverted";

/// One commit's record of one shard.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardCommit {
    pub snapshot_id: i64,
    /// The attempt that committed it; `None`: a run that read every shard.
    pub writer: Option<String>,
    pub checkpoint: u64,
    /// The shard's position after the commit, as the source records it.
    pub position: serde_json::Value,
    /// The state snapshot that holds the shard's users at this position;
    /// `None`: they have no history yet.
    pub state: Option<String>,
}

impl ShardCommit {
    /// The same checkpoint of the same writer (in another table).
    pub fn same_checkpoint(&self, other: &ShardCommit) -> bool {
        self.writer == other.writer && self.checkpoint == other.checkpoint
    }

    /// How logs and errors name it.
    pub fn describe(&self) -> String {
        format!(
            "checkpoint {} of {}",
            self.checkpoint,
            self.writer.as_deref().unwrap_or("a single-process run")
        )
    }
}

/// The writer a progress record names, if it is a fleet writer's.
pub fn writer_of(progress: &Progress) -> Option<&str> {
    progress.source["position"]["writer"].as_str()
}

/// The shards a progress record names, with their positions.
pub fn shards_of(progress: &Progress) -> impl Iterator<Item = (&str, &serde_json::Value)> {
    progress.source["position"]["shards"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(shard, position)| (shard.as_str(), position))
}

/// The snapshot ids `snapshot` says it removed the files of.
fn reverted_by(snapshot: &Snapshot) -> Vec<i64> {
    snapshot
        .summary()
        .additional_properties
        .get(REVERTED)
        .and_then(|ids| serde_json::from_str(ids).ok())
        .unwrap_or_default()
}

/// Per shard, its commits in the table, newest first.
pub fn shard_commits(
    metadata: &TableMetadata,
    table: &str,
) -> Result<BTreeMap<String, Vec<ShardCommit>>, LakehouseError> {
    let mut commits: BTreeMap<String, Vec<ShardCommit>> = BTreeMap::new();
    walk(metadata, table, |shard, commit| {
        commits.entry(shard.to_string()).or_default().push(commit);
        true
    })?;
    Ok(commits)
}

/// The newest commit of each of `shards` in the table; the walk down the
/// lineage stops once every one is found (a commit's fence reads only
/// the last few snapshots, however long the history).
fn newest_commits(
    metadata: &TableMetadata,
    table: &str,
    shards: &[&str],
) -> Result<BTreeMap<String, ShardCommit>, LakehouseError> {
    let mut newest: BTreeMap<String, ShardCommit> = BTreeMap::new();
    walk(metadata, table, |shard, commit| {
        if shards.contains(&shard) && !newest.contains_key(shard) {
            newest.insert(shard.to_string(), commit);
        }
        newest.len() < shards.len()
    })?;
    Ok(newest)
}

/// Hands `visit` every shard's commits, newest snapshot first, skipping
/// reverted ones, until it returns `false`.
fn walk(
    metadata: &TableMetadata,
    table: &str,
    mut visit: impl FnMut(&str, ShardCommit) -> bool,
) -> Result<(), LakehouseError> {
    let mut reverted: HashSet<i64> = HashSet::new();
    let mut at = metadata.current_snapshot();
    while let Some(snapshot) = at {
        reverted.extend(reverted_by(snapshot));
        if !reverted.contains(&snapshot.snapshot_id())
            && let Some(progress) = progress_of(snapshot, table)?
        {
            let writer = writer_of(&progress).map(str::to_string);
            for (shard, position) in shards_of(&progress) {
                let commit = ShardCommit {
                    snapshot_id: snapshot.snapshot_id(),
                    writer: writer.clone(),
                    checkpoint: progress.checkpoint,
                    position: position.clone(),
                    state: progress.state.clone(),
                };
                if !visit(shard, commit) {
                    return Ok(());
                }
            }
        }
        at = snapshot
            .parent_snapshot_id()
            .and_then(|parent| metadata.snapshot_by_id(parent));
    }
    Ok(())
}

/// A fleet writer's commit refused: another writer committed for one of its
/// shards since its last commit.
#[derive(Debug, thiserror::Error)]
#[error(
    "{table}: {writer} may not commit checkpoint {checkpoint}: shard {shard}'s newest commit is {found}, \
     not its own checkpoint {expected} (another worker holds the shard now)"
)]
pub struct Fenced {
    pub table: String,
    pub writer: String,
    pub checkpoint: u64,
    pub shard: String,
    pub expected: u64,
    pub found: String,
}

/// Checks a commit of `progress` against the table as it is (`before`): see
/// the module header. A progress record without a writer (a run that reads
/// every shard) passes.
pub fn check_fence(
    before: &TableMetadata,
    table: &str,
    progress: &Progress,
) -> Result<(), FenceError> {
    let Some(writer) = writer_of(progress) else {
        return Ok(());
    };
    let shards: Vec<&str> = shards_of(progress).map(|(shard, _)| shard).collect();
    let newest_of = newest_commits(before, table, &shards).map_err(FenceError::Read)?;
    let expected = progress.checkpoint.saturating_sub(1);
    for shard in shards {
        let newest = newest_of.get(shard);
        let own = newest.is_some_and(|c| c.writer.as_deref() == Some(writer))
            && newest.is_some_and(|c| c.checkpoint == expected);
        if !own {
            return Err(FenceError::Fenced(Fenced {
                table: table.to_string(),
                writer: writer.to_string(),
                checkpoint: progress.checkpoint,
                shard: shard.to_string(),
                expected,
                found: newest.map_or_else(|| "none".to_string(), ShardCommit::describe),
            }));
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error(transparent)]
    Fenced(Fenced),
    #[error("read the shards' commits")]
    Read(#[source] LakehouseError),
}

/// The newest commit of a shard that every table holds, given each table's
/// commits of it (newest first); `None` if some table holds none in common
/// (the shard is read from its start).
pub fn complete_point(per_table: &[&[ShardCommit]]) -> Option<ShardCommit> {
    let (first, rest) = per_table.split_first()?;
    first
        .iter()
        .find(|candidate| {
            rest.iter()
                .all(|commits| commits.iter().any(|c| c.same_checkpoint(candidate)))
        })
        .cloned()
}

/// The newest commit of each run that committed the shard before `start`
/// (one of `log`'s commits, newest first), `start`'s own run aside: the
/// attempts it was taken over from before that one. One of them may have
/// left its snapshots to a worker that could not remove them (it stalled,
/// or died, before the rest of that attempt's shards were claimed), so a
/// taker looks after them too. A commit without a fleet run's snapshot
/// (a run that read every shard) is not one.
pub fn earlier_runs(log: &[ShardCommit], start: &ShardCommit) -> Vec<ShardCommit> {
    let run_of = |c: &ShardCommit| {
        c.state
            .as_deref()
            .and_then(SnapshotStore::run_of)
            .filter(|run| !run.is_empty())
            .map(str::to_string)
    };
    let Some(at) = log.iter().position(|c| c.same_checkpoint(start)) else {
        return Vec::new();
    };
    let mut seen: HashSet<String> = run_of(start).into_iter().collect();
    log[at + 1..]
        .iter()
        .filter(|c| run_of(c).is_some_and(|run| seen.insert(run)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(writer: &str, checkpoint: u64) -> ShardCommit {
        ShardCommit {
            snapshot_id: checkpoint as i64,
            writer: Some(writer.to_string()),
            checkpoint,
            position: serde_json::Value::Null,
            state: None,
        }
    }

    #[test]
    fn the_complete_point_is_the_newest_checkpoint_every_table_holds() {
        let raw = [commit("a", 3), commit("a", 2), commit("b", 9)];
        let curated = [commit("a", 2), commit("b", 9)];
        let alerts = [commit("a", 3), commit("a", 2)];
        let point = complete_point(&[&raw, &curated, &alerts]).unwrap();
        assert_eq!((point.writer.as_deref(), point.checkpoint), (Some("a"), 2));
        // A table without any commit of the shard: read it from its start.
        assert_eq!(complete_point(&[&raw, &[]]), None);
        assert_eq!(complete_point(&[&raw[..1], &curated]), None);
    }

    #[test]
    fn progress_names_its_writer_and_shards() {
        let claim = Progress {
            checkpoint: 4,
            complete: false,
            source: serde_json::json!({
                "identity": {"kinesis": "s"},
                "position": {
                    "writer": "w-1/abc",
                    "shards": {"shardId-1": {"sequence": "7"}, "shardId-2": {"sequence": null}}
                }
            }),
            state: None,
        };
        assert_eq!(writer_of(&claim), Some("w-1/abc"));
        let shards: Vec<&str> = shards_of(&claim).map(|(s, _)| s).collect();
        assert_eq!(shards, ["shardId-1", "shardId-2"]);
        let single = Progress {
            source: serde_json::json!({"position": {"shards": {}}}),
            ..claim
        };
        assert_eq!(writer_of(&single), None);
    }
}
