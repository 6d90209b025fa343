//! Detection quality on realistic background data: crafted incidents alert at
//! HIGH or CRITICAL, ordinary users do not.

mod common;

use authpulse::policy::RiskLevel;
use common::{generate, score_default};

#[test]
fn hidden_attacks_alert_and_ordinary_users_do_not() {
    let (data, attacks) = generate(500, 5, 150_000, 4, 21);
    assert_eq!(attacks.len(), 4);
    let run = score_default(&data, 4096);
    let alerts = &run.collected.alerts;
    for attack in &attacks {
        let alert = alerts
            .iter()
            .find(|a| a.user_id == attack.user)
            .unwrap_or_else(|| panic!("no alert for {attack:?}; alerts: {alerts:#?}"));
        assert!(alert.risk_level >= RiskLevel::High, "{alert:?}");
        let rule = if attack.kind == "lateral_movement" {
            "lateral_movement"
        } else {
            "burst"
        };
        assert!(alert.risk_flags.iter().any(|f| f == rule), "{alert:?}");
    }
    let others: Vec<_> = alerts
        .iter()
        .filter(|a| !attacks.iter().any(|t| t.user == a.user_id))
        .collect();
    assert!(others.is_empty(), "alerts on ordinary users: {others:#?}");
}

#[test]
fn crafted_lateral_movement_is_one_critical_alert() {
    let (background, _) = generate(300, 4, 80_000, 0, 33);
    let lines: Vec<&str> = std::str::from_utf8(&background).unwrap().lines().collect();
    // An ordinary user, active since day 1: the user of the first line.
    let user = lines[0].split(',').nth(1).unwrap().to_string();
    let start = 3 * 86_400 + 10 * 3600;
    let mut all: Vec<(u64, String)> = lines
        .iter()
        .map(|l| (l.split(',').next().unwrap().parse().unwrap(), l.to_string()))
        .collect();
    for i in 0..24u64 {
        all.push((start + i * 15, format!("{},{user},CX{i}", start + i * 15)));
    }
    all.sort_by_key(|(t, _)| *t);
    let data: String = all.into_iter().map(|(_, l)| l + "\n").collect();

    let run = score_default(data.as_bytes(), 4096);
    let mine: Vec<_> = run
        .collected
        .alerts
        .iter()
        .filter(|a| a.user_id == user)
        .collect();
    assert_eq!(mine.len(), 1, "one incident, one alert: {mine:#?}");
    let alert = mine[0];
    assert_eq!(alert.risk_level, RiskLevel::Critical);
    assert!(alert.risk_flags.contains(&"lateral_movement".to_string()));
    assert_eq!(
        alert.event_count,
        24 - 9,
        "fires from the 10th new computer on"
    );
    assert_eq!(alert.event_ids.len(), 10);
    assert!(
        alert
            .rules
            .iter()
            .any(|r| r.id == "lateral_movement" && r.mitre.contains(&"T1021".to_string()))
    );
    assert!(
        run.collected.alerts.iter().all(|a| a.user_id == user),
        "{:#?}",
        run.collected.alerts
    );
}
