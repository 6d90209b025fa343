//! `authpulse bench`: pipeline throughput on generated data, with the rules as
//! sandboxed WASM and, on the same data in the same process, compiled natively.
//! The ratio is the sandbox's cost. Numbers go in docs/benchmarks.md.

use std::time::Instant;

use authpulse::run::RunSpec;
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::Format;
use authpulse_engine::pipeline::{DEFAULT_BATCH_SIZE, Outputs, Pipeline, PipelineOptions, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::sinks::{Collect, Discard};
use authpulse_generator::Generator;
use clap::Args;
use serde::Serialize;

use super::gen_cmd::{GenArgs, NetworkArgs};
use super::{bench_formats, bench_shares, latency, run};

/// Measure events/s through parse + state + rules, WASM vs native; or, with
/// --tables, the whole file-to-Iceberg run; or, with --reload, policy swaps
/// under load; or, with --latency, the time from an event's arrival to its
/// alert on a live stream; or, with --format, parsing another input format;
/// or, with --shares, what trading host shares costs a fleet worker.
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
    /// Events per call into the rules.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
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
    /// Instead: score the data while the policy file is rewritten every
    /// --reload-every (a weight change, written to a temporary file and
    /// renamed over the policy, as deploy tools do); reports the pause each
    /// swap caused on the hot path and the time from the change to the swap.
    #[arg(long)]
    pub reload: bool,
    /// With --reload: how often the policy changes.
    #[arg(long, default_value = "700ms", value_parser = humantime::parse_duration)]
    pub reload_every: std::time::Duration,
    /// Instead: stream events stamped with the current second into a pipe at
    /// --rate for --duration, with an account every few seconds whose logons
    /// open an alert; reports the wall-clock time from the triggering event's
    /// arrival to the alert's publication (written to the alerts file), and
    /// the pipeline's own part: from the watermark releasing the event to the
    /// publication.
    #[arg(long)]
    pub latency: bool,
    /// With --latency: events per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u32,
    /// With --latency: how long to stream.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// With --latency: the policy's allowed lateness for the run (the watermark
    /// holds every event this long; 5m in the default policy).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub lateness: std::time::Duration,
    /// Instead: the same events written in this input format (as large as
    /// real OCSF and Winlogbeat records; every tenth a failed logon from
    /// another computer), parsed alone and through the whole pipeline (WASM
    /// rules), beside the LANL three-field lines parsed alone in the same run.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Threads that parse lines ahead of the scoring thread, as `run
    /// --parse-threads` (default: as `run` chooses). With --format, the
    /// pipeline is measured both without them and with them (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    pub parse_threads: Option<u16>,
    /// Instead: what trading host shares costs a fleet worker's scoring
    /// thread. The events are split into four shards by user; the first
    /// shard's are scored alone and as a worker holding that shard that
    /// trades with the other three (their shares written once beforehand,
    /// into a temporary directory), as a backfill trades (ten times a second
    /// at most), alternately; reports both rates, the time each trade takes
    /// on the scoring thread and the size of each shard's share (native
    /// rules, no parse threads).
    #[arg(long)]
    pub shares: bool,
}

impl BenchArgs {
    fn parse_threads(&self) -> Option<usize> {
        self.parse_threads.map(usize::from)
    }
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
        record: authpulse_generator::Record::Lanl,
        output: "-".into(),
        events: args.events,
        days: args.days,
        users: Some(args.users),
        computers: None,
        seed: args.seed,
        campaigns: 4,
        benign: 0,
        kinds: Vec::new(),
        campaigns_from_day: None,
        truth: None,
        model_report: false,
        network: NetworkArgs::default(),
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

    if let Some(format) = args.format {
        return bench_format(&args, format, &data);
    }
    if args.tables {
        return bench_tables(&args, &data);
    }
    if args.shares {
        return bench_shares::bench_shares(&args, &data);
    }
    if args.reload {
        return bench_reload(&args, &data);
    }
    if args.latency {
        let background = std::str::from_utf8(&data)?
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(',').skip(1);
                Some((fields.next()?.to_string(), fields.next()?.to_string()))
            })
            .collect();
        let report = latency::bench_latency(latency::LatencyArgs {
            rate: args.rate,
            duration: args.duration,
            lateness: args.lateness,
            background,
        })?;
        outln!("{report}")?;
        eprintln!(
            "alert latency at {} events/s with {} s lateness: arrival to alert p50 {:.2} s, max {:.2} s \
             (the lateness, plus up to 1 s as event times are whole seconds); \
             watermark release to alert p50 {} ms, p95 {} ms, max {} ms ({} alerts)",
            args.rate,
            args.lateness.as_secs(),
            report["latency_s_p50"].as_f64().unwrap_or(f64::NAN),
            report["latency_s_max"].as_f64().unwrap_or(f64::NAN),
            report["pipeline_ms_p50"],
            report["pipeline_ms_p95"],
            report["pipeline_ms_max"],
            report["alerts_measured"]
        );
        return Ok(());
    }
    let policy = Policy::builtin();
    let mut results = Vec::new();
    let mut summaries: Vec<Summary> = Vec::new();
    for engine in [Engine::Native, Engine::Wasm] {
        let mut best = f64::INFINITY;
        let mut last = None;
        for _ in 0..args.repeat.max(1) {
            let (summary, seconds) = run_once(
                &policy,
                engine,
                args.batch_size,
                args.parse_threads(),
                &data,
            )?;
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
        "parse_threads": args.parse_threads(),
        "engines": results,
        "wasm_overhead_pct": (native.events_per_s / wasm.events_per_s - 1.0) * 100.0,
    });
    outln!("{}", serde_json::to_string(&report)?)?;
    eprintln!(
        "native {:.0} events/s, wasm {:.0} events/s, sandbox overhead {:.1}% (one scoring thread, parse threads {}, best of {})",
        native.events_per_s,
        wasm.events_per_s,
        (native.events_per_s / wasm.events_per_s - 1.0) * 100.0,
        args.parse_threads()
            .map_or("auto".to_string(), |n| n.to_string()),
        args.repeat.max(1)
    );
    Ok(())
}

/// `bench --format`: parsing alone and the whole pipeline on `format`'s
/// lines, and the LANL lines parsed alone for comparison.
fn bench_format(args: &BenchArgs, format: Format, lanl: &[u8]) -> anyhow::Result<()> {
    let base = TimeBase::DEFAULT;
    eprintln!("writing the events as {} ...", format.name());
    let data = bench_formats::convert(lanl, format, base);
    let best = |data: &[u8], format: Format| {
        (0..args.repeat.max(1))
            .map(|_| bench_formats::parse_only(data, format, base))
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .expect("ran at least once")
    };
    let (lines, valid, parse_s) = best(&data, format);
    anyhow::ensure!(
        valid == lines,
        "{} of {lines} lines did not parse",
        lines - valid
    );
    let (_, _, lanl_s) = best(lanl, Format::Csv);
    let policy = Policy::builtin();
    let mut pipeline_s = f64::INFINITY;
    let staged_threads = args.parse_threads().unwrap_or(1).max(1);
    let mut staged_s = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let (_, seconds) = run_once(&policy, Engine::Wasm, args.batch_size, Some(0), &data)?;
        pipeline_s = pipeline_s.min(seconds);
        let (_, seconds) = run_once(
            &policy,
            Engine::Wasm,
            args.batch_size,
            Some(staged_threads),
            &data,
        )?;
        staged_s = staged_s.min(seconds);
    }
    let report = serde_json::json!({
        "format": format.name(),
        "lines": lines,
        "bytes_per_line": data.len() as f64 / lines as f64,
        "parse_events_per_s": lines as f64 / parse_s,
        "parse_mb_per_s": data.len() as f64 / parse_s / 1e6,
        "csv_parse_events_per_s": lines as f64 / lanl_s,
        "pipeline_events_per_s": lines as f64 / pipeline_s,
        "parse_threads": staged_threads,
        "pipeline_staged_events_per_s": lines as f64 / staged_s,
    });
    outln!("{}", serde_json::to_string(&report)?)?;
    eprintln!(
        "{}: {:.0} bytes a line; parsing alone {:.0} events/s ({:.0} MB/s; LANL CSV {:.0} events/s); \
         the whole pipeline {:.0} events/s on one thread, {:.0} with {} parse thread(s) (best of {})",
        format.name(),
        report["bytes_per_line"].as_f64().unwrap_or(0.0),
        report["parse_events_per_s"].as_f64().unwrap_or(0.0),
        report["parse_mb_per_s"].as_f64().unwrap_or(0.0),
        report["csv_parse_events_per_s"].as_f64().unwrap_or(0.0),
        report["pipeline_events_per_s"].as_f64().unwrap_or(0.0),
        report["pipeline_staged_events_per_s"]
            .as_f64()
            .unwrap_or(0.0),
        staged_threads,
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
    parse_threads: Option<usize>,
    data: &[u8],
) -> anyhow::Result<(Summary, f64)> {
    let mut sinks = BenchSinks::default();
    let pipeline = sinks.pipeline(policy, engine, batch_size, parse_threads)?;
    let started = Instant::now();
    let summary = pipeline.score_bytes(data)?;
    Ok((summary, started.elapsed().as_secs_f64()))
}

/// Where a benchmark's pipeline sends its results: alerts are kept (to
/// compare runs), everything else is dropped.
#[derive(Default)]
pub(super) struct BenchSinks {
    dead: Discard,
    alerts: Collect,
    scored: Discard,
}

impl BenchSinks {
    pub(super) fn pipeline(
        &mut self,
        policy: &Policy,
        engine: Engine,
        batch_size: usize,
        parse_threads: Option<usize>,
    ) -> anyhow::Result<Pipeline<'_>> {
        Ok(Pipeline::new(
            policy.clone(),
            PipelineOptions {
                batch_size,
                engine,
                parse_threads,
                ..PipelineOptions::default()
            },
            Outputs {
                dead_letters: &mut self.dead,
                alerts: &mut self.alerts,
                scored: &mut self.scored,
                received: None,
            },
        )?)
    }
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
            let mut spec = RunSpec::of_file(&input, &output);
            if !lakehouse {
                spec.tables = None;
            }
            spec.policy_reload = false;
            spec.pipeline.batch_size = args.batch_size;
            spec.pipeline.parse_threads = args.parse_threads();
            spec.pipeline.commit_interval = Some(args.commit_interval);
            let started = Instant::now();
            let outcome = run::score_spec(&spec)?;
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
    outln!("{}", serde_json::to_string(&report)?)?;
    eprintln!(
        "run from file: {:.0} events/s without tables, {:.0} with all tables ({:.0}% slower), wall clock incl. start-up, best of {}",
        events / best[0],
        events / best[1],
        (1.0 - best[0] / best[1]) * 100.0,
        args.repeat.max(1)
    );
    Ok(())
}

/// `bench --reload`: the pipeline scores the data while another thread keeps
/// changing the policy file under a [`PolicyWatcher`].
fn bench_reload(args: &BenchArgs, data: &[u8]) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("authpulse-bench")
        .tempdir()?;
    let path = dir.path().join("policies.yaml");
    let variants = [
        authpulse_engine::policy::DEFAULT_POLICY_YAML.to_string(),
        authpulse_engine::policy::DEFAULT_POLICY_YAML.replacen("weight: 1.0", "weight: 1.5", 1),
    ];
    std::fs::write(&path, &variants[0])?;
    let policy = Policy::load(&path)?;

    let (no_reload, _) = run_once(
        &policy,
        Engine::Wasm,
        args.batch_size,
        args.parse_threads(),
        data,
    )?;
    let baseline_eps = no_reload.events_per_s;

    let mut sinks = BenchSinks::default();
    let mut pipeline =
        sinks.pipeline(&policy, Engine::Wasm, args.batch_size, args.parse_threads())?;
    let watcher = authpulse_engine::reload::PolicyWatcher::start(
        &path,
        &policy,
        pipeline.policy_version(),
        Engine::Wasm,
        args.batch_size,
    )?;
    pipeline.watch_policy(watcher);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path, every) = (stop.clone(), path.clone(), args.reload_every);
        std::thread::spawn(move || -> std::io::Result<u32> {
            let mut writes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(every);
                writes += 1;
                let staged = path.with_extension("yaml.new");
                std::fs::write(&staged, &variants[writes as usize % 2])?;
                std::fs::rename(&staged, &path)?;
            }
            Ok(writes)
        })
    };
    let started = Instant::now();
    let mut lines =
        authpulse_engine::input::LineReader::new(data, authpulse_engine::input::MAX_LINE_DEFAULT);
    let never = std::sync::atomic::AtomicBool::new(false);
    authpulse_engine::pipeline::consume(&mut pipeline, &mut lines, &never, |_, _| {})?;
    let timings = pipeline.reload_timings().clone();
    let summary = pipeline.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().expect("writer thread")?;
    anyhow::ensure!(
        summary.events_scored == no_reload.events_scored,
        "reloads changed the number of events scored: {} vs {}",
        summary.events_scored,
        no_reload.events_scored
    );

    let stats = |values: &[u64]| {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        (at(0.5), at(1.0))
    };
    let (pause_p50, pause_max) = stats(&timings.pause_us);
    let (effect_p50, effect_max) = stats(&timings.effective_ms);
    let events_per_s = summary.events_read as f64 / seconds;
    let report = serde_json::json!({
        "lines": summary.events_read,
        "policy_writes": writes,
        "reloads": summary.policy_reloads,
        "refused": summary.policy_reloads_refused,
        "pause_us_p50": pause_p50,
        "pause_us_max": pause_max,
        "effective_ms_p50": effect_p50,
        "effective_ms_max": effect_max,
        "events_per_s_while_reloading": events_per_s,
        "events_per_s_without_reloads": baseline_eps,
    });
    outln!("{}", serde_json::to_string(&report)?)?;
    eprintln!(
        "{} reloads while scoring {} events: hot-path pause p50 {pause_p50} us, max {pause_max} us; \
         change to effect p50 {effect_p50} ms, max {effect_max} ms; {events_per_s:.0} events/s \
         ({baseline_eps:.0} without reloads)",
        summary.policy_reloads, summary.events_read
    );
    Ok(())
}
