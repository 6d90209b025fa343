//! `authpulse tune`: search a policy's parameters on labelled campaigns,
//! and leave-one-family-out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use authpulse::tune::{Grid, Objective, Outcome, Pooled, Variant, Variants};
use authpulse_engine::event::TimeBase;
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::{BUILTIN_RULES, Engine, builtin_module};
use authpulse_generator::Kind;
use clap::Args;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::eval::{self, EvalArgs, ScenarioArgs};
use super::run;

/// Tune a policy's parameters on labelled campaigns, and measure how the
/// tuning holds on attacks it did not see.
///
/// Tries each knob of --grid alone from the base policy (--policy) on the
/// tuning seeds, combines the values that gain, and keeps the best of the
/// base, the best single change and the combination: one round of
/// coordinate search, weighed by the grid's objective (recall, less a cost
/// per false alert a day and per benign case that alerts; more than 3
/// false alerts a day is out). The winner is then evaluated on the report
/// seeds, which the search never saw.
///
/// With --leave-one-family-out, the search runs again once per attack
/// family (spread, volume, rare, fan_in, time, service, failures) with that family's
/// kinds left out of the objective, and each family is reported as tuned
/// without it: what detection of an attack nobody described looks like.
///
/// Each evaluation is an `eval` run (about a minute at full scale), kept in
/// --output/runs so that a stopped or repeated tune does not run it again;
/// delete the directory after changing the engine or the generator. The
/// candidates' policies are written to --output/policies, the report to
/// --output/report.json. docs/detection.md shows the full-scale results.
#[derive(Args, Debug, Clone)]
pub struct TuneArgs {
    /// The knobs to try (YAML: `knobs: {rules.fan_in.params.min_surprise: [3, 5]}`,
    /// optional `objective:`). docs/detection.md#tuning-and-leave-one-family-out describes the file.
    #[arg(long)]
    pub grid: PathBuf,
    /// The base policy. Default: ./policies.yaml if present, else the built-in policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Seeds the search judges candidates on.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub tune_seeds: Vec<u64>,
    /// Seeds the chosen policies are reported on (never seen by the search).
    #[arg(long, value_delimiter = ',', default_value = "11,12,13")]
    pub report_seeds: Vec<u64>,
    /// Also tune once per attack family with that family left out, and
    /// report each family as tuned without it.
    #[arg(long)]
    pub leave_one_family_out: bool,
    /// Working directory: cached evaluations, candidate policies, the report.
    #[arg(short, long, default_value = "tune")]
    pub output: PathBuf,
    /// Run the rules as sandboxed WASM or natively (built-in rules only).
    /// Default: natively when the base policy uses only built-in modules
    /// (the same verdicts, faster), else WASM.
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// Print the report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// What `tune` found.
#[derive(Serialize)]
pub struct Report {
    pub tune_seeds: Vec<u64>,
    pub report_seeds: Vec<u64>,
    pub objective: Objective,
    /// The base policy on the report seeds.
    pub base: Pooled,
    /// The search with every family in view.
    pub all: Tuned,
    /// One search per family left out.
    pub left_out: Vec<Tuned>,
}

/// One search's choice and how it does on the report seeds.
#[derive(Serialize)]
pub struct Tuned {
    /// The family kept out of the objective, if any.
    pub family: Option<&'static str>,
    /// `base`, or the changes it made (`fan_in.min_surprise=3,...`).
    pub name: String,
    /// Where the chosen policy was written.
    pub policy: String,
    pub changes: Vec<(String, serde_yaml_ng::Value)>,
    /// Objective on the tuning seeds: the base's and the chosen one's.
    pub base_value: Option<f64>,
    pub value: Option<f64>,
    pub report: Pooled,
}

/// Attack families, in the order the report lists them.
const FAMILIES: [&str; 7] = [
    "spread", "volume", "rare", "fan_in", "time", "service", "failures",
];

pub fn execute(args: TuneArgs) -> anyhow::Result<()> {
    args.scenario.validate()?;
    anyhow::ensure!(!args.tune_seeds.is_empty(), "--tune-seeds is empty");
    anyhow::ensure!(!args.report_seeds.is_empty(), "--report-seeds is empty");
    if let Some(seed) = args
        .tune_seeds
        .iter()
        .find(|s| args.report_seeds.contains(s))
    {
        anyhow::bail!(
            "seed {seed} is both a tuning and a report seed: report on seeds the search never saw"
        );
    }
    let grid_text = std::fs::read_to_string(&args.grid)
        .with_context(|| format!("read {}", args.grid.display()))?;
    let grid = Grid::parse(&grid_text).with_context(|| args.grid.display().to_string())?;
    let (base_policy, _) = run::resolve_policy(args.policy.as_deref())?;
    let variants = Variants::new(&base_policy.source)?;
    let singles = variants.singles(&grid)?;
    let engine = args
        .engine
        .unwrap_or(if base_policy.only_builtin_modules() {
            Engine::Native
        } else {
            Engine::Wasm
        });
    let mut lab = Lab::open(&args, &base_policy, engine)?;
    // Every candidate must be a valid policy before an hour goes into it.
    for variant in &singles {
        lab.policy(variant)?;
    }

    let base = variants.base();
    let mut families: Vec<Option<&'static str>> = vec![None];
    if args.leave_one_family_out {
        families.extend(FAMILIES.iter().map(|f| Some(*f)));
    }
    eprintln!(
        "tuning {} knobs ({} single changes) on seeds {:?}; reporting on {:?}",
        grid.knobs.len(),
        singles.len(),
        args.tune_seeds,
        args.report_seeds
    );
    let base_tuning = lab.pooled(&base, &args.tune_seeds)?;
    let mut single_tuning = Vec::with_capacity(singles.len());
    for variant in &singles {
        single_tuning.push(lab.pooled(variant, &args.tune_seeds)?);
    }

    let objective = &grid.objective;
    let mut searches = Vec::new();
    for family in families {
        let changes =
            objective.improvements(&base_tuning, singles.iter().zip(&single_tuning), family);
        let combined = variants.with(&changes)?;
        let combined_tuning = lab.pooled(&combined, &args.tune_seeds)?;
        // The best of the base, the combination and every single change
        // (so the best single one); the first wins a tie.
        let candidates = [(&base, &base_tuning), (&combined, &combined_tuning)]
            .into_iter()
            .chain(singles.iter().zip(&single_tuning));
        let (chosen, chosen_tuning) = objective
            .best(candidates.map(|candidate| (candidate, candidate.1)), family)
            .expect("the base is a candidate");
        let (chosen, value) = (chosen.clone(), objective.value(chosen_tuning, family));
        eprintln!(
            "{}: {}",
            family.map_or("all families".to_string(), |f| format!("without {f}")),
            chosen.name
        );
        searches.push((family, chosen, value));
    }

    let base_report = lab.pooled(&base, &args.report_seeds)?;
    let mut tuned = Vec::new();
    for (family, chosen, value) in searches {
        tuned.push(Tuned {
            family,
            name: chosen.name.clone(),
            policy: lab.policy_path(&chosen).display().to_string(),
            changes: chosen.changes.clone(),
            base_value: objective.value(&base_tuning, family),
            value,
            report: lab.pooled(&chosen, &args.report_seeds)?,
        });
    }
    let all = tuned.remove(0);
    let report = Report {
        tune_seeds: args.tune_seeds.clone(),
        report_seeds: args.report_seeds.clone(),
        objective: objective.clone(),
        base: base_report,
        all,
        left_out: tuned,
    };
    let json = serde_json::to_string_pretty(&report)? + "\n";
    let report_path = args.output.join("report.json");
    std::fs::write(&report_path, &json)
        .with_context(|| format!("write {}", report_path.display()))?;
    let mut out = super::stdout();
    if args.json {
        write!(out, "{json}")?;
    } else {
        print_report(&mut out, &report)?;
    }
    Ok(())
}

/// Runs evaluations and keeps them: one file per candidate policy and seed.
struct Lab<'a> {
    args: &'a TuneArgs,
    engine: Engine,
    base_dir: PathBuf,
    /// The scenario's part of every evaluation's key ...
    scenario_key: String,
    /// ... and the part that says how it was scored: the scorecard's
    /// counting and the built-in rules' code (a cached outcome of other
    /// rules or other counting is not this one's).
    scoring_key: [u8; 32],
    pooled: std::collections::HashMap<(String, Vec<u64>), Pooled>,
    runs: usize,
}

impl<'a> Lab<'a> {
    fn open(args: &'a TuneArgs, base: &Policy, engine: Engine) -> anyhow::Result<Lab<'a>> {
        for dir in ["runs", "policies"] {
            let dir = args.output.join(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let s = &args.scenario;
        Ok(Lab {
            args,
            engine,
            base_dir: base.base_dir.clone(),
            scenario_key: format!(
                "users={} computers={} days={} burn_in={} campaigns={} benign={} kinds={:?} density={} sharing={}",
                s.users,
                s.computers(),
                s.days,
                s.burn_in_days,
                s.campaigns,
                s.benign,
                s.kinds,
                s.network.density,
                s.network.sharing
            ),
            scoring_key: scoring_key(),
            pooled: Default::default(),
            runs: 0,
        })
    }

    /// The key an evaluation is kept under: the scenario, how it is
    /// scored and the candidate.
    fn digest(&self, variant: &Variant) -> String {
        let mut hash = Sha256::new();
        hash.update(self.scenario_key.as_bytes());
        hash.update(self.scoring_key);
        hash.update(variant.text.as_bytes());
        let digest = hash.finalize();
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn policy_path(&self, variant: &Variant) -> PathBuf {
        self.args.output.join("policies").join(format!(
            "{}-{}.yaml",
            file_name(&variant.name),
            self.digest(variant)
        ))
    }

    /// The variant as a policy (written to --output/policies for reference);
    /// relative module paths resolve as in the base policy.
    fn policy(&self, variant: &Variant) -> anyhow::Result<Policy> {
        let path = self.policy_path(variant);
        if !path.exists() {
            std::fs::write(&path, &variant.text)
                .with_context(|| format!("write {}", path.display()))?;
        }
        Policy::parse(&variant.text, &variant.name, &self.base_dir)
            .with_context(|| format!("candidate {}", variant.name))
    }

    fn outcome(&mut self, variant: &Variant, seed: u64) -> anyhow::Result<Outcome> {
        let path = self.args.output.join("runs").join(format!(
            "{}-seed{seed}-{}.json",
            file_name(&variant.name),
            self.digest(variant)
        ));
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(outcome) = serde_json::from_str(&text)
        {
            return Ok(outcome);
        }
        let policy = self.policy(variant)?;
        self.runs += 1;
        eprintln!(
            "evaluation {}: {} on seed {seed} ...",
            self.runs, variant.name
        );
        let eval_args = EvalArgs {
            scenario: self.args.scenario.clone(),
            seed,
            policy: None,
            engine: self.engine,
            input: None,
            truth: None,
            base_date: TimeBase::DEFAULT,
            json: false,
            report: None,
        };
        let report = eval::evaluate(&eval_args, &policy)?;
        let outcome = Outcome::of(&report.scorecard, report.days - report.burn_in_days);
        let a = &report.scorecard.authpulse;
        eprintln!(
            "  {}/{} detected, {:.2} false alerts a day, {} benign alerted ({:.0} s)",
            a.detected,
            a.campaigns,
            a.false_alerts_per_day,
            outcome.benign_alerted,
            report.elapsed_s
        );
        // Written whole, then renamed: a stopped tune leaves no half file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_string(&outcome)?)
            .with_context(|| format!("write {}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("write {}", path.display()))?;
        Ok(outcome)
    }

    fn pooled(&mut self, variant: &Variant, seeds: &[u64]) -> anyhow::Result<Pooled> {
        let key = (variant.text.clone(), seeds.to_vec());
        if let Some(pooled) = self.pooled.get(&key) {
            return Ok(pooled.clone());
        }
        let mut outcomes = Vec::with_capacity(seeds.len());
        for &seed in seeds {
            outcomes.push(self.outcome(variant, seed)?);
        }
        let pooled = Pooled::of(&outcomes);
        self.pooled.insert(key, pooled.clone());
        Ok(pooled)
    }
}

/// A candidate's name as a file name (`base`, `fan_in.min_surprise=3`).
/// The digest of how evaluations are scored: the scorecard's counting
/// version and every built-in rule module.
fn scoring_key() -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(authpulse::eval::SCORECARD_VERSION.to_le_bytes());
    for name in BUILTIN_RULES {
        hash.update(builtin_module(name).unwrap_or_default());
    }
    hash.finalize().into()
}

fn file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    cleaned
}

fn recall((detected, campaigns): (u32, u32)) -> String {
    format!(
        "{detected}/{campaigns} ({:.0}%)",
        100.0 * f64::from(detected) / f64::from(campaigns.max(1))
    )
}

fn changes(tuned: &Tuned) -> String {
    if tuned.changes.is_empty() {
        "none (the base)".into()
    } else {
        tuned.name.clone()
    }
}

fn print_report(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "AuthPulse tune: searched on seeds {:?}, reported on seeds {:?}\n",
        r.tune_seeds, r.report_seeds
    )?;
    writeln!(out, "tuned with every family in view: {}", changes(&r.all))?;
    writeln!(out, "\n| kind | family | base policy | tuned |")?;
    writeln!(out, "|---|---|---:|---:|")?;
    for (kind, base) in &r.base.kinds {
        let tuned = r.all.report.kinds.get(kind).copied().unwrap_or_default();
        writeln!(
            out,
            "| {kind} | {} | {} | {} |",
            kind.family(),
            recall(*base),
            recall(tuned)
        )?;
    }
    for (name, pooled) in [("base policy", &r.base), ("tuned", &r.all.report)] {
        writeln!(
            out,
            "{name}: all attacks {}, {:.2} false alerts a day, benign cases alerted: {}, most alerts on a burn-in day: {}",
            recall(pooled.detected(|_| true)),
            pooled.false_alerts_per_day(),
            pooled.benign_alerted,
            pooled.burn_in_max
        )?;
    }
    if r.left_out.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nleave-one-family-out (each family reported as tuned without it):\n"
    )?;
    writeln!(
        out,
        "| family left out | changes chosen without it | its kinds, tuned without it | tuned with it | others, tuned without it | false alerts / day |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|")?;
    for t in &r.left_out {
        let family = t.family.unwrap_or("-");
        let of_family = |kind: Kind| kind.family() == family;
        writeln!(
            out,
            "| {family} | {} | {} | {} | {} | {:.2} |",
            changes(t),
            recall(t.report.detected(of_family)),
            recall(r.all.report.detected(of_family)),
            recall(t.report.detected(|k| !of_family(k))),
            t.report.false_alerts_per_day()
        )?;
    }
    Ok(())
}
