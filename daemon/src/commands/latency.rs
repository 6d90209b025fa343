//! `bench --latency`: wall-clock time from an event's arrival to its alert's
//! publication, on a live stream at a steady rate.
//!
//! A producer thread writes LANL CSV into a pipe at `--rate` events a second,
//! each stamped with the current second: generated background activity, and
//! every few seconds a new account that logs on once a second, each time to
//! a computer it never used. Its 21st new computer within the hour reaches
//! the lateral-movement rule's no-history threshold (set to 21 here, so that
//! an alert opens every few seconds), and the incident opens on that event. The pipeline reads the other end of the pipe and writes alerts
//! to a JSON-lines file; a recording sink notes when each `open` alert has
//! been written. Latency is that instant minus the instant the producer
//! wrote the triggering event. It is the allowed lateness (the watermark
//! holds every event that long) plus what the pipeline adds; the lateness is
//! shortened by `--lateness` so that a run takes a minute, not an hour.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authpulse_engine::alerts::{Alert, AlertStatus};
use authpulse_engine::event::TimeBase;
use authpulse_engine::input::{LineReader, MAX_LINE_DEFAULT};
use authpulse_engine::pipeline::{self, Outputs, Pipeline, PipelineOptions};
use authpulse_engine::policy::Policy;
use authpulse_engine::sinks::{AlertSink, Commit, Discard, JsonLinesFile};

/// Logons of a bench account, each to a new computer, that open its alert:
/// the lateral-movement rule's threshold in burn-in.
const TRIGGER: u32 = 21;

/// Publishes to the alerts file, then notes when each `open` alert was out.
struct Recorder {
    file: JsonLinesFile,
    opened: HashMap<String, Instant>,
}

impl Commit for Recorder {}

impl AlertSink for Recorder {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.file.send(alert)?;
        if alert.status == AlertStatus::Open {
            self.opened.insert(alert.entity_id.clone(), Instant::now());
        }
        Ok(())
    }
}

/// What the producer wrote when: each bench account's triggering logon
/// (instant and event second), and the first line of every second.
#[derive(Default)]
struct Sent {
    triggers: HashMap<String, (Instant, u64)>,
    seconds: HashMap<u64, Instant>,
}

pub struct LatencyArgs {
    pub rate: u32,
    pub duration: Duration,
    pub lateness: Duration,
    pub background: Vec<(String, String)>,
}

pub fn bench_latency(args: LatencyArgs) -> anyhow::Result<serde_json::Value> {
    let yaml = authpulse_engine::policy::DEFAULT_POLICY_YAML
        .replace(
            "allowed_lateness: 5m",
            &format!("allowed_lateness: {}s", args.lateness.as_secs()),
        )
        .replace(
            "cold_min_new_computers: 40",
            &format!("cold_min_new_computers: {TRIGGER}"),
        );
    anyhow::ensure!(
        yaml.contains(&format!("cold_min_new_computers: {TRIGGER}")),
        "the default policy no longer sets lateral_movement's cold_min_new_computers"
    );
    let policy = Policy::parse(&yaml, "bench policy", std::path::Path::new("."))?;
    let dir = tempfile::Builder::new()
        .prefix("authpulse-latency")
        .tempdir()?;
    let mut recorder = Recorder {
        file: JsonLinesFile::create(dir.path().join("alerts.jsonl"))?,
        opened: HashMap::new(),
    };
    let (lateness, rate) = (args.lateness, args.rate);
    let (reader, writer) = std::io::pipe()?;
    let sent: Arc<Mutex<Sent>> = Arc::default();
    let producer = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || produce(writer, &args, &sent))
    };
    let mut dead = Discard;
    let mut scored = Discard;
    let mut pipeline = Pipeline::new(
        policy,
        PipelineOptions {
            // LANL time is Unix time: each line carries the current second.
            time_base: TimeBase::parse("1970-01-01").expect("a valid date"),
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut recorder,
            scored: &mut scored,
            received: None,
        },
    )?;
    let mut lines = LineReader::new(std::io::BufReader::new(reader), MAX_LINE_DEFAULT);
    pipeline::consume(
        &mut pipeline,
        &mut lines,
        &AtomicBool::new(false),
        |_, _| {},
    )?;
    let (events, accounts, stopped) = producer
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    drop(pipeline);
    let sent = sent.lock().expect("the producer is done");
    // Events still held when the stream ended are released by its end, not
    // by the watermark: those alerts say nothing about live latency.
    let settled = stopped - lateness - Duration::from_secs(2);
    // From the triggering event's arrival to its alert, and from the moment
    // the watermark let it go (the first event more than the lateness
    // newer arrived: event times are whole seconds) to its alert: the
    // pipeline's own part.
    let mut latency_s = Vec::new();
    let mut pipeline_ms = Vec::new();
    for (account, published) in &recorder.opened {
        let Some(&(arrived, second)) = sent.triggers.get(account) else {
            continue;
        };
        let Some(&released) = sent.seconds.get(&(second + lateness.as_secs() + 1)) else {
            continue;
        };
        if arrived < settled {
            latency_s.push(published.duration_since(arrived).as_secs_f64());
            pipeline_ms.push(published.saturating_duration_since(released).as_secs_f64() * 1000.0);
        }
    }
    latency_s.sort_by(f64::total_cmp);
    pipeline_ms.sort_by(f64::total_cmp);
    let q = |values: &[f64], p: f64| {
        values
            .get(((values.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(serde_json::json!({
        "events": events,
        "rate": rate,
        "lateness_s": lateness.as_secs(),
        "bench_accounts": accounts,
        "alerts_measured": latency_s.len(),
        "latency_s_p50": q(&latency_s, 0.5),
        "latency_s_max": q(&latency_s, 1.0),
        "pipeline_ms_p50": q(&pipeline_ms, 0.5).round(),
        "pipeline_ms_p95": q(&pipeline_ms, 0.95).round(),
        "pipeline_ms_max": q(&pipeline_ms, 1.0).round(),
    }))
}

/// Writes the stream; returns the events written, the bench accounts
/// started and when it stopped.
fn produce(
    writer: std::io::PipeWriter,
    args: &LatencyArgs,
    sent: &Mutex<Sent>,
) -> anyhow::Result<(u64, u32, Instant)> {
    let mut out = std::io::BufWriter::new(writer);
    let started = Instant::now();
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate as f64 * tick.as_secs_f64()).round().max(1.0) as u64;
    let mut written = 0u64;
    let mut background = args.background.iter().cycle();
    // Account k starts at second 4k and logs on once a second.
    let mut accounts: Vec<(String, u32, Instant)> = Vec::new();
    let mut next_tick = started;
    while started.elapsed() < args.duration {
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        sent.lock()
            .expect("the pipeline does not hold it")
            .seconds
            .entry(now_unix)
            .or_insert_with(Instant::now);
        for _ in 0..per_tick {
            let (user, computer) = background.next().expect("background is not empty");
            writeln!(out, "{now_unix},{user},{computer}")?;
            written += 1;
        }
        let second = started.elapsed().as_secs() as u32;
        if second.is_multiple_of(4) && accounts.len() as u32 == second / 4 {
            accounts.push((format!("UBENCH{}", second / 4), 0, Instant::now()));
        }
        for (account, logons, last) in &mut accounts {
            if *logons < TRIGGER + 2 && (*logons == 0 || last.elapsed() >= Duration::from_secs(1)) {
                *logons += 1;
                *last = Instant::now();
                writeln!(out, "{now_unix},{account},C{account}-{logons}")?;
                out.flush()?;
                if *logons == TRIGGER {
                    sent.lock()
                        .expect("the pipeline does not hold it")
                        .triggers
                        .insert(account.clone(), (Instant::now(), now_unix));
                }
                written += 1;
            }
        }
        out.flush()?;
        next_tick += tick;
        if let Some(wait) = next_tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    out.flush()?;
    Ok((written, accounts.len() as u32, Instant::now()))
}
