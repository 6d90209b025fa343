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

/// Measure events/s through parse + state + rules, WASM vs native.
///
/// Data is generated in memory first (not timed), so the numbers are the
/// pipeline's, not the disk's. Each engine runs --repeat times; the best run counts.
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
