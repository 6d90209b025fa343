//! A run, assembled from typed parts: a [`RunSpec`] says what to read
//! ([`crate::sources`]), where results go ([`outputs`]), which tables and
//! state to keep, the policy and the pipeline's options; [`run`] carries
//! it out. One attempt ([`attempt`]) plans the start from the tables'
//! progress ([`crate::lakehouse::progress`]), opens or reopens the source,
//! builds the outputs, restores the state and scores to the end (or a
//! stop); when an attempt that got going fails on storage, the catalog or
//! the stream ([`RunError::is_transient`]), the run resumes from its last
//! commit after a pause, for `recover_for`. A fleet worker ([`fleet`])
//! runs an attempt per set of shards it holds, and removes the state of
//! ended attempts once nothing starts from it ([`sweep`]).
//!
//! `run`, `bench`, `demo` and the tests build the same spec; the command
//! line only fills it in.

mod attempt;
pub mod error;
pub mod fleet;
pub mod outputs;
mod sweep;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authpulse_engine::input::MAX_LINE_DEFAULT;
use authpulse_engine::pipeline::{PipelineOptions, Summary};
use authpulse_engine::policy::{Policy, PolicyError};

use crate::aws::Backoff;
use crate::aws::cloudwatch::PublishReport;
use crate::aws::sns::SnsReport;
use crate::aws::ticker::TickerConfig;
use crate::lakehouse::WarehouseConfig;
use crate::lakehouse::writer::WriterStats;
use crate::ops::Live;
use crate::sources::{FileSpec, InputKind, SourceSpec};
pub use error::RunError;
use outputs::OutputsSpec;

/// Everything a run needs to know, typed.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub source: SourceSpec,
    /// The output directory: the embedded catalog and its data, local
    /// state snapshots, the SNS outbox.
    pub output: PathBuf,
    pub outputs: OutputsSpec,
    /// The tables' catalog; `None`: no tables (and no resume).
    pub tables: Option<WarehouseConfig>,
    /// Keep state snapshots with every commit (what a resume needs).
    pub keep_state: bool,
    /// `--policy`; `None`: ./policies.yaml if present, else the built-in one.
    pub policy: Option<PathBuf>,
    /// Reload the policy file when it or its modules change.
    pub policy_reload: bool,
    pub pipeline: PipelineOptions,
    /// Start from this state snapshot (`state build`) instead of empty.
    pub warm_start: Option<PathBuf>,
    /// Publish metrics (CloudWatch, EMF) and watch the freshness SLA.
    pub metrics: Option<TickerConfig>,
    /// How long a stop may take to commit and snapshot.
    pub shutdown_timeout: Duration,
    /// Once scoring, how long a failing run keeps resuming.
    pub recover_for: Duration,
    /// Share the stream with other workers (`--lease-table`).
    pub fleet: Option<fleet::FleetSpec>,
}

impl RunSpec {
    /// A run over a file with every default: the built-in or local policy,
    /// rules as WASM, the embedded tables and state under `output`, results
    /// in `output`'s `alerts.jsonl` and `dead-letter.jsonl`.
    pub fn of_file(input: &Path, output: &Path) -> RunSpec {
        RunSpec {
            source: SourceSpec::File(FileSpec {
                path: input.to_path_buf(),
                follow: false,
                max_line_bytes: MAX_LINE_DEFAULT,
            }),
            output: output.to_path_buf(),
            outputs: OutputsSpec {
                dead_letters: output.join("dead-letter.jsonl"),
                alerts: output.join("alerts.jsonl"),
                alert_format: Default::default(),
                scored: None,
                sns: None,
                findings_origin: Default::default(),
            },
            tables: Some(WarehouseConfig::embedded(output)),
            keep_state: true,
            policy: None,
            policy_reload: true,
            pipeline: PipelineOptions::default(),
            warm_start: None,
            metrics: None,
            shutdown_timeout: Duration::from_secs(30),
            recover_for: Duration::from_secs(300),
            fleet: None,
        }
    }

    /// Whether the tables record its progress with a state snapshot: what
    /// a resume needs.
    pub fn keeps_progress(&self) -> bool {
        self.tables.is_some() && self.keep_state
    }

    /// Whether a later start can resume it where it stopped: progress kept,
    /// and an input that can be read again (a stream, not stdin or a pipe).
    pub fn resumable(&self) -> bool {
        self.keeps_progress()
            && match &self.source {
                SourceSpec::Kinesis(_) => true,
                // Read again whole, adding only what the tables lack.
                SourceSpec::Parquet(_) => false,
                SourceSpec::File(file) => {
                    InputKind::of(&file.path).is_ok_and(|kind| kind == InputKind::File)
                }
            }
    }
}

/// Where a run shows how far it has read (a terminal's progress bar; the
/// word "progress" is kept for the record a checkpoint commits).
pub trait ReadMeter {
    /// Reading starts; `size` in bytes, when known.
    fn start(&self, size: Option<u64>);
    fn update(&self, bytes: u64, events: u64);
    fn finish(&self);
}

/// What a run did.
pub struct Outcome {
    pub summary: Summary,
    /// Per table written: rows, files, bytes, writer time, commit latencies.
    pub tables: Vec<WriterStats>,
    /// With SNS: what was published, and what waits in the outbox.
    pub sns: Option<SnsReport>,
    /// With CloudWatch: what was published.
    pub cloudwatch: Option<PublishReport>,
    /// The warehouse already held the whole input: nothing was done.
    pub already_complete: bool,
}

/// What a run reports to besides its outputs.
pub struct Context<'a> {
    /// Set by the first Ctrl-C / SIGTERM: stop reading, commit, finish.
    pub stop: Arc<AtomicBool>,
    /// The operations server's view (`--listen`).
    pub ops: Option<&'a Arc<Live>>,
    pub meter: &'a dyn ReadMeter,
}

/// Runs `spec` and returns what it did. A run that resumes from its
/// tables and fails on a transient fault after it started scoring is
/// resumed again from the last commit, after a pause, for
/// `spec.recover_for`.
pub fn run(spec: &RunSpec, context: &Context<'_>) -> Result<Outcome, RunError> {
    if let Some(fleet) = &spec.fleet {
        return fleet::run(spec, fleet, context);
    }
    const PAUSE: Backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
    };
    // An attempt that ran this long was not failing: the budget starts over.
    const HEALTHY: Duration = Duration::from_secs(300);
    let resumable = spec.resumable();
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        let mut started = false;
        let began = Instant::now();
        let error = match attempt::attempt(spec, context, &mut started, None) {
            Ok(outcome) => {
                if let Some(live) = context.ops {
                    live.set_phase("finished");
                }
                return Ok(outcome);
            }
            Err(error) => error,
        };
        if let Some(live) = context.ops {
            live.set_phase("recovering");
            live.set_ready(
                "pipeline",
                Some(format!(
                    "failed, resuming: {}",
                    crate::describe_error(&error)
                )),
            );
        }
        if began.elapsed() >= HEALTHY {
            (failing_since, attempt) = (None, 0);
        }
        // A run that never got going has a problem a pause does not cure
        // (a wrong path, bucket or policy): it fails at once. So does one
        // that failed on something other than storage, the catalog or the
        // stream.
        let recovering = failing_since.is_some() || started;
        let since = *failing_since.get_or_insert_with(Instant::now);
        if !resumable
            || !recovering
            || !error.is_transient()
            || spec.recover_for.is_zero()
            || context.stop.load(Ordering::Relaxed)
        {
            return Err(error);
        }
        if since.elapsed() >= spec.recover_for {
            return Err(RunError::GaveUp {
                tried: humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                    .to_string(),
                last: Box::new(error),
            });
        }
        let pause = PAUSE.delay(attempt, || 1.0);
        tracing::warn!(
            error = crate::describe_error(&error),
            attempt = attempt + 1,
            pause_s = pause.as_secs(),
            "the run failed; resuming from the last commit after a pause"
        );
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if context.stop.load(Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        attempt += 1;
    }
}

/// The policy a run uses: `explicit`, else ./policies.yaml, else the
/// built-in one; with the file it came from.
pub fn resolve_policy(explicit: Option<&Path>) -> Result<(Policy, Option<PathBuf>), PolicyError> {
    if let Some(path) = explicit {
        return Ok((Policy::load(path)?, Some(path.to_path_buf())));
    }
    let local = Path::new("policies.yaml");
    if local.exists() {
        return Ok((Policy::load(local)?, Some(local.to_path_buf())));
    }
    Ok((Policy::builtin(), None))
}
