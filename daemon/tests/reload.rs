//! Hot reload: the daemon scores a stream from stdin while its policy file
//! changes under it (a weight, and a rule's module swapped for another), then
//! a broken change arrives. Nothing may be lost or scored twice, events scored
//! after the swap carry the new version, state survives, and the broken
//! change is refused while the running policy stays.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{changed_policy, run_ok, spawn_logged, wait_for_line};

const BIN: &str = env!("CARGO_BIN_EXE_authpulse");

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn flags(row: &Value) -> HashSet<&str> {
    row["risk_flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

#[test]
fn policy_and_module_swap_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    run_ok(
        work,
        &[
            "gen",
            "--users",
            "300",
            "--days",
            "4",
            "--events",
            "60000",
            "--campaigns",
            "2",
            "--kinds",
            "spray,burst",
            "--seed",
            "5",
            "-o",
            "events.csv",
        ],
    );
    let data = std::fs::read_to_string(work.join("events.csv")).unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let third = lines.len() / 3;
    let part = |range: std::ops::Range<usize>| {
        let mut text = lines[range].join("\n");
        text.push('\n');
        text
    };
    std::fs::write(
        work.join("policies.yaml"),
        authpulse_engine::policy::DEFAULT_POLICY_YAML,
    )
    .unwrap();

    // The same data without reloads: the reference for state and counts.
    let plain = run_ok(
        work,
        &[
            "run",
            "events.csv",
            "--output",
            "plain",
            "--no-lakehouse",
            "--scored",
            "plain.jsonl",
            "--policy",
            "policies.yaml",
            "--no-policy-reload",
        ],
    );
    let plain_summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&plain.stdout).trim()).unwrap();

    let (mut daemon, log) = spawn_logged(
        Command::new(BIN)
            .args([
                "run",
                "-",
                "--output",
                "live",
                "--no-lakehouse",
                "--scored",
                "live.jsonl",
                "--policy",
                "policies.yaml",
                "--batch-size",
                "512",
            ])
            .current_dir(work),
    );
    wait_for_line(&log, "watching the policy");
    let mut stdin = daemon.stdin.take().unwrap();
    stdin.write_all(part(0..third).as_bytes()).unwrap();
    stdin.flush().unwrap();

    // Change a weight and swap a module while the daemon waits for input.
    std::fs::write(
        work.join("swapped.wasm"),
        authpulse_engine::rules::builtin_module("rare_host").unwrap(),
    )
    .unwrap();
    std::fs::write(work.join("policies.yaml"), changed_policy("swapped.wasm")).unwrap();
    wait_for_line(&log, "new policy built");
    stdin.write_all(part(third..2 * third).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let reloaded = wait_for_line(&log, "policy reloaded");
    assert!(reloaded.contains("pause_us="), "{reloaded}");

    // A broken change is refused, with where and why.
    std::fs::write(
        work.join("policies.yaml"),
        changed_policy("swapped.wasm").replace("weight: 2.0", "weight: [2"),
    )
    .unwrap();
    let refused = wait_for_line(&log, "policy change refused");
    assert!(refused.contains("policies.yaml"), "{refused}");
    stdin
        .write_all(part(2 * third..lines.len()).as_bytes())
        .unwrap();
    drop(stdin);
    let output = daemon.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();

    assert_eq!(summary["policy_reloads"], 1, "{summary}");
    assert_eq!(summary["policy_reloads_refused"], 1, "{summary}");
    for field in [
        "events_read",
        "events_scored",
        "duplicates",
        "late",
        "device_pairs",
        "users",
    ] {
        assert_eq!(summary[field], plain_summary[field], "{field}");
    }

    let live = rows(&work.join("live.jsonl"));
    let plain = rows(&work.join("plain.jsonl"));
    assert_eq!(
        live.len() as u64,
        summary["events_scored"].as_u64().unwrap()
    );
    let ids: HashSet<&str> = live
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), live.len(), "an event was scored twice");
    let plain_by_id: HashMap<&str, &Value> = plain
        .iter()
        .map(|r| (r["event_id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(
        ids,
        plain_by_id.keys().copied().collect(),
        "events lost or invented"
    );

    // One switch from the old version to the new, in scoring order.
    let old_version = plain_summary["policy_version"].as_str().unwrap();
    let new_version = summary["policy_version"].as_str().unwrap();
    assert_ne!(old_version, new_version);
    let switch = live
        .iter()
        .position(|r| r["policy_version"] == new_version)
        .expect("events scored after the swap");
    assert!(switch > 0, "events scored before the swap");
    assert!(
        live[..switch]
            .iter()
            .all(|r| r["policy_version"] == old_version)
    );
    assert!(
        live[switch..]
            .iter()
            .all(|r| r["policy_version"] == new_version)
    );
    assert!(
        live.len() - switch >= lines.len() - 2 * third,
        "everything sent after the swap is scored by the new version"
    );

    let mut rare_after = 0;
    for row in &live {
        let reference = plain_by_id[row["event_id"].as_str().unwrap()];
        // State (windows, devices, host popularity) survived the swap.
        for feature in [
            "user_logins_1h",
            "user_logins_24h",
            "user_distinct_computers_24h",
            "user_new_computers_1h",
            "user_known_computers",
            "host_users_ever",
            "new_device",
        ] {
            assert_eq!(
                row[feature], reference[feature],
                "{feature} of {}",
                row["event_id"]
            );
        }
        if row["policy_version"] == old_version {
            assert_eq!(row["risk_score"], reference["risk_score"]);
            assert_eq!(row["risk_flags"], reference["risk_flags"]);
        } else {
            // `burst` now runs the rare_host module: the two fire together.
            let fired = flags(row);
            assert_eq!(
                fired.contains("burst"),
                fired.contains("rare_host"),
                "{row}"
            );
            rare_after += usize::from(fired.contains("rare_host"));
        }
    }
    assert!(
        rare_after > 0,
        "the swapped module never fired after the swap"
    );
}
