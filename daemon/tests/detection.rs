//! Detection end to end: a small `eval` over every kind of attack and
//! benign habit, and the burn-in a warm start or a restart does not repeat.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse, generate};

/// A small `authpulse eval --record full`: two attacks of each of the
/// fourteen kinds and two of each of the seven benign kinds (the habits from
/// the first day) in ten days of 2,000 users, scored as the full record and
/// as the same logons' `time,user,computer` lines. Nearly every attack is
/// caught either way (every one of the six first kinds), the full record
/// no less than the three fields and every password spray, no benign case
/// alerts, false alerts are few, and the naive baseline (an alert per new
/// device) is shown to be what the rules are not.
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
            "28",
            "--benign",
            "14",
            "--seed",
            "21",
            "--record",
            "full",
            "--json",
            "--report",
            "report.json",
        ])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let both: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(written, both);
    let (lanl, full) = (&both["lanl"], &both["full"]);
    assert_eq!(
        (&lanl["record"], &full["record"]),
        (&"lanl".into(), &"full".into())
    );
    assert!(full["events_scored"].as_u64().unwrap() > lanl["events_scored"].as_u64().unwrap());
    for report in [lanl, full] {
        let card = &report["scorecard"];
        let kinds = card["kinds"].as_array().unwrap();
        assert_eq!(kinds.len(), 14, "{card}");
        for kind in kinds {
            assert_eq!(kind["campaigns"], 2, "{kind}");
            if kind["first"] == true {
                assert!(kind["detected"].as_u64().unwrap() >= 1, "{kind}");
            }
        }
        let ours = &card["authpulse"];
        assert!(ours["detected"].as_u64().unwrap() >= 24, "{ours}");
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
        // A missed campaign says how near its own events came.
        for missed in card["missed"].as_array().unwrap() {
            let text = missed["text"].as_str().unwrap();
            assert!(
                text.contains("logon(s) with a rule hit") || text.contains("no rule fired"),
                "{text}"
            );
        }
    }
    let detected = |r: &Value| r["scorecard"]["authpulse"]["detected"].as_u64().unwrap();
    assert!(detected(full) >= detected(lanl), "{both}");
    let sprays = full["scorecard"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "password_spray")
        .unwrap();
    assert_eq!(sprays["detected"], 2, "{sprays}");
}

/// `eval --input auth.txt --truth redteam.txt`, as whoever has the LANL 2015
/// set would run it: a generated full record, and a red-team file of the
/// attacks' logons (`time,user@domain,source,destination`, written from the
/// data as LANL's is). The red team's logons are grouped per account into
/// campaigns and most are caught; a red-team file that is not one is
/// refused with its line.
#[test]
fn eval_reads_a_full_record_and_its_red_team_file() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        "--users 1000 --days 6 --campaigns-from-day 3 --campaigns 8 \
         --kinds spray,chain,stealth,foothold_fan_out --record full \
         --seed 4 -o auth.txt --truth truth.jsonl",
    );
    let truth: Vec<Value> = std::fs::read_to_string(dir.path().join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(truth.len(), 8);
    let names = |c: &Value, field: &str| -> Vec<String> {
        c[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let mut redteam = String::new();
    for line in std::fs::read_to_string(dir.path().join("auth.txt"))
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split(',').collect();
        let time: u64 = f[0].parse().unwrap();
        let labelled = truth.iter().any(|c| {
            (c["start"].as_u64().unwrap()..=c["end"].as_u64().unwrap()).contains(&time)
                && names(c, "users").iter().any(|u| u == f[1])
                && names(c, "computers").iter().any(|k| k == f[4])
        });
        if labelled && f[8] == "Success" {
            redteam += &format!("{},{},{},{}\n", f[0], f[1], f[3], f[4]);
        }
    }
    std::fs::write(dir.path().join("redteam.txt"), &redteam).unwrap();
    let out = authpulse(dir.path())
        .args(["eval", "--input", "auth.txt", "--truth", "redteam.txt"])
        .args(["--burn-in-days", "3", "--json"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds = report["scorecard"]["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    assert_eq!(kinds[0]["kind"], "red_team");
    let accounts: usize = truth.iter().map(|c| names(c, "users").len()).sum();
    let campaigns = kinds[0]["campaigns"].as_u64().unwrap() as usize;
    assert_eq!(campaigns, accounts, "one campaign per account: {kinds:?}");
    let detected = kinds[0]["detected"].as_u64().unwrap() as usize;
    assert!(detected * 10 >= campaigns * 7, "{kinds:?}");

    std::fs::write(dir.path().join("bad.txt"), "1,U1@DOM1,C1,C2\n2,U1@DOM1\n").unwrap();
    let out = authpulse(dir.path())
        .args(["eval", "--input", "auth.txt", "--truth", "bad.txt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.txt: not a red-team file")
            && stderr.contains(
                "line 2: expected `time,user@domain,source,destination`, found 2 field(s)"
            ),
        "{stderr}"
    );
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
