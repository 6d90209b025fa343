//! `authpulse demo`: the one-command tour. Generates a LANL-style data set with
//! hidden attacks, scores it with the default policy and WASM rules, prints the
//! summary and the top alerts, and says which hidden attacks were caught.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use authpulse::alerts::Alert;
use authpulse::generator::{Attack, Generator};
use clap::Args;

use super::gen_cmd::{self, GenArgs};
use super::run::{self, RunArgs};

/// Generate data with hidden attacks, score it, and show the top alerts.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Users in the generated organisation (computers scale with them).
    #[arg(long, default_value_t = 2000)]
    pub users: u32,
    /// Days of activity.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Hidden incidents (alternating lateral movement and login bursts).
    #[arg(long, default_value_t = 4)]
    pub attacks: u32,
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
        output: data.clone(),
        events: None,
        days: args.days,
        users: Some(args.users),
        computers: None,
        seed: args.seed,
        attacks: args.attacks,
        truth: Some(truth),
        model_report: false,
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
    let run_args = RunArgs::with_input(data, args.output.clone());
    let summary = run::score(&run_args)?.summary;
    println!("{}", serde_json::to_string(&summary)?);

    let alerts = read_alerts(&run_args.alerts_path())?;
    print_top_alerts(&alerts, args.top);
    print_detection(generator.attacks(), &alerts);
    println!(
        "\nresults: {} (alerts), {} (dead letters, if any)",
        run_args.alerts_path().display(),
        run_args.dead_letter_path().display()
    );
    println!(
        "Iceberg tables (authpulse.auth_events_raw, auth_events_curated, alerts, user_behavior_hourly, \
         host_popularity_daily): SQL catalog {} over {}\n\
         query them: authpulse query --output {} \"SELECT risk_level, count(*) FROM auth_events_curated GROUP BY 1\" \
         (or with PyIceberg or DuckDB, see docs/tables.md)",
        args.output.join("catalog.db").display(),
        args.output.join("warehouse").display(),
        args.output.display()
    );
    Ok(())
}

/// The demo regenerates its data each time, so its tables and results start
/// empty too (a rerun into a warehouse holding events would be refused).
fn clear_previous_demo(dir: &std::path::Path) -> anyhow::Result<()> {
    for file in ["catalog.db", "alerts.jsonl", "dead-letter.jsonl"] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
        }
    }
    let warehouse = dir.join("warehouse");
    if warehouse.exists() {
        std::fs::remove_dir_all(&warehouse)
            .with_context(|| format!("remove {}", warehouse.display()))?;
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

fn print_top_alerts(alerts: &[Alert], top: usize) {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by(|a, b| {
        b.risk_score
            .cmp(&a.risk_score)
            .then(b.event_count.cmp(&a.event_count))
    });
    println!(
        "\ntop {} of {} alerts:",
        top.min(sorted.len()),
        sorted.len()
    );
    println!(
        "{:<9} {:>5} {:<8} {:>6} {:<20} {:<20} flags",
        "level", "score", "user", "events", "first event", "last event"
    );
    for a in sorted.into_iter().take(top) {
        println!(
            "{:<9} {:>5} {:<8} {:>6} {:<20} {:<20} {}",
            a.risk_level.as_str(),
            a.risk_score,
            a.user_id,
            a.event_count,
            a.first_event_time,
            a.last_event_time,
            a.risk_flags.join(",")
        );
    }
}

fn print_detection(attacks: &[Attack], alerts: &[Alert]) {
    if attacks.is_empty() {
        return;
    }
    let alerted: BTreeSet<&str> = alerts.iter().map(|a| a.user_id.as_str()).collect();
    println!("\nhidden attacks:");
    for attack in attacks {
        let caught = alerted.contains(attack.user.as_str());
        println!(
            "  {:<17} {:<8} {:>4} events on {:>3} computers: {}",
            attack.kind,
            attack.user,
            attack.events,
            attack.computers,
            if caught { "ALERTED" } else { "missed" }
        );
    }
    let attackers: BTreeSet<&str> = attacks.iter().map(|a| a.user.as_str()).collect();
    let others = alerts
        .iter()
        .filter(|a| !attackers.contains(a.user_id.as_str()))
        .count();
    println!("  alerts on other users: {others}");
}
