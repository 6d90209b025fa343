//! `authpulse query` over the tables a real run wrote: counts agree with the
//! run's summary, the investigation query answers, `EXPLAIN` shows partition
//! pruning on `event_time`, and writes are refused.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;
use common::run_in;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_rows(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Three days with two hidden attacks, scored into `out/`.
fn scored_warehouse(dir: &Path) -> Value {
    ok(run_in(
        dir,
        &[
            "gen",
            "--users",
            "300",
            "--days",
            "3",
            "--events",
            "45000",
            "--campaigns",
            "2",
            "--kinds",
            "spray,burst",
            "--seed",
            "11",
            "-o",
            "events.csv",
        ],
    ));
    let stdout = ok(run_in(dir, &["run", "events.csv", "--output", "out"]));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn query_answers_from_the_tables_run_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let summary = scored_warehouse(dir.path());
    let query = |format: &str, sql: &str| {
        ok(run_in(
            dir.path(),
            &["query", "--output", "out", "--format", format, sql],
        ))
    };

    // Counts agree with the run's own summary.
    let counts = json_rows(&query(
        "json",
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM auth_events_curated",
    ));
    assert_eq!(counts[0]["n"], summary["events_scored"]);
    assert_eq!(counts[0]["ids"], summary["events_scored"]);
    let levels = json_rows(&query(
        "json",
        "SELECT risk_level, count(*) AS n FROM auth_events_curated GROUP BY risk_level",
    ));
    for row in &levels {
        let level = row["risk_level"].as_str().unwrap();
        assert_eq!(row["n"], summary["risk_levels"][level], "{level}");
    }
    let raw = json_rows(&query(
        "json",
        "SELECT count(*) AS n FROM auth_events_raw WHERE admission = 'duplicate'",
    ));
    assert_eq!(raw[0]["n"], summary["duplicates"]);

    // The investigation query: top users by risk among HIGH/CRITICAL events
    // in the last hour of event time, with their distinct flags.
    let top = json_rows(&query(
        "json",
        "SELECT user_id, sum(risk_score) AS total_risk, count(*) AS events, \
                array_sort(array_distinct(flatten(array_agg(risk_flags)))) AS flags \
         FROM auth_events_curated \
         WHERE risk_level IN ('HIGH', 'CRITICAL') \
           AND event_time > (SELECT max(event_time) FROM auth_events_curated) - INTERVAL '7 days' \
         GROUP BY user_id ORDER BY total_risk DESC LIMIT 10",
    ));
    let alerted = json_rows(&query(
        "json",
        "SELECT DISTINCT user_id FROM alerts WHERE risk_level IN ('HIGH', 'CRITICAL')",
    ));
    assert!(!top.is_empty());
    for row in &top {
        assert!(row["total_risk"].as_i64().unwrap() >= 60, "{row}");
        let flags = row["flags"].as_array().unwrap();
        assert!(!flags.is_empty(), "{row}");
        assert!(
            alerted.iter().any(|a| a["user_id"] == row["user_id"]),
            "{row} has no alert"
        );
    }

    // CSV has a header and one line per row; the table format aligns.
    let csv = query(
        "csv",
        "SELECT risk_level FROM auth_events_curated GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(csv.lines().next(), Some("risk_level"));
    assert_eq!(csv.lines().count(), levels.len() + 1);
    let table = query(
        "table",
        "SELECT count(*) AS n FROM alerts WHERE status = 'open'",
    );
    assert!(table.contains("| n"), "{table}");
    assert!(
        table.contains(&format!("| {} ", summary["alerts"])),
        "{table}"
    );
}

#[test]
fn explain_shows_partition_pruning_on_event_time() {
    let dir = tempfile::tempdir().unwrap();
    scored_warehouse(dir.path());
    let last_day = json_rows(&ok(run_in(
        dir.path(),
        &[
            "query",
            "--output",
            "out",
            "--format",
            "json",
            "SELECT CAST(date_trunc('day', max(event_time)) AS VARCHAR) AS day FROM auth_events_curated",
        ],
    )));
    let day = last_day[0]["day"].as_str().unwrap().replace('T', " ");
    let day = day.trim_end_matches('Z');
    let plan = ok(run_in(
        dir.path(),
        &[
            "query",
            "--output",
            "out",
            &format!(
                "EXPLAIN SELECT count(*) FROM auth_events_curated WHERE event_time >= TIMESTAMP '{day}'"
            ),
        ],
    ));
    assert!(plan.contains("IcebergTableScan"), "{plan}");
    assert!(plan.contains("predicate:[event_time >="), "{plan}");
    let pruning = plan
        .lines()
        .find(|l| l.contains("authpulse.auth_events_curated:"))
        .unwrap_or_else(|| panic!("no pruning line in {plan}"));
    // Three or four day partitions, one file each; the filter keeps the last.
    let words: Vec<&str> = pruning.split_whitespace().collect();
    let scanned: usize = words[1].parse().unwrap();
    let total: usize = words[3].parse().unwrap();
    assert_eq!(scanned, 1, "{pruning}");
    assert!(total >= 3, "{pruning}");
}

#[test]
fn query_refuses_writes_and_explains_a_missing_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run_in(dir.path(), &["query", "--output", "nowhere", "SELECT 1"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no warehouse in nowhere"), "{stderr}");

    scored_warehouse(dir.path());
    for sql in [
        "DROP TABLE auth_events_curated",
        "INSERT INTO alerts SELECT * FROM alerts",
        "CREATE TABLE x AS SELECT 1",
    ] {
        let refused = run_in(dir.path(), &["query", "--output", "out", sql]);
        assert!(!refused.status.success(), "{sql} was accepted");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("not supported")
                || stderr.contains("not allowed")
                || stderr.contains("Unsupported"),
            "{sql}: {stderr}"
        );
    }
    let bad = run_in(
        dir.path(),
        &["query", "--output", "out", "SELECT nope FROM alerts"],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    // Said once, not once per cause in the chain.
    assert_eq!(stderr.matches("No field named nope").count(), 1, "{stderr}");
}

#[test]
fn a_runaway_query_is_stopped_by_its_memory_or_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    scored_warehouse(dir.path());
    let cross = "SELECT count(DISTINCT a.event_id || b.event_id) FROM auth_events_curated a, auth_events_curated b";
    let refused = run_in(
        dir.path(),
        &["query", "--output", "out", "--memory-limit", "16MiB", cross],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the query needs more than its 16 MiB of memory (--memory-limit)"),
        "{stderr}"
    );
    // A cross join's rows count against the limit as they are collected.
    let rows = "SELECT a.event_id, b.event_id FROM auth_events_curated a, auth_events_curated b";
    let refused = run_in(
        dir.path(),
        &["query", "--output", "out", "--memory-limit", "16MiB", rows],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("(--memory-limit)"), "{stderr}");

    let endless =
        "SELECT count(*) FROM auth_events_curated a, auth_events_curated b, auth_events_curated c";
    let stopped = run_in(
        dir.path(),
        &["query", "--output", "out", "--timeout", "2s", endless],
    );
    assert!(!stopped.status.success());
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        stderr.contains("the query ran past its 2s time limit (--timeout) and was stopped"),
        "{stderr}"
    );
    // Within its limits a query answers as before.
    let small = ok(run_in(
        dir.path(),
        &[
            "query",
            "--output",
            "out",
            "--memory-limit",
            "64MiB",
            "--timeout",
            "1m",
            "--format",
            "json",
            "SELECT count(*) AS n FROM alerts",
        ],
    ));
    assert_eq!(json_rows(&small).len(), 1);
}
