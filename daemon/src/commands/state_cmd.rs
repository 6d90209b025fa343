//! `authpulse state`: build the engine state from historical events (a warm
//! start for a first deployment), and look inside a state snapshot.

use std::path::PathBuf;

use anyhow::Context;
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::history::TableHistory;
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{Format, LineReader, MAX_LINE_DEFAULT, Source};
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions};
use authpulse_engine::rules::Engine;
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
            println!("{}", serde_json::to_string_pretty(&meta)?);
            Ok(())
        }
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let (policy, _) = run::resolve_policy(args.policy.as_deref())?;
    let stop = shell::stop_on_signals()?;
    let input = args.input_flag.as_deref().unwrap_or(&args.input);
    let (mut source, size, name): (Box<dyn Source>, Option<u64>, String) = match &args.from_tables {
        Some(dir) => {
            let config = args.catalog.config(dir)?;
            let warehouse = Warehouse::open_existing(&config).context("open the warehouse")?;
            let history = TableHistory::open(&warehouse).with_context(|| {
                format!("read the curated table of {}", warehouse.description())
            })?;
            tracing::info!(
                warehouse = warehouse.description(),
                days = history.days(),
                "building the state from the curated table"
            );
            (
                Box::new(history),
                None,
                format!("the curated table of {}", warehouse.description()),
            )
        }
        None => {
            let (reader, size) = shell::open_input(input)?;
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
    println!(
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
    );
    Ok(())
}
