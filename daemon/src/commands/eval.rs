//! `authpulse eval`: detection quality on labelled campaigns, against a naive
//! baseline, at any scale.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use authpulse::eval::{AlertLog, NaiveBaseline, Scorecard, score};
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{LineReader, MAX_LINE_DEFAULT};
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::sinks::Discard;
use authpulse_generator::{
    Campaign, CampaignPlan, Generator, GeneratorConfig, Kind, LANL_COMPUTERS, LANL_USERS, Record,
};
use clap::Args;
use serde::Serialize;

use super::gen_cmd::NetworkArgs;
use super::{progress, run};

/// Measure detection: hide labelled campaigns in generated activity, score
/// it, and report recall per kind, false alerts per day, precision and time
/// to detect, beside a naive baseline that alerts on every new device.
///
/// By default: the LANL-sized organisation (11,362 users, 22,284 computers)
/// over 14 days, the first 7 a burn-in with no attacks and no counting;
/// 84 attacks, 6 of each kind: the six the built-in rules were first written
/// for (spray, burst, chain, stealth, rare, fan_in) and eight more
/// (multi_day, off_hours, slow_fan_in, outsider, service_pivot,
/// password_spray, foothold_fan_out, service_at_desktop); and 14
/// benign cases, 2 of each kind, which must stay quiet: rollout,
/// roaming_admin, new_hire and migration_morning after the burn-in, and the
/// habits help_desk, desktop_support and nightly_scanner, which run from the
/// first day so that history shows them. Sizes and pacing are random within
/// each kind's ranges (docs/generator.md); the same seed gives the same
/// data. Data streams from the generator into the pipeline: nothing is
/// written to disk.
///
/// With --record full the data is the full LANL record (where each logon
/// came from, its logon type and package, failed logons), and the same
/// logons are evaluated as `time,user,computer` lines too: the report shows
/// both side by side, so what the richer fields are worth is measured on
/// the same seed.
///
/// With --input and --truth, evaluates a data set and its ground truth
/// instead: a file as `authpulse gen --truth` writes, or LANL's red-team
/// file (`time,user@domain,source,destination`), whose labelled logons are
/// grouped per account into campaigns (a day's quiet ends one).
///
/// An alert that detects no attack is false, unless it is on an attack's
/// account or computer within three days after the attack (the rules'
/// longest look-back still holds the attack): those are reported apart.
///
/// The default policy was tuned on seeds 1-4; quote results on others
/// (docs/detection.md uses 11-13).
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Policy file. Default: ./policies.yaml if present, else the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Run the rules as sandboxed WASM (default) or natively (built-in rules only).
    #[arg(long, value_enum, default_value_t = Engine::Wasm)]
    pub engine: Engine,
    /// Evaluate this file (any input format `run` reads, e.g. the full LANL
    /// `auth.txt`) instead of generated data.
    #[arg(long, requires = "truth")]
    pub input: Option<PathBuf>,
    /// The ground truth of --input: JSON lines as `gen --truth` writes, or
    /// LANL's `redteam.txt`.
    #[arg(long, requires = "input")]
    pub truth: Option<PathBuf>,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// Print the report as one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// The labelled data an evaluation generates: the organisation, the days,
/// and the campaigns hidden in them (shared by `eval` and `tune`).
#[derive(Args, Debug, Clone)]
pub struct ScenarioArgs {
    /// Users (computers scale with them unless --computers is given).
    #[arg(long, default_value_t = LANL_USERS)]
    pub users: u32,
    /// Computers (default: scaled from --users at the LANL ratio, 1.96 per user).
    #[arg(long)]
    pub computers: Option<u32>,
    /// Days of activity.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Days before any campaign; alerts in them are reported apart, not
    /// counted as false.
    #[arg(long, default_value_t = 7)]
    pub burn_in_days: u32,
    /// Attacks to hide, cycling through the attack kinds (of --kinds).
    #[arg(long, default_value_t = 84)]
    pub campaigns: u32,
    /// Benign hard cases to hide, cycling through the benign kinds.
    #[arg(long, default_value_t = 14)]
    pub benign: u32,
    /// Only these kinds, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<Kind>,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// The record generated: `lanl` (`time,user,computer`) or `full` (the
    /// nine-field LANL 2015 record, failed logons included).
    #[arg(long, default_value_t = Record::Lanl)]
    pub record: Record,
}

impl ScenarioArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.days >= 1, "--days must be at least 1");
        anyhow::ensure!(
            self.burn_in_days < self.days,
            "--burn-in-days ({}) must be less than --days ({})",
            self.burn_in_days,
            self.days
        );
        Ok(())
    }

    pub fn computers(&self) -> u32 {
        self.computers.unwrap_or_else(|| {
            ((f64::from(self.users) * f64::from(LANL_COMPUTERS) / f64::from(LANL_USERS)).round()
                as u32)
                .max(1)
        })
    }
}

/// What `eval` measured.
#[derive(Serialize)]
pub struct Report {
    /// The record scored: `lanl` or `full`.
    pub record: String,
    pub users: u32,
    pub computers: u32,
    pub days: u32,
    pub burn_in_days: u32,
    /// The generator's network shape (1 and 1 are the LANL fit).
    pub density: f64,
    pub sharing: f64,
    pub seed: Option<u64>,
    pub policy: String,
    pub policy_version: String,
    pub events_scored: u64,
    pub elapsed_s: f64,
    /// Distinct user/computer pairs, and the detection state's heap memory
    /// at the end (bytes).
    pub device_pairs: u64,
    pub state_bytes: u64,
    pub scorecard: Scorecard,
    /// Alert publications (opens, updates and closes).
    pub publications: u64,
}

/// A full record's evaluation beside the same logons as `time,user,computer`.
#[derive(Serialize)]
struct SideBySide {
    lanl: Report,
    full: Report,
}

pub fn execute(args: EvalArgs) -> anyhow::Result<()> {
    args.scenario.validate()?;
    let (policy, _) = run::resolve_policy(args.policy.as_deref())?;
    let compare = args.scenario.record == Record::Full && args.input.is_none();
    let json = if compare {
        let mut lanl_args = args.clone();
        lanl_args.scenario.record = Record::Lanl;
        let both = SideBySide {
            lanl: evaluate(&lanl_args, &policy)?,
            full: evaluate(&args, &policy)?,
        };
        let json = serde_json::to_string_pretty(&both)?;
        if !args.json {
            let mut out = super::stdout();
            print_report(&mut out, &both.lanl)?;
            writeln!(out)?;
            print_report(&mut out, &both.full)?;
            writeln!(out)?;
            print_side_by_side(&mut out, &both.lanl, &both.full)?;
        }
        json
    } else {
        let report = evaluate(&args, &policy)?;
        if !args.json {
            print_report(&mut super::stdout(), &report)?;
        }
        serde_json::to_string_pretty(&report)?
    };
    if let Some(path) = &args.report {
        std::fs::write(path, json.clone() + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    if args.json {
        writeln!(super::stdout(), "{json}")?;
    }
    Ok(())
}

/// Recall per kind, false alerts and precision of the two records.
fn print_side_by_side(out: &mut impl Write, lanl: &Report, full: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "the same logons, as time,user,computer and as the full record:\n"
    )?;
    writeln!(
        out,
        "| kind | campaigns | time,user,computer | full record |"
    )?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for (a, b) in lanl.scorecard.kinds.iter().zip(&full.scorecard.kinds) {
        writeln!(
            out,
            "| {} | {} | {}/{} | {}/{} |",
            a.kind, a.campaigns, a.detected, a.campaigns, b.detected, b.campaigns
        )?;
    }
    let (a, b) = (&lanl.scorecard.authpulse, &full.scorecard.authpulse);
    writeln!(
        out,
        "| **all attacks** | {} | {}/{} ({:.0}%) | {}/{} ({:.0}%) |",
        a.campaigns,
        a.detected,
        a.campaigns,
        a.recall * 100.0,
        b.detected,
        b.campaigns,
        b.recall * 100.0
    )?;
    writeln!(
        out,
        "| false alerts / day | | {:.2} | {:.2} |",
        a.false_alerts_per_day, b.false_alerts_per_day
    )?;
    writeln!(
        out,
        "| alerts after an attack, on its entities (not false) | | {} | {} |",
        a.after_attack, b.after_attack
    )?;
    writeln!(
        out,
        "| precision | | {:.2} | {:.2} |",
        a.precision, b.precision
    )?;
    let benign = |r: &Report| -> u32 { r.scorecard.benign.iter().map(|b| b.alerted).sum() };
    writeln!(
        out,
        "| benign cases alerted | | {} | {} |",
        benign(lanl),
        benign(full)
    )
}

/// Runs the evaluation `args` describe with `policy` (not `args.policy`).
pub fn evaluate(args: &EvalArgs, policy: &Policy) -> anyhow::Result<Report> {
    let scenario = &args.scenario;
    let policy_origin = policy.origin.clone();
    let computers = scenario.computers();
    let stop = AtomicBool::new(false);
    let started = Instant::now();

    let (campaigns, summary, log, naive_report) = match (&args.input, &args.truth) {
        (Some(input), Some(truth)) => {
            let campaigns = read_truth(truth)?;
            let file =
                std::fs::File::open(input).with_context(|| format!("open {}", input.display()))?;
            let size = file.metadata().ok().map(|m| m.len());
            let mut lines = LineReader::new(std::io::BufReader::new(file), MAX_LINE_DEFAULT);
            let (summary, log, naive) =
                score_stream(args, policy, &campaigns, &mut lines, size, &stop)?;
            (campaigns, summary, log, naive)
        }
        _ => {
            let config = GeneratorConfig {
                users: scenario.users,
                computers,
                days: scenario.days,
                events: None,
                seed: args.seed,
                campaigns: CampaignPlan {
                    attacks: scenario.campaigns,
                    benign: scenario.benign,
                    kinds: scenario.kinds.clone(),
                    from_day: scenario.burn_in_days,
                },
                network: scenario.network.network(),
            };
            eprintln!(
                "generating {} days for {} users and {} computers (seed {}, {} record) and scoring as it comes ...",
                scenario.days, scenario.users, computers, args.seed, scenario.record
            );
            let generator = Generator::new(config);
            let record = scenario.record;
            let campaigns = generator.campaigns(record);
            // The generator writes into a pipe on its own thread while the
            // pipeline reads the other end: both cores work, nothing lands on disk.
            let (reader, mut writer) = std::io::pipe().context("create a pipe")?;
            let producer = std::thread::spawn(move || -> std::io::Result<()> {
                let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
                generator.write_as(&mut buffered, record, |_| {})?;
                buffered.flush()
            });
            let mut lines = LineReader::new(
                std::io::BufReader::with_capacity(1 << 20, reader),
                MAX_LINE_DEFAULT,
            );
            let scored = score_stream(args, policy, &campaigns, &mut lines, None, &stop);
            drop(lines);
            producer
                .join()
                .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?
                .context("generate the data")?;
            let (summary, log, naive) = scored?;
            (campaigns, summary, log, naive)
        }
    };
    let days = naive_report.days.max(scenario.burn_in_days + 1);
    let scorecard = score(
        &campaigns,
        &log,
        &naive_report.baseline,
        days,
        scenario.burn_in_days,
    );
    Ok(Report {
        record: scenario.record.to_string(),
        // A file says how many accounts and computers it has; a generated
        // scenario, how many it was asked for.
        users: match args.input {
            Some(_) => u32::try_from(summary.users).unwrap_or(u32::MAX),
            None => scenario.users,
        },
        computers: match args.input {
            Some(_) => u32::try_from(summary.computers).unwrap_or(u32::MAX),
            None => computers,
        },
        days,
        burn_in_days: scenario.burn_in_days,
        density: scenario.network.density,
        sharing: scenario.network.sharing,
        seed: args.input.is_none().then_some(args.seed),
        policy: policy_origin,
        policy_version: summary.policy_version.clone(),
        events_scored: summary.events_scored,
        elapsed_s: started.elapsed().as_secs_f64(),
        device_pairs: summary.device_pairs,
        state_bytes: summary.state_bytes,
        scorecard,
        publications: log.publications(),
    })
}

/// The naive baseline's counts, and how many days the data held.
struct NaiveReport {
    baseline: NaiveBaseline,
    days: u32,
}

fn score_stream<R: std::io::Read>(
    args: &EvalArgs,
    policy: &Policy,
    campaigns: &[Campaign],
    lines: &mut LineReader<R>,
    size: Option<u64>,
    stop: &AtomicBool,
) -> anyhow::Result<(Summary, AlertLog, NaiveReport)> {
    let mut log = AlertLog::new(args.base_date);
    let mut naive = NaiveBaseline::new(campaigns.to_vec(), args.scenario.burn_in_days * 86_400);
    let mut dead_letters = Discard;
    let mut pipeline = Pipeline::new(
        policy.clone(),
        PipelineOptions {
            time_base: args.base_date,
            engine: args.engine,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead_letters,
            alerts: &mut log,
            scored: &mut naive,
            received: None,
        },
    )?;
    let bar = progress::bar(size, "bytes");
    pipeline::consume(&mut pipeline, lines, stop, |pipeline, source| {
        bar.set_position(source.bytes_consumed());
        bar.set_message(format!("{} events", pipeline.events_read()));
    })
    .context("score the data")?;
    bar.finish_and_clear();
    let summary = pipeline.finish().context("finish scoring")?;
    let days = naive.last_time.div_ceil(86_400);
    Ok((
        summary,
        log,
        NaiveReport {
            baseline: naive,
            days,
        },
    ))
}

/// The campaigns of a truth file: JSON lines as `gen --truth` writes, or
/// LANL's red-team file.
fn read_truth(path: &std::path::Path) -> anyhow::Result<Vec<Campaign>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let lines: Vec<(usize, String)> = std::io::BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| line.map(|l| (i + 1, l)))
        .collect::<Result<_, _>>()
        .with_context(|| format!("read {}", path.display()))?;
    let lines: Vec<(usize, String)> = lines
        .into_iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    if lines
        .first()
        .is_some_and(|(_, l)| !l.trim_start().starts_with('{'))
    {
        return authpulse::redteam::campaigns(&lines)
            .with_context(|| format!("{}: not a red-team file", path.display()));
    }
    lines
        .iter()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {n}: not a campaign", path.display()))
        })
        .collect()
}

/// `3m 20s`, `1h 05m`, `40s`.
fn duration(seconds: Option<u32>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        Some(s) => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn print_report(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let c = &r.scorecard;
    writeln!(
        out,
        "AuthPulse eval: {} users, {} computers, {} days ({} burn-in){}{}; {} events scored in {:.1} s",
        r.users,
        r.computers,
        r.days,
        r.burn_in_days,
        r.seed.map(|s| format!(", seed {s}")).unwrap_or_default(),
        if (r.density, r.sharing) == (1.0, 1.0) {
            String::new()
        } else {
            format!(", density {} and sharing {}", r.density, r.sharing)
        },
        r.events_scored,
        r.elapsed_s
    )?;
    writeln!(
        out,
        "policy {} ({}); state {:.1} MiB for {} user/computer pairs\n",
        r.policy_version,
        r.policy,
        r.state_bytes as f64 / (1024.0 * 1024.0),
        r.device_pairs
    )?;
    writeln!(
        out,
        "| kind | family | campaigns | AuthPulse | TTD p50 | TTD p95 | naive: every new device | naive TTD p50 |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for k in &c.kinds {
        writeln!(
            out,
            "| {}{} | {} | {} | {}/{} | {} | {} | {}/{} | {} |",
            k.kind,
            if k.first { "" } else { " (new)" },
            k.family,
            k.campaigns,
            k.detected,
            k.campaigns,
            duration(k.ttd_p50_s),
            duration(k.ttd_p95_s),
            k.naive_detected,
            k.campaigns,
            duration(k.naive_ttd_p50_s)
        )?;
    }
    let (a, n) = (&c.authpulse, &c.naive);
    writeln!(
        out,
        "| **all attacks** | | {} | **{}/{} ({:.0}%)** | {} | {} | {}/{} ({:.0}%) | {} |",
        a.campaigns,
        a.detected,
        a.campaigns,
        a.recall * 100.0,
        duration(a.ttd_p50_s),
        duration(a.ttd_p95_s),
        n.detected,
        n.campaigns,
        n.recall * 100.0,
        duration(n.ttd_p50_s)
    )?;
    writeln!(
        out,
        "| false alerts / day after burn-in | | | **{:.2}** ({} in {} days) | | | {:.1} | |",
        a.false_alerts_per_day,
        a.false_alerts,
        r.days - r.burn_in_days,
        n.false_alerts_per_day
    )?;
    writeln!(
        out,
        "| alerts after an attack, on its entities (not false) | | | {} | | | {} | |",
        a.after_attack, n.after_attack
    )?;
    writeln!(
        out,
        "| precision | | | {:.2} ({} of {} alerts) | | | {:.4} | |",
        a.precision,
        a.alerts - a.false_alerts,
        a.alerts,
        n.precision
    )?;
    let benign: Vec<String> = c
        .benign
        .iter()
        .map(|b| format!("{} {}/{} alerted", b.kind, b.alerted, b.cases))
        .collect();
    if !benign.is_empty() {
        writeln!(out, "\nbenign cases: {}", benign.join(", "))?;
    }
    let per_day: Vec<String> = c.burn_in_alerts.iter().map(u64::to_string).collect();
    writeln!(
        out,
        "alerts during the burn-in (not counted), per day from a cold start: {}",
        per_day.join(", ")
    )?;
    let by_rule = |counts: &std::collections::BTreeMap<String, u64>| {
        let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    };
    writeln!(
        out,
        "rules in the burn-in alerts: {}; in the false alerts: {}",
        by_rule(&c.burn_in_alerts_by_rule),
        by_rule(&c.false_alerts_by_rule)
    )?;
    if !c.missed.is_empty() {
        writeln!(out, "\nmissed:")?;
        for m in &c.missed {
            writeln!(out, "  {}: {}", m.id, m.text)?;
        }
    }
    if !c.benign_alerts.is_empty() {
        writeln!(out, "\nalerts on benign cases:")?;
        for b in &c.benign_alerts {
            writeln!(out, "  {}: {}", b.id, b.text)?;
        }
    }
    if !c.false_alerts.is_empty() {
        writeln!(out, "\nfalse alerts (at most 50):")?;
        for f in &c.false_alerts {
            writeln!(out, "  {}: {}", f.id, f.text)?;
        }
    }
    if !c.after_attack.is_empty() {
        writeln!(
            out,
            "\nalerts after an attack on the same account or computer (at most 50; not false, not detections):"
        )?;
        for f in &c.after_attack {
            writeln!(out, "  {}: {}", f.id, f.text)?;
        }
    }
    Ok(())
}
