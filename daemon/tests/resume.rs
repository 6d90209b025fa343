//! Progress kept with the tables: every commit records it, a killed run
//! resumes and stores everything exactly once, and commits that race
//! `maintain` lose and double nothing.

use authpulse::lakehouse::{Warehouse, WarehouseConfig};
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse, generate, signal, summary, wait_for_log};

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
    assert_eq!(progress.len(), 6);
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
        // The interrupted runs parse ahead of the pipeline thread, so their
        // checkpoints and stops must wait for the lines in flight.
        if output == "killed" {
            cmd.args(["--parse-threads", "2"]);
        }
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
                // The second once the first was heard: two signals close
                // together may reach the process as one.
                wait_for_log(&log, "asked to stop");
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
