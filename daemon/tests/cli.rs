//! The `authpulse` binary as users run it: `gen | run`, files and stdin, the
//! summary line, output files, and clear failures.

use authpulse::lakehouse::{Warehouse, WarehouseConfig};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse, generate, signal, summary, wait_for_log};

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
fn bad_policy_fails_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n  - id: nd\n    module: builtin:burst\n    params: {score: 500}\n",
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

#[test]
fn rules_inspect_shows_metadata_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args(["rules", "inspect", "builtin:new_device", "--json"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let module = authpulse_engine::rules::builtin_module("new_device").unwrap();
    assert_eq!(
        inspected["sha256"],
        authpulse_engine::rules::hex_sha256(module)
    );
    assert_eq!(inspected["size_bytes"], module.len());
    let metadata = &inspected["metadata"];
    assert_eq!(metadata["abi_version"], 3);
    assert_eq!(metadata["name"], "new_device");
    assert_eq!(metadata["entity"], "user");
    assert_eq!(metadata["mitre"], serde_json::json!(["T1078", "T1021"]));
    assert_eq!(metadata["params"][1]["name"], "attack_per_day");
    assert_eq!(metadata["params"][1]["default"], 24.0);

    // A file that is not a rule module is refused with the loader's reason.
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm\x01\0\0\0junk").unwrap();
    let out = authpulse(dir.path())
        .args(["rules", "inspect", "junk.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.wasm is not a usable rule module: not a valid WebAssembly module"),
        "{stderr}"
    );
}

#[test]
fn rules_test_prints_hits_and_checks_expectations() {
    let dir = tempfile::tempdir().unwrap();
    // U1 has been seen for more than the 24h burn-in when it first uses C2
    // (U3's computer); U2 uses a second computer while still in burn-in.
    std::fs::write(
        dir.path().join("events.csv"),
        "0,U1,C1\n0,U2,C3\n10,U3,C2\n3600,U2,C4\n90000,U1,C1\n90060,U1,C2\n90120,U1,C2\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        authpulse(dir.path())
            .args([
                "rules",
                "test",
                "builtin:new_device",
                "--input",
                "events.csv",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--format", "csv"]);
    assert_succeeded(&out);
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "event_time,user,computer,score,reason,event_id");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with("2024-01-02T01:01:00Z,U1,C2,"), "{csv}");
    assert!(
        lines[1].contains(
            ",\"first logon to this computer, and new computers are unusual for this user\","
        ),
        "{csv}"
    );
    // log10(24 new computers a day / 0.06, the floor for a user with two) decades.
    let score: f32 = lines[1].split(',').nth(3).unwrap().parse().unwrap();
    assert!((score - 32.93).abs() < 0.01, "{csv}");

    // Its own output is a valid expectation file ...
    std::fs::write(dir.path().join("expected.csv"), &csv).unwrap();
    let out = run(&["--expect", "expected.csv"]);
    assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("all 1 expected hits match"));

    // ... and a parameter change that flags first logons too breaks it, precisely.
    let out = run(&["--expect", "expected.csv", "--param", "burn_in=0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected: 2024-01-01T01:00:00Z U2 C4 flagged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 difference(s) from expected.csv"),
        "{stderr}"
    );

    // Missing and different hits.
    std::fs::write(
        dir.path().join("wrong.csv"),
        "# comment\nevent_time,user,computer,score\n2024-01-02T01:01:00Z,U1,C2,55\n2024-01-02T01:02:00Z,U1,C2,33\n",
    )
    .unwrap();
    let out = run(&["--expect", "wrong.csv"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "score: 2024-01-02T01:01:00Z U1 C2 scored {score}, expected 55"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing: 2024-01-02T01:02:00Z U1 C2 was expected to be flagged"),
        "{stderr}"
    );
}

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

/// A small `authpulse eval`: two attacks of each of the eleven kinds and two
/// of each of the seven benign kinds (the habits from the first day) in ten
/// days of 2,000 users. Nearly every attack is caught (every one of the six
/// first kinds), no benign case alerts, false alerts are few, and the naive
/// baseline (an alert per new device) is shown to be what the rules are not.
#[test]
fn eval_catches_every_kind_and_leaves_benign_cases_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args([
            "eval",
            "--users",
            "2000",
            "--days",
            "10",
            "--burn-in-days",
            "5",
            "--campaigns",
            "22",
            "--benign",
            "14",
            "--seed",
            "21",
            "--json",
            "--report",
            "report.json",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(written["scorecard"], report["scorecard"]);
    let card = &report["scorecard"];
    let kinds = card["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 11, "{card}");
    for kind in kinds {
        assert_eq!(kind["campaigns"], 2, "{kind}");
        if kind["first"] == true {
            assert!(kind["detected"].as_u64().unwrap() >= 1, "{kind}");
        }
    }
    let ours = &card["authpulse"];
    assert!(ours["detected"].as_u64().unwrap() >= 19, "{ours}");
    assert!(
        ours["false_alerts_per_day"].as_f64().unwrap() <= 2.0,
        "{ours}"
    );
    assert!(ours["ttd_p50_s"].as_u64().unwrap() < 3600, "{ours}");
    let benign = card["benign"].as_array().unwrap();
    assert_eq!(benign.len(), 7, "{card}");
    for benign in benign {
        assert_eq!(benign["cases"], 2, "{benign}");
        assert_eq!(benign["alerted"], 0, "{benign}");
    }
    let naive = &card["naive"];
    assert!(
        naive["false_alerts_per_day"].as_f64().unwrap() > 100.0,
        "{naive}"
    );
    assert_eq!(
        kinds
            .iter()
            .find(|k| k["kind"] == "burst")
            .map(|k| &k["naive_detected"]),
        Some(&Value::from(0)),
        "a burst brings no new device"
    );
    assert!(report["events_scored"].as_u64().unwrap() > 4_000_000);
}

/// docs/policy.md's table of the built-in rules' parameters lists exactly
/// the parameters each module declares, with its default (the modules'
/// metadata is the reference; the table must follow it).
#[test]
fn policy_reference_lists_every_builtin_parameter() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md")).unwrap();
    let table = doc
        .split("### Parameters of the built-in rules")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/policy.md has the parameter table");
    // Rows are `| rule | param | default | range | meaning |`, the rule named
    // on its first row only.
    let mut documented: Vec<(String, String, String)> = Vec::new();
    let mut rule = String::new();
    for row in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[2].starts_with('-') || cells[2] == "parameter" {
            continue;
        }
        if !cells[1].is_empty() {
            rule = cells[1].trim_matches('`').to_string();
        }
        documented.push((
            rule.clone(),
            cells[2].trim_matches('`').to_string(),
            cells[3].to_string(),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut declared = Vec::new();
    for rule in [
        "new_device",
        "burst",
        "lateral_movement",
        "rare_host",
        "slow_spread",
        "fan_in",
        "off_hours",
    ] {
        let out = authpulse(dir.path())
            .args(["rules", "inspect", &format!("builtin:{rule}"), "--json"])
            .output()
            .unwrap();
        assert_succeeded(&out);
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        for param in inspected["metadata"]["params"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap().to_string();
            let default = param["default"].as_f64().unwrap();
            let row = documented
                .iter()
                .find(|(r, p, _)| r == rule && *p == name)
                .unwrap_or_else(|| panic!("docs/policy.md lacks {rule}.{name}"));
            let shown = match param["kind"].as_str().unwrap() {
                "seconds" if default % 86_400.0 == 0.0 => format!("{}d", default / 86_400.0),
                "seconds" => format!("{}h", default / 3_600.0),
                _ => format!("{default}"),
            };
            assert!(
                row.2 == shown || row.2.starts_with(&format!("{shown} ")),
                "docs/policy.md gives {rule}.{name} the default {:?}, the module {shown}",
                row.2
            );
            declared.push((rule.to_string(), name));
        }
    }
    for (rule, param, _) in &documented {
        assert!(
            declared.iter().any(|(r, p)| r == rule && p == param),
            "docs/policy.md documents {rule}.{param}, which the module does not declare"
        );
    }
}

/// The accounts of the campaigns in a `gen --truth` file, each campaign
/// checked to start at or after LANL time `from`.
fn campaign_accounts(truth: &Path, from: i64) -> Vec<String> {
    std::fs::read_to_string(truth)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let campaign: Value = serde_json::from_str(l).unwrap();
            assert!(campaign["start"].as_i64().unwrap() >= from, "{campaign}");
            campaign["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Which of `accounts` an alerts file opened an incident on, sorted.
fn alerted(alerts: &Path, accounts: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_to_string(alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|a| a["status"] == "open")
        .filter_map(|a| a["entity_id"].as_str().map(str::to_string))
        .filter(|id| accounts.contains(id))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A warm start: `state build` over a week of history, then `run
/// --warm-start` over the next day, catches the quiet attacks of that day
/// (which need days of each account's history) exactly as a run over the
/// whole file does, while a cold run over the same day is blind to them.
#[test]
fn warm_start_from_history_is_not_blind_to_quiet_attacks() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 1000 --days 9 --seed 8 --campaigns 4 --kinds stealth,rare --campaigns-from-day 8 -o all.csv --truth truth.jsonl",
    );
    let cut = 8 * 86_400;
    let all = std::fs::read_to_string(dir.path().join("all.csv")).unwrap();
    let (mut history, mut live) = (String::new(), String::new());
    for line in all.lines() {
        let time: i64 = line.split(',').next().unwrap().parse().unwrap();
        let part = if time < cut { &mut history } else { &mut live };
        part.push_str(line);
        part.push('\n');
    }
    std::fs::write(dir.path().join("history.csv"), history).unwrap();
    std::fs::write(dir.path().join("live.csv"), live).unwrap();
    let attackers = campaign_accounts(&dir.path().join("truth.jsonl"), cut);
    assert_eq!(attackers.len(), 4);

    let out = authpulse(dir.path())
        .args([
            "state",
            "build",
            "history.csv",
            "-o",
            "state/history.apstate",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(built["device_pairs"].as_u64().unwrap() > 1000, "{built}");
    let out = authpulse(dir.path())
        .args(["state", "inspect", "state/history.apstate"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["events_scored"], built["events_scored"]);
    assert_eq!(meta["device_pairs"], built["device_pairs"]);

    // Which attackers each run alerted on.
    let caught = |args: &[&str], output: &str| -> Vec<String> {
        let out = authpulse(dir.path())
            .args(args)
            .args(["--output", output, "--no-lakehouse"])
            .output()
            .unwrap();
        assert_succeeded(&out);
        alerted(&dir.path().join(output).join("alerts.jsonl"), &attackers)
    };
    let whole = caught(&["run", "all.csv"], "whole");
    let warm = caught(
        &["run", "live.csv", "--warm-start", "state/history.apstate"],
        "warm",
    );
    let cold = caught(&["run", "live.csv"], "cold");
    assert!(
        whole.len() >= 3,
        "the attacks are caught with history: {whole:?}"
    );
    assert_eq!(
        warm, whole,
        "a warm start catches what the whole run catches"
    );
    assert!(
        cold.is_empty(),
        "without history the rules are in burn-in: {cold:?}"
    );

    // The state cut in two by the halves of the hash-key space (two
    // shards' users) and joined again, the second half receiving the
    // first: every user's state is in one part, and the joined state
    // catches what the whole run catches.
    let half = u128::MAX / 2;
    let mut parts = Vec::new();
    for (name, range) in [
        ("low", format!("0-{half}")),
        ("high", format!("{}-{}", half + 1, u128::MAX)),
    ] {
        let out = authpulse(dir.path())
            .args(["state", "split", "state/history.apstate", "--hash-range"])
            .arg(&range)
            .args(["-o", &format!("state/{name}.apstate")])
            .output()
            .unwrap();
        assert_succeeded(&out);
        parts.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    let users = |part: &Value| part["users_with_state"].as_u64().unwrap();
    let whole_users = parts[0]["users_with_state_before"].as_u64().unwrap();
    assert!(users(&parts[0]) > 0 && users(&parts[1]) > 0, "{parts:?}");
    assert_eq!(users(&parts[0]) + users(&parts[1]), whole_users);
    let pairs = |part: &Value| part["device_pairs"].as_u64().unwrap();
    assert_eq!(
        pairs(&parts[0]) + pairs(&parts[1]),
        built["device_pairs"].as_u64().unwrap()
    );
    let out = authpulse(dir.path())
        .args(["state", "merge", "state/high.apstate", "state/low.apstate"])
        .args(["-o", "state/joined.apstate"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let joined: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(joined["users_with_state"].as_u64(), Some(whole_users));
    assert_eq!(joined["device_pairs"], built["device_pairs"]);
    let warm_joined = caught(
        &["run", "live.csv", "--warm-start", "state/joined.apstate"],
        "warm-joined",
    );
    assert_eq!(warm_joined, whole);
    let out = authpulse(dir.path())
        .args([
            "state",
            "merge",
            "state/low.apstate",
            "state/joined.apstate",
        ])
        .args(["-o", "state/twice.apstate"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a user in two parts is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has state in both parts"), "{stderr}");

    // The same history stored by a run, then read back from its curated
    // table: the same state, and the same attackers caught.
    let stored = authpulse(dir.path())
        .args(["run", "history.csv", "--output", "deployed"])
        .output()
        .unwrap();
    assert_succeeded(&stored);
    let out = authpulse(dir.path())
        .args(["state", "build", "--from-tables", "deployed"])
        .args(["-o", "state/from-tables.apstate"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let from_tables: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "events_scored",
        "users",
        "computers",
        "device_pairs",
        "latest_event_time",
    ] {
        assert_eq!(
            from_tables[key], built[key],
            "{key}: {from_tables} vs {built}"
        );
    }
    let warm_from_tables = caught(
        &[
            "run",
            "live.csv",
            "--warm-start",
            "state/from-tables.apstate",
        ],
        "warm-from-tables",
    );
    assert_eq!(warm_from_tables, whole);

    // A snapshot of another base date is refused, naming both.
    let out = authpulse(dir.path())
        .args(["run", "live.csv", "--warm-start", "state/history.apstate"])
        .args([
            "--base-date",
            "2023-06-01",
            "--output",
            "other",
            "--no-lakehouse",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("base date 2024-01-01"), "{stderr}");
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

/// Every commit of every table records the run's progress in its snapshot
/// summary: the checkpoint, the file and how far it was read, and the state
/// snapshot kept with it, which loads. The last one says the run is complete
/// at the end of the file.
#[test]
fn every_table_commit_records_the_progress_and_its_state_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 300 --days 2 --events 150000 --seed 3 -o events.csv",
    );
    let out = authpulse(dir.path())
        .args([
            "run",
            "events.csv",
            "--output",
            "out",
            "--commit-interval",
            "1ms",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let size = std::fs::metadata(dir.path().join("events.csv"))
        .unwrap()
        .len();
    let lines = std::fs::read_to_string(dir.path().join("events.csv"))
        .unwrap()
        .lines()
        .count() as u64;

    let warehouse = Warehouse::open(&WarehouseConfig::embedded(&dir.path().join("out"))).unwrap();
    let progress = warehouse.progress().unwrap();
    assert_eq!(progress.len(), 5);
    let last = progress[0]
        .1
        .clone()
        .expect("the raw table records progress");
    assert!(last.checkpoint >= 2, "several checkpoints: {last:?}");
    assert!(last.complete, "{last:?}");
    for (table, p) in &progress {
        assert_eq!(
            p.as_ref(),
            Some(&last),
            "{table} records the same last checkpoint"
        );
    }
    assert_eq!(last.source["position"]["offset"], size, "{last:?}");
    assert_eq!(last.source["position"]["line"], lines, "{last:?}");
    assert_eq!(last.source["identity"]["file"], "events.csv");
    assert_eq!(
        last.source["identity"]["head_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    let state = last.state.clone().expect("a state snapshot is kept");
    let out = authpulse(dir.path())
        .args(["state", "inspect", &format!("out/state/{state}")])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(meta["events_read"], lines);
    // At most three snapshots are kept.
    let kept = std::fs::read_dir(dir.path().join("out/state"))
        .unwrap()
        .count();
    assert!((1..=3).contains(&kept), "{kept}");
}

/// What a run stored, in a form two runs can be compared by: every table's
/// rows (the columns that do not depend on the wall clock) and the alerts
/// file.
fn stored(dir: &Path, output: &str) -> Vec<String> {
    let queries = [
        "SELECT event_id, user_id, computer_id, risk_score, risk_level, array_to_string(risk_flags, ',') AS flags, user_logins_24h, \
         user_new_computers_24h, policy_version FROM auth_events_curated ORDER BY event_id",
        "SELECT event_id, source_line, admission FROM auth_events_raw ORDER BY source_line",
        "SELECT user_id, window_start, logins, distinct_computers, new_devices, max_risk, sum_risk \
         FROM user_behavior_hourly ORDER BY user_id, window_start",
        "SELECT computer_id, day, distinct_users, logins, first_time_users, users_ever \
         FROM host_popularity_daily ORDER BY computer_id, day",
        "SELECT alert_id, sequence, status, entity_id, risk_score, event_count FROM alerts \
         ORDER BY alert_id, sequence",
    ];
    let mut out: Vec<String> = queries
        .iter()
        .map(|sql| {
            let result = authpulse(dir)
                .args(["query", "--output", output, "--format", "csv", sql])
                .output()
                .unwrap();
            assert_succeeded(&result);
            String::from_utf8(result.stdout).unwrap()
        })
        .collect();
    out.push(std::fs::read_to_string(dir.join(output).join("alerts.jsonl")).unwrap());
    out
}

/// Fails, naming the first rows missing and extra, unless two runs'
/// [`stored`] outputs are the same (after `what`, for the message).
fn assert_stored_alike(want: &[String], got: &[String], what: &str) {
    let names = [
        "curated",
        "raw",
        "hourly",
        "daily",
        "alerts table",
        "alerts.jsonl",
    ];
    for ((name, want), got) in names.iter().zip(want).zip(got) {
        assert!(want.lines().count() > 1, "{name} holds rows");
        if want != got {
            let (w, g): (
                std::collections::HashSet<&str>,
                std::collections::HashSet<&str>,
            ) = (want.lines().collect(), got.lines().collect());
            let missing: Vec<&&str> = w.difference(&g).take(3).collect();
            let extra: Vec<&&str> = g.difference(&w).take(3).collect();
            panic!(
                "{name} differs after {what} ({} rows against {}): missing {missing:?}, extra {extra:?}",
                got.lines().count(),
                want.lines().count()
            );
        }
    }
}

/// Deletes the state snapshot of the checkpoint every table of `output`
/// has committed, as a crash does after the commit and before the snapshot
/// (written beside the commit) landed, if an earlier one is kept. Says
/// whether it did.
fn lose_last_snapshot(output: &Path) -> bool {
    let warehouse = Warehouse::open(&WarehouseConfig::embedded(output)).unwrap();
    let progress = warehouse.progress().unwrap();
    let Some(committed) = progress
        .iter()
        .map(|(_, p)| p.clone())
        .min_by_key(|p| p.as_ref().map(|p| p.checkpoint))
        .flatten()
    else {
        return false;
    };
    let Some(name) = committed.state else {
        return false;
    };
    let state = output.join("state");
    let kept: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".apstate") && !n.starts_with('.'))
        .collect();
    // An earlier one of the same run (names sort by checkpoint number).
    let run = name.rsplit_once('-').map(|(_, run)| run.to_string());
    let earlier = kept
        .iter()
        .any(|n| *n < name && n.rsplit_once('-').map(|(_, r)| r.to_string()) == run);
    if !earlier || !kept.contains(&name) {
        return false;
    }
    std::fs::remove_file(state.join(&name)).unwrap();
    true
}

/// A file run killed with SIGKILL at five moments (commits are in flight at
/// nearly every moment, at one every 50 ms) and started again each time
/// with the same command ends with exactly what an uninterrupted run
/// stores: every event once, the same scores, aggregates and alerts. Run
/// once more, it does nothing and says so. One of the kills is a SIGTERM
/// (a stop: it commits and exits 0), one two SIGTERMs (out at once, code
/// 130). After one kill the last
/// checkpoint's snapshot is deleted, as if the kill came before it landed:
/// the next run goes back to the checkpoint before.
#[test]
fn a_killed_file_run_resumes_and_stores_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 500 --days 3 --seed 4 --campaigns 3 --kinds spray,burst,fan_in -o events.csv",
    );
    let run = |output: &str| {
        let mut cmd = authpulse(dir.path());
        cmd.args([
            "run",
            "events.csv",
            "--output",
            output,
            "--commit-interval",
            "50ms",
        ])
        .env("AUTHPULSE_LOG", "info");
        cmd
    };
    let started = std::time::Instant::now();
    let whole = run("whole").output().unwrap();
    let wall_ms = started.elapsed().as_millis() as u64;
    assert_succeeded(&whole);
    let expected = summary(&whole.stdout);
    assert!(expected["alerts"].as_u64().unwrap() >= 2, "{expected}");

    // Kill moments spread over the process's lifetime as the uninterrupted
    // run measured it (start-up included, so a slow machine scales them),
    // in fixed proportions so that a failure can be replayed.
    let (mut resumed, mut fell_back, mut snapshot_lost) = (0, 0, false);
    let mut stopped_cleanly = false;
    for k in 0..5u64 {
        let after = wall_ms * (2 * k + 3) / 16;
        // Logs go to a file: a pipe read only after the kill could fill up.
        let log = dir.path().join(format!("killed-{k}.log"));
        let mut child = run("killed")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        match k {
            // A stop interrupted by a second signal: out at once. Early in
            // the run (each restart gets further, and later moments could
            // find it done).
            1 => {
                wait_for_log(&log, "scoring");
                std::thread::sleep(std::time::Duration::from_millis(50));
                signal(&child, "TERM");
                std::thread::sleep(std::time::Duration::from_millis(5));
                signal(&child, "TERM");
                let status = child.wait().unwrap();
                assert_eq!(
                    status.code(),
                    Some(130),
                    "a second signal exits at once: {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            // A stop: one SIGTERM while the run is scoring.
            2 => {
                wait_for_log(&log, "scoring");
                std::thread::sleep(std::time::Duration::from_millis(100));
                signal(&child, "TERM");
                let status = child.wait().unwrap();
                let text = std::fs::read_to_string(&log).unwrap();
                assert!(status.success(), "a stop exits 0: {status:?}\n{text}");
                stopped_cleanly = text.contains("stopping: committing");
            }
            _ => {
                std::thread::sleep(std::time::Duration::from_millis(after));
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
            }
        }
        if k == 2 && stopped_cleanly {
            // A stop leaves every table at the same checkpoint, with its
            // state, and the input open.
            let warehouse =
                Warehouse::open(&WarehouseConfig::embedded(&dir.path().join("killed"))).unwrap();
            let progress = warehouse.progress().unwrap();
            let first = progress[0].1.clone().expect("progress after a stop");
            assert!(!first.complete, "{first:?}");
            for (table, p) in &progress {
                assert_eq!(p.as_ref(), Some(&first), "{table} after a stop");
            }
            let state = first.state.expect("a stop keeps its state");
            assert!(dir.path().join("killed/state").join(state).exists());
        }
        let log = std::fs::read_to_string(&log).unwrap();
        resumed += u32::from(log.contains("resuming where"));
        fell_back += u32::from(log.contains("resuming from the latest one kept"));
        if !snapshot_lost {
            snapshot_lost = lose_last_snapshot(&dir.path().join("killed"));
        }
    }
    let last = run("killed").output().unwrap();
    assert_succeeded(&last);
    let stderr = String::from_utf8_lossy(&last.stderr);
    resumed += u32::from(stderr.contains("resuming where"));
    fell_back += u32::from(stderr.contains("resuming from the latest one kept"));
    assert!(
        resumed >= 2,
        "the runs resumed from a checkpoint: {resumed}"
    );
    assert!(
        snapshot_lost,
        "one kill left an earlier snapshot to fall back to"
    );
    assert!(stopped_cleanly, "the SIGTERM stopped the run mid-way");
    assert_eq!(
        fell_back, 1,
        "the run after the lost snapshot went back a checkpoint"
    );
    let summary_after = summary(&last.stdout);
    if summary_after.get("already_complete").is_none() {
        for key in [
            "events_read",
            "events_scored",
            "duplicates",
            "alerts",
            "alert_publications",
        ] {
            assert_eq!(
                summary_after[key], expected[key],
                "{key}: the summary counts the whole run"
            );
        }
    }

    let (want, got) = (stored(dir.path(), "whole"), stored(dir.path(), "killed"));
    let publications: std::collections::HashSet<&str> = want[4].lines().collect();
    assert_eq!(
        publications.len(),
        want[4].lines().count(),
        "each (alert_id, sequence) is published once"
    );
    assert_stored_alike(&want, &got, "the kills");

    let again = run("killed").output().unwrap();
    assert_succeeded(&again);
    assert_eq!(summary(&again.stdout)["already_complete"], true);
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to do"));
}

/// A restart does not reset the burn-in: a following run over a week of
/// history is killed, the next day (with quiet attacks that need each
/// account's history) is appended, and the restarted run catches them as a
/// run over the whole file does.
#[test]
fn an_attack_right_after_a_restart_is_caught_as_without_it() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 1000 --days 9 --seed 8 --campaigns 4 --kinds stealth,rare --campaigns-from-day 8 -o all.csv --truth truth.jsonl",
    );
    let all = std::fs::read_to_string(dir.path().join("all.csv")).unwrap();
    let cut = all
        .lines()
        .position(|l| l.split(',').next().unwrap().parse::<i64>().unwrap() >= 8 * 86_400)
        .unwrap();
    let history: String = all.lines().take(cut).map(|l| format!("{l}\n")).collect();
    let attack_day: String = all.lines().skip(cut).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("live.csv"), &history).unwrap();

    // Logs go to a file: a pipe nobody reads would fill up and stall the run.
    let follow = |log: &str| {
        authpulse(dir.path())
            .args(["run", "live.csv", "--follow", "--output", "out"])
            .args(["--commit-interval", "200ms"])
            .env("AUTHPULSE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    // Until a snapshot holds all of the history (its commit may or may not
    // have landed: either way the restart must carry on with the state).
    // A debug build scores the eight days' history in about a minute alone,
    // and in several beside the other tests.
    let wait_for_state = |lines: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(400);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshot of {lines} lines"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
            let Ok(entries) = std::fs::read_dir(dir.path().join("out/state")) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".apstate") && !n.starts_with('.'))
                .collect();
            names.sort();
            let Some(latest) = names.last() else { continue };
            let out = authpulse(dir.path())
                .args(["state", "inspect", &format!("out/state/{latest}")])
                .output()
                .unwrap();
            if out.status.success() {
                let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
                if meta["events_read"].as_u64() == Some(lines) {
                    return;
                }
            }
        }
    };
    let mut first = follow("first.log");
    wait_for_state(cut as u64);
    std::thread::sleep(std::time::Duration::from_millis(300));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("live.csv"))
        .unwrap()
        .write_all(attack_day.as_bytes())
        .unwrap();
    let mut second = follow("second.log");
    wait_for_state(all.lines().count() as u64);
    let stopped = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = second.wait().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming where"),
        "the second run resumed: {stderr}"
    );

    let attackers = campaign_accounts(&dir.path().join("truth.jsonl"), 8 * 86_400);
    let whole = authpulse(dir.path())
        .args(["run", "all.csv", "--output", "whole", "--no-lakehouse"])
        .output()
        .unwrap();
    assert_succeeded(&whole);
    let expected = alerted(&dir.path().join("whole/alerts.jsonl"), &attackers);
    assert!(expected.len() >= 3, "{expected:?}");
    let restarted = alerted(&dir.path().join("out/alerts.jsonl"), &attackers);
    assert_eq!(
        restarted, expected,
        "the restarted run catches what the whole run catches"
    );
}

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

/// `maintain` compacting the tables over and over while a run commits every
/// 50 ms: each side's commit that finds the other's in between is applied
/// again on top of it (the run's appends by iceberg's commit retry,
/// `maintain`'s replace by its own), so the run ends with what an
/// uninterrupted run stores, no row lost or doubled, and the compactions
/// took effect.
#[test]
fn commits_that_conflict_with_maintain_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 500 --days 3 --seed 6 --campaigns 2 --kinds spray,burst -o events.csv",
    );
    let run = |output: &str| {
        let mut cmd = authpulse(dir.path());
        cmd.args(["run", "events.csv", "--output", output])
            .args(["--commit-interval", "50ms"])
            .env("AUTHPULSE_LOG", "info");
        cmd
    };
    let whole = run("whole").output().unwrap();
    assert_succeeded(&whole);

    let log = dir.path().join("busy.log");
    let mut child = run("busy")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_log(&log, "committed");
    let mut compactions = 0;
    let mut rounds = 0;
    while child.try_wait().unwrap().is_none() {
        let maintained = authpulse(dir.path())
            .args(["maintain", "--output", "busy", "--small-file-mib", "1024"])
            .output()
            .unwrap();
        assert_succeeded(&maintained);
        rounds += 1;
        compactions += String::from_utf8_lossy(&maintained.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["data_files_after"].as_u64() < r["data_files_before"].as_u64())
            .count();
    }
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{text}");
    assert!(
        rounds >= 2 && compactions >= 1,
        "{rounds} rounds, {compactions} compactions"
    );
    let (want, got) = (stored(dir.path(), "whole"), stored(dir.path(), "busy"));
    assert_stored_alike(&want, &got, "the conflicts");
}

/// `run --config`: the file sets what the command line leaves unset, a flag
/// overrides it, and a bad file is refused with the file, the key and the
/// reason. `config check` loads the example configurations of deploy/.
#[test]
fn a_configuration_file_sets_what_flags_leave_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "1,U1,C1\n2,U2,C1\n3,U1,C2\n").unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "source:\n  file: e.csv\noutput:\n  dir: from-config\n  tables: false\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run", "--config", "c.yaml"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events_read"], 3);
    assert!(dir.path().join("from-config/alerts.jsonl").exists());
    assert!(
        !dir.path().join("from-config/catalog.db").exists(),
        "output.tables: false"
    );

    // A flag wins over the file.
    let out = authpulse(dir.path())
        .args(["run", "--config", "c.yaml", "--output", "from-flag"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert!(dir.path().join("from-flag/alerts.jsonl").exists());

    // So does an AUTHPULSE_* variable: the file says embedded, the
    // variable glue (which wants a warehouse). AUTHPULSE_CONFIG names the
    // file.
    std::fs::write(
        dir.path().join("tables.yaml"),
        "source:\n  file: e.csv\noutput:\n  dir: tables\ncatalog:\n  kind: embedded\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run"])
        .env("AUTHPULSE_CONFIG", "tables.yaml")
        .env("AUTHPULSE_CATALOG", "glue")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--warehouse"),
        "glue from the variable: {stderr}"
    );

    std::fs::write(
        dir.path().join("bad.yaml"),
        "output:\n  dir: x\n  comit_interval: 5s\n",
    )
    .unwrap();
    for args in [
        &["run", "--config", "bad.yaml"][..],
        &["config", "check", "bad.yaml"][..],
    ] {
        let out = authpulse(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bad.yaml: output.comit_interval: unknown field `comit_interval`"),
            "{stderr}"
        );
    }
    std::fs::write(
        dir.path().join("bad-from.yaml"),
        "source:\n  kinesis:\n    stream: s\n    from: yesterday\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["config", "check", "bad-from.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-from.yaml: source.kinesis.from: "),
        "{stderr}"
    );

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    for name in ["embedded.yaml", "production.yaml"] {
        let out = authpulse(dir.path())
            .args(["config", "check"])
            .arg(deploy.join(name))
            .output()
            .unwrap();
        assert_succeeded(&out);
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(shown["http"]["listen"].is_string(), "{name}: {shown}");
    }
}
