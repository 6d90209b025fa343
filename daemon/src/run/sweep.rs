//! A fleet worker removes the state snapshots of attempts that ended, its
//! own and the ones whose shards it claimed, once no shard can start from
//! them any more.
//!
//! Every attempt (a set of shards read from a claim to a change of leases)
//! writes snapshots under a run id of its own: the claim's (checkpoint 0)
//! and the latest few of its commits ([`KEEP_SNAPSHOTS`]). When the attempt
//! ends, its shards go on with this worker's next attempt or another
//! worker's, which claims them with a snapshot of its own; until that claim
//! lands in every table, the ended attempt's commit is where a taker starts
//! from. So a run's snapshots are kept while any unfinished shard of the
//! lease table starts from one of them (its newest complete commit names the
//! run), and while a finished shard (a reshard's parent) does whose
//! children, as its lease names them, are not all claimed yet; a finished
//! shard whose lease names no children yet keeps them too.
//!
//! The runs looked at are the worker's own ended attempts and the runs its
//! claims took shards over from (another worker that stopped or died leaves
//! its last attempt's snapshots; whoever takes its shards over removes them
//! once the rest of that attempt's shards are claimed too). The worker looks
//! at the start of each attempt and then every [`SWEEP_EVERY`], on a thread
//! of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authpulse_engine::snapshot::{SnapshotFiles, SnapshotStore};

use crate::fleet::{LiveShard, LiveShards};
use crate::lakehouse::progress::KEEP_SNAPSHOTS;
use crate::lakehouse::writers::ShardStart;
use crate::lakehouse::{LakehouseError, Warehouse};

/// How often a worker looks again while it reads.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A run that ended, with what it may have left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndedRun {
    /// Its snapshots' run id.
    pub run: String,
    /// The checkpoints whose snapshots it may have left, besides its
    /// claim's (checkpoint 0).
    pub checkpoints: std::ops::RangeInclusive<u64>,
}

impl EndedRun {
    /// One of this worker's attempts that handed the snapshot of
    /// `saved_through` over last: it keeps the latest few (one more is
    /// looked for, in case a removal failed).
    pub fn attempt(run: &str, saved_through: u64) -> EndedRun {
        EndedRun {
            run: run.to_string(),
            checkpoints: Self::kept_before(saved_through)..=saved_through,
        }
    }

    /// The run a shard's claim took it over from: the latest few before
    /// its start's commit, and a commit or two after it that did not land
    /// everywhere.
    pub fn taken_over(start: &ShardStart) -> Option<EndedRun> {
        let from = start.from.as_ref()?;
        let run = SnapshotStore::run_of(from.state.as_deref()?)?;
        Some(EndedRun {
            run: run.to_string(),
            checkpoints: Self::kept_before(from.checkpoint)..=from.checkpoint + 2,
        })
    }

    /// The runs a claim of `start`'s shard leaves to its worker: the one
    /// it takes the shard over from ([`EndedRun::taken_over`]) and those
    /// that held it before that one, in case one of them was left to a
    /// worker that stalled or died before it could remove it (they go as
    /// any other once no shard starts from them).
    pub fn left_by(start: &ShardStart) -> impl Iterator<Item = EndedRun> + '_ {
        Self::taken_over(start)
            .into_iter()
            .chain(start.earlier.iter().filter_map(|commit| {
                let run = SnapshotStore::run_of(commit.state.as_deref()?)?;
                Some(EndedRun {
                    run: run.to_string(),
                    checkpoints: Self::kept_before(commit.checkpoint)..=commit.checkpoint + 2,
                })
            }))
    }

    fn kept_before(checkpoint: u64) -> u64 {
        checkpoint.saturating_sub(KEEP_SNAPSHOTS as u64).max(1)
    }

    /// Takes `other` in, if it is the same run.
    fn join(&mut self, other: &EndedRun) -> bool {
        if self.run != other.run {
            return false;
        }
        let first = *self.checkpoints.start().min(other.checkpoints.start());
        let last = *self.checkpoints.end().max(other.checkpoints.end());
        self.checkpoints = first..=last;
        true
    }

    /// The names its snapshots can have.
    fn snapshot_names(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(0)
            .chain(self.checkpoints.clone())
            .map(|checkpoint| SnapshotStore::name_of(&self.run, checkpoint))
    }
}

/// The ended runs a worker knows of whose snapshots may still be there.
pub type Ended = Arc<Mutex<Vec<EndedRun>>>;

/// The lease table as a sweep sees it.
pub struct Shards {
    pub live: BTreeMap<String, LiveShard>,
    /// Finished shards, with the children their leases name.
    pub finished: BTreeMap<String, Vec<String>>,
}

/// Removes the snapshots of every run in `ended` that no shard of `shards`
/// starts from now, and forgets those runs. Returns how many it removed.
pub fn sweep(
    warehouse: &Warehouse,
    files: &dyn SnapshotFiles,
    shards: &Shards,
    ended: &mut Vec<EndedRun>,
) -> Result<usize, LakehouseError> {
    ended.sort_by(|a, b| a.run.cmp(&b.run));
    ended.dedup_by(|later, first| first.join(later));
    if shards.live.is_empty() && shards.finished.is_empty() {
        // No read of the lease table yet: nothing says what is needed.
        return Ok(0);
    }
    let needed = needed_runs(warehouse, shards)?;
    let mut removed = 0;
    ended.retain(|ended| {
        if needed.contains(&ended.run) {
            return true;
        }
        // A run that held a shard long ago has mostly been removed already.
        let present: Vec<String> = ended
            .snapshot_names()
            .filter(|name| files.exists(name).unwrap_or(true))
            .collect();
        if present.is_empty() {
            return false;
        }
        for name in present {
            if let Err(error) = files.delete(&name) {
                tracing::warn!(snapshot = %files.location(&name), %error, "could not remove an ended run's state snapshot");
            }
        }
        tracing::info!(
            run = ended.run,
            "removed an ended run's state snapshots: no shard starts from them now"
        );
        removed += 1;
        false
    });
    Ok(removed)
}

/// The runs some shard starts from.
fn needed_runs(
    warehouse: &Warehouse,
    shards: &Shards,
) -> Result<std::collections::BTreeSet<String>, LakehouseError> {
    let all: Vec<String> = shards
        .live
        .keys()
        .chain(shards.finished.keys())
        .cloned()
        .collect();
    let starts = warehouse.plan_shards(&all)?;
    let start_of = |shard: &str| starts.iter().find(|s| s.shard == shard);
    let mut needed = std::collections::BTreeSet::new();
    for start in &starts {
        let Some(run) = EndedRun::taken_over(start) else {
            continue;
        };
        let claimed = |child: &String| start_of(child).is_some_and(|c| c.from.is_some());
        let keeps = match shards.finished.get(&start.shard) {
            None => true,
            // Read to its end: its children start from it until they have
            // commits of their own.
            Some(children) => {
                let mut children = children.clone();
                children.extend(
                    shards
                        .live
                        .iter()
                        .filter(|(_, lease)| lease.parents.contains(&start.shard))
                        .map(|(shard, _)| shard.clone()),
                );
                children.is_empty() || !children.iter().all(claimed)
            }
        };
        if keeps {
            needed.insert(run.run);
        }
    }
    Ok(needed)
}

/// Sweeps at once and then every [`SWEEP_EVERY`] until dropped.
pub struct Sweeper {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(
        warehouse: Warehouse,
        files: Arc<dyn SnapshotFiles>,
        live: LiveShards,
        ended: Ended,
    ) -> std::io::Result<Sweeper> {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("snapshot-sweep".into())
                .spawn(move || {
                    loop {
                        let mut attempts = ended.lock().unwrap_or_else(|e| e.into_inner());
                        if !attempts.is_empty()
                            && let Err(error) = sweep(
                                &warehouse,
                                files.as_ref(),
                                &Shards {
                                    live: live.get(),
                                    finished: live.finished(),
                                },
                                &mut attempts,
                            )
                        {
                            tracing::warn!(error = %crate::describe_error(&error), "could not look which ended attempts' state snapshots are still needed; trying again later");
                        }
                        drop(attempts);
                        let (flag, woken) = &*stop;
                        let guard = flag.lock().unwrap_or_else(|e| e.into_inner());
                        let (guard, _) = woken
                            .wait_timeout_while(guard, SWEEP_EVERY, |stop| !*stop)
                            .unwrap_or_else(|e| e.into_inner());
                        if *guard {
                            break;
                        }
                    }
                })?
        };
        Ok(Sweeper {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let (flag, woken) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        woken.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lakehouse::WarehouseConfig;
    use crate::lakehouse::writers::Claim;
    use authpulse_engine::snapshot::LocalFiles;

    /// A warehouse, and the snapshot files beside it.
    fn warehouse() -> (tempfile::TempDir, Warehouse, LocalFiles) {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        let files = LocalFiles::new(dir.path().join("state")).unwrap();
        (dir, warehouse, files)
    }

    /// `run` of `worker` claims `shards` with a snapshot of its own, which
    /// it writes; returns the runs the claim took the shards over from.
    fn claim(
        warehouse: &Warehouse,
        files: &LocalFiles,
        worker: &str,
        run: &str,
        shards: &[&str],
    ) -> Vec<EndedRun> {
        let shards: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        let starts = warehouse.plan_shards(&shards).unwrap();
        let state = SnapshotStore::name_of(run, 0);
        write(files, &state);
        warehouse
            .claim(&Claim {
                writer: &format!("{worker}/{run}"),
                checkpoint: 0,
                identity: serde_json::json!({"kinesis": "auth"}),
                starts: &starts,
                state: Some(state),
            })
            .unwrap();
        starts.iter().flat_map(EndedRun::left_by).collect()
    }

    fn write(files: &LocalFiles, name: &str) {
        files
            .put(name, &|out| Ok(out.write(b"state")? as u64))
            .unwrap();
    }

    fn exists(files: &LocalFiles, run: &str, checkpoint: u64) -> bool {
        files
            .exists(&SnapshotStore::name_of(run, checkpoint))
            .unwrap()
    }

    /// Unfinished shards (with their parents), and finished ones (with the
    /// children their leases name).
    fn shards(live: &[(&str, &[&str])], finished: &[(&str, &[&str])]) -> Shards {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Shards {
            live: live
                .iter()
                .map(|(shard, parents)| {
                    let lease = LiveShard {
                        held: true,
                        parents: names(parents),
                    };
                    (shard.to_string(), lease)
                })
                .collect(),
            finished: finished
                .iter()
                .map(|(shard, children)| (shard.to_string(), names(children)))
                .collect(),
        }
    }

    #[test]
    fn an_ended_runs_snapshots_go_once_no_shard_starts_from_them() {
        let (_dir, warehouse, files) = warehouse();
        claim(&warehouse, &files, "a", "r1", &["s0", "s1"]);
        for checkpoint in 1..=5 {
            write(&files, &SnapshotStore::name_of("r1", checkpoint));
        }
        let both = shards(&[("s0", &[]), ("s1", &[])], &[]);
        let mut ended = vec![EndedRun::attempt("r1", 5)];
        let swept = |ended: &mut Vec<EndedRun>| sweep(&warehouse, &files, &both, ended).unwrap();
        assert_eq!(swept(&mut ended), 0, "both shards start from r1");

        // b takes s0 over: it learns of r1 from its claim.
        let taken = claim(&warehouse, &files, "b", "r2", &["s0"]);
        assert_eq!(
            taken,
            [EndedRun {
                run: "r1".into(),
                checkpoints: 1..=2
            }]
        );
        ended.extend(taken);
        assert_eq!(swept(&mut ended), 0, "s1 still starts from r1");
        assert_eq!(ended.len(), 1, "one run, known twice");
        assert!(exists(&files, "r1", 0) && exists(&files, "r1", 5));

        claim(&warehouse, &files, "c", "r3", &["s1"]);
        assert_eq!(swept(&mut ended), 1);
        assert!(ended.is_empty());
        for checkpoint in 0..=5 {
            assert!(
                !exists(&files, "r1", checkpoint),
                "checkpoint {checkpoint} removed"
            );
        }
        assert!(exists(&files, "r2", 0) && exists(&files, "r3", 0));
    }

    /// The run a dead worker's shards were taken over from is left to its
    /// takers; when the taker of its last shard stalls before it sweeps,
    /// whoever takes that shard over next removes it.
    #[test]
    fn a_run_left_to_a_stalled_taker_goes_with_the_next_taker() {
        let (_dir, warehouse, files) = warehouse();
        claim(&warehouse, &files, "a", "r1", &["s0", "s1"]);
        // a dies; b and c take its shards, and c stalls before it sweeps.
        claim(&warehouse, &files, "b", "r2", &["s0"]);
        claim(&warehouse, &files, "c", "r3", &["s1"]);
        // d takes s1 from c: it looks after c's run, and after a's before it.
        let mut ended = claim(&warehouse, &files, "d", "r4", &["s1"]);
        let runs: Vec<&str> = ended.iter().map(|e| e.run.as_str()).collect();
        assert_eq!(runs, ["r3", "r1"]);
        let both = shards(&[("s0", &[]), ("s1", &[])], &[]);
        assert_eq!(sweep(&warehouse, &files, &both, &mut ended).unwrap(), 2);
        assert!(!exists(&files, "r1", 0) && !exists(&files, "r3", 0));
        assert!(exists(&files, "r2", 0) && exists(&files, "r4", 0));
        // Runs long removed are forgotten without a word.
        let mut again = vec![EndedRun::attempt("r1", 3)];
        assert_eq!(sweep(&warehouse, &files, &both, &mut again).unwrap(), 0);
        assert!(again.is_empty());
    }

    #[test]
    fn a_parent_read_to_its_end_keeps_its_snapshots_until_its_children_are_claimed() {
        let (_dir, warehouse, files) = warehouse();
        claim(&warehouse, &files, "a", "r1", &["p"]);
        let mut ended = vec![EndedRun::attempt("r1", 0)];
        let swept = |shards: &Shards, ended: &mut Vec<EndedRun>| {
            sweep(&warehouse, &files, shards, ended).unwrap()
        };

        // Before the lease table is read, nothing goes.
        assert_eq!(swept(&shards(&[], &[]), &mut ended), 0);
        // `p` finished before a round of taking named its children.
        assert_eq!(swept(&shards(&[], &[("p", &[])]), &mut ended), 0);
        let split = shards(&[("c1", &["p"]), ("c2", &["p"])], &[("p", &["c1", "c2"])]);
        assert_eq!(swept(&split, &mut ended), 0);
        claim(&warehouse, &files, "b", "r2", &["c1"]);
        assert_eq!(swept(&split, &mut ended), 0, "c2 starts from p");
        assert!(exists(&files, "r1", 0));
        claim(&warehouse, &files, "b", "r3", &["c2"]);
        assert_eq!(swept(&split, &mut ended), 1);
        assert!(!exists(&files, "r1", 0));
    }
}
