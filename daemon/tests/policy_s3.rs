//! One policy on S3 for a fleet: `run --policy s3://...` copies the policy
//! and its module, picks up a change within the poll interval (and swaps it
//! in between batches, as for a local file), refuses a broken change and a
//! module outside the policy's prefix, and keeps scoring with the last good
//! version. Against a local S3 (moto).

mod common;

use std::io::Write;
use std::process::Command;

use common::moto::Moto;
use common::{changed_policy, run_ok, spawn_logged, wait_for_line};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authpulse");

#[test]
fn a_policy_on_s3_is_followed_and_a_bad_change_refused() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    run_ok(
        work,
        &[
            "gen",
            "--users",
            "200",
            "--days",
            "2",
            "--events",
            "20000",
            "--seed",
            "3",
            "-o",
            "events.csv",
        ],
    );
    let data = std::fs::read_to_string(work.join("events.csv")).unwrap();
    let lines: Vec<&str> = data.lines().collect();
    let half = lines.len() / 2;
    let part = |range: std::ops::Range<usize>| lines[range].join("\n") + "\n";

    moto.create_bucket("fleet-config");
    let put = |key: &str, body: &[u8]| moto.put_object("fleet-config", key, body);
    put(
        "authpulse/policies.yaml",
        authpulse_engine::policy::DEFAULT_POLICY_YAML.as_bytes(),
    );
    let mut command = Command::new(BIN);
    command
        .args([
            "run",
            "-",
            "--output",
            "live",
            "--no-lakehouse",
            "--scored",
            "live.jsonl",
            "--policy",
            "s3://fleet-config/authpulse/policies.yaml",
            "--policy-poll-interval",
            "500ms",
            "--s3-path-style",
            "--batch-size",
            "512",
        ])
        .envs(moto.env())
        .current_dir(work);
    let (mut daemon, log) = spawn_logged(&mut command);
    wait_for_line(&log, "watching the policy");
    assert_eq!(
        std::fs::read_to_string(work.join("live/policy/policies.yaml")).unwrap(),
        authpulse_engine::policy::DEFAULT_POLICY_YAML
    );
    let mut stdin = daemon.stdin.take().unwrap();
    stdin.write_all(part(0..half).as_bytes()).unwrap();
    stdin.flush().unwrap();

    // The module first, then the policy that names it, as a deployment
    // would upload them.
    put(
        "authpulse/modules/swapped.wasm",
        authpulse_engine::rules::builtin_module("rare_host").unwrap(),
    );
    put(
        "authpulse/policies.yaml",
        changed_policy("modules/swapped.wasm").as_bytes(),
    );
    wait_for_line(&log, "policy copied from S3");
    wait_for_line(&log, "new policy built");
    stdin.write_all(part(half..lines.len()).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for_line(&log, "policy reloaded");
    assert!(work.join("live/policy/modules/swapped.wasm").exists());

    // A broken policy reaches the watcher, which refuses it with the reason.
    put(
        "authpulse/policies.yaml",
        changed_policy("modules/swapped.wasm")
            .replace("weight: 2.0", "weight: [2")
            .as_bytes(),
    );
    let refused = wait_for_line(&log, "policy change refused");
    assert!(refused.contains("policies.yaml"), "{refused}");
    // A module outside the policy's prefix is never fetched.
    put(
        "authpulse/policies.yaml",
        changed_policy("../elsewhere/evil.wasm").as_bytes(),
    );
    let outside = wait_for_line(&log, "policy change on S3 not taken");
    assert!(
        outside.contains("../elsewhere/evil.wasm") && outside.contains("not a path below"),
        "{outside}"
    );
    drop(stdin);
    let output = daemon.wait_with_output().unwrap();
    assert!(output.status.success());
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(summary["policy_reloads"], 1, "{summary}");
    assert_eq!(summary["policy_reloads_refused"], 1, "{summary}");
    // Nothing lost across the swaps: every line read, every unique one scored.
    assert_eq!(summary["events_read"], lines.len() as u64, "{summary}");
    let unique = summary["events_read"].as_u64().unwrap() - summary["duplicates"].as_u64().unwrap();
    assert_eq!(summary["events_scored"].as_u64(), Some(unique), "{summary}");
    assert!(!work.join("live/elsewhere").exists() && !work.join("elsewhere").exists());

    // Every row after the swap carries the new version.
    let rows: Vec<Value> = std::fs::read_to_string(work.join("live/live.jsonl"))
        .or_else(|_| std::fs::read_to_string(work.join("live.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let versions: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["policy_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        summary["policy_version"],
        rows.last().unwrap()["policy_version"]
    );
}
