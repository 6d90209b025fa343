//! One attempt at a run: open the warehouse, decide where to start from
//! the tables' progress, open (or reopen) the source, build the outputs,
//! restore the state, score to the end or to a stop, and commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use authpulse_engine::pipeline::{self, Pipeline, Restore, Summary};
use authpulse_engine::reload::PolicyWatcher;
use authpulse_engine::sinks::Progress;
use authpulse_engine::snapshot::{self, LocalFiles, SnapshotFiles, SnapshotMeta, SnapshotStore};

use super::fleet::Assignment;
use super::outputs::{FilesStart, RunOutputs, Written};
use super::sweep::Sweeper;
use super::{Context, Outcome, RunError, RunSpec};
use crate::aws::ticker::MetricsTicker;
use crate::lakehouse::progress::{KEEP_SNAPSHOTS, Start};
use crate::lakehouse::stored::StoredIds;
use crate::lakehouse::{Warehouse, start_sinks};
use crate::ops;
use crate::sources::{SourcePosition, SourceSpec, StreamStart};

/// One attempt at [`super::run`]; sets `started` once it scores. A fleet
/// worker's attempt reads `fleet`'s shards from where the tables say.
pub(super) fn attempt(
    spec: &RunSpec,
    context: &Context<'_>,
    started: &mut bool,
    fleet: Option<&Assignment>,
) -> Result<Outcome, RunError> {
    let ops = context.ops;
    let stop = &context.stop;
    let (policy, policy_path) = super::resolve_policy(spec.policy.as_deref())?;
    tracing::info!(policy = %policy.origin, "policy loaded");
    std::fs::create_dir_all(&spec.output).map_err(|source| RunError::CreateDir {
        path: spec.output.clone(),
        source,
    })?;

    let warehouse = match &spec.tables {
        None => None,
        Some(config) => {
            let opened = Warehouse::open(config).map_err(|e| RunError::Warehouse(Box::new(e)));
            if let (Some(live), Err(e)) = (ops, &opened) {
                live.set_ready("catalog", Some(crate::describe_error(e)));
            }
            Some(opened?)
        }
    };
    if let Some(live) = ops {
        live.set_ready("catalog", None);
    }
    let source_spec = &spec.source;
    // A stream is opened once the tables have said where from; a file now
    // (its identity is part of deciding).
    let opened = match source_spec.stream_identity() {
        Some(_) if spec.keeps_progress() => None,
        _ => {
            // An Iceberg table read before is read on from the snapshot the
            // tables say was read.
            let earlier = match (&warehouse, source_spec) {
                (Some(warehouse), SourceSpec::Parquet(parquet)) if parquet.is_table() => warehouse
                    .completed_position()
                    .map_err(|e| RunError::Warehouse(Box::new(e)))?,
                _ => None,
            };
            Some(source_spec.open_after(StreamStart::Args, earlier.as_ref(), stop)?)
        }
    };
    let (mut identity, size, resuming) = match (&opened, source_spec.stream_identity()) {
        (Some(o), _) => (o.identity.clone(), o.size, o.resuming),
        (None, Some(stream)) => (stream, None, false),
        (None, None) => unreachable!("a file is opened at once"),
    };
    let state_files = state_files(spec, warehouse.as_ref())?;
    let fleet_start = match (fleet, &warehouse, &state_files, source_spec) {
        (None, ..) => None,
        (Some(assignment), Some(warehouse), Some(files), SourceSpec::Kinesis(stream)) => {
            Some(super::fleet::prepare(warehouse, stream, assignment, files)?)
        }
        (Some(_), ..) => unreachable!("a fleet run reads Kinesis into tables with state"),
    };
    // Resuming a stream from its positions file adds the events after it.
    let start = match &warehouse {
        _ if fleet_start.is_some() => Start::Fresh,
        Some(warehouse) if !resuming => {
            warehouse.plan_start(&mut identity, size, state_files.as_deref())?
        }
        _ => Start::Fresh,
    };
    let mut stored = match (&start, &warehouse) {
        (Start::Add, Some(warehouse)) => {
            Some(StoredIds::open(warehouse).map_err(|e| RunError::Stored(Box::new(e)))?)
        }
        _ => None,
    };
    let resume = match start {
        Start::Fresh | Start::Add => None,
        Start::Complete(progress) => {
            tracing::info!(
                checkpoint = progress.checkpoint,
                input = %source_spec.name(),
                "the warehouse already holds this whole input: nothing to do"
            );
            return Ok(Outcome {
                summary: Summary::default(),
                tables: Vec::new(),
                sns: None,
                cloudwatch: None,
                already_complete: true,
            });
        }
        Start::Resume(progress) => Some(Resume::prepare(progress, state_files.as_ref())?),
    };
    let fleet_source = match (&fleet_start, fleet, source_spec) {
        (Some(start), Some(assignment), SourceSpec::Kinesis(stream)) => Some(stream.open_shards(
            start.positions.clone(),
            assignment.held.readable.clone(),
            &assignment.writer,
            super::fleet::lease_checkpoints(assignment),
        )?),
        _ => None,
    };
    let (mut source, source_name) = match (fleet_source, &resume, opened) {
        (Some(source), ..) => (source, source_spec.name()),
        (None, Some(resume), _) => (source_spec.reopen(&resume.at, stop)?, source_spec.name()),
        (None, None, Some(opened)) => (opened.source, opened.name),
        (None, None, None) => {
            let opened = source_spec.open(StreamStart::Tables(None), stop)?;
            (opened.source, opened.name)
        }
    };
    if let Some(live) = ops {
        live.set_ready("source", None);
    }

    let tables = match &warehouse {
        Some(warehouse) => {
            tracing::info!(
                warehouse = warehouse.description(),
                "writing Iceberg tables"
            );
            start_sinks(warehouse, &source_name, &spec.outputs.findings_origin)
                .map_err(super::outputs::OutputsError::from)?
        }
        None => Vec::new(),
    };
    let mut outputs = RunOutputs::open(
        &spec.outputs,
        tables,
        match (fleet, &resume) {
            (Some(_), _) => FilesStart::Append,
            (None, Some(r)) => FilesStart::Resume(Written {
                dead_letters: r.meta.dead_letters,
                alert_publications: r.meta.alert_publications,
            }),
            (None, None) => FilesStart::New,
        },
        ops,
    )?;
    let announcer = outputs.announcer();
    // A fleet worker trades its shards' computer popularity with the others.
    let mut host_shares = match (fleet, &state_files) {
        (Some(assignment), Some(files)) => Some(super::fleet::host_shares(assignment, files)?),
        _ => None,
    };
    let mut ticker = spec.metrics.clone().map(MetricsTicker::start).transpose()?;
    let sweep_files = state_files.clone().filter(|_| fleet.is_some());
    let mut state_store = state_files
        .map(|files| {
            let location = files.location("");
            let run = match (fleet, &resume) {
                (Some(assignment), _) => assignment.run.clone(),
                (None, Some(resume)) => SnapshotStore::run_of(&resume.state)
                    .map_or_else(SnapshotStore::new_run_id, str::to_string),
                (None, None) => SnapshotStore::new_run_id(),
            };
            SnapshotStore::new(files, KEEP_SNAPSHOTS, &run)
                .map_err(|source| RunError::StateStore { location, source })
        })
        .transpose()?;
    let mut wiring = outputs.wire();
    let mut pipeline = Pipeline::new(policy, spec.pipeline.clone(), wiring.outputs())?;
    pipeline.set_source_identity(identity.to_json());
    if let Some(stored) = stored.as_mut() {
        pipeline.skip_stored(stored);
    }
    if let Some(resume) = &resume {
        resume.restore(&mut pipeline)?;
    }
    if let Some(start) = &fleet_start {
        if let Some(state) = &start.state {
            pipeline
                .restore_snapshot(&mut state.as_slice(), Restore::Resume)
                .map_err(RunError::snapshot("restore the shards' state".to_string()))?;
            // Its clock was rewound; see admit_pending.
            pipeline
                .admit_pending_arrivals()
                .map_err(RunError::scoring("admit the shards' waiting arrivals"))?;
        }
        // The claim was checkpoint 0.
        pipeline.resume_checkpoints(0);
    }
    // A fleet worker removes what its ended attempts no longer need, beside
    // this one.
    let _sweeper = match (fleet, state_store.as_mut(), &warehouse, &sweep_files) {
        (Some(assignment), Some(store), Some(warehouse), Some(files)) => {
            store.share_saved_through(Arc::clone(&assignment.saved_through));
            let sweeper = Sweeper::start(
                warehouse.clone(),
                Arc::clone(files),
                assignment.live.clone(),
                Arc::clone(&assignment.ended),
            );
            Some(sweeper.map_err(|e| {
                RunError::Fleet(format!("start removing ended attempts' snapshots: {e}"))
            })?)
        }
        _ => None,
    };
    if let Some(store) = state_store.as_mut() {
        pipeline.keep_state(store);
    }
    if let (Some(shares), Some(assignment)) = (host_shares.as_mut(), fleet) {
        pipeline.share_hosts(shares, assignment.pace);
    }
    if let Some(path) = &spec.warm_start {
        let what = || format!("warm start from {}", path.display());
        let mut file = std::fs::File::open(path)
            .map_err(|e| RunError::snapshot(what())(snapshot::SnapshotError::Io(e)))?;
        let history = pipeline
            .restore_snapshot(&mut std::io::BufReader::new(&mut file), Restore::WarmStart)
            .map_err(RunError::snapshot(what()))?;
        tracing::info!(
            snapshot = %path.display(),
            users = history.users,
            computers = history.computers,
            device_pairs = history.device_pairs,
            history_events = history.events_scored,
            history_until = ?history.latest_event_time.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            "warm start: the state of the history is loaded"
        );
    }
    let engine = spec.pipeline.engine;
    tracing::info!(policy_version = pipeline.policy_version(), engine = ?engine, "scoring");
    if let Some(path) = policy_path.filter(|_| spec.policy_reload) {
        let watcher = PolicyWatcher::start(
            &path,
            pipeline.policy(),
            pipeline.policy_version(),
            engine,
            spec.pipeline.batch_size,
        )
        .map_err(RunError::Watch)?;
        if let Some(live) = ops {
            live.set_reload_handle(Some(watcher.handle()));
        }
        pipeline.watch_policy(watcher);
        tracing::info!(policy = %path.display(), "watching the policy and its modules for changes (and SIGHUP)");
    }

    let mut publisher = ops.map(|live| {
        live.set_ready("rules", None);
        live.set_ready("pipeline", None);
        pipeline.time_batches();
        ops::Publisher::new(live, &source_name)
    });
    let view = context.meter;
    view.start(size);
    *started = true;
    pipeline::consume(&mut pipeline, source.as_mut(), stop, |pipeline, source| {
        view.update(source.bytes_consumed(), pipeline.events_read());
        if let Some(breach) = ticker
            .as_mut()
            .and_then(|ticker| ticker.tick(pipeline, source, false))
        {
            announcer.freshness_breached(&breach);
        }
        if let Some(publisher) = publisher.as_mut() {
            publisher.tick(pipeline, source, false);
        }
    })
    .map_err(RunError::scoring(format!("read {source_name}")))?;
    if fleet.is_some() {
        let stats = pipeline.fleet_stats();
        tracing::info!(
            trades = stats.trades,
            trading_s = stats.trading.as_secs_f64(),
            waited_s = stats.waited.as_secs_f64(),
            "host shares traded with the fleet; time the scoring thread spent trading, and waiting for the slowest shard"
        );
    }
    if let Some(live) = ops {
        live.set_phase("stopping");
    }
    view.finish();
    // A stopped file run into tables with state is resumed by the next
    // start: it commits, and leaves the input open. Anything else has
    // nothing to resume from, so it finishes.
    let summary = if stop.load(Ordering::Relaxed) && spec.resumable() {
        // A fleet worker's attempt also stops when its shards change; the
        // fleet arms the watchdog when the run itself stops.
        if fleet.is_none() {
            give_up_after(spec.shutdown_timeout);
        }
        tracing::info!(
            timeout = ?spec.shutdown_timeout,
            "stopping: committing what was scored, with the state; the next start resumes here"
        );
        pipeline
            .stop_at(source.position())
            .map_err(RunError::scoring("commit before stopping"))?
    } else {
        if let Some(wait) = fleet.and_then(|assignment| assignment.wait_at_end) {
            pipeline
                .wait_for_fleet_to_finish(stop, wait)
                .map_err(RunError::scoring("score the last events"))?;
        }
        pipeline
            .end_of_input()
            .map_err(RunError::scoring("score the last events"))?;
        if let Some(breach) = ticker
            .as_mut()
            .and_then(|ticker| ticker.tick(&mut pipeline, source.as_ref(), true))
        {
            announcer.freshness_breached(&breach);
        }
        if let Some(publisher) = publisher.as_mut() {
            publisher.tick(&mut pipeline, source.as_ref(), true);
        }
        let summary = pipeline
            .finish_at(source.position())
            .map_err(RunError::scoring("write results"))?;
        // Everything read is now scored and committed: save the positions.
        source
            .finished()
            .map_err(RunError::scoring("save the source's positions"))?;
        summary
    };
    let cloudwatch = ticker.as_ref().and_then(MetricsTicker::flush);
    drop(wiring);
    if summary.invalid + summary.late + summary.future > 0 {
        tracing::warn!(
            invalid = summary.invalid,
            late = summary.late,
            future = summary.future,
            path = %spec.outputs.dead_letters.display(),
            "records dead-lettered"
        );
    }
    if summary.alerts > 0 {
        tracing::info!(alerts = summary.alerts, path = %spec.outputs.alerts.display(), "alerts written");
    }
    let tables = outputs.table_stats();
    for table in &tables {
        tracing::debug!(
            table = table.table,
            rows = table.rows,
            files = table.data_files,
            bytes = table.bytes,
            commits = table.commit_s.len(),
            "table written"
        );
    }
    Ok(Outcome {
        summary,
        tables,
        sns: outputs.sns_report(),
        cloudwatch,
        already_complete: false,
    })
}

/// Where state snapshots go: beside tables on S3, else under the output
/// directory; `None` without state.
fn state_files(
    spec: &RunSpec,
    warehouse: Option<&Warehouse>,
) -> Result<Option<Arc<dyn SnapshotFiles>>, RunError> {
    if !spec.keep_state {
        return Ok(None);
    }
    let remote = warehouse
        .map(Warehouse::remote_state_files)
        .transpose()
        .map_err(|e| RunError::StateFiles(Box::new(e)))?
        .flatten();
    if let Some(remote) = remote {
        return Ok(Some(Arc::new(remote)));
    }
    let dir = spec.output.join("state");
    let local =
        LocalFiles::new(&dir).map_err(|source| RunError::CreateDir { path: dir, source })?;
    Ok(Some(Arc::new(local)))
}

/// A run resuming at a checkpoint: its progress, and the state snapshot
/// that goes with it.
struct Resume {
    progress: Progress,
    files: Arc<dyn SnapshotFiles>,
    /// The snapshot's name in `files`.
    state: String,
    meta: SnapshotMeta,
    at: SourcePosition,
}

impl Resume {
    fn prepare(
        progress: Progress,
        files: Option<&Arc<dyn SnapshotFiles>>,
    ) -> Result<Resume, RunError> {
        let files = Arc::clone(files.ok_or_else(|| {
            RunError::Unresumable(
                "the tables record a run that kept its state, and this one is run with --no-state: \
                 leave --no-state out to resume it, or use a new --output"
                    .into(),
            )
        })?);
        let state = progress.state.clone().ok_or_else(|| {
            RunError::Unresumable(format!(
                "checkpoint {} kept no state snapshot (was it run with --no-state?), so it cannot be resumed; \
                 use a new --output",
                progress.checkpoint
            ))
        })?;
        let location = files.location(&state);
        let mut file = files.open(&state).map_err(|e| {
            RunError::snapshot(format!(
                "open {location}, the state snapshot of checkpoint {}",
                progress.checkpoint
            ))(snapshot::SnapshotError::Io(e))
        })?;
        let meta = snapshot::read_meta(&mut file)
            .map_err(RunError::snapshot(format!("read {location}")))?;
        let position = &progress.source["position"];
        let at = SourcePosition::recorded(&progress.source).ok_or_else(|| {
            RunError::Unresumable(format!(
                "checkpoint {} records no position to resume from: {position}",
                progress.checkpoint
            ))
        })?;
        tracing::info!(
            checkpoint = progress.checkpoint,
            position = %position,
            state = %location,
            "resuming where the last commit left off"
        );
        Ok(Resume {
            progress,
            files,
            state,
            meta,
            at,
        })
    }

    /// Takes the checkpoint's state into the (new) pipeline.
    fn restore(&self, pipeline: &mut Pipeline<'_>) -> Result<(), RunError> {
        let location = self.files.location(&self.state);
        let mut file = self.files.open(&self.state).map_err(|e| {
            RunError::snapshot(format!("open {location}"))(snapshot::SnapshotError::Io(e))
        })?;
        pipeline
            .restore_snapshot(&mut file, Restore::Resume)
            .map_err(RunError::snapshot(format!("restore {location}")))?;
        pipeline.resume_checkpoints(self.progress.checkpoint);
        Ok(())
    }
}

/// Exits the process with an error if it is still running `timeout` from
/// now: a stop must not hang on storage that does not answer. Nothing is
/// lost (the next start resumes from the last commit that landed).
pub(super) fn give_up_after(timeout: std::time::Duration) {
    let watchdog = std::thread::Builder::new()
        .name("authpulse-shutdown".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            tracing::error!(
                ?timeout,
                "the stop did not finish committing in time: exiting; the next start resumes from the last commit"
            );
            std::process::exit(1);
        });
    if let Err(e) = watchdog {
        tracing::warn!(error = %e, "no shutdown watchdog");
    }
}
