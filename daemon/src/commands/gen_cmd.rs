//! `authpulse gen`: write a LANL-format data set.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use authpulse_generator::{
    CampaignPlan, Generator, GeneratorConfig, Kind, LANL_COMPUTERS, LANL_USERS, ModelReport,
    Network, Record,
};
use clap::Args;

use super::progress;

/// Generate realistic LANL-format authentication data, sorted by time.
///
/// Lines are `time,user,computer` (e.g. `1,U1,C1`), time in seconds from the data
/// set's start. The statistics (computers per user, users per computer, hubs,
/// gradual discovery of user/computer pairs, daily and weekly cycles, 0.5%
/// duplicates) follow the 2014 LANL set; see docs/generator.md. The same seed
/// and sizes always give the same bytes.
///
/// With --record full, the same logons are written as the nine-field LANL
/// 2015 record (`time,src_user@domain,dst_user@domain,src_computer,
/// dst_computer,auth_type,logon_type,orientation,success|fail`): where each
/// logon came from, its logon type and package, and the failed ones too.
///
/// --campaigns hides labelled attacks (spray, burst, chain, stealth, rare,
/// fan_in, multi_day, off_hours, slow_fan_in, outsider, service_pivot,
/// password_spray, foothold_fan_out, service_at_desktop) and
/// --benign hard benign cases (rollout, roaming_admin, new_hire, help_desk,
/// desktop_support, nightly_scanner, migration_morning) in the data; --truth writes what and where they are (one JSON line each),
/// which `authpulse eval` and the demo match the alerts against.
#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Where to write (`-` for stdout).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// The record to write: `lanl` (`time,user,computer`, successful logons)
    /// or `full` (the nine-field LANL 2015 record, failures included).
    #[arg(long, default_value_t = Record::Lanl)]
    pub record: Record,
    /// Total lines. Default: the real set's 2.59M/day, scaled to --users.
    #[arg(long)]
    pub events: Option<u64>,
    /// Days to cover (day 1 is a Monday; weekends are quieter).
    #[arg(long, default_value_t = 1)]
    pub days: u32,
    /// Users. Default 11,362 (or scaled from --computers).
    #[arg(long)]
    pub users: Option<u32>,
    /// Computers. Default 22,284 (or scaled from --users, keeping the real ratio).
    #[arg(long)]
    pub computers: Option<u32>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Attack campaigns to hide, cycling through the attack kinds (of --kinds).
    #[arg(long, default_value_t = 0)]
    pub campaigns: u32,
    /// Benign hard cases to hide, cycling through the benign kinds (of --kinds).
    #[arg(long, default_value_t = 0)]
    pub benign: u32,
    /// Only these kinds, comma-separated (default: all; docs/generator.md
    /// describes each).
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<Kind>,
    /// Campaigns start on this day or later (0-based); the days before are
    /// the detection's burn-in. Default: day 2 (the third), or the last day
    /// of shorter data.
    #[arg(long, value_name = "DAY")]
    pub campaigns_from_day: Option<u32>,
    /// Write the hidden campaigns (ground truth) as JSON lines here.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Print the model's nine-month statistics (JSON) and exit without writing data.
    #[arg(long)]
    pub model_report: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// The organisation's shape around the LANL fit (docs/generator.md).
#[derive(Args, Debug, Clone, Copy)]
pub struct NetworkArgs {
    /// Scale the computers each account uses (0.5 sparser, 2 denser; 1 is the LANL fit).
    #[arg(long, default_value_t = 1.0, value_parser = network_factor)]
    pub density: f64,
    /// Scale how widely computers are shared: 2 halves the share of
    /// single-user computers, 0.5 doubles it (1 is the LANL fit).
    #[arg(long, default_value_t = 1.0, value_parser = network_factor)]
    pub sharing: f64,
}

impl Default for NetworkArgs {
    fn default() -> Self {
        let fit = Network::default();
        NetworkArgs {
            density: fit.density,
            sharing: fit.sharing,
        }
    }
}

impl NetworkArgs {
    pub fn network(&self) -> Network {
        Network {
            density: self.density,
            sharing: self.sharing,
        }
    }
}

fn network_factor(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    let range = Network::FACTOR_RANGE;
    if value.is_finite() && range.contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is outside {}..={} (1 is the LANL fit)",
            range.start(),
            range.end()
        ))
    }
}

impl GenArgs {
    pub fn config(&self) -> GeneratorConfig {
        let ratio = f64::from(LANL_COMPUTERS) / f64::from(LANL_USERS);
        let (users, computers) = match (self.users, self.computers) {
            (Some(u), Some(c)) => (u, c),
            (Some(u), None) => (u, ((f64::from(u) * ratio).round() as u32).max(1)),
            (None, Some(c)) => (((f64::from(c) / ratio).round() as u32).max(1), c),
            (None, None) => (LANL_USERS, LANL_COMPUTERS),
        };
        GeneratorConfig {
            users,
            computers,
            days: self.days,
            events: self.events,
            seed: self.seed,
            campaigns: CampaignPlan {
                attacks: self.campaigns,
                benign: self.benign,
                kinds: self.kinds.clone(),
                from_day: self
                    .campaigns_from_day
                    .unwrap_or(2)
                    .min(self.days.saturating_sub(1)),
            },
            network: self.network.network(),
        }
    }
}

pub fn execute(args: GenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.days >= 1, "--days must be at least 1");
    let config = args.config();
    anyhow::ensure!(
        config.users >= 1 && config.computers >= 1,
        "--users and --computers must be at least 1"
    );
    let generator = Generator::new(config.clone());
    if args.model_report {
        let report = ModelReport::of(generator.graph());
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    generate(&args, &generator)?;
    Ok(())
}

/// Writes the data (and truth) as `args` say; shared with `demo`.
pub fn generate(
    args: &GenArgs,
    generator: &Generator,
) -> anyhow::Result<authpulse_generator::GenerateStats> {
    let config = args.config();
    let expected = config.events.unwrap_or_else(|| {
        (authpulse_generator::LANL_EVENTS_PER_DAY * f64::from(config.users) / f64::from(LANL_USERS)
            * f64::from(config.days)) as u64
    });
    let bar = progress::bar(Some(expected), "lines");
    let mut out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(BufWriter::new(super::stdout()))
    } else {
        if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let file = File::create(&args.output)
            .with_context(|| format!("create {}", args.output.display()))?;
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let stats = generator
        .write_as(&mut out, args.record, |lines| bar.set_position(lines))
        .context("write generated data")?;
    bar.finish_and_clear();
    if let Some(path) = &args.truth {
        let mut truth = BufWriter::new(
            File::create(path).with_context(|| format!("create {}", path.display()))?,
        );
        for campaign in generator.campaigns(args.record) {
            serde_json::to_writer(&mut truth, &campaign)?;
            truth.write_all(b"\n")?;
        }
        truth.flush()?;
    }
    tracing::info!(
        lines = stats.lines,
        duplicates = stats.duplicates,
        first_uses = stats.first_uses,
        failures = stats.failures,
        campaigns = generator.campaigns(args.record).len(),
        users = config.users,
        computers = config.computers,
        "generated"
    );
    Ok(stats)
}
