//! `authpulse demo`: the one-command tour. Generates a LANL-style data set with
//! hidden attacks, scores it with the default policy and WASM rules, prints the
//! summary and the top alerts, and says which hidden attacks were caught.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use authpulse::eval::AlertLog;
use authpulse_engine::alerts::Alert;
use authpulse_engine::event::TimeBase;
use authpulse_engine::sinks::AlertSink;
use authpulse_generator::{Campaign, Generator};
use clap::Args;

use super::gen_cmd::{self, GenArgs, NetworkArgs};
use super::run;
use authpulse::run::RunSpec;

/// Generate data with hidden attacks, score it, and show the top alerts.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Users in the generated organisation (computers scale with them).
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// Days of activity.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Attack campaigns to hide, cycling through the attack kinds (the first
    /// six: spray, burst, chain, stealth, rare, fan_in).
    #[arg(long, default_value_t = 6)]
    pub campaigns: u32,
    /// Benign hard cases to hide (rollout, roaming_admin, new_hire, in turn).
    #[arg(long, default_value_t = 3)]
    pub benign: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the data and results.
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    /// How many alerts to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

pub fn execute(args: DemoArgs) -> anyhow::Result<()> {
    let data = args.output.join("demo-events.csv");
    let truth = args.output.join("demo-truth.jsonl");
    let gen_args = GenArgs {
        record: authpulse_generator::Record::Lanl,
        output: data.clone(),
        events: None,
        days: args.days,
        users: Some(args.users),
        computers: None,
        seed: args.seed,
        campaigns: args.campaigns,
        benign: args.benign,
        kinds: Vec::new(),
        campaigns_from_day: Some(args.days.min(2)),
        truth: Some(truth),
        model_report: false,
        network: NetworkArgs::default(),
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("create {}", args.output.display()))?;
    clear_previous_demo(&args.output)?;
    eprintln!(
        "generating {} days for {} users into {} ...",
        args.days,
        args.users,
        data.display()
    );
    let generator = Generator::new(gen_args.config());
    gen_cmd::generate(&gen_args, &generator)?;

    eprintln!("scoring with the default policy (rules as WASM) ...");
    let spec = RunSpec::of_file(&data, &args.output);
    let summary = run::score_spec(&spec)?.summary;
    outln!("{}", serde_json::to_string(&summary)?)?;

    let alerts = read_alerts(&spec.outputs.alerts)?;
    print_top_alerts(&alerts, args.top)?;
    print_detection(
        &generator.campaigns(authpulse_generator::Record::Lanl),
        &alerts,
        spec.pipeline.time_base,
    )?;
    outln!(
        "\nresults: {} (alerts), {} (dead letters, if any)",
        spec.outputs.alerts.display(),
        spec.outputs.dead_letters.display()
    )?;
    outln!(
        "Iceberg tables (authpulse.auth_events_raw, auth_events_curated, alerts, ocsf_findings, \
         user_behavior_hourly, host_popularity_daily): SQL catalog {} over {}\n\
         query them: authpulse query --output {} \"SELECT risk_level, count(*) FROM auth_events_curated GROUP BY 1\" \
         (or with PyIceberg or DuckDB, see docs/tables.md)",
        args.output.join("catalog.db").display(),
        args.output.join("warehouse").display(),
        args.output.display()
    )?;
    Ok(())
}

/// The demo regenerates its data each time, so its tables and results start
/// empty too (its progress records and state snapshots included).
fn clear_previous_demo(dir: &std::path::Path) -> anyhow::Result<()> {
    for file in ["catalog.db", "alerts.jsonl", "dead-letter.jsonl"] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    for sub in ["warehouse", "state"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    Ok(())
}

fn read_alerts(path: &std::path::Path) -> anyhow::Result<Vec<Alert>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .map(|line| Ok(serde_json::from_str(&line?)?))
        .collect()
}

/// The latest publication of each incident, riskiest first.
fn latest_alerts(alerts: &[Alert]) -> Vec<&Alert> {
    let mut latest: std::collections::BTreeMap<&str, &Alert> = Default::default();
    for alert in alerts {
        latest.insert(alert.alert_id.as_str(), alert);
    }
    let mut sorted: Vec<&Alert> = latest.into_values().collect();
    sorted.sort_by(|a, b| {
        b.risk_score
            .cmp(&a.risk_score)
            .then(b.event_count.cmp(&a.event_count))
            .then(a.alert_id.cmp(&b.alert_id))
    });
    sorted
}

fn print_top_alerts(alerts: &[Alert], top: usize) -> anyhow::Result<()> {
    let sorted = latest_alerts(alerts);
    outln!(
        "\ntop {} of {} alerts:",
        top.min(sorted.len()),
        sorted.len()
    )?;
    outln!(
        "{:<9} {:>5} {:<8} {:<7} {:>6} {:<20} {:<20} rules",
        "level",
        "score",
        "entity",
        "id",
        "events",
        "first event",
        "last event"
    )?;
    for a in sorted.into_iter().take(top) {
        let rules: Vec<String> = a
            .rules
            .iter()
            .map(|r| format!("{} x{}", r.id, r.hits))
            .collect();
        outln!(
            "{:<9} {:>5} {:<8} {:<7} {:>6} {:<20} {:<20} {}",
            a.risk_level.as_str(),
            a.risk_score,
            a.entity_type.as_str(),
            a.entity_id,
            a.event_count,
            a.first_event_time,
            a.last_event_time,
            rules.join(", ")
        )?;
    }
    Ok(())
}

/// Which hidden campaigns an alert caught, matched as `authpulse eval` does.
fn print_detection(
    campaigns: &[Campaign],
    alerts: &[Alert],
    time_base: TimeBase,
) -> anyhow::Result<()> {
    if campaigns.is_empty() {
        return Ok(());
    }
    let mut log = AlertLog::new(time_base);
    for alert in alerts {
        log.send(alert).expect("an in-memory log takes every alert");
    }
    let matched = log.match_campaigns(campaigns, 0);
    outln!("\nhidden campaigns:")?;
    for (campaign, found) in campaigns.iter().zip(&matched.detected_at) {
        let verdict = match (campaign.benign, found) {
            (false, Some(at)) => format!("ALERTED after {} s", at.saturating_sub(campaign.start)),
            (false, None) => "missed".into(),
            (true, None) => "quiet (benign)".into(),
            (true, Some(_)) => "ALERTED (benign: a false alert)".into(),
        };
        outln!(
            "  {:<14} {}: {verdict}",
            campaign.kind.as_str(),
            campaign.description
        )?;
    }
    outln!(
        "  alerts on other users and computers: {}",
        matched.false_alerts.len()
    )?;
    Ok(())
}
