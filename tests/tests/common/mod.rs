//! Helpers shared by the end-to-end tests: generated data and a pipeline run
//! over bytes with everything collected in memory.
#![allow(dead_code)]

use authpulse::generator::{Attack, Generator, GeneratorConfig};
use authpulse::pipeline::{Outputs, Pipeline, PipelineOptions, Summary};
use authpulse::policy::Policy;
use authpulse::rules::Engine;
use authpulse::sinks::Collect;

/// Generated LANL CSV and its hidden attacks.
pub fn generate(
    users: u32,
    days: u32,
    events: u64,
    attacks: u32,
    seed: u64,
) -> (Vec<u8>, Vec<Attack>) {
    let generator = Generator::new(GeneratorConfig {
        users,
        computers: users * 2,
        days,
        events: Some(events),
        seed,
        attacks,
    });
    let mut data = Vec::new();
    generator.write(&mut data, |_| {}).unwrap();
    (data, generator.attacks().to_vec())
}

pub struct Outcome {
    pub summary: Summary,
    pub collected: Collect,
}

/// Scores `data` with `policy`, collecting rows, alerts and dead letters.
pub fn score(data: &[u8], policy: &Policy, batch_size: usize, engine: Engine) -> Outcome {
    let mut dead = Collect::default();
    let mut alerts = Collect::default();
    let mut rows = Collect::default();
    let pipe = Pipeline::new(
        policy.clone(),
        PipelineOptions {
            batch_size,
            engine,
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

/// Every field of the summary but the timings.
pub fn comparable(summary: &Summary) -> Summary {
    let mut rules = summary.rules.clone();
    for report in rules.values_mut() {
        report.time_ms = 0.0;
    }
    Summary {
        elapsed_s: 0.0,
        events_per_s: 0.0,
        rules,
        ..summary.clone()
    }
}
