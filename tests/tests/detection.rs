//! Detection on realistic background data: crafted incidents alert, on the
//! account (or computer) they concern, with the rule that explains them;
//! ordinary users do not; an alert is published when its incident opens,
//! not when it closes; and rules that need no history work from a cold
//! start. Quiet campaigns at scale are measured by `authpulse eval`
//! (its small run is in the CLI tests).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use authpulse_engine::alerts::{Alert, AlertStatus};
use authpulse_engine::entity::EntityKind;
use authpulse_engine::input::Line;
use authpulse_engine::pipeline::{Outputs, Pipeline, PipelineOptions};
use authpulse_engine::policy::{Policy, RiskLevel};
use authpulse_engine::sinks::{AlertSink, Commit, Discard};
use authpulse_generator::Kind;
use common::{generate, latest, score_default};

#[test]
fn hidden_attacks_alert_and_ordinary_users_do_not() {
    let (data, attacks) = generate(500, 5, 150_000, 4, 21);
    assert_eq!(attacks.len(), 4);
    let run = score_default(&data, 4096);
    let alerts = latest(&run.collected.alerts);
    for attack in &attacks {
        let alert = alerts
            .iter()
            .find(|a| a.entity_type == EntityKind::User && attack.users.contains(&a.entity_id))
            .unwrap_or_else(|| panic!("no alert for {attack:?}; alerts: {alerts:#?}"));
        assert!(alert.risk_level >= RiskLevel::High, "{alert:?}");
        assert_eq!(alert.status, AlertStatus::Closed);
        let rule = if attack.kind == Kind::Spray {
            "lateral_movement"
        } else {
            "burst"
        };
        assert!(alert.risk_flags.iter().any(|f| f == rule), "{alert:?}");
    }
    let others: Vec<_> = alerts
        .iter()
        .filter(|a| !attacks.iter().any(|t| t.users.contains(&a.entity_id)))
        .collect();
    assert!(others.is_empty(), "alerts on ordinary users: {others:#?}");
}

/// An ordinary user of the background and the data with `extra` lines of
/// theirs merged in (`time,computer`), as LANL CSV.
fn with_crafted(background: &[u8], extra: impl Fn(&str) -> Vec<(u64, String)>) -> (String, String) {
    let lines: Vec<&str> = std::str::from_utf8(background).unwrap().lines().collect();
    // An ordinary user, active since day 1: the user of the first line.
    let user = lines[0].split(',').nth(1).unwrap().to_string();
    let mut all: Vec<(u64, String)> = lines
        .iter()
        .map(|l| (l.split(',').next().unwrap().parse().unwrap(), l.to_string()))
        .collect();
    for (time, computer) in extra(&user) {
        all.push((time, format!("{time},{user},{computer}")));
    }
    all.sort_by_key(|(t, _)| *t);
    let data = all.into_iter().map(|(_, l)| l + "\n").collect();
    (user, data)
}

#[test]
fn crafted_lateral_movement_is_one_critical_incident() {
    let (background, _) = generate(300, 4, 80_000, 0, 33);
    let start = 3 * 86_400 + 10 * 3600;
    let (user, data) = with_crafted(&background, |_| {
        (0..24u64)
            .map(|i| (start + i * 15, format!("CX{i}")))
            .collect()
    });
    let run = score_default(data.as_bytes(), 4096);
    let mine: Vec<&Alert> = run
        .collected
        .alerts
        .iter()
        .filter(|a| a.entity_id == user)
        .collect();
    let ids: std::collections::BTreeSet<&str> = mine.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "one incident: {mine:#?}");
    // Published when it opened, again as it grew, and once closed.
    assert_eq!(mine[0].status, AlertStatus::Open);
    assert!(mine.iter().map(|a| a.sequence).eq(1..=mine.len() as u32));
    let last = mine.last().unwrap();
    assert_eq!(last.status, AlertStatus::Closed);
    assert_eq!(last.risk_level, RiskLevel::Critical);
    assert!(last.risk_flags.contains(&"lateral_movement".to_string()));
    // Every crafted computer contributed (a new computer of the user's own
    // within the incident may add to it).
    let new_device = last.rules.iter().find(|r| r.id == "new_device");
    assert!(
        last.event_count >= 24 && new_device.is_some_and(|r| r.hits >= 24),
        "{:?}",
        last.rules
    );
    assert_eq!(last.events.len(), 10, "the first ten as samples");
    assert!(
        last.rules
            .iter()
            .any(|r| r.id == "lateral_movement" && r.mitre.contains(&"T1021".to_string()))
    );
    // Nothing else is about the crafted spread.
    for alert in &run.collected.alerts {
        if alert.entity_id != user {
            assert!(
                !alert.computers.iter().any(|c| c.starts_with("CX"))
                    && !alert.risk_flags.contains(&"lateral_movement".to_string()),
                "{alert:#?}"
            );
        }
    }
}

/// Shares what it is sent with the test while the pipeline runs.
#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<Alert>>>);

impl Commit for Shared {}

impl AlertSink for Shared {
    fn send(&mut self, alert: &Alert) -> std::io::Result<()> {
        self.0.borrow_mut().push(alert.clone());
        Ok(())
    }
}

/// The alert goes out when the incident opens: as soon as the watermark
/// (latest event time less the allowed lateness) passes the event that
/// opened it, long before the incident closes.
#[test]
fn an_alert_is_published_when_its_incident_opens() {
    let (background, _) = generate(300, 3, 60_000, 0, 5);
    let burst_at = 2 * 86_400 + 11 * 3600;
    let (user, data) = with_crafted(&background, |_| {
        (0..300u64)
            .map(|i| (burst_at + i, "C1".to_string()))
            .collect()
    });
    let shared = Shared::default();
    let mut sink = shared.clone();
    let mut dead = Discard;
    let mut scored = Discard;
    // Small batches: a batch is scored when full (or, on a live stream, after
    // a fraction of a second), and this test pushes lines as fast as it can.
    let mut pipeline = Pipeline::new(
        Policy::builtin(),
        PipelineOptions {
            batch_size: 32,
            ..PipelineOptions::default()
        },
        Outputs {
            dead_letters: &mut dead,
            alerts: &mut sink,
            scored: &mut scored,
            received: None,
        },
    )
    .unwrap();
    let lateness = 300;
    let mut published_at = None;
    for (i, line) in data.lines().enumerate() {
        let time: u64 = line.split(',').next().unwrap().parse().unwrap();
        pipeline
            .push_line(i as u64 + 1, Line::Complete(line.as_bytes()))
            .unwrap();
        let opened = shared
            .0
            .borrow()
            .iter()
            .any(|a| a.entity_id == user && a.status == AlertStatus::Open);
        if opened && published_at.is_none() {
            published_at = Some(time);
        }
    }
    let published_at = published_at.expect("the burst alerts while input continues");
    // A logon of the burst crosses twice the user's busiest hour; the alert
    // is out once event time is the lateness past it, plus a small batch,
    // and an hour before its incident could close.
    assert!(
        published_at >= burst_at + lateness && published_at < burst_at + 300 + lateness + 600,
        "published at {published_at}, burst from {burst_at}"
    );
    pipeline.finish().unwrap();
    let mine: Vec<Alert> = shared
        .0
        .borrow()
        .iter()
        .filter(|a| a.entity_id == user)
        .cloned()
        .collect();
    assert_eq!(mine.first().map(|a| a.status), Some(AlertStatus::Open));
    assert_eq!(mine.last().map(|a| a.status), Some(AlertStatus::Closed));
    assert!(mine.iter().all(|a| a.alert_id == mine[0].alert_id));
}

/// After a first start nothing has history, and the loud cases alert anyway:
/// hundreds of logons in minutes from an account seen for a few hours.
#[test]
fn a_burst_alerts_from_a_cold_start() {
    let (background, _) = generate(300, 1, 25_000, 0, 8);
    let burst_at = 6 * 3600;
    let (user, data) = with_crafted(&background, |_| {
        (0..300u64)
            .map(|i| (burst_at + i, "C1".to_string()))
            .collect()
    });
    let run = score_default(data.as_bytes(), 4096);
    let alerts = latest(&run.collected.alerts);
    let alert = alerts
        .iter()
        .find(|a| a.entity_id == user)
        .unwrap_or_else(|| panic!("no alert for {user}: {alerts:#?}"));
    let burst = alert.rules.iter().find(|r| r.id == "burst");
    assert!(
        burst.is_some_and(|r| r.reason.contains("little history")),
        "{alert:?}"
    );
}
