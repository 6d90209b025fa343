//! The `authpulse` binary as users run it: `gen | run`, files and stdin, the
//! summary line, output files, and clear failures.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

fn authpulse(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authpulse"));
    cmd.current_dir(dir).env("AUTHPULSE_LOG", "warn");
    cmd
}

fn summary(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary line in {text:?}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {last}"))
}

#[test]
fn gen_then_run_from_file_writes_alerts_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let status = authpulse(dir.path())
        .args([
            "gen",
            "--users",
            "300",
            "--days",
            "4",
            "--events",
            "60000",
            "--attacks",
            "2",
        ])
        .args(["--seed", "5", "-o", "events.csv", "--truth", "truth.jsonl"])
        .status()
        .unwrap();
    assert!(status.success());
    let truth = std::fs::read_to_string(dir.path().join("truth.jsonl")).unwrap();
    assert_eq!(truth.lines().count(), 2);

    let out = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "out"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out.stdout);
    for key in [
        "events_read",
        "events_valid",
        "invalid",
        "duplicates",
        "late",
        "events_scored",
        "alerts",
        "risk_levels",
        "rule_hits",
        "elapsed_s",
        "events_per_s",
    ] {
        assert!(s.get(key).is_some(), "summary lacks {key}: {s}");
    }
    let lines = std::fs::read_to_string(dir.path().join("events.csv"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(s["events_read"], lines);
    assert_eq!(
        s["events_scored"].as_u64().unwrap() + s["duplicates"].as_u64().unwrap(),
        s["events_valid"].as_u64().unwrap()
    );
    let levels: u64 = s["risk_levels"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(levels, s["events_scored"].as_u64().unwrap());

    let alerts = std::fs::read_to_string(dir.path().join("out/alerts.jsonl")).unwrap();
    assert_eq!(alerts.lines().count() as u64, s["alerts"].as_u64().unwrap());
    for line in alerts.lines() {
        let a: Value = serde_json::from_str(line).unwrap();
        for key in [
            "alert_id",
            "user_id",
            "risk_score",
            "risk_level",
            "risk_flags",
            "first_event_time",
            "last_event_time",
            "event_count",
            "event_ids",
        ] {
            assert!(a.get(key).is_some(), "alert lacks {key}: {a}");
        }
    }
    for attack in truth.lines() {
        let user = serde_json::from_str::<Value>(attack).unwrap()["user"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            alerts.contains(&format!("\"user_id\":\"{user}\"")),
            "{user} not alerted"
        );
    }
    assert!(
        !dir.path().join("out/dead-letter.jsonl").exists(),
        "clean input leaves no dead-letter file"
    );
}

#[test]
fn run_reads_stdin_and_dead_letters_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = authpulse(dir.path())
        .args([
            "run",
            "-",
            "--output",
            "out",
            "--scored",
            "out/scored.jsonl",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"time,user,computer\n1,U1,C1\n2,U1,C2\nnot a record\n2,U1,C2\n3,U2,\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out.stdout);
    assert_eq!(
        (s["events_read"].as_u64(), s["invalid"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        (s["duplicates"].as_u64(), s["events_scored"].as_u64()),
        (Some(1), Some(2))
    );
    let dead = std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap();
    let dead: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0]["line"].as_u64(), dead[0]["kind"].as_str()),
        (Some(4), Some("field_count"))
    );
    assert_eq!(
        (dead[1]["line"].as_u64(), dead[1]["raw"].as_str()),
        (Some(6), Some("3,U2,"))
    );
    let scored = std::fs::read_to_string(dir.path().join("out/scored.jsonl")).unwrap();
    let rows: Vec<Value> = scored
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event_id"], "9341c1af8b819d9bfb1ffee11659a83f");
    assert_eq!(rows[1]["user_distinct_computers_1h"], 2);
}

#[test]
fn bad_policy_fails_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n  - id: nd\n    module: builtin:new_device\n    params: {score: 500}\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run", "--policy", "bad.yaml", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml: rules[0] (nd).params.score: 500 is outside 0..=100"),
        "{err}"
    );

    let out = authpulse(dir.path())
        .args(["policy", "check", "bad.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = authpulse(dir.path())
        .args(["policy", "check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("lateral_movement"));
}

#[test]
fn missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args(["run", "nope.csv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("open nope.csv"));
}

#[test]
fn help_explains_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_authpulse"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["gen", "run", "demo", "bench", "policy"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_authpulse"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--dead-letter") && help.contains("--follow") && help.contains("stdin"),
        "{help}"
    );
}

#[test]
fn follow_reads_a_growing_file_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.csv");
    std::fs::write(&path, "1,U1,C1\n").unwrap();
    let child = authpulse(dir.path())
        .args(["run", "live.csv", "--follow", "--output", "out"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(b"2,U1,C2\n3,U2,C1\n").unwrap();
    file.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out.stdout);
    assert_eq!(s["events_read"].as_u64(), Some(3), "{s}");
    assert_eq!(
        s["events_scored"].as_u64(),
        Some(3),
        "held events are scored at shutdown: {s}"
    );
}
