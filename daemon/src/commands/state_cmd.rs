//! `authpulse state`: build the engine state from historical events (a warm
//! start for a first deployment), look inside a state snapshot, and cut it
//! by shard or join parts (moving shards between workers).

use std::path::{Path, PathBuf};

use anyhow::Context;
use authpulse::aws::AwsSettings;
use authpulse::aws::shards::{self, HashRange};
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::history::HistoryDays;
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{Format, LineReader, MAX_LINE_DEFAULT, Source};
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions};
use authpulse_engine::rules::Engine;
use authpulse_engine::shards::Snapshot;
use authpulse_engine::sinks::Discard;
use authpulse_engine::snapshot;
use clap::{Args, Subcommand};

use super::catalog_args::CatalogArgs;
use super::{progress, run, shell};

#[derive(Subcommand)]
pub enum StateCommand {
    /// Build the state from historical events, for `run --warm-start`.
    ///
    /// Reads the history (LANL CSV or JSON events, as `run` reads them, or
    /// with --from-tables the curated table a deployment already stores)
    /// through the whole pipeline with the policy's rules, so that windows,
    /// device history, host popularity, each user's and computer's own
    /// baselines and entity risk are what they would be after a live run
    /// over it, but writes no table, no alert and no dead letter: only the
    /// state snapshot. A first deployment started with it is not blind for
    /// the rules' burn-in. The history should end where the live input
    /// begins; live events older than its last minutes are late.
    Build(Box<BuildArgs>),
    /// Print what a state snapshot holds (JSON).
    Inspect {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Cut from a snapshot the state of some shards' users, for a worker
    /// that takes those shards over (`run --warm-start`).
    ///
    /// Kinesis routes a record by the MD5 of its partition key; with the
    /// user name as the key (as `replay` sends), a user's events, and so
    /// the user's window, device history, baselines, entity risk, open
    /// incidents and held events, all belong to one shard. The part keeps
    /// the whole computer-side state (host popularity and computers' risk
    /// cannot be cut by shard), no open aggregate windows, and the counters
    /// of the run it was cut from.
    Split(SplitArgs),
    /// Join snapshot parts into one, for a worker that takes over the
    /// shards of several (`run --warm-start`).
    ///
    /// Users' state is taken from every part (a user with state in two
    /// parts is an error); computer-side state is the first part's, and
    /// another part's only for computers the ones before it never saw.
    /// The parts must have the same base date and rules.
    Merge {
        /// The parts, the first one receiving the others.
        #[arg(required = true, num_args = 2..)]
        parts: Vec<PathBuf>,
        /// Where to write the joined snapshot.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct SplitArgs {
    /// The snapshot to cut from (`OUTPUT/state/checkpoint-*.apstate`, or
    /// one `state build` wrote).
    pub file: PathBuf,
    /// Where to write the part.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Kinesis stream whose shards `--shard` names (their hash-key ranges
    /// are listed from it).
    #[arg(long, requires = "shards")]
    pub stream: Option<String>,
    /// A shard whose users the part keeps (repeat it for several).
    #[arg(long = "shard", value_name = "SHARD_ID", requires = "stream")]
    pub shards: Vec<String>,
    /// Keep the users whose partition key hashes into this range (decimal
    /// `START-END`, as ListShards gives a shard's), instead of naming
    /// shards of a stream. Repeat it for several.
    #[arg(
        long = "hash-range",
        value_name = "START-END",
        conflicts_with = "stream"
    )]
    pub hash_ranges: Vec<HashRange>,
    /// AWS region. Default: AWS_REGION, then the profile.
    #[arg(long)]
    pub aws_region: Option<String>,
    /// Endpoint of Kinesis (a VPC endpoint or a local server). Default:
    /// AWS_ENDPOINT_URL_KINESIS, then AWS_ENDPOINT_URL, then AWS's.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Historical events: a file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The same as the positional FILE (as `run --input`).
    #[arg(
        long = "input",
        short = 'i',
        value_name = "FILE",
        conflicts_with = "input"
    )]
    pub input_flag: Option<PathBuf>,
    /// Where to write the state snapshot.
    #[arg(long, short)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Policy file (its rules build the entity risk). Default:
    /// ./policies.yaml if present, else the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339); the live run
    /// must use the same.
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// Lines longer than this are skipped as invalid.
    #[arg(long, default_value_t = MAX_LINE_DEFAULT)]
    pub max_line_bytes: usize,
    /// Build from the events a deployment already stores instead of a file:
    /// the curated table of the embedded warehouse in DIR (`run --output`),
    /// or of the one the catalog options name (with --catalog glue, DIR is
    /// not used). Read a day at a time, in event-time order.
    #[arg(long, value_name = "DIR", conflicts_with = "input_flag")]
    pub from_tables: Option<PathBuf>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

pub fn execute(cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::Build(args) => build(&args),
        StateCommand::Inspect { file } => {
            let mut input =
                std::fs::File::open(&file).with_context(|| format!("open {}", file.display()))?;
            let meta = snapshot::read_meta(&mut input)
                .with_context(|| format!("read {}", file.display()))?;
            outln!("{}", serde_json::to_string_pretty(&meta)?)?;
            Ok(())
        }
        StateCommand::Split(args) => split(&args),
        StateCommand::Merge { parts, output } => merge(&parts, &output),
    }
}

fn read_snapshot(path: &Path) -> anyhow::Result<Snapshot> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    Snapshot::read(&mut std::io::BufReader::new(file))
        .with_context(|| format!("read {}", path.display()))
}

/// Writes `snapshot` to `path` and prints what it holds.
fn write_snapshot(
    snapshot: &Snapshot,
    path: &Path,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let bytes = snapshot::write_atomically(path, |out| snapshot.write_to(out))
        .with_context(|| format!("write {}", path.display()))?;
    let meta = snapshot.meta();
    let mut line = serde_json::json!({
        "state": path,
        "bytes": bytes,
        "users_with_state": snapshot.users().count(),
        "computers": meta.computers,
        "device_pairs": meta.device_pairs,
        "latest_event_time": meta.latest_event_time,
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    outln!("{line}")?;
    Ok(())
}

fn split(args: &SplitArgs) -> anyhow::Result<()> {
    let ranges: Vec<HashRange> = match &args.stream {
        Some(stream) => {
            let aws = AwsSettings {
                region: args.aws_region.clone(),
                endpoint: args.endpoint.clone(),
            };
            let listed = shards::list_ranges_blocking(&aws, stream).map_err(anyhow::Error::msg)?;
            args.shards
                .iter()
                .map(|id| {
                    listed
                        .iter()
                        .find(|s| &s.id == id)
                        .map(|s| s.range)
                        .ok_or_else(|| {
                            let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
                            anyhow::anyhow!(
                                "stream `{stream}` has no shard `{id}` (its shards: {})",
                                ids.join(", ")
                            )
                        })
                })
                .collect::<anyhow::Result<_>>()?
        }
        None if args.hash_ranges.is_empty() => {
            anyhow::bail!("say whose state to keep: --stream with --shard, or --hash-range")
        }
        None => args.hash_ranges.clone(),
    };
    let whole = read_snapshot(&args.file)?;
    let users_before = whole.users().count();
    let part = whole.split(|user| {
        let hash = shards::partition_hash(user);
        ranges.iter().any(|range| range.contains(hash))
    });
    write_snapshot(
        &part,
        &args.output,
        serde_json::json!({ "users_with_state_before": users_before }),
    )
}

fn merge(parts: &[PathBuf], output: &Path) -> anyhow::Result<()> {
    let mut joined = read_snapshot(&parts[0])?;
    for path in &parts[1..] {
        joined = joined
            .merge(read_snapshot(path)?)
            .with_context(|| format!("join {}", path.display()))?;
    }
    write_snapshot(&joined, output, serde_json::json!({ "parts": parts.len() }))
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let (policy, _) = run::resolve_policy(args.policy.as_deref())?;
    let stop = shell::stop_on_signals()?;
    let input = args.input_flag.as_deref().unwrap_or(&args.input);
    let (mut source, size, name): (Box<dyn Source>, Option<u64>, String) = match &args.from_tables {
        Some(dir) => {
            let config = args.catalog.config(dir)?;
            let warehouse = Warehouse::open_existing(&config).context("open the warehouse")?;
            let history = HistoryDays::open(&warehouse).with_context(|| {
                format!("read the curated table of {}", warehouse.description())
            })?;
            tracing::info!(
                warehouse = warehouse.description(),
                days = history.days(),
                "building the state from the curated table"
            );
            (
                Box::new(history.reader()),
                None,
                format!("the curated table of {}", warehouse.description()),
            )
        }
        None => {
            let (reader, size) = authpulse::sources::file::open_input(input)?;
            (
                Box::new(LineReader::new(reader, args.max_line_bytes)),
                size,
                input.display().to_string(),
            )
        }
    };
    let (mut dead_letters, mut alerts, mut scored) = (Discard, Discard, Discard);
    let mut pipeline = Pipeline::new(
        policy,
        PipelineOptions {
            format: args.format,
            time_base: args.base_date,
            engine: Engine::Wasm,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead_letters,
            alerts: &mut alerts,
            scored: &mut scored,
            received: None,
        },
    )?;
    let bar = progress::bar(size, "bytes");
    pipeline::consume(&mut pipeline, source.as_mut(), &stop, |pipeline, source| {
        bar.set_position(source.bytes_consumed());
        bar.set_message(format!("{} events", pipeline.events_read()));
    })
    .with_context(|| format!("read {name}"))?;
    bar.finish_and_clear();
    // Every event of the history counts, the last minutes' too.
    pipeline.end_of_input().context("score the last events")?;
    let started = std::time::Instant::now();
    let (meta, bytes) = snapshot::write_atomically(&args.output, |out| {
        let mut out = out;
        pipeline.write_snapshot(&mut out)
    })
    .with_context(|| format!("write {}", args.output.display()))?;
    tracing::info!(
        path = %args.output.display(),
        bytes,
        write_ms = started.elapsed().as_millis() as u64,
        "state snapshot written"
    );
    outln!(
        "{}",
        serde_json::json!({
            "state": args.output,
            "bytes": bytes,
            "events_read": meta.events_read,
            "events_scored": meta.events_scored,
            "users": meta.users,
            "computers": meta.computers,
            "device_pairs": meta.device_pairs,
            "latest_event_time": meta.latest_event_time,
        })
    )?;
    Ok(())
}
