//! The binary against odd and hostile inputs and files: fifos and quiet
//! pipes read whole and stopped on a signal, rule modules that are special
//! or oversized files refused everywhere a policy is read (the running
//! policy kept), a record dated ahead dead-lettered, and a closed stdout.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse, generate, signal, spawn_logged, summary, wait_for_line};

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success());
}

/// Waits for `child` to exit, for at most `limit`; its output.
fn exits_within(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn count(s: &Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or_else(|| panic!("no {key} in {s}"))
}

#[test]
fn a_fifo_is_read_once_and_whole_with_and_without_tables() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 200 --days 2 --events 20000 --seed 3 -o events.csv",
    );
    let data = std::fs::read(dir.path().join("events.csv")).unwrap();
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let file_run = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "file"])
        .output()
        .unwrap();
    assert_succeeded(&file_run);
    let from_file = summary(&file_run.stdout);
    for (output, extra) in [
        ("tables", &[][..]),
        ("bare", &["--no-lakehouse", "--no-state"][..]),
    ] {
        let fifo = dir.path().join(format!("{output}.fifo"));
        mkfifo(&fifo);
        let writer = {
            let (fifo, data) = (fifo.clone(), data.clone());
            std::thread::spawn(move || std::fs::write(fifo, data).unwrap())
        };
        let out = authpulse(dir.path())
            .args(["run", fifo.to_str().unwrap(), "--output", output])
            .args(extra)
            .output()
            .unwrap();
        writer.join().unwrap();
        assert_succeeded(&out);
        let s = summary(&out.stdout);
        assert_eq!(count(&s, "events_read"), lines, "{output}: {s}");
        for key in [
            "events_scored",
            "duplicates",
            "alerts",
            "late",
            "future",
            "invalid",
        ] {
            assert_eq!(s[key], from_file[key], "{output}: {key}");
        }
    }
}

#[test]
fn sigterm_stops_a_run_waiting_for_a_fifo_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("nobody.fifo");
    mkfifo(&fifo);
    let child = authpulse(dir.path())
        .args(["run", "nobody.fifo", "--output", "out"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    signal(&child, "TERM");
    let out = exits_within(child, Duration::from_secs(10));
    assert_succeeded(&out);
    assert_eq!(count(&summary(&out.stdout), "events_read"), 0);
}

/// A GET to the operations server: the response's JSON body.
fn get(addr: &str, path: &str) -> Value {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn a_quiet_pipe_is_scored_and_reported_while_it_waits_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 100 --days 1 --events 3000 --seed 4 -o events.csv",
    );
    std::fs::write(
        dir.path().join("policy.yaml"),
        authpulse_engine::policy::DEFAULT_POLICY_YAML
            .replace("allowed_lateness: 5m", "allowed_lateness: 2s"),
    )
    .unwrap();
    let (mut child, log) = spawn_logged(authpulse(dir.path()).args([
        "run",
        "-",
        "--output",
        "out",
        "--no-lakehouse",
        "--no-state",
        "--policy",
        "policy.yaml",
        "--listen",
        "127.0.0.1:0",
    ]));
    let line = wait_for_line(&log, "addr=");
    let (_, rest) = line.split_once("addr=").unwrap();
    let addr = rest.split_whitespace().next().unwrap().to_string();
    // 1,000 events, then the writer stays open and quiet.
    let data = std::fs::read_to_string(dir.path().join("events.csv")).unwrap();
    let head: String = data.lines().take(1000).map(|l| format!("{l}\n")).collect();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(head.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = get(&addr, "/api/v1/status");
        let s = &status["summary"];
        if count(s, "events_read") == 1000
            && count(s, "events_scored") + count(s, "duplicates") == 1000
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still {s} while the pipe is quiet"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["phase"], "running", "{status}");
    signal(&child, "TERM");
    let out = exits_within(child, Duration::from_secs(30));
    drop(stdin);
    assert_succeeded(&out);
    let s = summary(&out.stdout);
    assert_eq!(count(&s, "events_read"), 1000, "{s}");
    assert_eq!(
        count(&s, "events_scored") + count(&s, "duplicates"),
        1000,
        "{s}"
    );
}

#[test]
fn special_and_oversized_module_files_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("events.csv"), "1,U1,C1\n2,U2,C2\n").unwrap();
    // Sparse: 65 MiB on paper, nothing on disk.
    std::fs::File::create(dir.path().join("huge.wasm"))
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    for (module, why) in [
        (
            "/dev/zero",
            "not a regular file (a character device): a rule module must be one",
        ),
        (
            "/dev/urandom",
            "not a regular file (a character device): a rule module must be one",
        ),
        (
            "huge.wasm",
            "68157440 bytes, over the 64 MiB limit for a rule module",
        ),
    ] {
        let policy = format!(
            "sandbox: {{allow_unpinned: true}}\nrules:\n  - {{id: burst, module: {module}}}\n"
        );
        std::fs::write(dir.path().join("bad.yaml"), policy).unwrap();
        for args in [
            &["policy", "check", "bad.yaml"][..],
            &[
                "run",
                "events.csv",
                "--policy",
                "bad.yaml",
                "--output",
                "out",
                "--no-lakehouse",
            ][..],
        ] {
            let out = authpulse(dir.path()).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {module}");
            assert!(stderr.contains(why), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn a_hot_reload_to_a_special_file_module_is_refused_and_the_policy_stays() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 100 --days 1 --events 4000 --seed 6 -o events.csv",
    );
    let good = authpulse_engine::policy::DEFAULT_POLICY_YAML;
    std::fs::write(dir.path().join("policies.yaml"), good).unwrap();
    let (mut child, log) = spawn_logged(authpulse(dir.path()).args([
        "run",
        "-",
        "--output",
        "out",
        "--no-lakehouse",
        "--policy",
        "policies.yaml",
    ]));
    let wait_for = |needle: &str| wait_for_line(&log, needle);
    wait_for("watching the policy");
    let data = std::fs::read_to_string(dir.path().join("events.csv")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (first, rest) = data.split_at(data.len() / 2);
    let cut = first.rfind('\n').unwrap() + 1;
    stdin.write_all(&data.as_bytes()[..cut]).unwrap();
    stdin.flush().unwrap();
    let hostile = good
        .replacen("module: builtin:burst", "module: /dev/zero", 1)
        .replacen("sandbox:\n", "sandbox:\n  allow_unpinned: true\n", 1);
    assert_ne!(hostile, good);
    std::fs::write(dir.path().join("policies.yaml"), &hostile).unwrap();
    let refused = wait_for("policy change refused");
    assert!(refused.contains("not a regular file"), "{refused}");
    stdin
        .write_all(format!("{}{rest}", &first[cut..]).as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_succeeded(&out);
    let s = summary(&out.stdout);
    assert_eq!(s["policy_reloads_refused"], 1, "{s}");
    assert_eq!(s["policy_reloads"], 0, "{s}");
    assert!(count(&s["rule_hits"], "burst") + count(&s["rules"]["burst"], "evaluations") > 0);
}

#[test]
fn a_record_dated_a_year_ahead_is_dead_lettered_and_the_attacks_still_alert() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 300 --days 3 --events 45000 --campaigns 2 --kinds spray,burst --seed 8 -o events.csv",
    );
    let clean = authpulse(dir.path())
        .args([
            "run",
            "events.csv",
            "--output",
            "clean",
            "--no-lakehouse",
            "--no-state",
        ])
        .output()
        .unwrap();
    assert_succeeded(&clean);
    let data = std::fs::read_to_string(dir.path().join("events.csv")).unwrap();
    let mut poisoned: Vec<&str> = data.lines().collect();
    poisoned.insert(500, "31536000,UEVIL,CEVIL");
    std::fs::write(dir.path().join("poisoned.csv"), poisoned.join("\n") + "\n").unwrap();
    let out = authpulse(dir.path())
        .args(["run", "poisoned.csv", "--output", "poisoned"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let (s, c) = (summary(&out.stdout), summary(&clean.stdout));
    assert_eq!(count(&s, "future"), 1, "{s}");
    assert_eq!(count(&s, "late"), 0, "{s}");
    assert_eq!(s["events_scored"], c["events_scored"]);
    assert_eq!(s["alerts"], c["alerts"]);
    assert!(count(&c, "alerts") >= 2, "{c}");
    let dead = std::fs::read_to_string(dir.path().join("poisoned/dead-letter.jsonl")).unwrap();
    let dead: Value = serde_json::from_str(dead.trim()).unwrap();
    assert_eq!(dead["line"], 501);
    assert_eq!(dead["kind"], "future");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("poisoned/alerts.jsonl")).unwrap(),
        std::fs::read_to_string(dir.path().join("clean/alerts.jsonl")).unwrap()
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 50 --days 1 --events 2000 --seed 2 -o events.csv",
    );
    for args in [
        &[
            "run",
            "events.csv",
            "--no-lakehouse",
            "--no-state",
            "--output",
            "out",
        ][..],
        &["gen", "--users", "50", "--days", "1", "--events", "200000"][..],
    ] {
        let mut child = authpulse(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_damaged_newest_snapshot_gives_way_to_the_one_kept_before() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 300 --days 3 --events 150000 --seed 9 -o events.csv",
    );
    let whole = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "whole"])
        .output()
        .unwrap();
    assert_succeeded(&whole);
    let (child, _log) = spawn_logged(authpulse(dir.path()).args([
        "run",
        "events.csv",
        "--output",
        "out",
        "--commit-interval",
        "20ms",
    ]));
    // Stopped once three snapshots are kept.
    let state = dir.path().join("out/state");
    let kept = || -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&state)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".apstate") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while kept().len() < 3 {
        assert!(Instant::now() < deadline, "no snapshots kept");
        std::thread::sleep(Duration::from_millis(5));
    }
    signal(&child, "TERM");
    let stopped = exits_within(child, Duration::from_secs(60));
    assert_succeeded(&stopped);
    let read = count(&summary(&stopped.stdout), "events_read");
    assert!(
        read < count(&summary(&whole.stdout), "events_read"),
        "stopped mid-way: {read}"
    );
    // The newest snapshot, damaged on disk.
    let newest = state.join(kept().last().unwrap());
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&newest, bytes).unwrap();
    let resumed = authpulse(dir.path())
        .args(["run", "events.csv", "--output", "out"])
        .env("AUTHPULSE_LOG", "info")
        .output()
        .unwrap();
    assert_succeeded(&resumed);
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(log.contains("does not read whole"), "{log}");
    assert!(log.contains("resuming from the latest one kept"), "{log}");
    let (got, want) = (summary(&resumed.stdout), summary(&whole.stdout));
    for key in [
        "events_read",
        "events_scored",
        "duplicates",
        "alerts",
        "late",
        "future",
    ] {
        assert_eq!(got[key], want[key], "{key}");
    }
}
