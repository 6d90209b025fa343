//! `authpulse run`: score events from a file or stdin.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use authpulse::event::TimeBase;
use authpulse::input::{Format, LineReader, MAX_LINE_DEFAULT};
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::aggregates::AggregateSink;
use authpulse::lakehouse::alerts::AlertTableSink;
use authpulse::lakehouse::curated::CuratedSink;
use authpulse::lakehouse::raw::RawSink;
use authpulse::lakehouse::writer::WriterStats;
use authpulse::pipeline::{self, Outputs, Pipeline, PipelineOptions, Summary};
use authpulse::policy::Policy;
use authpulse::reload::PolicyWatcher;
use authpulse::rules::Engine;
use authpulse::sinks::{
    AlertSink, Discard, JsonLinesFile, ReceivedSink, ScoredJsonLines, ScoredSink, Tee,
};
use clap::Args;

use super::catalog_args::CatalogArgs;
use super::progress;

/// Score authentication events and raise alerts.
///
/// Reads LANL CSV (`time,user,computer`) or JSON events (one per line) from a
/// file or stdin, to the end (or, with --follow, as the file grows until
/// Ctrl-C; a second Ctrl-C exits at once). Malformed and late records go to the dead-letter file with their line
/// number and reason. Alerts (one per user incident) go to the alerts file. At
/// exit one JSON summary line is printed on stdout; progress goes to stderr.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Input file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
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
    /// Add to a warehouse that already holds events from an earlier run.
    /// Without it such a run is refused: AuthPulse does not yet deduplicate
    /// across runs, so rerunning the same input would store its events twice.
    #[arg(long)]
    pub append: bool,
    /// Where the Iceberg tables go: by default OUTPUT/catalog.db and
    /// OUTPUT/warehouse/.
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

impl RunArgs {
    pub fn with_input(input: PathBuf, output: PathBuf) -> RunArgs {
        RunArgs {
            input,
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
            append: false,
            catalog: CatalogArgs::default(),
        }
    }

    pub fn alerts_path(&self) -> PathBuf {
        self.alerts
            .clone()
            .unwrap_or_else(|| self.output.join("alerts.jsonl"))
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| self.output.join("dead-letter.jsonl"))
    }
}

/// Refuses to add a second copy of events to a warehouse that already holds
/// committed events, unless `--append`.
fn refuse_rerun(warehouse: &Warehouse, args: &RunArgs) -> anyhow::Result<()> {
    if args.append {
        return Ok(());
    }
    if let Some((rows, snapshot)) = warehouse.committed_events()? {
        anyhow::bail!(
            "{} already holds {rows} scored events (snapshot {snapshot}); rerunning would store events twice. \
             Use a new --output (or --warehouse), or --append to add to it on purpose",
            warehouse.description()
        );
    }
    Ok(())
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
    println!("{}", serde_json::to_string(&outcome.summary)?);
    Ok(())
}

/// What a run did.
pub struct Outcome {
    pub summary: Summary,
    /// Per table written: rows, files, bytes, writer time, commit latencies.
    pub tables: Vec<WriterStats>,
}

/// Runs the pipeline as `args` say and returns its summary.
pub fn score(args: &RunArgs) -> anyhow::Result<Outcome> {
    let (policy, policy_path) = resolve_policy(args.policy.as_deref())?;
    tracing::info!(policy = %policy.origin, "policy loaded");
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("create {}", args.output.display()))?;

    // First Ctrl-C / SIGTERM: stop reading, score what was read, write results.
    // A second one exits at once (e.g. while blocked on an idle stdin).
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("install signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("install signal handler")?;
    }

    let (reader, size): (Box<dyn Read>, Option<u64>) = if args.input.as_os_str() == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file =
            File::open(&args.input).with_context(|| format!("open {}", args.input.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), if args.follow { None } else { size })
    };
    let mut lines = LineReader::new(reader, args.max_line_bytes);
    if args.follow {
        lines = lines.follow(Arc::clone(&stop));
    }

    let mut dead_letters = JsonLinesFile::new(args.dead_letter_path());
    let mut alerts = JsonLinesFile::new(args.alerts_path());
    let mut json_rows = args
        .scored
        .as_ref()
        .map(|path| ScoredJsonLines(JsonLinesFile::new(path)));
    let mut lakehouse = if args.no_lakehouse {
        None
    } else {
        let config = args.catalog.config(&args.output)?;
        let warehouse = Warehouse::open(&config).context("open the warehouse")?;
        refuse_rerun(&warehouse, args)?;
        tracing::info!(
            warehouse = warehouse.description(),
            "writing Iceberg tables"
        );
        let source = if args.input.as_os_str() == "-" {
            "stdin".to_string()
        } else {
            format!("file:{}", args.input.display())
        };
        Some((
            RawSink::start(&warehouse, &source).context("start the raw table writer")?,
            CuratedSink::start(&warehouse).context("start the curated table writer")?,
            AggregateSink::start(&warehouse).context("start the aggregate table writers")?,
            AlertTableSink::start(&warehouse).context("start the alerts table writer")?,
        ))
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
    let mut alert_sinks: Vec<&mut dyn AlertSink> = vec![&mut alerts];
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
            .or(args.follow.then_some(std::time::Duration::from_secs(5))),
    };
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
    tracing::info!(policy_version = pipeline.policy_version(), engine = ?args.engine, "scoring");
    if let Some(path) = policy_path.filter(|_| !args.no_policy_reload) {
        let watcher = PolicyWatcher::start(
            &path,
            pipeline.policy(),
            pipeline.policy_version(),
            args.engine,
            args.batch_size as usize,
        )?;
        pipeline.watch_policy(watcher);
        tracing::info!(policy = %path.display(), "watching the policy and its modules for changes (and SIGHUP)");
    }

    let bar = progress::bar(size, "bytes");
    pipeline::consume(&mut pipeline, &mut lines, &stop, |bytes, events| {
        bar.set_position(bytes);
        bar.set_message(format!("{events} events"));
    })
    .with_context(|| format!("read {}", args.input.display()))?;
    bar.finish_and_clear();
    let summary = pipeline.finish().context("write results")?;
    if summary.invalid + summary.late > 0 {
        tracing::warn!(
            invalid = summary.invalid,
            late = summary.late,
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
    Ok(Outcome { summary, tables })
}
