//! A run as one worker of a fleet (`run --lease-table`): several daemons
//! share one Kinesis stream's shards through a lease table
//! ([`crate::fleet`]) and one set of tables ([`crate::lakehouse::writers`]).
//!
//! The worker holds leases; each attempt reads the shards it may read now.
//! An attempt plans each shard's start from the tables (the newest commit
//! every table holds), builds its state from the snapshots those commits
//! name (each cut to the shard's users by hash range; a child shard's from
//! its parents'), claims the shards in every table, and scores until its
//! set of shards changes (a lease gained, lost, or a child made readable),
//! when it commits and the next attempt starts with the new set. A stop
//! commits and gives every lease up, so the others take them at once.
//!
//! After every landed commit the worker writes the shards' positions to
//! their leases (`SHARD_END` once a closed shard is read whole: that is
//! what lets the children be read), for the KCL's tooling and
//! `authpulse leases`. The tables' positions are the truth a taker starts
//! from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use authpulse_engine::pipeline::FleetPace;
use authpulse_engine::shards::Snapshot;
use authpulse_engine::snapshot::{SnapshotFiles, SnapshotStore};

use super::sweep::{Ended, EndedRun};
use super::{Context, Outcome, RunError, RunSpec, attempt};
use crate::aws::checkpoint::{Checkpoint, ShardCheckpoint};
use crate::aws::kinesis::OnSaved;
use crate::aws::shards::{HashRange, partition_hash};
use crate::fleet::host_shares::ShareFiles;
use crate::fleet::{Checkpointer, FleetConfig, Held, LeaseCheckpoint, LeaseWorker, LiveShards};
use crate::lakehouse::Warehouse;
use crate::lakehouse::writers::{self, Claim, ShardStart};
use crate::ops::status::{FleetView, HeldLease};
use crate::sources::{KinesisSpec, SourceSpec};

/// How a run joins a fleet.
#[derive(Clone, Debug)]
pub struct FleetSpec {
    /// The DynamoDB lease table (one per stream and application).
    pub lease_table: String,
    /// This worker's name in the table: unique in the fleet.
    pub worker: String,
    /// A lease whose holder stopped renewing it this long is taken over.
    pub failover: Duration,
    /// How far (event time) a worker may score ahead of the slowest other
    /// shard ([`DEFAULT_MAX_DRIFT`]); `None`: no bound.
    pub max_drift: Option<Duration>,
    /// How often a worker trades host shares while reading
    /// ([`DEFAULT_TRADE_INTERVAL`]).
    pub trade_interval: Duration,
}

/// What one attempt of a fleet worker reads.
pub(super) struct Assignment {
    /// The writer its commits name (`worker/run`).
    pub writer: String,
    /// Its state snapshots' run name.
    pub run: String,
    /// The shards it reads, with their leases.
    pub held: Held,
    pub checkpointer: Checkpointer,
    /// The lease table as the worker last read it: every unfinished shard
    /// (whether a live worker holds it, for the host shares) and the
    /// finished ones with their children (for removing old snapshots).
    pub live: LiveShards,
    pub pace: FleetPace,
    /// The ended runs (this worker's attempts, and those its claims took
    /// shards over from) whose snapshots may still be needed
    /// ([`super::sweep`]).
    pub ended: Ended,
    /// The newest checkpoint whose snapshot this attempt handed over.
    pub saved_through: Arc<AtomicU64>,
    /// In a backfill (`--until-caught-up`): how long the attempt, at the
    /// end of its input, waits for the other shards' workers to reach
    /// theirs, so that the computers it decides take all their evidence.
    pub wait_at_end: Option<Duration>,
}

/// How often a worker trades host shares while reading, unless told.
pub const DEFAULT_TRADE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest a backfill's worker at the end of its input waits for the
/// others to reach theirs: they are at most the drift apart in event time,
/// seconds of reading, unless one took a dead worker's shards over late.
const WAIT_AT_END: Duration = Duration::from_secs(300);

/// How far ahead of the slowest other shard a worker may score, unless
/// told: an hour of event time (docs/fleet.md).
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(3600);

/// Where an attempt trades its shards' host shares with the fleet.
pub(super) fn host_shares(
    assignment: &Assignment,
    files: &Arc<dyn SnapshotFiles>,
) -> Result<ShareFiles, RunError> {
    let mut held = Vec::new();
    for shard in &assignment.held.readable {
        let range = assignment.held.leases[shard].range.ok_or_else(|| {
            RunError::Fleet(format!(
                "the lease of shard {shard} records no hash-key range"
            ))
        })?;
        held.push((shard.clone(), range));
    }
    ShareFiles::new(
        Arc::clone(files),
        &assignment.writer,
        held,
        assignment.live.clone(),
    )
    .map_err(|e| RunError::Fleet(format!("start trading host shares: {e}")))
}

/// Where an assignment starts, claimed in every table.
pub(super) struct FleetStart {
    /// Each shard's position (shards it lacks start as `--from` says).
    pub positions: Checkpoint,
    /// The shards' users' state, cut and joined (a snapshot's bytes);
    /// `None`: every shard starts without history.
    pub state: Option<Vec<u8>>,
}

/// Runs as a fleet worker until a stop (or, with `--until-caught-up`,
/// until an attempt has read its shards to their tips).
pub(super) fn run(
    spec: &RunSpec,
    fleet: &FleetSpec,
    context: &Context<'_>,
) -> Result<Outcome, RunError> {
    let stream = match &spec.source {
        SourceSpec::Kinesis(stream) => stream,
        _ => {
            return Err(RunError::Fleet(
                "--lease-table reads a Kinesis stream: give --source kinesis://STREAM".into(),
            ));
        }
    };
    if !spec.keeps_progress() {
        return Err(RunError::Fleet(
            "a fleet worker keeps its progress and state with the tables: leave --no-lakehouse and --no-state out".into(),
        ));
    }
    let config = FleetConfig {
        table: fleet.lease_table.clone(),
        stream: stream.stream.clone(),
        worker: fleet.worker.clone(),
        failover: fleet.failover,
        initial: LeaseCheckpoint::TrimHorizon,
        aws: stream.aws.clone(),
    };
    let worker = LeaseWorker::start(config)
        .map_err(|e| RunError::Fleet(format!("join the fleet: {}", crate::describe_error(&e))))?;
    tracing::info!(
        worker = fleet.worker,
        lease_table = fleet.lease_table,
        "joined the fleet"
    );
    let shown = Arc::new(AtomicBool::new(false));
    let shower = context
        .ops
        .map(|live| show_leases(Arc::clone(live), &worker, fleet, Arc::clone(&shown)));
    let mut last: Option<Outcome> = None;
    let ended = Ended::default();
    // The shards the last attempt read to their end without a change.
    let mut read_whole: Option<BTreeSet<String>> = None;
    let outcome = loop {
        if context.stop.load(Ordering::Relaxed) {
            break Ok(last);
        }
        let mut held = worker.held();
        held.readable = to_read(&held);
        if held.readable.is_empty() || read_whole.as_ref() == Some(&held.readable) {
            if let Some(live) = context.ops {
                live.set_ready("source", None);
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        read_whole = None;
        let run = SnapshotStore::new_run_id();
        let assignment = Assignment {
            writer: format!("{}/{run}", fleet.worker),
            run,
            held: held.clone(),
            checkpointer: worker.checkpointer(),
            live: worker.live_shards(),
            pace: FleetPace {
                trade_every: fleet.trade_interval,
                max_drift_s: fleet.max_drift.map(|d| d.as_secs() as i64),
            },
            ended: Arc::clone(&ended),
            saved_through: Arc::default(),
            wait_at_end: stream.until_caught_up.then_some(WAIT_AT_END),
        };
        tracing::info!(writer = assignment.writer, shards = ?held.readable, "reading");
        // The attempt stops when the whole run does, or when its shards change.
        let changed = Arc::new(AtomicBool::new(false));
        let attempt_stop = Arc::new(AtomicBool::new(false));
        let watcher = watch_shards(
            &worker,
            &held.readable,
            (&context.stop, spec.shutdown_timeout),
            &changed,
            &attempt_stop,
        );
        let sub = Context {
            stop: Arc::clone(&attempt_stop),
            ops: context.ops,
            meter: context.meter,
        };
        let mut started = false;
        let result = attempt::attempt(spec, &sub, &mut started, Some(&assignment));
        attempt_stop.store(true, Ordering::Relaxed);
        ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(EndedRun::attempt(
                &assignment.run,
                assignment.saved_through.load(Ordering::Relaxed),
            ));
        let _ = watcher.join();
        match result {
            Ok(outcome) => {
                last = Some(outcome);
                let ended =
                    !changed.load(Ordering::Relaxed) && !context.stop.load(Ordering::Relaxed);
                if ended && stream.until_caught_up && !more_to_read(&worker, &held.readable, fleet)
                {
                    break Ok(last);
                }
                if ended {
                    // Its shards were closed and read whole: wait for the next.
                    read_whole = Some(held.readable);
                }
            }
            Err(error) if writers::is_taken(&error) || error.is_transient() => {
                tracing::warn!(
                    error = crate::describe_error(&error),
                    "the attempt ended; going on with the shards held now"
                );
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(error) => break Err(error),
        }
    };
    tracing::info!(
        worker = fleet.worker,
        "leaving the fleet: giving the leases up"
    );
    shown.store(true, Ordering::Relaxed);
    if let Some(shower) = shower {
        let _ = shower.join();
    }
    worker.release();
    outcome.map(|last| {
        last.unwrap_or(Outcome {
            summary: Default::default(),
            tables: Vec::new(),
            sns: None,
            cloudwatch: None,
            already_complete: false,
        })
    })
}

/// Whether, after an attempt read `read` to their tips, the worker comes to
/// hold shards it has not read: the children of a shard it finished,
/// readable once a lease round has seen the parent's end.
fn more_to_read(worker: &LeaseWorker, read: &BTreeSet<String>, fleet: &FleetSpec) -> bool {
    let finished_one = worker.held().leases.iter().any(|(shard, lease)| {
        read.contains(shard) && lease.checkpoint == LeaseCheckpoint::ShardEnd
    });
    if !finished_one {
        return false;
    }
    let deadline = std::time::Instant::now() + fleet.failover * 5;
    while std::time::Instant::now() < deadline {
        if !to_read(&worker.held()).is_subset(read) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Keeps the operations server's view of the worker's leases current
/// (twice a second) until `done`.
fn show_leases(
    live: Arc<crate::ops::Live>,
    worker: &LeaseWorker,
    fleet: &FleetSpec,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let changes = worker.changes();
    let (name, table) = (fleet.worker.clone(), fleet.lease_table.clone());
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            let held = changes.borrow().clone();
            let reading = to_read(&held);
            live.set_fleet(FleetView {
                worker: name.clone(),
                lease_table: table.clone(),
                leases: held
                    .leases
                    .iter()
                    .map(|(shard, lease)| HeldLease {
                        shard: shard.clone(),
                        reading: reading.contains(shard),
                        checkpoint: lease.checkpoint.sequence_text().to_string(),
                    })
                    .collect(),
            });
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// The held shards to read: readable, and not finished (`SHARD_END`).
fn to_read(held: &Held) -> BTreeSet<String> {
    held.readable
        .iter()
        .filter(|shard| {
            held.leases
                .get(*shard)
                .is_some_and(|lease| lease.checkpoint != LeaseCheckpoint::ShardEnd)
        })
        .cloned()
        .collect()
}

/// Sets `stop` (and `changed`) when the readable shards are no longer
/// `reading`, or when the run stops (`run_stop`: then the stop has
/// `shutdown_timeout` to commit); ends when `stop` is set.
fn watch_shards(
    worker: &LeaseWorker,
    reading: &BTreeSet<String>,
    (run_stop, shutdown_timeout): (&Arc<AtomicBool>, Duration),
    changed: &Arc<AtomicBool>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let changes = worker.changes();
    let reading = reading.clone();
    let (run_stop, changed, stop) = (Arc::clone(run_stop), Arc::clone(changed), Arc::clone(stop));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if run_stop.load(Ordering::Relaxed) {
                attempt::give_up_after(shutdown_timeout);
                stop.store(true, Ordering::Relaxed);
                break;
            }
            if to_read(&changes.borrow()) != reading {
                tracing::info!("the held shards changed: committing, then reading the new set");
                changed.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Plans the assignment's shards, builds their state and claims them.
pub(super) fn prepare(
    warehouse: &Warehouse,
    stream: &KinesisSpec,
    assignment: &Assignment,
    files: &Arc<dyn SnapshotFiles>,
) -> Result<FleetStart, RunError> {
    let lakehouse = |e| RunError::Claim(Box::new(e));
    let shards: Vec<String> = assignment.held.readable.iter().cloned().collect();
    let starts = warehouse.plan_shards(&shards).map_err(lakehouse)?;
    // Whose state each shard's users are in: its start's snapshot, or for a
    // child read for the first time, its parents' (finished) snapshots.
    let mut cuts: BTreeMap<String, Vec<HashRange>> = BTreeMap::new();
    for start in &starts {
        let lease = &assignment.held.leases[&start.shard];
        let Some(range) = lease.range else {
            return Err(RunError::Fleet(format!(
                "the lease of shard {} records no hash-key range",
                start.shard
            )));
        };
        let sources: Vec<Option<String>> = match &start.from {
            Some(from) => vec![from.state.clone()],
            None if !lease.parents.is_empty() => {
                let parents = warehouse.plan_shards(&lease.parents).map_err(lakehouse)?;
                for parent in &parents {
                    tracing::info!(
                        shard = start.shard,
                        parent = parent.shard,
                        from = parent
                            .from
                            .as_ref()
                            .map_or_else(|| "its start".to_string(), |f| f.describe()),
                        state = parent.from.as_ref().and_then(|f| f.state.as_deref()),
                        "a new child shard: its users' state from its parent's commit"
                    );
                }
                parents
                    .into_iter()
                    .filter_map(|parent| parent.from)
                    .map(|from| from.state)
                    .collect()
            }
            None => Vec::new(),
        };
        // No snapshot: the shard's users have no history yet.
        for state in sources.into_iter().flatten() {
            cuts.entry(state).or_default().push(range);
        }
    }
    let mut joined: Option<Snapshot> = None;
    for (name, ranges) in &cuts {
        let location = files.location(name);
        let what =
            |verb: &str| format!("{verb} {location}, a state snapshot the shards start from");
        let mut file = files
            .open(name)
            .map_err(|e| RunError::snapshot(what("open"))(e.into()))?;
        let part = Snapshot::read(&mut file)
            .map_err(RunError::snapshot(what("read")))?
            .split(|user| {
                let hash = partition_hash(user);
                ranges.iter().any(|r| r.contains(hash))
            });
        joined = Some(match joined {
            None => part,
            Some(into) => into.merge(part).map_err(RunError::snapshot(what("join")))?,
        });
    }
    // Written for the claim, so that it stands on its own when the writers
    // it took over from have removed theirs.
    let state = joined
        .map(|mut snapshot| {
            // The shards may stand at different event times; see rewind_clock.
            snapshot.rewind_clock();
            let mut bytes = Vec::new();
            snapshot.write_to(&mut bytes).map_err(RunError::snapshot(
                "write the shards' joined state".to_string(),
            ))?;
            let name = SnapshotStore::name_of(&assignment.run, 0);
            files
                .put(&name, &|out| {
                    out.write_all(&bytes)?;
                    Ok(bytes.len() as u64)
                })
                .map_err(|e| {
                    RunError::snapshot(format!("write {}", files.location(&name)))(e.into())
                })?;
            Ok::<_, RunError>((name, bytes))
        })
        .transpose()?;
    warehouse
        .claim(&Claim {
            writer: &assignment.writer,
            checkpoint: 0,
            identity: stream.identity().to_json(),
            starts: &starts,
            state: state.as_ref().map(|(name, _)| name.clone()),
        })
        .map_err(lakehouse)?;
    // The runs the claim took shards over from (and those that held them
    // before): theirs go once the rest of their shards are claimed too.
    assignment
        .ended
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(starts.iter().flat_map(EndedRun::left_by));
    for start in &starts {
        tracing::info!(
            shard = start.shard,
            from = start
                .from
                .as_ref()
                .map_or_else(|| "its start".to_string(), |f| f.describe()),
            "claimed"
        );
    }
    Ok(FleetStart {
        positions: positions(&stream.stream, &starts)?,
        state: state.map(|(_, bytes)| bytes),
    })
}

fn positions(stream: &str, starts: &[ShardStart]) -> Result<Checkpoint, RunError> {
    let mut shards = BTreeMap::new();
    for start in starts {
        if let Some(from) = &start.from {
            let at: ShardCheckpoint =
                serde_json::from_value(from.position.clone()).map_err(|e| {
                    RunError::Unresumable(format!(
                        "shard {}'s position in {} is not a Kinesis position: {e}",
                        start.shard,
                        from.describe()
                    ))
                })?;
            shards.insert(start.shard.clone(), at);
        }
    }
    Ok(Checkpoint {
        stream: stream.to_string(),
        written: String::new(),
        shards,
    })
}

/// Writes saved positions to the held leases (a lost lease is logged: the
/// fence keeps the tables right; the next attempt drops the shard).
pub(super) fn lease_checkpoints(assignment: &Assignment) -> OnSaved {
    let checkpointer = assignment.checkpointer.clone();
    let reading = assignment.held.readable.clone();
    OnSaved(Arc::new(move |at: &Checkpoint| {
        for (shard, position) in &at.shards {
            if !reading.contains(shard) {
                continue;
            }
            let Some(checkpoint) = LeaseCheckpoint::from_shard_checkpoint(position) else {
                continue;
            };
            // Written by the lease worker in turn; the scoring thread
            // goes on (a failure is logged there).
            if let Err(error) = checkpointer.checkpoint_in_background(shard, checkpoint) {
                tracing::warn!(
                    shard,
                    error = crate::describe_error(&error),
                    "the lease's checkpoint was not written"
                );
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lakehouse::LakehouseError;

    #[test]
    fn a_lost_claim_ends_the_attempt_not_the_run() {
        let taken = LakehouseError::ShardTaken {
            table: "auth_events_raw".into(),
            shard: "shardId-000000000002".into(),
            start: "checkpoint 1 of w1/c776a572".into(),
        };
        let error = RunError::Fleet("x".into());
        assert!(!writers::is_taken(&error));
        let error = RunError::Claim(Box::new(taken));
        assert!(writers::is_taken(&error), "{error:?}");
    }
}
