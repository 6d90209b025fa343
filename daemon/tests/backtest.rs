//! `authpulse rules backtest` on a warehouse a run wrote: the current policy
//! as the candidate changes nothing, and a candidate without a rule loses
//! exactly the incidents that rule made.

mod common;

use std::path::Path;

use common::{assert_succeeded, authpulse, generate};
use serde_json::Value;

/// A run over five days of 600 users with fan-in and spray attacks hidden
/// from day 2, its tables in `dir/out`.
fn warehouse(dir: &Path) {
    generate(
        dir,
        "--users 600 --days 5 --seed 4 --campaigns 6 --kinds fan_in,spray -o events.csv",
    );
    let out = authpulse(dir)
        .args(["run", "events.csv", "--output", "out"])
        .output()
        .unwrap();
    assert_succeeded(&out);
}

fn backtest(dir: &Path, candidate: &str) -> Value {
    std::fs::write(dir.join("candidate.yaml"), candidate).unwrap();
    let out = authpulse(dir)
        .args([
            "rules",
            "backtest",
            "--policy",
            "candidate.yaml",
            "--output",
            "out",
            "--json",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn backtest_compares_a_candidate_with_the_current_policy() {
    let dir = tempfile::tempdir().unwrap();
    warehouse(dir.path());
    let builtin = authpulse_engine::policy::DEFAULT_POLICY_YAML;

    // The same policy: the same incidents, day by day.
    let same = backtest(dir.path(), builtin);
    assert!(
        same["only_current"].as_array().unwrap().is_empty(),
        "{same}"
    );
    assert!(
        same["only_candidate"].as_array().unwrap().is_empty(),
        "{same}"
    );
    let incidents = same["current"]["incidents"].as_u64().unwrap();
    assert!(incidents >= 3, "the hidden attacks alert: {same}");
    assert_eq!(same["candidate"]["incidents"], same["current"]["incidents"]);
    assert_eq!(same["candidate"]["rule_hits"], same["current"]["rule_hits"]);
    let days = same["days"].as_array().unwrap();
    // Five days of LANL times 1..=432000: the very last second falls on
    // the sixth day's first.
    assert!((5..=6).contains(&days.len()), "{same}");
    assert!(
        days.iter().all(|d| d["current"] == d["candidate"]),
        "{same}"
    );
    let per_day: u64 = days.iter().map(|d| d["current"].as_u64().unwrap()).sum();
    assert_eq!(per_day, incidents);

    // Without fan_in (the only computer-side rule): every computer incident
    // is gone, and nothing else changes.
    let fan_in_incidents = same["current"]["incidents_by_rule"]["fan_in"]
        .as_u64()
        .unwrap_or(0);
    assert!(fan_in_incidents >= 1, "a fan-in alerts: {same}");
    let without = builtin.replace(
        "  - id: fan_in\n    module: builtin:fan_in\n",
        "  - id: fan_in\n    module: builtin:fan_in\n    enabled: false\n",
    );
    assert_ne!(without, builtin);
    let lost = backtest(dir.path(), &without);
    let only_current = lost["only_current"].as_array().unwrap();
    assert_eq!(only_current.len() as u64, fan_in_incidents, "{lost}");
    for incident in only_current {
        assert_eq!(incident["entity_type"], "computer", "{incident}");
        assert!(
            incident["rules"]
                .as_array()
                .unwrap()
                .contains(&Value::from("fan_in"))
        );
    }
    assert!(
        lost["only_candidate"].as_array().unwrap().is_empty(),
        "{lost}"
    );
    assert_eq!(
        lost["candidate"]["incidents"].as_u64().unwrap(),
        incidents - fan_in_incidents
    );
    assert!(
        lost["candidate"]["rule_hits"].get("fan_in").is_none(),
        "{lost}"
    );
}

/// A table that does not exist is a clear error.
#[test]
fn backtest_without_tables_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        authpulse_engine::policy::DEFAULT_POLICY_YAML,
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args([
            "rules", "backtest", "--policy", "p.yaml", "--output", "nowhere",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warehouse"), "{stderr}");
}
