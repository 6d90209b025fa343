//! Real log formats through `run` into the tables: OCSF Authentication,
//! ECS Windows logons and the full LANL record, each a fixture written from
//! the public schema; what a mapping cannot use dead-lettered with its
//! reason; a file mixing every format and broken lines loses exactly the
//! broken ones.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{run_ok, summary};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/formats")
        .join(name)
}

/// `authpulse query` rows as JSON objects.
fn query(dir: &Path, out: &str, sql: &str) -> Vec<Value> {
    let stdout = run_ok(dir, &["query", "--output", out, "--format", "json", sql]).stdout;
    String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dead_letters(dir: &Path, out: &str) -> Vec<(u64, String, String)> {
    std::fs::read_to_string(dir.join(out).join("dead-letter.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_string();
            (v["line"].as_u64().unwrap(), field("kind"), field("reason"))
        })
        .collect()
}

/// The detail columns of the curated table, one row a string, by time.
fn details(dir: &Path, out: &str) -> Vec<String> {
    query(
        dir,
        out,
        "SELECT user_id, computer_id, src_computer_id, src_user_id, logon_type, auth_package, \
         outcome, failure_reason FROM auth_events_curated ORDER BY event_time",
    )
    .iter()
    .map(|row| {
        let cell = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        [
            "user_id",
            "computer_id",
            "src_computer_id",
            "src_user_id",
            "logon_type",
            "auth_package",
            "outcome",
            "failure_reason",
        ]
        .map(cell)
        .join(" ")
    })
    .collect()
}

/// Runs fixture `name` (with `flags`) into `out/` of a fresh directory;
/// returns it with the summary's events read and valid.
fn run_fixture(name: &str, flags: &[&str]) -> (tempfile::TempDir, (u64, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture(name);
    let mut args = vec!["run", input.to_str().unwrap(), "--output", "out"];
    args.extend_from_slice(flags);
    let s = summary(&run_ok(dir.path(), &args).stdout);
    let count = |k: &str| s[k].as_u64().unwrap();
    let counts = (count("events_read"), count("events_valid"));
    (dir, counts)
}

/// The lines and kinds of `out/`'s dead letters.
fn refused_kinds(dir: &Path) -> Vec<(u64, String)> {
    dead_letters(dir, "out")
        .into_iter()
        .map(|(line, kind, _)| (line, kind))
        .collect()
}

#[test]
fn ocsf_authentication_events_fill_the_tables() {
    let (dir, counts) = run_fixture("ocsf-authentication.jsonl", &["--format", "ocsf"]);
    assert_eq!(counts, (7, 4));
    assert_eq!(
        details(dir.path(), "out"),
        [
            "alice fileserver1 ws-alice - network kerberos success -",
            "bob fileserver1 10.1.7.77 - network ntlm failure bad_password",
            "carol db7 jump01 helpdesk1 remote_interactive negotiate success -",
            "WS-ALICE$ dc1 10.1.2.3 - - kerberos success -",
        ]
    );
    let refused = dead_letters(dir.path(), "out");
    let lines: Vec<_> = refused
        .iter()
        .map(|(l, kind, _)| (*l, kind.as_str()))
        .collect();
    assert_eq!(lines, [(5, "unmapped"), (6, "unmapped"), (7, "unmapped")]);
    assert!(refused[0].2.contains("logoff"), "{}", refused[0].2);
    assert!(refused[1].2.contains("class 3001"), "{}", refused[1].2);
    assert!(refused[2].2.contains("SYSTEM"), "{}", refused[2].2);
    assert_eq!(
        source_event_ids(dir.path()),
        [
            "0f6b1c9e-6c1e-4b7a-9a55-1e2f3a4b5c6d",
            "2d1a",
            "7c3e",
            "9e9e"
        ]
    );
}

/// `source_event_id` of the raw table's rows, in line order (`-` for none).
fn source_event_ids(dir: &Path) -> Vec<String> {
    query(
        dir,
        "out",
        "SELECT source_event_id FROM auth_events_raw ORDER BY source_line",
    )
    .iter()
    .map(|row| row["source_event_id"].as_str().unwrap_or("-").to_string())
    .collect()
}

#[test]
fn ecs_windows_logons_fill_the_tables() {
    let (dir, counts) = run_fixture("ecs-windows-logons.jsonl", &[]);
    assert_eq!(counts, (8, 6));
    assert_eq!(
        details(dir.path(), "out"),
        [
            "alice fileserver1.corp.example WS-ALICE - network kerberos success -",
            "bob fileserver1.corp.example 10.1.7.77 - network ntlm failure bad_password",
            "carol db7 jump01 helpdesk1 - - - -",
            "alice dc1.corp.example ::ffff:10.1.2.3 - - kerberos success -",
            "alice@CORP.EXAMPLE FILESERVER1 ::ffff:10.1.2.3 - - kerberos success -",
            "svc_scan dc1.corp.example SCANNER02 - - ntlm failure locked",
        ]
    );
    assert_eq!(
        refused_kinds(dir.path()),
        [(7, "unmapped".into()), (8, "unmapped".into())]
    );
    // The raw table keeps them too, as received.
    let raw = query(
        dir.path(),
        "out",
        "SELECT count(*) AS n, count(outcome) AS with_outcome FROM auth_events_raw",
    );
    assert_eq!(
        (raw[0]["n"].as_u64(), raw[0]["with_outcome"].as_u64()),
        (Some(6), Some(5))
    );
    // `event.id` when there is one, else the event log's record number.
    assert_eq!(
        source_event_ids(dir.path()),
        ["88211", "b3c81f0e", "-", "-", "-", "-"]
    );
}

#[test]
fn the_full_lanl_record_fills_the_tables() {
    let (dir, counts) = run_fixture("lanl-auth.txt", &[]);
    assert_eq!(counts, (7, 6));
    assert_eq!(
        details(dir.path(), "out"),
        [
            "U22@DOM1 C586 C1065 - network kerberos success -",
            "U22@DOM1 C1065 C1065 - interactive negotiate success -",
            "C625$@DOM1 C625 C625 - - - success -",
            "U9@DOM1 C2388 C17693 - network ntlm failure -",
            "ANONYMOUS LOGON@C586 C586 C1250 - network ntlm success -",
            "U3@DOM1 C3 C3 SYSTEM@C3 service negotiate success -",
        ]
    );
    assert_eq!(refused_kinds(dir.path()), [(6, "unmapped".into())]);
}

#[test]
fn a_mixed_file_loses_exactly_its_broken_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut broken: Vec<(u64, &str)> = Vec::new();
    let mut add = |line: String, refused: Option<&'static str>| {
        lines.push(line);
        if let Some(kind) = refused {
            broken.push((lines.len() as u64, kind));
        }
    };
    let first = |name: &str| {
        std::fs::read_to_string(fixture(name))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    for t in 0..4 {
        add(format!("{},U{t},C{t}", 28_800 + t), None);
    }
    add(first("ocsf-authentication.jsonl"), None);
    add("28810,U1,C1,extra".into(), Some("field_count"));
    add(first("ecs-windows-logons.jsonl"), None);
    add(
        "28811,U7@DOM1,U7@DOM1,C9,C10,NTLM,Network,LogOn,Success".into(),
        None,
    );
    add(
        r#"{"class_uid":3002,"time":"noon"}"#.into(),
        Some("bad_json"),
    );
    add(
        r#"{"event_time":"2024-01-01T08:00:20Z","user_id":"U8","computer_id":"C8","outcome":"failure","logon_type":"network"}"#.into(),
        None,
    );
    add(
        r#"{"@timestamp":"2024-01-01T08:00:21Z","event":{"code":"4624"},"host":{"name":"h1"},"winlog":{"logon":{"type":"Teleport"},"event_data":{"TargetUserName":"eve"}}}"#.into(),
        Some("bad_field"),
    );
    add(
        "28812,U7@DOM1,U7@DOM1,C9,C10,NTLM,Network,LogOn,Maybe".into(),
        Some("bad_field"),
    );
    add(
        r#"{"event_time":"2024-01-01T08:00:22Z","user_id":"U9"}"#.into(),
        Some("bad_json"),
    );
    add("28813,U2,C3".into(), None);
    std::fs::write(dir.path().join("mixed.txt"), lines.join("\n") + "\n").unwrap();

    // Parsed by the pipeline thread, and ahead of it by two threads.
    for threads in ["0", "2"] {
        let out = format!("out-{threads}");
        let args = [
            "run",
            "mixed.txt",
            "--output",
            &out,
            "--parse-threads",
            threads,
        ];
        let refused = assert_loses_only(dir.path(), &args, lines.len() - broken.len());
        let expected: Vec<(u64, String)> =
            broken.iter().map(|&(l, k)| (l, k.to_string())).collect();
        assert_eq!(refused, expected, "with {threads} parse threads");
    }
}

/// Runs `args` (into `args[3]`), checks `valid` events were taken and
/// every format's events are in the table with what each said, and returns
/// the dead letters (line, kind).
fn assert_loses_only(dir: &Path, args: &[&str], valid: usize) -> Vec<(u64, String)> {
    let output = args[3];
    let out = run_ok(dir, args);
    let s = summary(&out.stdout);
    assert_eq!(s["events_valid"].as_u64(), Some(valid as u64));
    // Every format's events are in the table, with what each said.
    let outcomes = query(
        dir,
        output,
        "SELECT outcome, count(*) AS n FROM auth_events_curated GROUP BY outcome ORDER BY outcome",
    );
    let count = |outcome: Option<&str>| {
        outcomes
            .iter()
            .find(|r| r["outcome"].as_str() == outcome)
            .and_then(|r| r["n"].as_u64())
            .unwrap_or(0)
    };
    // Failure: our JSON's U8. Success: OCSF alice, ECS alice, LANL U7. The
    // five three-field records say nothing.
    assert_eq!(
        (count(Some("failure")), count(Some("success")), count(None)),
        (1, 3, 5)
    );
    dead_letters(dir, output)
        .into_iter()
        .map(|(line, kind, _)| (line, kind))
        .collect()
}

#[test]
fn a_format_set_on_the_command_line_is_held_to() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("ecs-windows-logons.jsonl");
    let out = run_ok(
        dir.path(),
        &[
            "run",
            input.to_str().unwrap(),
            "--format",
            "ocsf",
            "--output",
            "out",
        ],
    );
    let s = summary(&out.stdout);
    assert_eq!(s["events_valid"].as_u64(), Some(0));
    assert!(
        dead_letters(dir.path(), "out")
            .iter()
            .all(|(_, kind, reason)| kind == "bad_json" && reason.contains("class_uid")),
        "ECS documents read as OCSF lack `class_uid`"
    );
}

/// One JSON event line with what a richer record says.
fn event(t: i64, user: &str, computer: &str, source: &str, logon: &str, outcome: &str) -> String {
    let time = chrono_like(t);
    format!(
        r#"{{"event_time":"{time}","user_id":"{user}","computer_id":"{computer}","src_computer_id":"{source}","logon_type":"{logon}","outcome":"{outcome}"}}"#
    )
}

/// RFC 3339 of Unix seconds (the test's own, to keep the helper small).
fn chrono_like(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // 2024-01-01 is day 19723; the tests stay within January.
    let day = days - 19_723 + 1;
    assert!((1..=31).contains(&day), "the tests stay in January 2024");
    format!(
        "2024-01-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn richer_records_show_sprays_fan_outs_and_new_logon_types() {
    let dir = tempfile::tempdir().unwrap();
    let start = 1_704_067_200; // 2024-01-01T00:00:00Z
    let mut lines = Vec::new();
    // Three days of routine: forty people at their own workstations, a
    // service account on its file server, and a jump host that reaches a
    // few servers a day for the admins.
    for day in 0..3 {
        for hour in 8..17 {
            let t = start + day * 86_400 + hour * 3_600;
            for p in 0..40 {
                let ws = format!("WS{p:02}");
                lines.push((
                    t + p,
                    event(
                        t + p,
                        &format!("user{p:02}"),
                        &ws,
                        &ws,
                        "interactive",
                        "success",
                    ),
                ));
                lines.push((
                    t + p + 60,
                    event(
                        t + p + 60,
                        &format!("user{p:02}"),
                        "FS1",
                        &ws,
                        "network",
                        "success",
                    ),
                ));
            }
            for k in 0..3 {
                let at = t + 100 + k * 600;
                lines.push((
                    at,
                    event(at, "svc_backup", "FS1", "BK1", "network", "success"),
                ));
            }
            let server = format!("SRV{:02}", day * 9 + hour - 8);
            lines.push((
                t + 200,
                event(
                    t + 200,
                    "admin1",
                    &server,
                    "JUMP1",
                    "remote_interactive",
                    "success",
                ),
            ));
        }
    }
    // Day four: WS07 sprays passwords at twelve accounts, then, as one of
    // them, reaches eight servers it never reached before (a desk spreading
    // as its own account would be that account's to judge); the backup
    // account logs on at a desktop.
    let t = start + 3 * 86_400 + 10 * 3_600;
    for (i, user) in (0..12)
        .map(|p| format!("user{:02}", (p + 10) % 40))
        .enumerate()
    {
        let i = i as i64;
        lines.push((
            t + i,
            event(t + i, &user, "FS1", "WS07", "network", "failure"),
        ));
    }
    for i in 0..8 {
        lines.push((
            t + 600 + i,
            event(
                t + 600 + i,
                "user12",
                &format!("SRV{:02}", 40 + i),
                "WS07",
                "network",
                "success",
            ),
        ));
    }
    lines.push((
        t + 900,
        event(
            t + 900,
            "svc_backup",
            "WS33",
            "WS33",
            "remote_interactive",
            "success",
        ),
    ));
    lines.sort();
    let text: Vec<String> = lines.into_iter().map(|(_, line)| line).collect();
    std::fs::write(dir.path().join("richer.jsonl"), text.join("\n") + "\n").unwrap();

    let out = run_ok(dir.path(), &["run", "richer.jsonl", "--output", "out"]);
    let s = summary(&out.stdout);
    assert_eq!(s["invalid"].as_u64(), Some(0));
    let alerts: Vec<Value> = std::fs::read_to_string(dir.path().join("out/alerts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let raised = |rule: &str| -> Vec<(String, String)> {
        let mut found: Vec<_> = alerts
            .iter()
            .filter(|a| {
                a["risk_flags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == rule)
            })
            .map(|a| {
                let field = |k: &str| a[k].as_str().unwrap().to_string();
                (field("entity_type"), field("entity_id"))
            })
            .collect();
        found.dedup();
        found
    };
    assert_eq!(
        raised("failed_logon_spray"),
        [("computer".into(), "WS07".into())]
    );
    assert_eq!(
        raised("source_fan_out"),
        [("computer".into(), "WS07".into())]
    );
    assert_eq!(
        raised("new_logon_type"),
        [("user".into(), "svc_backup".into())]
    );
    // The routine raised none of them: the jump host's new servers every
    // day are its habit, and the admins always used remote desktop.
    let by_rule = &s["rule_hits"];
    assert_eq!(
        by_rule["failed_logon_spray"].as_u64(),
        Some(7),
        "accounts 6 to 12"
    );
    assert_eq!(by_rule["new_logon_type"].as_u64(), Some(1));
}
