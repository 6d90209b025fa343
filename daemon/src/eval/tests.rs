//! Matching and counting, on hand-made campaigns and incidents.

use authpulse_engine::entity::EntityKind;

use super::matching::match_incidents;
use super::*;
use crate::incidents::Incident;

#[test]
fn quantiles_by_nearest_rank() {
    assert_eq!(quantile(&[], 0.5), None);
    assert_eq!(quantile(&[7], 0.95), Some(7));
    assert_eq!(quantile(&[1, 2, 3, 4], 0.5), Some(2));
    assert_eq!(quantile(&(1..=20).collect::<Vec<_>>(), 0.95), Some(19));
}

fn campaign(id: u32, start: u32, end: u32) -> Campaign {
    Campaign {
        id,
        kind: Kind::Rare,
        benign: false,
        users: vec!["U1".into()],
        computers: vec!["C1".into()],
        target: None,
        sources: Vec::new(),
        start,
        end,
        events: 2,
        description: String::new(),
    }
}

#[test]
fn a_batch_is_matched_against_the_campaigns_it_overlaps() {
    let baseline = NaiveBaseline::new(
        vec![
            campaign(1, 500, 900),
            campaign(2, 100, 200),
            campaign(3, 150, 600),
        ],
        0,
    );
    assert_eq!(baseline.overlapping(0, 99), Vec::<usize>::new());
    assert_eq!(baseline.overlapping(0, 100), vec![1]);
    assert_eq!(baseline.overlapping(201, 499), vec![2]);
    let mut both = baseline.overlapping(550, 560);
    both.sort_unstable();
    assert_eq!(both, vec![0, 2]);
    assert_eq!(baseline.overlapping(901, 1000), Vec::<usize>::new());
}

fn incident(user: &str, computer: &str, opened: u32) -> Incident {
    let opened = i64::from(opened);
    Incident {
        entity: EntityKind::User,
        entity_id: user.into(),
        users: vec![user.into()],
        computers: vec![computer.into()],
        opened,
        first: opened,
        last: opened,
        summary: format!("{user} on {computer}"),
        rules: vec!["slow_spread".into()],
    }
}

/// `incidents` matched against `campaigns`, LANL time being Unix time
/// here, after a burn-in of seven days.
fn matched(incidents: &[(&str, Incident)], campaigns: &[Campaign]) -> Matched {
    let incidents = incidents.iter().map(|(id, i)| (*id, i));
    match_incidents(incidents, |unix| unix as u32, campaigns, 7 * 86_400)
}

fn ids(notes: &[Note]) -> Vec<String> {
    notes.iter().map(|n| n.id.clone()).collect()
}

#[test]
fn an_alert_on_an_attacked_account_days_later_is_neither_a_detection_nor_false() {
    let day: u32 = 86_400;
    let mut benign = campaign(2, 10 * day, 10 * day + 600);
    benign.benign = true;
    benign.users = vec!["U2".into()];
    let campaigns = [campaign(1, 8 * day, 8 * day + 900), benign];
    let incidents = [
        // On the attack's own computer while it runs: a detection.
        ("a", incident("U1", "C1", 8 * day + 60)),
        // Its account on another computer two days on: its evidence
        // (three days of new computers) still holds the attack.
        ("b", incident("U1", "C9", 10 * day)),
        // ... four days on, past every rule's look-back: false.
        ("c", incident("U1", "C9", 12 * day + 1000)),
        // Another account: false.
        ("d", incident("U3", "C9", 9 * day)),
        // The desk the attack worked from, its source rule's alert on
        // the attack's logons: a detection.
        (
            "f",
            Incident {
                entity: EntityKind::Computer,
                entity_id: "C7".into(),
                ..incident("U1", "C1", 8 * day + 120)
            },
        ),
        // The same desk, but the account's logons elsewhere: false.
        (
            "g",
            Incident {
                entity: EntityKind::Computer,
                entity_id: "C7".into(),
                ..incident("U1", "C8", 8 * day + 120)
            },
        ),
        // A benign case's account after it: still counted against us.
        ("e", incident("U2", "C9", 10 * day + 3600)),
    ];
    let m = matched(&incidents, &campaigns);
    assert_eq!((m.alerts, m.true_alerts), (7, 2));
    assert_eq!(ids(&m.after_attack), ["b"]);
    assert_eq!(m.after_attack[0].text, "47.8 h after rare 1: U1 on C9");
    assert_eq!(ids(&m.false_alerts), ["c", "d", "g", "e"]);
    assert_eq!(m.detected_at, [Some(8 * day + 60), None]);
}

#[test]
fn an_alert_that_detects_an_attack_is_not_held_against_a_habit_it_touches() {
    let day: u32 = 86_400;
    // A help desk that visits the computer an attack fans in on.
    let mut help_desk = campaign(2, 0, 14 * day);
    help_desk.benign = true;
    help_desk.kind = Kind::HelpDesk;
    help_desk.users = vec!["U2".into()];
    let campaigns = [campaign(1, 8 * day, 8 * day + 900), help_desk];
    let on_the_computer = |users: &[&str], opened: u32| Incident {
        entity: EntityKind::Computer,
        entity_id: "C1".into(),
        users: users.iter().map(|&u| u.into()).collect(),
        ..incident("U1", "C1", opened)
    };
    let incidents = [
        ("attack", on_the_computer(&["U1", "U2"], 8 * day + 60)),
        ("habit", on_the_computer(&["U2"], 11 * day)),
    ];
    let m = matched(&incidents, &campaigns);
    assert_eq!((m.alerts, m.true_alerts), (2, 1));
    assert_eq!(ids(&m.benign_alerts), ["habit"]);
    assert_eq!(m.detected_at, [Some(8 * day + 60), Some(11 * day)]);
}

#[test]
fn a_missed_campaign_says_how_close_it_came() {
    let mut closest = Closest::default();
    assert_eq!(closest.describe(), "none of its logons was scored");
    closest.events = 3;
    assert_eq!(closest.describe(), "no rule fired on its 3 logon(s)");
    closest.hit = 2;
    closest.top_score = 41;
    closest.top_rules = vec!["new_device".into(), "rare_host".into()];
    assert_eq!(
        closest.describe(),
        "top event score 41 (new_device, rare_host), 2 of 3 logon(s) with a rule hit"
    );
}
