//! `authpulse bench`: pipeline throughput on generated data, with the rules as
//! sandboxed WASM and, on the same data in the same process, compiled natively.
//! The ratio is the sandbox's cost. Numbers go in docs/benchmarks.md.

use std::time::Instant;

use authpulse::generator::Generator;
use authpulse::pipeline::{Outputs, Pipeline, PipelineOptions, Summary};
use authpulse::policy::Policy;
use authpulse::rules::Engine;
use authpulse::sinks::{Collect, Discard};
use clap::Args;
use serde::Serialize;

use super::gen_cmd::GenArgs;
use super::run;

/// Measure events/s through parse + state + rules, WASM vs native; or, with
/// --tables, the whole file-to-Iceberg run.
///
/// Data is generated in memory first (not timed), so the numbers are the
/// pipeline's, not the generator's. Each variant runs --repeat times; the best
/// run counts.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Users of the generated data (computers scale with them).
    #[arg(long, default_value_t = 11_362)]
    pub users: u32,
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Lines to generate (default: the real set's daily volume x --days).
    #[arg(long)]
    pub events: Option<u64>,
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Instead: the whole `run` from a file into the Iceberg tables, against
    /// the same run without tables; reports the table writers' rows/s and
    /// MB/s and the commit latency (commits every --commit-interval).
    #[arg(long)]
    pub tables: bool,
    /// With --tables: how often the run commits while reading.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub commit_interval: std::time::Duration,
}

#[derive(Serialize)]
struct EngineResult {
    engine: String,
    best_s: f64,
    events_per_s: f64,
    alerts: u64,
}

pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    let gen_args = GenArgs {
        output: "-".into(),
        events: args.events,
        days: args.days,
        users: Some(args.users),
        computers: None,
        seed: args.seed,
        attacks: 4,
        truth: None,
        model_report: false,
    };
    eprintln!("generating data in memory ...");
    let generator = Generator::new(gen_args.config());
    let mut data = Vec::new();
    let stats = generator.write(&mut data, |_| {})?;
    eprintln!(
        "{} lines, {:.1} MiB",
        stats.lines,
        data.len() as f64 / (1 << 20) as f64
    );

    if args.tables {
        return bench_tables(&args, &data);
    }
    let policy = Policy::builtin();
    let mut results = Vec::new();
    let mut summaries: Vec<Summary> = Vec::new();
    for engine in [Engine::Native, Engine::Wasm] {
        let mut best = f64::INFINITY;
        let mut last = None;
        for _ in 0..args.repeat.max(1) {
            let (summary, seconds) = run_once(&policy, engine, args.batch_size, &data)?;
            best = best.min(seconds);
            last = Some(summary);
        }
        let summary = last.expect("ran at least once");
        results.push(EngineResult {
            engine: format!("{engine:?}").to_lowercase(),
            best_s: best,
            events_per_s: summary.events_read as f64 / best,
            alerts: summary.alerts,
        });
        summaries.push(summary);
    }
    anyhow::ensure!(
        summaries[0].risk_levels == summaries[1].risk_levels
            && summaries[0].alerts == summaries[1].alerts,
        "native and WASM runs disagree: {:?} vs {:?}",
        summaries[0].risk_levels,
        summaries[1].risk_levels
    );
    let (native, wasm) = (&results[0], &results[1]);
    let report = serde_json::json!({
        "lines": stats.lines,
        "bytes": data.len(),
        "users": args.users,
        "batch_size": args.batch_size,
        "engines": results,
        "wasm_overhead_pct": (native.events_per_s / wasm.events_per_s - 1.0) * 100.0,
    });
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "native {:.0} events/s, wasm {:.0} events/s, sandbox overhead {:.1}% (single thread, best of {})",
        native.events_per_s,
        wasm.events_per_s,
        (native.events_per_s / wasm.events_per_s - 1.0) * 100.0,
        args.repeat.max(1)
    );
    Ok(())
}

/// One timed run, from the first line to the summary. Module compilation and
/// instantiation, one-offs at start-up, are not timed.
fn run_once(
    policy: &Policy,
    engine: Engine,
    batch_size: usize,
    data: &[u8],
) -> anyhow::Result<(Summary, f64)> {
    let mut dead = Discard;
    let mut alerts = Collect::default();
    let mut scored = Discard;
    let pipeline = Pipeline::new(
        policy.clone(),
        PipelineOptions {
            batch_size,
            engine,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut scored,
            received: None,
        },
    )?;
    let started = Instant::now();
    let summary = pipeline.score_bytes(data)?;
    Ok((summary, started.elapsed().as_secs_f64()))
}

/// `bench --tables`: `run` end to end from a file, with and without tables.
fn bench_tables(args: &BenchArgs, data: &[u8]) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("authpulse-bench")
        .tempdir()?;
    let input = dir.path().join("events.csv");
    std::fs::write(&input, data)?;
    let mut best = [f64::INFINITY; 2];
    let mut tables = Vec::new();
    let mut summary = None;
    for round in 0..args.repeat.max(1) {
        for (i, lakehouse) in [false, true].into_iter().enumerate() {
            let output = dir.path().join(format!("out-{round}-{i}"));
            let mut run_args = run::RunArgs::with_input(input.clone(), output.clone());
            run_args.no_lakehouse = !lakehouse;
            run_args.no_policy_reload = true;
            run_args.batch_size = args.batch_size as u32;
            run_args.commit_interval = Some(args.commit_interval);
            let started = Instant::now();
            let outcome = run::score(&run_args)?;
            let seconds = started.elapsed().as_secs_f64();
            if seconds < best[i] {
                best[i] = seconds;
                if lakehouse {
                    tables = outcome.tables;
                }
            }
            summary = Some(outcome.summary);
            std::fs::remove_dir_all(&output)?;
        }
    }
    let events = summary.expect("ran at least once").events_read as f64;
    let per_table: Vec<_> = tables
        .iter()
        .map(|t| {
            let mut commits = t.commit_s.clone();
            commits.sort_by(f64::total_cmp);
            serde_json::json!({
                "table": t.table,
                "rows": t.rows,
                "data_files": t.data_files,
                "mib": t.bytes as f64 / (1 << 20) as f64,
                "writer_busy_s": t.busy_s,
                "rows_per_busy_s": if t.busy_s > 0.0 { t.rows as f64 / t.busy_s } else { 0.0 },
                "mib_per_busy_s": if t.busy_s > 0.0 { t.bytes as f64 / (1 << 20) as f64 / t.busy_s } else { 0.0 },
                "commits": commits.len(),
                "commit_p50_s": commits.get(commits.len() / 2).copied().unwrap_or(0.0),
                "commit_max_s": commits.last().copied().unwrap_or(0.0),
            })
        })
        .collect();
    let report = serde_json::json!({
        "lines": events,
        "commit_interval_s": args.commit_interval.as_secs_f64(),
        "events_per_s_without_tables": events / best[0],
        "events_per_s_with_tables": events / best[1],
        "tables_cost_pct": (1.0 - best[0] / best[1]) * 100.0,
        "tables": per_table,
    });
    println!("{}", serde_json::to_string(&report)?);
    eprintln!(
        "run from file: {:.0} events/s without tables, {:.0} with all five ({:.0}% slower), wall clock incl. start-up, best of {}",
        events / best[0],
        events / best[1],
        (1.0 - best[0] / best[1]) * 100.0,
        args.repeat.max(1)
    );
    Ok(())
}
