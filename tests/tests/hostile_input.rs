//! A corpus of hostile and odd inputs, each mixed into the same generated
//! data with hidden attacks. For every one: each record read is counted once
//! (`read = valid + invalid`, `valid = scored + duplicates + late + future`),
//! every real event is scored exactly as without the hostile records, and
//! where nothing hostile was admitted the alerts are the same too, so the
//! hidden attacks are still caught.

mod common;

use std::collections::{BTreeMap, HashSet};

use authpulse_engine::sinks::ScoredRow;
use common::{Outcome, generate, score_default};

/// The clean data's lines.
fn clean() -> &'static (Vec<u8>, Vec<String>) {
    static CLEAN: std::sync::OnceLock<(Vec<u8>, Vec<String>)> = std::sync::OnceLock::new();
    CLEAN.get_or_init(|| {
        let (data, campaigns) = generate(120, 3, 30_000, 2, 31);
        assert_eq!(campaigns.len(), 2);
        let lines = String::from_utf8(data.clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        (data, lines)
    })
}

/// The clean data scored once.
fn clean_run() -> &'static Outcome {
    static RUN: std::sync::OnceLock<Outcome> = std::sync::OnceLock::new();
    RUN.get_or_init(|| score_default(&clean().0, 512))
}

/// The clean lines with `insert` lines put before clean line `at` (0-based),
/// joined with `end` (a line end).
fn with_lines(inserts: &[(usize, &str)], end: &str) -> Vec<u8> {
    let mut out = String::new();
    for (i, line) in clean().1.iter().enumerate() {
        for (_, extra) in inserts.iter().filter(|(at, _)| *at == i) {
            out.push_str(extra);
            out.push_str(end);
        }
        out.push_str(line);
        out.push_str(end);
    }
    out.into_bytes()
}

/// Rows by event id.
fn by_id(rows: &[ScoredRow]) -> BTreeMap<&str, &ScoredRow> {
    rows.iter().map(|r| (r.event_id.as_str(), r)).collect()
}

/// What every case must hold; returns the dead letters' kinds by line.
fn check(name: &str, data: &[u8], alerts_unchanged: bool) -> (Outcome, Vec<(u64, String)>) {
    let run = score_default(data, 512);
    let s = &run.summary;
    assert_eq!(s.events_read, s.events_valid + s.invalid, "{name}: {s:?}");
    assert_eq!(
        s.events_valid,
        s.events_scored + s.duplicates + s.late + s.future,
        "{name}: {s:?}"
    );
    assert_eq!(
        run.collected.dead_letters.len() as u64,
        s.invalid + s.late + s.future,
        "{name}: every refused record is dead-lettered"
    );
    assert_eq!(
        s.invalid_by_reason.values().sum::<u64>(),
        s.invalid,
        "{name}: invalid_by_reason counts what invalid counts"
    );
    // Every real event is scored, with the same features and score.
    let clean = by_id(&clean_run().collected.rows);
    let got = by_id(&run.collected.rows);
    for (id, row) in &clean {
        let scored = got
            .get(id)
            .unwrap_or_else(|| panic!("{name}: real event {id} was not scored"));
        if alerts_unchanged {
            assert_eq!(
                (
                    scored.risk_score,
                    &scored.risk_flags,
                    scored.user_logins_24h
                ),
                (row.risk_score, &row.risk_flags, row.user_logins_24h),
                "{name}: {id}"
            );
        }
    }
    if alerts_unchanged {
        assert!(
            run.collected.rows == clean_run().collected.rows,
            "{name}: rows differ"
        );
        assert_eq!(
            run.collected.alerts,
            clean_run().collected.alerts,
            "{name}: alerts differ"
        );
    }
    assert!(
        !clean_run().collected.alerts.is_empty(),
        "the hidden attacks alert"
    );
    let kinds = run
        .collected
        .dead_letters
        .iter()
        .map(|d| (d.line, d.kind.clone()))
        .collect();
    (run, kinds)
}

fn lanl(line: &str) -> i64 {
    line.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn one_record_dated_a_year_ahead_is_refused_and_blinds_nothing() {
    let data = with_lines(&[(500, "31536000,U1,C1")], "\n");
    let (run, kinds) = check("a year ahead", &data, true);
    assert_eq!(kinds, [(501, "future".to_string())]);
    assert_eq!(run.summary.late, 0);
    let dead = &run.collected.dead_letters[0];
    assert_eq!(dead.raw, "31536000,U1,C1");
    assert!(
        dead.reason
            .starts_with("future: event time 2024-12-31T00:00:00Z is more than 5m ahead of "),
        "{}",
        dead.reason
    );
}

#[test]
fn forged_records_far_ahead_anywhere_are_refused() {
    let n = clean().1.len();
    let year = 31_536_000.to_string();
    let inserts: Vec<(usize, String)> = vec![
        // The very first record.
        (0, format!("{year},UEVIL,CEVIL")),
        // As far as the format allows (9999-12-31 from a 2024 base).
        (n / 4, "250000000000,UEVIL,CEVIL".into()),
        // A day ahead, twice close together (a minority of their neighbours).
        (
            n / 2,
            format!("{},UEVIL,C1", lanl(&clean().1[n / 2]) + 86_400),
        ),
        (
            n / 2 + 3,
            format!("{},UEVIL,C2", lanl(&clean().1[n / 2]) + 86_400),
        ),
        // An hour ahead, near the end.
        (n - 4, format!("{},U2,C2", lanl(&clean().1[n - 4]) + 3_600)),
    ];
    let inserts: Vec<(usize, &str)> = inserts.iter().map(|(i, l)| (*i, l.as_str())).collect();
    let data = with_lines(&inserts, "\n");
    let (run, kinds) = check("far ahead", &data, true);
    assert_eq!(run.summary.future, 5, "{kinds:?}");
    assert!(kinds.iter().all(|(_, kind)| kind == "future"));
}

#[test]
fn records_walking_ahead_just_within_reach_make_nothing_late() {
    // Every 20th record 4 minutes further ahead than the last: each is
    // within reach of the clock when it arrives, and together they would
    // walk a watermark that followed the latest event a day ahead.
    let lines = &clean().1;
    let mut walk = lanl(&lines[100]);
    let mut inserts = Vec::new();
    for at in (100..lines.len()).step_by(20).take(400) {
        walk = walk.max(lanl(&lines[at])) + 240;
        inserts.push((at, format!("{walk},UWALK,C1")));
    }
    let inserts: Vec<(usize, &str)> = inserts.iter().map(|(i, l)| (*i, l.as_str())).collect();
    let data = with_lines(&inserts, "\n");
    let (run, _) = check("walking", &data, false);
    assert_eq!(run.summary.late, 0, "no real event is made late");
    assert!(run.summary.future > 300, "{:?}", run.summary);
}

#[test]
fn records_far_behind_are_late_and_nothing_else() {
    let n = clean().1.len();
    let data = with_lines(&[(n / 2, "0,U1,C1"), (n / 2 + 1, "1,U3,C3")], "\n");
    let (run, kinds) = check("far behind", &data, true);
    assert_eq!(run.summary.late, 2, "{kinds:?}");
}

#[test]
fn byte_order_marks_and_windows_line_ends_lose_nothing() {
    let mut data = b"\xEF\xBB\xBF".to_vec();
    data.extend(with_lines(&[], "\r\n"));
    let (run, kinds) = check("BOM and CRLF", &data, true);
    assert!(kinds.is_empty(), "{kinds:?}");
    assert_eq!(run.summary.events_read as usize, clean().1.len());
}

#[test]
fn json_with_a_byte_order_mark_is_json() {
    use authpulse_engine::event::{TimeBase, format_time};
    let mut data = b"\xEF\xBB\xBF".to_vec();
    for (i, line) in clean().1.iter().enumerate() {
        let mut f = line.split(',');
        let t = TimeBase::DEFAULT.to_unix(f.next().unwrap().parse().unwrap());
        let (user, computer) = (f.next().unwrap(), f.next().unwrap());
        data.extend(
            format!(
                r#"{{"event_time":"{}","user_id":"{user}","computer_id":"{computer}"}}"#,
                format_time(t)
            )
            .as_bytes(),
        );
        data.push(b'\n');
        if i == 700 {
            data.extend(
                br#"{"event_time":"9999-12-31T23:59:59Z","user_id":"U1","computer_id":"C1"}"#,
            );
            data.push(b'\n');
        }
    }
    let (run, kinds) = check("JSON with BOM", &data, true);
    assert_eq!(kinds, [(702, "future".to_string())]);
    assert_eq!(run.summary.events_scored, clean_run().summary.events_scored);
}

#[test]
fn junk_floods_and_repeats_are_counted_and_change_nothing() {
    let n = clean().1.len();
    let long_name = format!("5,U1,{}", "C".repeat(300));
    let repeated = clean().1[n / 3].clone();
    let mut inserts: Vec<(usize, &str)> = vec![
        (10, "time,user,computer"),
        (
            20,
            r#"{"event_time":"2024-01-01T00:00:05Z","user_id":"U1","computer_id":"C1"}"#,
        ),
        (30, "5,U1,C1,extra"),
        (40, "   "),
        (50, ""),
        (60, "5,U\u{7},C1"),
        (70, &long_name),
        (80, "5.5,U1,C1"),
        (90, "-1,U1,C1"),
        (95, "99999999999999999999,U1,C1"),
    ];
    // Repeats of one record: right after it (duplicates, while it is held)
    // and well after (late, once it was scored).
    for at in 0..2000 {
        inserts.push((n / 3 + 1 + at % 2, repeated.as_str()));
    }
    for at in 0..500 {
        inserts.push((2 * n / 3 + at % 50, repeated.as_str()));
    }
    let data = with_lines(&inserts, "\n");
    let (run, kinds) = check("junk", &data, true);
    let reasons: HashSet<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        reasons,
        HashSet::from([
            "bad_time",
            "field_count",
            "control_character",
            "field_too_long",
            "late"
        ]),
        "{kinds:?}"
    );
    // Eight junk lines; the JSON line is read as JSON (each line's format
    // is its own): a valid event, dated behind the watermark there, so late.
    assert_eq!(run.summary.invalid, 7, "{kinds:?}");
    assert_eq!(run.summary.late, 501);
    assert_eq!(
        run.summary.duplicates,
        clean_run().summary.duplicates + 2000
    );
    // Blank lines are not records.
    assert_eq!(
        run.summary.events_read as usize,
        clean().1.len() + inserts.len() - 2
    );
}
