//! `authpulse rules backtest`: a policy change tried on stored history
//! before it is enabled.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use authpulse::backtest::{self, Report, Run};
use authpulse::incidents::IncidentLog;
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::history::{HistoryDays, TableHistory};
use authpulse_engine::event::TimeBase;
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::sinks::Discard;
use clap::Args;

use super::catalog_args::CatalogArgs;
use super::{progress, run, shell};

/// Replay the stored history through a candidate policy and the current
/// one, side by side, and show what would change.
///
/// Reads the curated table of a deployment (the embedded warehouse under
/// --output, or Glue and S3 with the catalog options) once, day by day, in
/// event order, and scores it twice, on two threads: with --policy (the
/// candidate) and with --current (default: ./policies.yaml if present, else
/// the built-in policy). Every event of the history builds the state; the
/// incidents opened from --from to the end of --until are compared: per day,
/// the incidents only one of the policies raises (an incident is the
/// other's too when the other has one on the same user or computer over
/// overlapping events), and each rule's hits and incidents. Nothing is
/// written to the tables.
#[derive(Args, Debug)]
pub struct BacktestArgs {
    /// The candidate policy.
    #[arg(long)]
    pub policy: PathBuf,
    /// The policy to compare with. Default: ./policies.yaml if present,
    /// else the built-in policy.
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// The directory `run --output` wrote (with the embedded catalog: holds
    /// catalog.db and warehouse/).
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// First day judged (YYYY-MM-DD, UTC). Default: the history's first.
    #[arg(long, value_name = "DAY", value_parser = TimeBase::parse)]
    pub from: Option<TimeBase>,
    /// Last day judged (YYYY-MM-DD, UTC, whole). Default: the history's last.
    #[arg(long, value_name = "DAY", value_parser = TimeBase::parse)]
    pub until: Option<TimeBase>,
    /// Run the rules as sandboxed WASM or natively (built-in rules only).
    /// Default: natively when both policies use only built-in modules (the
    /// same verdicts, faster), else WASM.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// How many incidents of each "only" list to print (all are in --json).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

const DAY: i64 = 86_400;

pub fn execute(args: BacktestArgs) -> anyhow::Result<()> {
    let candidate = Policy::load(&args.policy)?;
    let (current, current_path) = run::resolve_policy(args.current.as_deref())?;
    let current_name =
        current_path.map_or_else(|| current.origin.clone(), |p| p.display().to_string());
    let config = args.catalog.config(&args.output)?;
    let warehouse = Warehouse::open_existing(&config).context("open the warehouse")?;
    let history = HistoryDays::open(&warehouse)
        .with_context(|| format!("read the curated table of {}", warehouse.description()))?;
    let (first_day, days) = (history.first_day(), history.days());
    anyhow::ensure!(
        days > 0,
        "the curated table of {} holds no events",
        warehouse.description()
    );
    let from = args.from.map_or(first_day * DAY, |t| t.to_unix(0));
    let until = args
        .until
        .map_or((first_day + days) * DAY, |t| t.to_unix(0) + DAY);
    anyhow::ensure!(from < until, "--from must not be after --until");
    let engine = args
        .engine
        .unwrap_or_else(|| Engine::fastest_for(&[&current, &candidate]));
    eprintln!(
        "backtest over {} days of the curated table of {}: {} against {}, rules {} ...",
        days,
        warehouse.description(),
        args.policy.display(),
        current_name,
        match engine {
            Engine::Native => "native",
            Engine::Wasm => "as WASM",
        }
    );

    let stop = shell::stop_on_signals()?;
    let bar = progress::bar(None, "events");
    let score =
        |policy: &Policy, history: TableHistory| -> anyhow::Result<(Summary, IncidentLog)> {
            score_history(policy, history, engine, &stop, &bar)
        };
    // One pass over the table feeds both sides.
    let [current_history, candidate_history]: [TableHistory; 2] = history
        .share(2)
        .try_into()
        .map_err(|_| anyhow::anyhow!("two readers of the table"))?;
    let (current_run, candidate_run) = std::thread::scope(|scope| {
        let current = scope.spawn(|| score(&current, current_history));
        let candidate = score(&candidate, candidate_history);
        let current = current
            .join()
            .map_err(|_| anyhow::anyhow!("the current policy's thread panicked"))?;
        anyhow::Ok((current, candidate))
    })?;
    bar.finish_and_clear();
    let (current_summary, current_log) = current_run.context("score with the current policy")?;
    let (candidate_summary, candidate_log) =
        candidate_run.context("score with the candidate policy")?;
    let candidate_name = args.policy.display().to_string();
    let report = backtest::compare(
        &Run {
            policy: &current_name,
            summary: &current_summary,
            incidents: &current_log,
        },
        &Run {
            policy: &candidate_name,
            summary: &candidate_summary,
            incidents: &candidate_log,
        },
        from,
        until,
    );
    let mut out = super::stdout();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&mut out, &report, args.top)?;
    }
    Ok(())
}

/// Scores the whole history with `policy`, collecting its incidents.
fn score_history(
    policy: &Policy,
    mut history: TableHistory,
    engine: Engine,
    stop: &AtomicBool,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(Summary, IncidentLog)> {
    let mut incidents = IncidentLog::default();
    let (mut dead_letters, mut scored) = (Discard, Discard);
    let mut pipeline = Pipeline::new(
        policy.clone(),
        PipelineOptions {
            engine,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead_letters,
            alerts: &mut incidents,
            scored: &mut scored,
            received: None,
        },
    )?;
    let mut reported = 0;
    pipeline::consume(&mut pipeline, &mut history, stop, |pipeline, _| {
        let read = pipeline.events_read();
        bar.inc(read - reported);
        reported = read;
    })
    .context("read the curated table")?;
    pipeline.end_of_input().context("score the last events")?;
    let summary = pipeline.finish().context("finish scoring")?;
    Ok((summary, incidents))
}

fn print_report(out: &mut impl Write, r: &Report, top: usize) -> std::io::Result<()> {
    writeln!(out, "incidents opened from {} to {}", r.from, r.until)?;
    for (name, side) in [("current", &r.current), ("candidate", &r.candidate)] {
        writeln!(
            out,
            "  {name:<9} {} (policy {}): {} incidents, {} events scored",
            side.policy, side.policy_version, side.incidents, side.events_scored
        )?;
    }
    writeln!(out, "\n| day | current | candidate |\n|---|---:|---:|")?;
    for day in &r.days {
        writeln!(out, "| {} | {} | {} |", day.day, day.current, day.candidate)?;
    }
    writeln!(
        out,
        "\n| rule | hits (current) | hits (candidate) | incidents (current) | incidents (candidate) |\n|---|---:|---:|---:|---:|"
    )?;
    let mut rules: Vec<&String> = r
        .current
        .rule_hits
        .keys()
        .chain(r.candidate.rule_hits.keys())
        .collect();
    rules.sort();
    rules.dedup();
    let count = |map: &std::collections::BTreeMap<String, u64>, rule: &str| {
        map.get(rule).map_or("-".to_string(), u64::to_string)
    };
    for rule in rules {
        writeln!(
            out,
            "| {rule} | {} | {} | {} | {} |",
            count(&r.current.rule_hits, rule),
            count(&r.candidate.rule_hits, rule),
            count(&r.current.incidents_by_rule, rule),
            count(&r.candidate.incidents_by_rule, rule),
        )?;
    }
    if r.identical() {
        writeln!(out, "\nboth policies raise the same incidents")?;
    }
    for (label, list) in [
        ("only the current policy raises", &r.only_current),
        ("only the candidate raises", &r.only_candidate),
    ] {
        if list.is_empty() {
            continue;
        }
        writeln!(out, "\n{label} ({}):", list.len())?;
        for incident in list.iter().take(top) {
            writeln!(
                out,
                "  {} {} {}: {} [{}]",
                incident.opened,
                incident.entity_type,
                incident.entity_id,
                incident.summary,
                incident.rules.join(", ")
            )?;
        }
        if list.len() > top {
            writeln!(out, "  ... {} more (--top, --json)", list.len() - top)?;
        }
    }
    Ok(())
}
