//! Helpers shared by the end-to-end tests: generated data and a pipeline run
//! over bytes with everything collected in memory.
#![allow(dead_code)]

use authpulse_engine::alerts::Alert;
use authpulse_engine::pipeline::{Outputs, Pipeline, PipelineOptions, Summary};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::sinks::Collect;
use authpulse_generator::{Campaign, CampaignPlan, Generator, GeneratorConfig, Kind};

/// Generated LANL CSV and its hidden loud attacks (sprays and bursts, in
/// turn, from day 2 on).
pub fn generate(
    users: u32,
    days: u32,
    events: u64,
    attacks: u32,
    seed: u64,
) -> (Vec<u8>, Vec<Campaign>) {
    let kinds = [Kind::Spray, Kind::Burst];
    generate_kinds(users, days, events, attacks, seed, &kinds, 2.min(days - 1))
}

/// [`generate`] with attacks of `kinds` (all kinds when empty), starting on
/// day `from_day` (0-based) or later.
pub fn generate_kinds(
    users: u32,
    days: u32,
    events: u64,
    attacks: u32,
    seed: u64,
    kinds: &[Kind],
    from_day: u32,
) -> (Vec<u8>, Vec<Campaign>) {
    let generator = Generator::new(GeneratorConfig {
        users,
        computers: users * 2,
        days,
        events: Some(events),
        seed,
        campaigns: CampaignPlan {
            attacks,
            benign: 0,
            kinds: kinds.to_vec(),
            from_day,
        },
        ..Default::default()
    });
    let mut data = Vec::new();
    generator.write(&mut data, |_| {}).unwrap();
    (data, generator.campaigns(authpulse_generator::Record::Lanl))
}

pub struct Outcome {
    pub summary: Summary,
    pub collected: Collect,
}

/// Scores `data` with `policy`, collecting rows, alerts and dead letters.
pub fn score(data: &[u8], policy: &Policy, batch_size: usize, engine: Engine) -> Outcome {
    let parse_threads = PipelineOptions::default().parse_threads;
    score_parsed_by(data, policy, batch_size, engine, parse_threads)
}

/// [`score`] with `parse_threads` parsing ahead of the pipeline thread.
pub fn score_parsed_by(
    data: &[u8],
    policy: &Policy,
    batch_size: usize,
    engine: Engine,
    parse_threads: Option<usize>,
) -> Outcome {
    let mut dead = Collect::default();
    let mut alerts = Collect::default();
    let mut rows = Collect::default();
    let pipe = Pipeline::new(
        policy.clone(),
        PipelineOptions {
            batch_size,
            engine,
            // Batches are cut by size only, so that tests may count them: on
            // a slow machine the 50 ms latency bound would cut extra ones.
            max_batch_delay: std::time::Duration::from_secs(3600),
            parse_threads,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut rows,
            received: None,
        },
    )
    .expect("policy loads");
    let summary = pipe.score_bytes(data).unwrap();
    Outcome {
        summary,
        collected: Collect {
            dead_letters: dead.dead_letters,
            alerts: alerts.alerts,
            rows: rows.rows,
        },
    }
}

pub fn score_default(data: &[u8], batch_size: usize) -> Outcome {
    score(data, &Policy::builtin(), batch_size, Engine::Wasm)
}

/// The latest publication of each incident (its closing, after a run), in
/// the order the incidents first appeared.
pub fn latest(alerts: &[Alert]) -> Vec<&Alert> {
    let mut order: Vec<&str> = Vec::new();
    let mut last: std::collections::HashMap<&str, &Alert> = Default::default();
    for alert in alerts {
        if last.insert(alert.alert_id.as_str(), alert).is_none() {
            order.push(alert.alert_id.as_str());
        }
    }
    order.into_iter().map(|id| last[id]).collect()
}

/// Every field of the summary but the timings and the state's memory (which
/// follows how buffers happened to grow, not what was computed).
pub fn comparable(summary: &Summary) -> Summary {
    let mut rules = summary.rules.clone();
    for report in rules.values_mut() {
        report.time_ms = 0.0;
    }
    Summary {
        elapsed_s: 0.0,
        events_per_s: 0.0,
        state_bytes: 0,
        rules,
        ..summary.clone()
    }
}

/// Ids of the default policy's rules that judge only what richer records
/// say (`events: detailed`): never called on LANL lines.
pub fn detailed_rules() -> Vec<String> {
    use authpulse_engine::rules::{EventFilter, RuleSet};
    let rules = RuleSet::load(&Policy::builtin(), Engine::Native, 1).unwrap();
    rules
        .rules
        .iter()
        .filter(|r| r.metadata.events == EventFilter::Detailed)
        .map(|r| r.id.clone())
        .collect()
}
