//! `bench --latency`: alerts measured on a live stream.

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
