//! The state limits: hit, counted, logged once, and nothing lost.

mod common;
use common::{authpulse, generate, summary};

/// Small state limits on generated data: every limit is hit, counted in the
/// summary and logged once when first reached; new users and computers past
/// their limit are dead-lettered with their reason, and every line is still
/// accounted for.
#[test]
fn state_limits_are_counted_logged_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 200 --days 2 --events 20000 --seed 5 -o events.csv",
    );
    let out = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "out", "--no-lakehouse"])
        .args(["--max-users", "50", "--max-computers", "100"])
        .args(["--max-window-events", "20", "--max-held-events", "5"])
        .env("AUTHPULSE_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s = summary(&out.stdout);
    let caps = &s["state_caps"];
    for cap in ["users", "computers", "window_events", "held_events"] {
        assert!(caps[cap].as_u64().unwrap() > 0, "{cap}: {s}");
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains("a state limit was reached")
                    && l.contains(&format!("cap=\"{cap}\"")))
                .count(),
            1,
            "{cap} is logged when first reached: {stderr}"
        );
    }
    assert_eq!(s["users"], 50);
    assert_eq!(s["computers"], 100);
    let by_reason = &s["invalid_by_reason"];
    assert_eq!(by_reason["state_cap_users"], caps["users"]);
    assert_eq!(by_reason["state_cap_computers"], caps["computers"]);
    let n = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(n("events_read"), n("events_valid") + n("invalid"));
    assert_eq!(
        n("events_valid"),
        n("events_scored") + n("duplicates") + n("late")
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    let capped = dead
        .lines()
        .filter(|l| l.contains("\"kind\":\"state_cap_users\""))
        .count() as u64;
    assert_eq!(capped, caps["users"].as_u64().unwrap());
}
