//! `run` as users start it: `gen | run`, a file, stdin or a growing file, the
//! input given as the other commands take it, the summary line and output
//! files, `--help`, and clear failures.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse, generate, summary, wait_for_log};

#[test]
fn gen_then_run_from_file_writes_alerts_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 300 --days 4 --events 60000 --campaigns 2 --kinds spray,burst --seed 5 -o events.csv --truth truth.jsonl",
    );
    let truth = std::fs::read_to_string(dir.path().join("truth.jsonl")).unwrap();
    assert_eq!(truth.lines().count(), 2);

    let out = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "out"])
        .output()
        .unwrap();
    assert_succeeded(&out);
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
    assert_eq!(
        alerts.lines().count() as u64,
        s["alert_publications"].as_u64().unwrap()
    );
    let mut opened = 0;
    for line in alerts.lines() {
        let a: Value = serde_json::from_str(line).unwrap();
        for key in [
            "alert_id",
            "status",
            "sequence",
            "entity_type",
            "entity_id",
            "risk_score",
            "risk_level",
            "risk_flags",
            "rules",
            "opened_event_time",
            "first_event_time",
            "last_event_time",
            "event_count",
            "events",
            "summary",
        ] {
            assert!(a.get(key).is_some(), "alert lacks {key}: {a}");
        }
        opened += u64::from(a["status"] == "open");
    }
    assert_eq!(opened, s["alerts"].as_u64().unwrap());
    for attack in truth.lines() {
        let user = serde_json::from_str::<Value>(attack).unwrap()["users"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            alerts.contains(&format!("\"entity_id\":\"{user}\"")),
            "{user} not alerted"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/dead-letter.jsonl")).unwrap(),
        "",
        "clean input leaves an empty dead-letter file"
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
    assert_succeeded(&out);
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
    let log = dir.path().join("follow.log");
    let child = authpulse(dir.path())
        .args(["run", "live.csv", "--follow", "--output", "out"])
        .env("AUTHPULSE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Lines appended once it reads (its start, with the rules compiled, can
    // take a second on a busy machine).
    wait_for_log(&log, "scoring");
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
    assert_succeeded(&out);
    let s = summary(&out.stdout);
    assert_eq!(s["events_read"].as_u64(), Some(3), "{s}");
    // A stop is not the end of the input: events the watermark still holds
    // stay held, in the state, and the next start goes on with them.
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("stopping: committing"), "{stderr}");
    let out = authpulse(dir.path())
        .args(["run", "live.csv", "--output", "out"])
        .env("AUTHPULSE_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming where"), "{stderr}");
    let s = summary(&out.stdout);
    assert_eq!(s["events_read"].as_u64(), Some(3), "{s}");
    assert_eq!(
        s["events_scored"].as_u64(),
        Some(3),
        "the held events are scored at the end of input: {s}"
    );
}

/// `run` takes its input as `replay`, `eval` and `rules test` do
/// (`--input FILE`), or positionally; both at once is refused.
#[test]
fn run_takes_the_input_as_the_other_commands_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "1,U1,C1\n2,U2,C1\n3,U1,C2\n").unwrap();
    let run = |args: &[&str], output: &str| {
        authpulse(dir.path())
            .arg("run")
            .args(args)
            .args(["--output", output, "--no-lakehouse"])
            .output()
            .unwrap()
    };
    let flagged = run(&["--input", "e.csv"], "a");
    let positional = run(&["e.csv"], "b");
    assert_succeeded(&flagged);
    assert_eq!(summary(&flagged.stdout)["events_scored"], 3);
    assert_eq!(
        summary(&flagged.stdout)["events_scored"],
        summary(&positional.stdout)["events_scored"]
    );
    let both = run(&["e.csv", "--input", "e.csv"], "c");
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}
