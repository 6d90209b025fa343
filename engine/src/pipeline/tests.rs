//! The pipeline fed decoded records ([`Line::Record`]) as a table read back
//! feeds it: the same scores as the same events as text, and the same
//! checks.

use super::{Outputs, Pipeline, PipelineOptions};
use crate::event::EventId;
use crate::input::{Line, Record};
use crate::logon::RecordDetail;
use crate::policy::Policy;
use crate::sinks::Collect;

/// Scores `lines` with the built-in policy and rules, natively.
fn score(lines: &[Line<'_>]) -> Collect {
    let mut collected = Collect::default();
    let (mut dead, mut alerts) = (Collect::default(), Collect::default());
    let mut pipeline = Pipeline::new(
        Policy::builtin(),
        PipelineOptions {
            engine: crate::rules::Engine::Native,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut alerts,
            scored: &mut collected,
            received: None,
        },
    )
    .unwrap();
    for (n, line) in lines.iter().enumerate() {
        let line = match line {
            Line::Complete(bytes) => Line::Complete(bytes),
            Line::Record(record) => Line::Record(*record),
            _ => unreachable!("only events here"),
        };
        pipeline.push_line(n as u64 + 1, line).unwrap();
    }
    pipeline.end_of_input().unwrap();
    pipeline.finish().unwrap();
    collected.dead_letters = dead.dead_letters;
    collected.alerts = alerts.alerts;
    collected
}

const ID: &str = "9341c1af8b819d9bfb1ffee11659a83f";

fn record<'a>(time: i64, user: &'a str, computer: &'a str) -> Record<'a> {
    Record {
        event_time: time,
        user: user.as_bytes(),
        computer: computer.as_bytes(),
        event_id: None,
        ingestion_time: None,
        detail: RecordDetail::default(),
        source_event_id: None,
    }
}

#[test]
fn a_decoded_record_scores_as_its_json_line() {
    let json: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"event_time":"2024-01-01T00:{:02}:00Z","user_id":"U1","computer_id":"C{i}"}}"#,
                i
            )
        })
        .collect();
    let as_text: Vec<Line<'_>> = json.iter().map(|l| Line::Complete(l.as_bytes())).collect();
    let names: Vec<String> = (0..40).map(|i| format!("C{i}")).collect();
    let as_records: Vec<Line<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, c)| Line::Record(record(1_704_067_200 + 60 * i as i64, "U1", c)))
        .collect();
    let (text, decoded) = (score(&as_text), score(&as_records));
    assert_eq!(text.rows.len(), 40);
    assert_eq!(text.rows, decoded.rows);
    assert_eq!(text.alerts.len(), decoded.alerts.len());
    assert!(decoded.dead_letters.is_empty());
}

#[test]
fn a_decoded_record_is_checked_and_dead_lettered_as_json() {
    let mut bad_name = record(1_704_067_200, "", "C1");
    bad_name.event_id = EventId::parse(ID);
    let bad_time = record(-5, "U1", "C1");
    let out = score(&[Line::Record(bad_name), Line::Record(bad_time)]);
    let kinds: Vec<&str> = out.dead_letters.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["empty_field", "bad_time"]);
    let raw: serde_json::Value = serde_json::from_str(&out.dead_letters[0].raw).unwrap();
    assert_eq!(raw["computer_id"], "C1");
    assert_eq!(raw["event_id"], ID);
    assert_eq!(raw["event_time"], "2024-01-01T00:00:00Z");
    assert!(out.rows.is_empty());
}
