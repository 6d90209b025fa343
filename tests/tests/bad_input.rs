//! Malformed, duplicate and late records are counted and dead-lettered with
//! their line and reason; valid records are scored exactly as without them.

mod common;

use common::{generate, score_default};

#[test]
fn junk_is_dead_lettered_and_valid_lines_unaffected() {
    let (clean, _) = generate(100, 2, 10_000, 0, 5);
    let clean_run = score_default(&clean, 512);

    let junk: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\x01\x02\xff\xfe binary".to_vec(), "field_count"),
        (b"\xff\xfe,\x80\x81,\x82".to_vec(), "bad_time"),
        (b"5,U1,\xff\xfe".to_vec(), "not_utf8"),
        (b",U1,C1".to_vec(), "empty_field"),
        (b"5,,C1".to_vec(), "empty_field"),
        (b"5,U1,".to_vec(), "empty_field"),
        (b"12:00,U1,C1".to_vec(), "bad_time"),
        (b"-3,U1,C1".to_vec(), "bad_time"),
        (b"1,U1".to_vec(), "field_count"),
        (
            [b"5,U1,C".as_slice(), &vec![b'9'; 200_000]].concat(),
            "line_too_long",
        ),
        // Each line's format is its own: this is JSON, and not an event.
        (b"{\"event_time\": 3}".to_vec(), "bad_json"),
    ];
    let clean_lines: Vec<&[u8]> = clean
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut dirty = Vec::new();
    let mut expected_lines = Vec::new();
    let mut line_no = 0u64;
    let step = clean_lines.len() / (junk.len() + 1);
    for (i, line) in clean_lines.iter().enumerate() {
        if i > 0 && i % step == 0 && i / step <= junk.len() {
            let (bad, kind) = &junk[i / step - 1];
            dirty.extend_from_slice(bad);
            dirty.push(b'\n');
            line_no += 1;
            expected_lines.push((line_no, *kind));
        }
        dirty.extend_from_slice(line);
        dirty.push(b'\n');
        line_no += 1;
    }
    // A late event: far older than the watermark, at the very end.
    dirty.extend_from_slice(b"3,U1,C1\n");
    line_no += 1;
    expected_lines.push((line_no, "late"));
    // A duplicate of the last valid line is not an error.
    dirty.extend_from_slice(clean_lines.last().unwrap());
    dirty.push(b'\n');

    let run = score_default(&dirty, 512);
    let s = &run.summary;
    assert_eq!(s.invalid, junk.len() as u64, "{s:?}");
    assert_eq!(s.late, 1);
    assert_eq!(s.duplicates, clean_run.summary.duplicates + 1);
    assert_eq!(
        s.events_read,
        clean_run.summary.events_read + junk.len() as u64 + 2
    );
    assert_eq!(s.events_valid, s.events_scored + s.duplicates + s.late);

    let got: Vec<(u64, &str)> = run
        .collected
        .dead_letters
        .iter()
        .map(|d| (d.line, d.kind.as_str()))
        .collect();
    assert_eq!(got, expected_lines);
    let huge = run
        .collected
        .dead_letters
        .iter()
        .find(|d| d.kind == "line_too_long")
        .unwrap();
    assert!(
        huge.raw.len() <= 4096 && huge.reason.contains("200006 bytes"),
        "{huge:?}"
    );

    assert!(
        run.collected.rows == clean_run.collected.rows,
        "valid lines scored differently"
    );
    assert_eq!(run.collected.alerts, clean_run.collected.alerts);
}

#[test]
fn json_events_score_like_csv() {
    let (csv, _) = generate(80, 2, 6_000, 0, 9);
    let mut json = Vec::new();
    for line in csv.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = std::str::from_utf8(line).unwrap();
        let mut f = text.split(',');
        let t: i64 = f.next().unwrap().parse().unwrap();
        let (user, computer) = (f.next().unwrap(), f.next().unwrap());
        let time = authpulse_engine::event::format_time(
            authpulse_engine::event::TimeBase::DEFAULT.to_unix(t),
        );
        let id = authpulse_engine::event::EventId::derive(t, user, computer);
        json.extend_from_slice(
            format!(
                r#"{{"event_id":"{id}","event_time":"{time}","user_id":"{user}","computer_id":"{computer}","ingestion_time":"{time}"}}"#
            )
            .as_bytes(),
        );
        json.push(b'\n');
    }
    let a = score_default(&csv, 1000);
    let b = score_default(&json, 1000);
    assert_eq!(
        common::comparable(&a.summary),
        common::comparable(&b.summary)
    );
    assert!(a.collected.rows == b.collected.rows);
}
