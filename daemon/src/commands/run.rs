//! `authpulse run`: score events from a file, stdin or a Kinesis stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use authpulse::aws::sns::{SnsAlerts, SnsConfig, SnsPublisher, SnsReport};
use authpulse::aws::ticker::{MetricsTicker, TickerConfig};
use authpulse::aws::{AwsSettings, Backoff, cloudwatch};
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::aggregates::AggregateSink;
use authpulse::lakehouse::alerts::AlertTableSink;
use authpulse::lakehouse::curated::CuratedSink;
use authpulse::lakehouse::progress::{KEEP_SNAPSHOTS, Start};
use authpulse::lakehouse::raw::RawSink;
use authpulse::lakehouse::stored::StoredIds;
use authpulse::lakehouse::writer::WriterStats;
use authpulse::ops;
use authpulse::sources::{
    FileSpec, InputKind, KinesisSpec, SourcePosition, SourceSpec, StreamStart,
};
use authpulse_engine::clock::ClockOptions;
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{Format, MAX_LINE_DEFAULT};
use authpulse_engine::limits::StateLimits;
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions, Restore, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::reload::PolicyWatcher;
use authpulse_engine::rules::Engine;
use authpulse_engine::sinks::Progress;
use authpulse_engine::sinks::{
    AlertSink, Discard, JsonLinesFile, ReceivedSink, ScoredJsonLines, ScoredSink, Tee,
};
use authpulse_engine::snapshot::{self, LocalFiles, SnapshotFiles, SnapshotMeta, SnapshotStore};
use clap::Args;

use super::aws_args::{AwsArgs, SourceUrl};
use super::catalog_args::CatalogArgs;
use super::{progress, shell};

/// Score authentication events and raise alerts.
///
/// Reads LANL CSV (`time,user,computer`) or JSON events (one per line) from a
/// file, stdin, a pipe or a fifo, to the end (or, with --follow, as a file
/// grows until Ctrl-C; a second Ctrl-C exits at once), or every shard of a
/// Kinesis stream (--source kinesis://STREAM; until Ctrl-C, or
/// --until-caught-up). An event dated more than --max-future-skew ahead of
/// the time the rest of the stream has reached is dead-lettered as `future`
/// and moves nothing.
/// Malformed and late records go to the dead-letter file with their line
/// number and reason. Alerts (one per user or computer incident, published as
/// it opens, grows and closes) go to the alerts file. Every commit records
/// how far the input was read, with a state snapshot: the same command after
/// a crash (or Ctrl-C) resumes from the last commit, over a complete input
/// does nothing, and with another input adds it, skipping the events the
/// tables already store. At exit one JSON summary line is printed on stdout;
/// progress goes to stderr.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Input file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The input file, as `replay`, `eval` and `rules test` take it (the
    /// same as the positional FILE).
    #[arg(
        long = "input",
        short = 'i',
        value_name = "FILE",
        conflicts_with = "input"
    )]
    pub input_flag: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Keep reading a growing file (stop with Ctrl-C / SIGTERM).
    #[arg(long)]
    pub follow: bool,
    /// Directory for results.
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    /// Policy file. Default: ./policies.yaml if present, else the built-in
    /// policy. A policy file and the modules it names are watched: a change
    /// (or SIGHUP) is validated, compiled and swapped in between batches
    /// without a restart; a bad change is refused and the running policy stays.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Do not watch the policy file for changes.
    #[arg(long)]
    pub no_policy_reload: bool,
    /// Dead-letter file (JSON lines). Default: OUTPUT/dead-letter.jsonl.
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Alerts file (JSON lines). Default: OUTPUT/alerts.jsonl.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Also write every scored event as JSON lines here (large; for inspection).
    #[arg(long)]
    pub scored: Option<PathBuf>,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// Events per call into the rules (results do not depend on it).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Run the rules as sandboxed WASM (default) or natively (built-in rules only).
    #[arg(long, value_enum, default_value_t = Engine::Wasm)]
    pub engine: Engine,
    /// Lines longer than this are dead-lettered without being parsed.
    #[arg(long, default_value_t = MAX_LINE_DEFAULT)]
    pub max_line_bytes: usize,
    /// Commit the tables (and flush alerts) this often while reading.
    /// Default: 5s with --follow, otherwise once at the end of input. Shorter
    /// means fresher tables and more, smaller files (see docs/tables.md).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub commit_interval: Option<std::time::Duration>,
    /// Do not write the Iceberg tables.
    #[arg(long)]
    pub no_lakehouse: bool,
    /// Do not keep a state snapshot at each commit (OUTPUT/state/, or beside
    /// the tables when they are on S3; named in the commit's progress
    /// record; see docs/state.md). Such a run cannot be resumed.
    #[arg(long)]
    pub no_state: bool,
    /// After Ctrl-C / SIGTERM, how long the run may take to commit what it
    /// scored and its state before it gives up and exits with an error (the
    /// next start then resumes from the commit before). A second signal
    /// exits at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub shutdown_timeout: std::time::Duration,
    /// Once a run with tables and state has started scoring, how long it
    /// keeps recovering from failures (storage unreachable, a data file or a
    /// commit that failed): each time it waits (1 s, doubling up to 30 s) and
    /// resumes in-process from the last commit, as a restart would. The
    /// clock starts again after an attempt that ran five minutes. 0: fail at
    /// once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub recover_for: std::time::Duration,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Start from the state `authpulse state build` wrote from historical
    /// events (windows, device history, host popularity, baselines, entity
    /// risk) instead of empty, so that the rules' burn-in is already behind.
    /// Use the same --base-date as the build.
    #[arg(long, value_name = "SNAPSHOT")]
    pub warm_start: Option<PathBuf>,
    /// Where the Iceberg tables go: by default OUTPUT/catalog.db and
    /// OUTPUT/warehouse/.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Serve health checks, Prometheus metrics, the JSON API and the live
    /// dashboard on this address while running (`127.0.0.1:9464`; port 0
    /// picks a free one, logged). Off unless given.
    #[arg(long, value_name = "ADDR:PORT", env = "AUTHPULSE_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// File holding the bearer token of the admin routes (reload, rule
    /// modes); `AUTHPULSE_ADMIN_TOKEN` gives it directly. Without a token
    /// the admin routes are off.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Configuration file (YAML; docs/config.md): source, outputs, catalog,
    /// AWS, HTTP and limits in one place. Flags and AUTHPULSE_* variables
    /// given as well override it.
    #[arg(long, value_name = "FILE", env = "AUTHPULSE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl RunArgs {
    pub fn with_input(input: PathBuf, output: PathBuf) -> RunArgs {
        RunArgs {
            input,
            input_flag: None,
            format: Format::Auto,
            follow: false,
            output,
            policy: None,
            no_policy_reload: false,
            dead_letter: None,
            alerts: None,
            scored: None,
            base_date: TimeBase::DEFAULT,
            batch_size: 4096,
            engine: Engine::Wasm,
            max_line_bytes: MAX_LINE_DEFAULT,
            commit_interval: None,
            no_lakehouse: false,
            warm_start: None,
            no_state: false,
            shutdown_timeout: std::time::Duration::from_secs(30),
            recover_for: std::time::Duration::from_secs(300),
            limits: LimitArgs::default(),
            catalog: CatalogArgs::default(),
            aws: AwsArgs::default(),
            listen: None,
            admin_token_file: None,
            config: None,
        }
    }

    /// The input file, however it was given.
    pub fn input(&self) -> &Path {
        self.input_flag.as_deref().unwrap_or(&self.input)
    }

    pub fn alerts_path(&self) -> PathBuf {
        self.alerts
            .clone()
            .unwrap_or_else(|| self.output.join("alerts.jsonl"))
    }

    /// Whether the tables record its progress with a state snapshot: what
    /// a resume needs.
    pub fn keeps_progress(&self) -> bool {
        !self.no_lakehouse && !self.no_state
    }

    /// Whether a later start can resume it where it stopped: progress kept,
    /// and an input that can be read again (a stream, not stdin or a pipe).
    pub fn resumable(&self) -> bool {
        self.keeps_progress()
            && (self.aws.source.is_some()
                || InputKind::of(self.input()).is_ok_and(|k| k == InputKind::File))
    }

    /// The source it reads: --source, else the input file.
    pub fn source_spec(&self) -> SourceSpec {
        match &self.aws.source {
            Some(SourceUrl::Kinesis(stream)) => SourceSpec::Kinesis(KinesisSpec {
                stream: stream.clone(),
                from: self.aws.from.clone(),
                positions_file: self.aws.kinesis_checkpoint_path(&self.output),
                output: self.output.clone(),
                until_caught_up: self.aws.until_caught_up,
                poll_interval: self.aws.poll_interval,
                aws: aws_settings(self),
            }),
            None => SourceSpec::File(FileSpec {
                path: self.input().to_path_buf(),
                follow: self.follow,
                max_line_bytes: self.max_line_bytes,
            }),
        }
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| self.output.join("dead-letter.jsonl"))
    }
}

/// Bounds on the engine's state (docs/state.md#limits). Hitting one is
/// counted (`state_caps` in the summary) and logged.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitArgs {
    /// Users kept; an event of a new user past it is dead-lettered
    /// (`state_cap_users`).
    #[arg(long, default_value_t = StateLimits::default().max_users)]
    pub max_users: usize,
    /// Computers kept; an event on a new computer past it is dead-lettered
    /// (`state_cap_computers`).
    #[arg(long, default_value_t = StateLimits::default().max_computers)]
    pub max_computers: usize,
    /// Events kept in one user's 24 h window; past it the oldest leave early.
    #[arg(long, default_value_t = StateLimits::default().max_window_events)]
    pub max_window_events: usize,
    /// Events the watermark holds for ordering; past it the earliest are
    /// released early (and later ones of that second are late).
    #[arg(long, default_value_t = StateLimits::default().max_held_events)]
    pub max_held_events: usize,
    /// How far ahead an event may be dated: past the time most of the
    /// stream around it has reached, or, reading a followed file or Kinesis,
    /// past the wall clock. Further ahead, it is dead-lettered as `future`
    /// (counted, logged) and moves nothing: one record dated a year ahead
    /// cannot make the rest late. Keep it at or below the policy's
    /// allowed lateness.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub max_future_skew: std::time::Duration,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let limits = StateLimits::default();
        LimitArgs {
            max_users: limits.max_users,
            max_computers: limits.max_computers,
            max_window_events: limits.max_window_events,
            max_held_events: limits.max_held_events,
            max_future_skew: std::time::Duration::from_secs(
                ClockOptions::DEFAULT_MAX_AHEAD_S as u64,
            ),
        }
    }
}

impl LimitArgs {
    /// The event clock's bounds, for a source that is `live` (a followed
    /// file, Kinesis) or not.
    pub fn clock(&self, live: bool) -> ClockOptions {
        ClockOptions {
            max_ahead_s: self.max_future_skew.as_secs().min(i64::MAX as u64) as i64,
            wall_clock: live,
            ..ClockOptions::default()
        }
    }

    pub fn limits(&self) -> StateLimits {
        StateLimits {
            max_users: self.max_users,
            max_computers: self.max_computers,
            max_window_events: self.max_window_events,
            max_held_events: self.max_held_events,
        }
    }
}

/// The policy `run` uses: --policy, else ./policies.yaml, else the built-in
/// one; with the file it came from.
pub fn resolve_policy(explicit: Option<&Path>) -> anyhow::Result<(Policy, Option<PathBuf>)> {
    if let Some(path) = explicit {
        return Ok((Policy::load(path)?, Some(path.to_path_buf())));
    }
    let local = Path::new("policies.yaml");
    if local.exists() {
        return Ok((Policy::load(local)?, Some(local.to_path_buf())));
    }
    Ok((Policy::builtin(), None))
}

pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let outcome = score(&args)?;
    if outcome.already_complete {
        eprintln!(
            "{} already holds all of {}: nothing to do",
            args.output.display(),
            args.input().display()
        );
        outln!(
            "{}",
            serde_json::json!({"already_complete": true, "events_read": 0})
        )?;
        return Ok(());
    }
    let mut line = serde_json::to_value(&outcome.summary)?;
    if let Some(object) = line.as_object_mut() {
        if let Some(sns) = outcome.sns {
            object.insert(
                "sns".into(),
                serde_json::json!({"published": sns.published, "already_sent": sns.already_sent, "retries": sns.retries, "pending": sns.pending}),
            );
        }
        if let Some(metrics) = outcome.cloudwatch {
            object.insert(
                "cloudwatch".into(),
                serde_json::json!({"calls": metrics.calls, "datums": metrics.datums, "dropped_rounds": metrics.dropped_rounds}),
            );
        }
    }
    outln!("{line}")?;
    Ok(())
}

/// What a run did.
pub struct Outcome {
    pub summary: Summary,
    /// Per table written: rows, files, bytes, writer time, commit latencies.
    pub tables: Vec<WriterStats>,
    /// With --sns-topic: what was published, and what waits in the outbox.
    pub sns: Option<SnsReport>,
    /// With --cloudwatch: what was published.
    pub cloudwatch: Option<cloudwatch::PublishReport>,
    /// The warehouse already held the whole input: nothing was done.
    pub already_complete: bool,
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
    ) -> anyhow::Result<Resume> {
        let files = Arc::clone(files.context(
            "the tables record a run that kept its state, and this one is run with --no-state: \
             leave --no-state out to resume it, or use a new --output",
        )?);
        let state = progress.state.clone().with_context(|| {
            format!(
                "checkpoint {} kept no state snapshot (was it run with --no-state?), so it cannot be resumed; \
                 use a new --output",
                progress.checkpoint
            )
        })?;
        let location = files.location(&state);
        let mut file = files.open(&state).with_context(|| {
            format!(
                "open {location}, the state snapshot of checkpoint {}",
                progress.checkpoint
            )
        })?;
        let meta = snapshot::read_meta(&mut file).with_context(|| format!("read {location}"))?;
        let position = &progress.source["position"];
        let at = SourcePosition::recorded(&progress.source).with_context(|| {
            format!(
                "checkpoint {} records no position to resume from: {position}",
                progress.checkpoint
            )
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
    fn restore(&self, pipeline: &mut Pipeline<'_>) -> anyhow::Result<()> {
        let location = self.files.location(&self.state);
        let mut file = self
            .files
            .open(&self.state)
            .with_context(|| format!("open {location}"))?;
        pipeline
            .restore_snapshot(&mut file, Restore::Resume)
            .with_context(|| format!("restore {location}"))?;
        pipeline.resume_checkpoints(self.progress.checkpoint);
        Ok(())
    }
}

/// Exits the process with an error if it is still running `timeout` from
/// now: a stop must not hang on storage that does not answer. Nothing is
/// lost (the next start resumes from the last commit that landed).
fn give_up_after(timeout: std::time::Duration) {
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

fn aws_settings(args: &RunArgs) -> AwsSettings {
    AwsSettings {
        region: args.catalog.aws_region.clone(),
        endpoint: args.aws.aws_endpoint.clone(),
    }
}

/// Runs the pipeline as `args` say and returns its summary. A run that
/// resumes from its tables and fails after it started scoring is resumed
/// again from the last commit, after a pause, for `--recover-for`.
pub fn score(args: &RunArgs) -> anyhow::Result<Outcome> {
    const PAUSE: Backoff = Backoff {
        base: std::time::Duration::from_secs(1),
        cap: std::time::Duration::from_secs(30),
    };
    // An attempt that ran this long was not failing: the budget starts over.
    const HEALTHY: std::time::Duration = std::time::Duration::from_secs(300);
    let stop = shell::stop_on_signals()?;
    let resumable = args.resumable();
    let ops = start_ops_server(args)?;
    let live = ops.as_ref().map(|(live, _)| live);
    let mut failing_since: Option<std::time::Instant> = None;
    let mut attempt = 0;
    loop {
        let mut started = false;
        let began = std::time::Instant::now();
        let error = match score_once(args, &mut started, live) {
            Ok(outcome) => {
                if let Some(live) = live {
                    live.set_phase("finished");
                }
                return Ok(outcome);
            }
            Err(error) => error,
        };
        if let Some(live) = live {
            live.set_phase("recovering");
            live.set_ready("pipeline", Some(format!("failed, resuming: {error:#}")));
        }
        if began.elapsed() >= HEALTHY {
            (failing_since, attempt) = (None, 0);
        }
        // A run that never got going has a problem a pause does not cure
        // (a wrong path, bucket or policy): it fails at once.
        let recovering = failing_since.is_some() || started;
        let since = *failing_since.get_or_insert_with(std::time::Instant::now);
        if !resumable
            || !recovering
            || args.recover_for.is_zero()
            || stop.load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(error);
        }
        if since.elapsed() >= args.recover_for {
            let tried = std::time::Duration::from_secs(since.elapsed().as_secs());
            return Err(error.context(format!(
                "gave up after recovering for {}",
                humantime::format_duration(tried)
            )));
        }
        let pause = PAUSE.delay(attempt, || 1.0);
        tracing::warn!(
            error = format!("{error:#}"),
            attempt = attempt + 1,
            pause_s = pause.as_secs(),
            "the run failed; resuming from the last commit after a pause"
        );
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(error);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        attempt += 1;
    }
}

/// With `--listen`: the operations server, and what it shows.
fn start_ops_server(args: &RunArgs) -> anyhow::Result<Option<(Arc<ops::Live>, ops::Server)>> {
    let Some(listen) = args.listen else {
        return Ok(None);
    };
    let from_env = std::env::var("AUTHPULSE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let admin_token = match (&args.admin_token_file, from_env) {
        (Some(path), _) => Some(ops::AdminToken::from_file(path).map_err(anyhow::Error::msg)?),
        (None, Some(token)) => Some(
            ops::AdminToken::new(&token)
                .map_err(|e| anyhow::anyhow!("AUTHPULSE_ADMIN_TOKEN: {e}"))?,
        ),
        (None, None) => None,
    };
    if admin_token.is_none() {
        tracing::info!("no admin token: the admin routes (reload, rule modes) are off");
    }
    let live = ops::Live::new();
    let server = ops::Server::start(
        ops::ServerConfig {
            listen,
            admin_token,
        },
        Arc::clone(&live),
    )?;
    Ok(Some((live, server)))
}

/// One attempt at [`score`]; sets `started` once it scores.
fn score_once(
    args: &RunArgs,
    started: &mut bool,
    ops: Option<&Arc<ops::Live>>,
) -> anyhow::Result<Outcome> {
    let (policy, policy_path) = resolve_policy(args.policy.as_deref())?;
    tracing::info!(policy = %policy.origin, "policy loaded");
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("create {}", args.output.display()))?;

    // First Ctrl-C / SIGTERM: stop reading, score what was read, write results.
    let stop = shell::stop_on_signals()?;

    args.aws
        .validate(args.input().as_os_str() != "-", args.follow)?;
    let live = args.follow || args.aws.source.is_some();

    let warehouse = if args.no_lakehouse {
        None
    } else {
        let config = args.catalog.config(&args.output)?;
        let opened = Warehouse::open(&config).context("open the warehouse");
        if let (Some(live), Err(e)) = (ops, &opened) {
            live.set_ready("catalog", Some(format!("{e:#}")));
        }
        Some(opened?)
    };
    if let Some(live) = ops {
        live.set_ready("catalog", None);
    }
    // With tables and state, the tables' progress says where a run starts.
    let progress_in_tables = args.keeps_progress();
    let spec = args.source_spec();
    // A stream is opened once the tables have said where from; a file now
    // (its identity is part of deciding).
    let opened = match spec.stream_identity() {
        Some(_) if progress_in_tables => None,
        _ => Some(spec.open(StreamStart::Args, &stop)?),
    };
    let (mut identity, size, resuming) = match (&opened, spec.stream_identity()) {
        (Some(o), _) => (o.identity.clone(), o.size, o.resuming),
        (None, Some(stream)) => (stream, None, false),
        (None, None) => unreachable!("a file is opened at once"),
    };
    // Beside tables on S3, else under --output.
    let state_files: Option<Arc<dyn SnapshotFiles>> = if args.no_state {
        None
    } else {
        match warehouse
            .as_ref()
            .map(Warehouse::remote_state_files)
            .transpose()
            .context("locate the state snapshots beside the tables")?
            .flatten()
        {
            Some(remote) => Some(Arc::new(remote)),
            None => {
                let dir = args.output.join("state");
                Some(Arc::new(
                    LocalFiles::new(&dir).with_context(|| format!("create {}", dir.display()))?,
                ))
            }
        }
    };
    // Resuming a stream from its positions file adds the events after it.
    let start = match &warehouse {
        Some(warehouse) if !resuming => {
            warehouse.plan_start(&mut identity, size, state_files.as_deref())?
        }
        _ => Start::Fresh,
    };
    let mut stored = match (&start, &warehouse) {
        (Start::Add, Some(warehouse)) => {
            Some(StoredIds::open(warehouse).context("read what the curated table already stores")?)
        }
        _ => None,
    };
    let resume = match start {
        Start::Fresh | Start::Add => None,
        Start::Complete(progress) => {
            tracing::info!(
                checkpoint = progress.checkpoint,
                input = %args.input().display(),
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
    let (mut source, source_name) = match (&resume, opened) {
        (Some(resume), _) => (spec.reopen(&resume.at, &stop)?, spec.name()),
        (None, Some(opened)) => (opened.source, opened.name),
        (None, None) => {
            let opened = spec.open(StreamStart::Tables(None), &stop)?;
            (opened.source, opened.name)
        }
    };
    if let Some(live) = ops {
        live.set_ready("source", None);
    }

    let create = |path: PathBuf, keep: Option<u64>| {
        match keep {
            Some(lines) => JsonLinesFile::resume(&path, lines),
            None => JsonLinesFile::create(&path),
        }
        .with_context(|| format!("open {}", path.display()))
    };
    let mut dead_letters = create(
        args.dead_letter_path(),
        resume.as_ref().map(|r| r.meta.dead_letters),
    )?;
    let mut alerts = create(
        args.alerts_path(),
        resume.as_ref().map(|r| r.meta.alert_publications),
    )?;
    let mut json_rows = args
        .scored
        .clone()
        .map(|path| create(path, None).map(ScoredJsonLines))
        .transpose()?;
    let mut lakehouse = if let Some(warehouse) = &warehouse {
        tracing::info!(
            warehouse = warehouse.description(),
            "writing Iceberg tables"
        );
        Some((
            RawSink::start(warehouse, &source_name).context("start the raw table writer")?,
            CuratedSink::start(warehouse).context("start the curated table writer")?,
            AggregateSink::start(warehouse).context("start the aggregate table writers")?,
            AlertTableSink::start(warehouse).context("start the alerts table writer")?,
        ))
    } else {
        None
    };
    let (mut raw, mut curated, mut aggregates, mut alert_table) = match lakehouse.as_mut() {
        Some((raw, curated, aggregates, alerts)) => {
            (Some(raw), Some(curated), Some(aggregates), Some(alerts))
        }
        None => (None, None, None, None),
    };
    let mut sinks: Vec<&mut dyn ScoredSink> = Vec::new();
    if let Some(sink) = json_rows.as_mut() {
        sinks.push(sink);
    }
    if let Some(sink) = curated.take() {
        sinks.push(sink);
    }
    if let Some(sink) = aggregates.take() {
        sinks.push(sink);
    }
    let mut discard = Discard;
    let mut tee = Tee(sinks);
    let scored: &mut dyn ScoredSink = if tee.0.is_empty() {
        &mut discard
    } else {
        &mut tee
    };
    let (mut sns_alerts, _sns_worker) = match &args.aws.sns_topic {
        Some(topic) => {
            let (publisher, worker) = SnsPublisher::start(SnsConfig {
                topic_arn: topic.clone(),
                aws: aws_settings(args),
                outbox: args.output.join("sns-outbox.jsonl"),
                sent_log: args.output.join("sns-sent.jsonl"),
                drain_timeout: args.aws.sns_drain_timeout,
            })
            .context("start the SNS publisher")?;
            tracing::info!(topic = %topic, "publishing alerts to SNS");
            (
                Some(SnsAlerts {
                    publisher,
                    report: SnsReport::default(),
                }),
                Some(worker),
            )
        }
        None => (None, None),
    };
    let mut ticker = if args.aws.wants_metrics() {
        Some(MetricsTicker::start(TickerConfig {
            interval: args.aws.metrics_interval,
            cloudwatch: args.aws.cloudwatch,
            emf: args.aws.metrics_emf.clone(),
            namespace: args.aws.cloudwatch_namespace.clone(),
            pipeline_name: args.aws.pipeline_name.clone(),
            freshness_sla: Some(args.aws.freshness_sla),
            sns: sns_alerts.as_ref().map(|s| s.publisher.clone()),
            aws: aws_settings(args),
        })?)
    } else {
        None
    };
    let mut live_alerts = ops.map(|live| ops::LiveAlerts(Arc::clone(live)));
    let mut alert_sinks: Vec<&mut dyn AlertSink> = vec![&mut alerts];
    if let Some(sink) = live_alerts.as_mut() {
        alert_sinks.push(sink);
    }
    if let Some(sink) = sns_alerts.as_mut() {
        alert_sinks.push(sink);
    }
    if let Some(sink) = alert_table.take() {
        alert_sinks.push(sink);
    }
    let mut alert_tee = Tee(alert_sinks);
    let options = PipelineOptions {
        format: args.format,
        time_base: args.base_date,
        batch_size: args.batch_size as usize,
        engine: args.engine,
        commit_interval: args
            .commit_interval
            .or(live.then_some(std::time::Duration::from_secs(5))),
        limits: args.limits.limits(),
        clock: args.limits.clock(live),
        ..PipelineOptions::default()
    };
    let mut state_store = state_files
        .map(|files| {
            let location = files.location("");
            let run = resume
                .as_ref()
                .and_then(|r| SnapshotStore::run_of(&r.state))
                .map_or_else(SnapshotStore::new_run_id, str::to_string);
            SnapshotStore::new(files, KEEP_SNAPSHOTS, &run)
                .with_context(|| format!("start the state snapshot writer for {location}"))
        })
        .transpose()?;
    let mut pipeline = Pipeline::new(
        policy,
        options,
        Outputs {
            dead_letters: &mut dead_letters,
            alerts: &mut alert_tee,
            scored,
            received: raw.take().map(|sink| sink as &mut dyn ReceivedSink),
        },
    )?;
    pipeline.set_source_identity(identity.to_json());
    if let Some(stored) = stored.as_mut() {
        pipeline.skip_stored(stored);
    }
    if let Some(resume) = &resume {
        resume.restore(&mut pipeline)?;
    }
    if let Some(store) = state_store.as_mut() {
        pipeline.keep_state(store);
    }
    if let Some(path) = &args.warm_start {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
        let history = pipeline
            .restore_snapshot(&mut std::io::BufReader::new(&mut file), Restore::WarmStart)
            .with_context(|| format!("warm start from {}", path.display()))?;
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
    tracing::info!(policy_version = pipeline.policy_version(), engine = ?args.engine, "scoring");
    if let Some(path) = policy_path.filter(|_| !args.no_policy_reload) {
        let watcher = PolicyWatcher::start(
            &path,
            pipeline.policy(),
            pipeline.policy_version(),
            args.engine,
            args.batch_size as usize,
        )?;
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
    let bar = progress::bar(size, "bytes");
    *started = true;
    pipeline::consume(&mut pipeline, source.as_mut(), &stop, |pipeline, source| {
        bar.set_position(source.bytes_consumed());
        bar.set_message(format!("{} events", pipeline.events_read()));
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick(pipeline, source, false);
        }
        if let Some(publisher) = publisher.as_mut() {
            publisher.tick(pipeline, source, false);
        }
    })
    .with_context(|| format!("read {source_name}"))?;
    if let Some(live) = ops {
        live.set_phase("stopping");
    }
    bar.finish_and_clear();
    // A stopped file run into tables with state is resumed by the next
    // start: it commits, and leaves the input open. Anything else has
    // nothing to resume from, so it finishes.
    let resumable = args.resumable();
    let summary = if stop.load(std::sync::atomic::Ordering::Relaxed) && resumable {
        give_up_after(args.shutdown_timeout);
        tracing::info!(
            timeout = ?args.shutdown_timeout,
            "stopping: committing what was scored, with the state; the next start resumes here"
        );
        pipeline
            .stop_at(source.position())
            .context("commit before stopping")?
    } else {
        pipeline.end_of_input().context("score the last events")?;
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick(&mut pipeline, source.as_ref(), true);
        }
        if let Some(publisher) = publisher.as_mut() {
            publisher.tick(&mut pipeline, source.as_ref(), true);
        }
        let summary = pipeline
            .finish_at(source.position())
            .context("write results")?;
        // Everything read is now scored and committed: save the positions.
        source.finished().context("save the source's positions")?;
        summary
    };
    let cloudwatch = ticker.as_ref().and_then(MetricsTicker::flush);
    let sns = sns_alerts.as_ref().map(|s| s.report);
    if summary.invalid + summary.late + summary.future > 0 {
        tracing::warn!(
            invalid = summary.invalid,
            late = summary.late,
            future = summary.future,
            path = %args.dead_letter_path().display(),
            "records dead-lettered"
        );
    }
    if summary.alerts > 0 {
        tracing::info!(alerts = summary.alerts, path = %args.alerts_path().display(), "alerts written");
    }
    let tables: Vec<WriterStats> = match &lakehouse {
        Some((raw, curated, aggregates, alerts)) => [raw.stats(), curated.stats()]
            .into_iter()
            .chain(aggregates.stats())
            .chain([alerts.stats()])
            .cloned()
            .collect(),
        None => Vec::new(),
    };
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
        sns,
        cloudwatch,
        already_complete: false,
    })
}
