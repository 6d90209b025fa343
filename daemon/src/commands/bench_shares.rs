//! `authpulse bench --shares`: what trading host shares costs a fleet
//! worker's scoring thread. The generated events are split into four shards
//! by user, as a four-shard stream's partition keys split them. The other
//! three shards' shares are written once, from a run over their users (not
//! timed); then the first shard's events are scored alone and as a fleet
//! worker holding that shard, alternately. The worker trades as a backfill
//! does (after every five minutes of event time, ten times a second at
//! most) with share files in a local directory: its requests run on their
//! own thread, as against S3, so what the difference shows is the scoring
//! thread's part (building its shares, taking the others' in, deciding
//! computers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use authpulse::aws::shards::{HashRange, partition_hash};
use authpulse::fleet::LiveShards;
use authpulse::fleet::host_shares::ShareFiles;
use authpulse_engine::input::{LineReader, MAX_LINE_DEFAULT};
use authpulse_engine::pipeline::{FleetPace, FleetStats, consume};
use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use authpulse_engine::snapshot::{LocalFiles, SnapshotFiles};
use memchr::memchr_iter;

use super::bench::{BenchArgs, BenchSinks};

const SHARDS: usize = 4;

/// How often a live worker trades; a backfill trades more often, by event
/// time (the pipeline's own rule).
const TRADE_EVERY: Duration = Duration::from_secs(1);

/// Each of `SHARDS` shards' name and hash-key range, split evenly as
/// Kinesis splits a new stream.
fn shards() -> Vec<(String, HashRange)> {
    let width = u128::MAX / SHARDS as u128;
    (0..SHARDS)
        .map(|i| {
            let start = width * i as u128 + i as u128;
            let end = if i + 1 == SHARDS {
                u128::MAX
            } else {
                start + width
            };
            (format!("shard-{i}"), HashRange { start, end })
        })
        .collect()
}

/// `data`'s LANL lines: the first shard's, and the others'.
fn split(data: &[u8], first: HashRange) -> (Vec<u8>, Vec<u8>) {
    let (mut own, mut others) = (Vec::new(), Vec::new());
    let mut start = 0;
    for end in memchr_iter(b'\n', data) {
        let line = &data[start..=end];
        start = end + 1;
        let user = line.split(|&b| b == b',').nth(1).unwrap_or_default();
        let hash = partition_hash(&String::from_utf8_lossy(user));
        if first.contains(hash) {
            own.extend_from_slice(line);
        } else {
            others.extend_from_slice(line);
        }
    }
    (own, others)
}

/// A worker's trader holding `held`, every shard's lease taken as dead
/// (nobody waits for another).
fn worker(
    held: &[(String, HashRange)],
    files: &Arc<dyn SnapshotFiles>,
) -> anyhow::Result<ShareFiles> {
    let names: Vec<String> = shards().into_iter().map(|(shard, _)| shard).collect();
    let live = LiveShards::fixed(names.iter().map(|shard| (shard.as_str(), false)));
    Ok(ShareFiles::new(
        Arc::clone(files),
        "bench",
        held.to_vec(),
        live,
    )?)
}

/// Scores `data`, trading through `exchange` if given. Returns the seconds
/// taken (the last trade, at the end of input, included) and what trading
/// cost while reading.
fn score(
    policy: &Policy,
    batch_size: usize,
    data: &[u8],
    exchange: Option<&mut ShareFiles>,
) -> anyhow::Result<(f64, FleetStats)> {
    let mut sinks = BenchSinks::default();
    let mut pipeline = sinks.pipeline(policy, Engine::Native, batch_size, Some(0))?;
    let started = Instant::now();
    if let Some(exchange) = exchange {
        let pace = FleetPace {
            trade_every: TRADE_EVERY,
            max_drift_s: None,
        };
        pipeline.share_hosts(exchange, pace);
    }
    let mut lines = LineReader::new(data, MAX_LINE_DEFAULT);
    consume(
        &mut pipeline,
        &mut lines,
        &AtomicBool::new(false),
        |_, _| {},
    )?;
    let stats = pipeline.fleet_stats();
    pipeline.finish()?;
    Ok((started.elapsed().as_secs_f64(), stats))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn bench_shares(args: &BenchArgs, data: &[u8]) -> anyhow::Result<()> {
    let shards = shards();
    let (own, others) = split(data, shards[0].1);
    let events = memchr_iter(b'\n', &own).count();
    let dir = tempfile::tempdir()?;
    let files: Arc<dyn SnapshotFiles> = Arc::new(LocalFiles::new(dir.path())?);
    let policy = Policy::builtin();
    eprintln!(
        "writing the other {} shards' shares ({} lines) ...",
        SHARDS - 1,
        memchr_iter(b'\n', &others).count()
    );
    score(
        &policy,
        args.batch_size,
        &others,
        Some(&mut worker(&shards[1..], &files)?),
    )?;
    let (mut alone, mut trading) = (Vec::new(), Vec::new());
    let mut per_trade_ms = Vec::new();
    let mut last = FleetStats::default();
    for round in 1..=args.repeat.max(1) {
        let (seconds, _) = score(&policy, args.batch_size, &own, None)?;
        alone.push(seconds);
        let (seconds, stats) = score(
            &policy,
            args.batch_size,
            &own,
            Some(&mut worker(&shards[..1], &files)?),
        )?;
        trading.push(seconds);
        per_trade_ms.push(stats.trading.as_secs_f64() * 1e3 / stats.handed_over.max(1) as f64);
        eprintln!(
            "round {round}: alone {:.2} s, trading {seconds:.2} s ({} shares handed over, {} traded in, {:.1} ms each on the scoring thread)",
            alone[alone.len() - 1],
            stats.handed_over,
            stats.trades,
            per_trade_ms[per_trade_ms.len() - 1]
        );
        last = stats;
    }
    let mut share_bytes = BTreeMap::new();
    for (shard, _) in &shards {
        let name = format!("hosts-{shard}.json");
        share_bytes.insert(
            shard.clone(),
            std::fs::metadata(dir.path().join(name))?.len(),
        );
    }
    let (alone_s, trading_s) = (median(&mut alone), median(&mut trading));
    let report = serde_json::json!({
        "events": events,
        "users": args.users,
        "shards": SHARDS,
        "alone_s": alone_s,
        "trading_s": trading_s,
        "alone_events_per_s": events as f64 / alone_s,
        "trading_events_per_s": events as f64 / trading_s,
        "overhead_pct": (trading_s / alone_s - 1.0) * 100.0,
        "handed_over": last.handed_over,
        "traded_in": last.trades,
        "trade_ms_on_scoring_thread": median(&mut per_trade_ms),
        "share_bytes": share_bytes,
    });
    outln!("{}", serde_json::to_string(&report)?)?;
    eprintln!(
        "{events} events of one shard of {SHARDS}: alone {:.0} events/s, trading host shares {:.0} events/s \
         ({:+.1}%; {} trades of {:.1} ms on the scoring thread; medians of {})",
        report["alone_events_per_s"].as_f64().unwrap_or(0.0),
        report["trading_events_per_s"].as_f64().unwrap_or(0.0),
        report["overhead_pct"].as_f64().unwrap_or(0.0),
        last.handed_over,
        report["trade_ms_on_scoring_thread"].as_f64().unwrap_or(0.0),
        args.repeat.max(1)
    );
    Ok(())
}
