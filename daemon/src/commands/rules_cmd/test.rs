//! `authpulse rules test`: events replayed through one rule with the host's
//! real features; its hits printed, and with `--expect` compared with the
//! expected ones, any difference failing the command.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use authpulse_engine::event::{TimeBase, format_time};
use authpulse_engine::input::Format;
use authpulse_engine::pipeline::{Outputs, Pipeline, PipelineOptions};
use authpulse_engine::policy::{Policy, PolicyFile, RuleConfig, SandboxConfig};
use authpulse_engine::rules::{Engine, RuleMetadata};
use authpulse_engine::sinks::{Collect, Commit, ScoredBatch, ScoredSink};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

// The recipe the engine's build script uses for the built-in rules.

use super::{ModuleArg, load};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum HitFormat {
    /// Aligned columns, for reading.
    #[default]
    Table,
    /// CSV with a header: the format --expect reads.
    Csv,
    /// One JSON object per hit.
    Json,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The module: a `.wasm` file or `builtin:NAME`.
    pub module: ModuleArg,
    /// Events: LANL CSV (`time,user,computer`) or JSON lines, as `run` reads.
    #[arg(long, short)]
    pub input: PathBuf,
    /// A parameter value, `NAME=VALUE` (repeatable); others take the module's
    /// defaults. Durations may be written `24h`.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Expected hits: CSV with the columns `event_time,user,computer` and
    /// optionally `score` and `reason` (compared when present), as
    /// `--format csv` prints them. Any missing, unexpected or different hit
    /// fails the command.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// How to print the hits.
    #[arg(long, value_enum, default_value_t = HitFormat::Table)]
    pub format: HitFormat,
    /// Date that LANL time 0 maps to (YYYY-MM-DD or RFC 3339).
    #[arg(long, default_value = "2024-01-01", value_parser = TimeBase::parse)]
    pub base_date: TimeBase,
    /// How far behind the latest event time an event may arrive (as the
    /// policy's `watermark.allowed_lateness`).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub allowed_lateness: std::time::Duration,
}

/// One hit of the rule under test; also a row of an `--expect` file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Hit {
    event_time: String,
    user: String,
    computer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
}

impl Hit {
    fn key(&self) -> (&str, &str, &str) {
        (&self.event_time, &self.user, &self.computer)
    }
}

/// Collects the hits of rule 0 (the only rule of the test policy).
#[derive(Default)]
struct Hits(Vec<Hit>);

impl Commit for Hits {}

impl ScoredSink for Hits {
    fn write_batch(&mut self, batch: &ScoredBatch<'_>) -> io::Result<()> {
        let rule = &batch.rules.rules[0];
        for (i, verdict) in rule.verdicts[..batch.events.len()].iter().enumerate() {
            if !verdict.is_hit() {
                continue;
            }
            let event = &batch.events[i];
            self.0.push(Hit {
                event_time: format_time(event.event_time),
                user: batch.users.name(event.user).to_string(),
                computer: batch.computers.name(event.computer).to_string(),
                score: Some(verdict.score),
                reason: rule.metadata.reasons.get(verdict.reason as usize).cloned(),
                event_id: Some(batch.event_id(i).to_string()),
            });
        }
        Ok(())
    }
}

/// The one-rule policy `rules test` runs.
fn test_policy(args: &TestArgs, metadata: &RuleMetadata) -> anyhow::Result<Policy> {
    let mut params = BTreeMap::new();
    for param in &args.params {
        let (name, value) = param
            .split_once('=')
            .with_context(|| format!("--param `{param}` is not NAME=VALUE"))?;
        let value = match value.trim().parse::<f64>() {
            Ok(number) => authpulse_engine::policy::ParamValue::Number(number),
            Err(_) => authpulse_engine::policy::ParamValue::Text(value.trim().to_string()),
        };
        params.insert(name.trim().to_string(), value);
    }
    let id: String = metadata
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut file = PolicyFile {
        watermark: Default::default(),
        risk: Default::default(),
        entity_risk: Default::default(),
        alerts: Default::default(),
        allowlist: Default::default(),
        // A local build under test is not pinned.
        sandbox: SandboxConfig {
            allow_unpinned: true,
            ..SandboxConfig::default()
        },
        rules: vec![RuleConfig {
            id: if id.is_empty() { "rule".into() } else { id },
            module: args.module.policy_module()?,
            sha256: None,
            weight: 1.0,
            enabled: true,
            mode: Default::default(),
            on_failure: Default::default(),
            limits: Default::default(),
            params,
        }],
    };
    file.watermark.allowed_lateness = args.allowed_lateness;
    let text = serde_yaml_ng::to_string(&file)?;
    Ok(Policy::parse(&text, "rules test", Path::new("."))?)
}

pub(super) fn test(args: TestArgs) -> anyhow::Result<()> {
    let inspection = load(&args.module)?;
    let policy = test_policy(&args, &inspection.metadata)?;
    let data = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut hits = Hits::default();
    let mut dead = Collect::default();
    let mut alerts = authpulse_engine::sinks::Discard;
    let pipeline = Pipeline::new(
        policy,
        PipelineOptions {
            format: Format::Auto,
            time_base: args.base_date,
            engine: Engine::Wasm,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut hits,
            received: None,
        },
    )?;
    let summary = pipeline.score_bytes(&data)?;
    let report = summary
        .rules
        .values()
        .next()
        .context("the test policy has one rule")?;

    let mut out = crate::commands::stdout();
    print_hits(&mut out, args.format, &hits.0)?;
    out.flush()?;
    eprintln!(
        "{}: {} events read, {} scored, {} hits, {} failed batches, {} dead letters, {:.1} ms in the rule",
        inspection.metadata.name,
        summary.events_read,
        summary.events_scored,
        report.hits,
        report.failures,
        dead.dead_letters.len(),
        report.time_ms
    );
    for letter in dead.dead_letters.iter().take(5) {
        eprintln!("  dead letter, line {}: {}", letter.line, letter.reason);
    }
    if report.failures > 0 {
        bail!(
            "the rule failed on {} batch(es); see the log above",
            report.failures
        );
    }
    if let Some(expect) = &args.expect {
        let expected = read_expected(expect)?;
        let mismatches = compare(&expected, &hits.0);
        if !mismatches.is_empty() {
            for line in &mismatches {
                eprintln!("  {line}");
            }
            bail!(
                "{} difference(s) from {}",
                mismatches.len(),
                expect.display()
            );
        }
        eprintln!(
            "all {} expected hits match {}",
            expected.len(),
            expect.display()
        );
    }
    Ok(())
}

fn print_hits(out: &mut impl Write, format: HitFormat, hits: &[Hit]) -> anyhow::Result<()> {
    match format {
        HitFormat::Table => {
            writeln!(
                out,
                "{:<20} {:<14} {:<14} {:>6}  reason",
                "event_time", "user", "computer", "score"
            )?;
            for h in hits {
                writeln!(
                    out,
                    "{:<20} {:<14} {:<14} {:>6.1}  {}",
                    h.event_time,
                    h.user,
                    h.computer,
                    h.score.unwrap_or_default(),
                    h.reason.as_deref().unwrap_or("")
                )?;
            }
        }
        HitFormat::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record([
                "event_time",
                "user",
                "computer",
                "score",
                "reason",
                "event_id",
            ])?;
            for h in hits {
                let score = h.score.map(|s| s.to_string()).unwrap_or_default();
                csv.write_record([
                    h.event_time.as_str(),
                    &h.user,
                    &h.computer,
                    &score,
                    h.reason.as_deref().unwrap_or(""),
                    h.event_id.as_deref().unwrap_or(""),
                ])?;
            }
            csv.flush()?;
        }
        HitFormat::Json => {
            for h in hits {
                serde_json::to_writer(&mut *out, h)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

fn read_expected(path: &Path) -> anyhow::Result<Vec<Hit>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader.headers()?.clone();
    for required in ["event_time", "user", "computer"] {
        if !headers.iter().any(|h| h == required) {
            bail!(
                "{}: the header needs the columns event_time, user, computer (and may have score, reason); it has: {}",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut expected = Vec::new();
    for (row, record) in reader.deserialize::<Hit>().enumerate() {
        let mut hit = record.with_context(|| format!("{}: row {}", path.display(), row + 1))?;
        hit.reason = hit.reason.filter(|r| !r.is_empty());
        expected.push(hit);
    }
    Ok(expected)
}

/// Differences between expected and actual hits, one line each.
fn compare(expected: &[Hit], actual: &[Hit]) -> Vec<String> {
    let by_key: BTreeMap<_, _> = actual.iter().map(|h| (h.key(), h)).collect();
    let expected_keys: std::collections::BTreeSet<_> = expected.iter().map(Hit::key).collect();
    let mut lines = Vec::new();
    for want in expected {
        let (time, user, computer) = want.key();
        let Some(got) = by_key.get(&want.key()) else {
            lines.push(format!(
                "missing: {time} {user} {computer} was expected to be flagged"
            ));
            continue;
        };
        if let (Some(w), Some(g)) = (want.score, got.score)
            && (w - g).abs() > 0.01
        {
            lines.push(format!(
                "score: {time} {user} {computer} scored {g}, expected {w}"
            ));
        }
        if let (Some(w), Some(g)) = (&want.reason, &got.reason)
            && w != g
        {
            lines.push(format!(
                "reason: {time} {user} {computer} flagged for `{g}`, expected `{w}`"
            ));
        }
    }
    for got in actual {
        if !expected_keys.contains(&got.key()) {
            let (time, user, computer) = got.key();
            lines.push(format!(
                "unexpected: {time} {user} {computer} flagged ({}), not expected",
                got.reason.as_deref().unwrap_or("")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(time: &str, user: &str, score: Option<f32>, reason: Option<&str>) -> Hit {
        Hit {
            event_time: time.into(),
            user: user.into(),
            computer: "C1".into(),
            score,
            reason: reason.map(str::to_string),
            event_id: None,
        }
    }

    #[test]
    fn compare_reports_every_kind_of_difference() {
        let expected = vec![
            hit("t1", "U1", None, None),
            hit("t2", "U2", Some(40.0), None),
            hit("t3", "U3", None, Some("a")),
            hit("t4", "U4", None, None),
        ];
        let actual = vec![
            hit("t1", "U1", Some(10.0), Some("x")),
            hit("t2", "U2", Some(45.0), Some("x")),
            hit("t3", "U3", Some(1.0), Some("b")),
            hit("t5", "U5", Some(1.0), Some("c")),
        ];
        let lines = compare(&expected, &actual);
        assert_eq!(
            lines,
            vec![
                "score: t2 U2 C1 scored 45, expected 40",
                "reason: t3 U3 C1 flagged for `b`, expected `a`",
                "missing: t4 U4 C1 was expected to be flagged",
                "unexpected: t5 U5 C1 flagged (c), not expected",
            ]
        );
        assert!(compare(&actual, &actual).is_empty());
    }
}
