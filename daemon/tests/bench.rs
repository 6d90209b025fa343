//! `authpulse bench` modes that measure more than a rate: `--latency`
//! (alerts on a live stream) and `--shares` (a fleet worker's trades).

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse};

/// `bench --latency` on a short live stream: alerts are measured, none is
/// published before the watermark let its event go, and the report says how
/// long after.
#[test]
fn latency_bench_measures_alerts_on_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args([
            "bench",
            "--latency",
            "--events",
            "20000",
            "--users",
            "200",
            "--rate",
            "500",
            "--duration",
            "32s",
            "--lateness",
            "2s",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rate"], 500, "{report}");
    assert!(report["alerts_measured"].as_u64().unwrap() >= 1, "{report}");
    // An event is held for the lateness, and for the rest of its second.
    let latency = report["latency_s_p50"].as_f64().unwrap();
    assert!((2.0..3.0 + 10.0).contains(&latency), "{report}");
    assert!(
        report["pipeline_ms_p50"].as_f64().unwrap() >= 0.0,
        "{report}"
    );
}

/// `bench --shares` at a small scale: the first of four shards' events are
/// scored alone and trading with the other three, whose shares were written
/// first; the report counts the trades and sizes every shard's share.
#[test]
fn shares_bench_trades_with_three_other_shards() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args([
            "bench", "--shares", "--events", "20000", "--users", "200", "--days", "2", "--repeat",
            "1",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = report["events"].as_u64().unwrap();
    assert!(
        (2_000..10_000).contains(&events),
        "a quarter of the users' events: {report}"
    );
    assert!(
        report["handed_over"].as_u64().unwrap() >= 1,
        "the first trade: {report}"
    );
    assert!(report["traded_in"].as_u64().unwrap() >= 1, "{report}");
    let sizes = report["share_bytes"].as_object().unwrap();
    assert_eq!(sizes.len(), 4, "{report}");
    assert!(
        sizes.values().all(|b| b.as_u64().unwrap() > 100),
        "{report}"
    );
}
