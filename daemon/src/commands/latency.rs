//! `bench --latency`: wall-clock time from an event's arrival to its alert's
//! publication, on a live stream at a steady rate.
//!
//! A producer thread writes LANL CSV into a pipe at `--rate` events a second,
//! each stamped with the current second: generated background activity, and
//! every few seconds a new account that logs on once a second. Its 21st logon
//! within the hour crosses the burst rule's no-history threshold (set to 20
//! here, so that an alert opens every few seconds), and the incident opens on
//! that event. The pipeline reads the other end of the pipe and writes alerts
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
use authpulse_engine::sinks::{AlertSink, Discard, JsonLinesFile};

/// Logons of a bench account before its alert: the burst rule's threshold.
const TRIGGER: u32 = 21;

/// Publishes to the alerts file, then notes when each `open` alert was out.
struct Recorder {
    file: JsonLinesFile,
    opened: HashMap<String, Instant>,
}

impl AlertSink for Recorder {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.file.send(alert)?;
        if alert.status == AlertStatus::Open {
            self.opened.insert(alert.entity_id.clone(), Instant::now());
        }
        Ok(())
    }
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
            "cold_min_logins_1h: 250",
            &format!("cold_min_logins_1h: {}", TRIGGER - 1),
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
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
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
    let mut latency_s: Vec<f64> = recorder
        .opened
        .iter()
        .filter_map(|(account, published)| {
            let sent = *sent.get(account)?;
            (sent < settled).then(|| published.duration_since(sent).as_secs_f64())
        })
        .collect();
    latency_s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        latency_s
            .get(((latency_s.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let excess_ms = |p: f64| ((q(p) - lateness.as_secs_f64()) * 1000.0).round();
    Ok(serde_json::json!({
        "events": events,
        "rate": rate,
        "lateness_s": lateness.as_secs(),
        "bench_accounts": accounts,
        "alerts_measured": latency_s.len(),
        "latency_s_p50": q(0.5),
        "latency_s_max": q(1.0),
        "beyond_lateness_ms_p50": excess_ms(0.5),
        "beyond_lateness_ms_p95": excess_ms(0.95),
        "beyond_lateness_ms_max": excess_ms(1.0),
    }))
}

/// Writes the stream; returns the events written, the bench accounts
/// started and when it stopped.
fn produce(
    writer: std::io::PipeWriter,
    args: &LatencyArgs,
    sent: &Mutex<HashMap<String, Instant>>,
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
                writeln!(out, "{now_unix},{account},CBENCH")?;
                out.flush()?;
                if *logons == TRIGGER {
                    sent.lock()
                        .expect("the pipeline does not hold it")
                        .insert(account.clone(), Instant::now());
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
