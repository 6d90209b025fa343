//! The planner against its descriptions: every kind plans what it says,
//! on accounts and computers that fit, at the times it says.

use super::*;
use crate::DAY;

#[test]
fn kinds_parse_and_cycle() {
    assert_eq!("fan_in".parse::<Kind>(), Ok(Kind::FanIn));
    assert!("nope".parse::<Kind>().unwrap_err().contains("spray"));
    let plan = CampaignPlan {
        attacks: 13,
        benign: 8,
        kinds: Vec::new(),
        from_day: 1,
    };
    let kinds = plan.kinds();
    assert_eq!(kinds.len(), 21);
    assert_eq!(
        &kinds[..7],
        &[
            Kind::Spray,
            Kind::Burst,
            Kind::Chain,
            Kind::Stealth,
            Kind::Rare,
            Kind::FanIn,
            Kind::MultiDay
        ]
    );
    assert_eq!(kinds[11], Kind::PasswordSpray);
    assert_eq!(kinds[12], Kind::FootholdFanOut);
    assert_eq!(kinds[13], Kind::Rollout);
    assert_eq!(kinds[19], Kind::MigrationMorning);
    assert_eq!(kinds[20], Kind::Rollout);
    for kind in Kind::ATTACKS.into_iter().chain(Kind::BENIGN) {
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
        assert_eq!(kind.is_benign(), kind.family() == "benign");
    }
    let only = CampaignPlan {
        attacks: 3,
        benign: 2,
        kinds: vec![Kind::Burst, Kind::NewHire],
        from_day: 0,
    };
    assert_eq!(
        only.kinds(),
        [
            Kind::Burst,
            Kind::Burst,
            Kind::Burst,
            Kind::NewHire,
            Kind::NewHire
        ]
    );
}

/// Every kind keeps its promises against the graph it was planned on.
#[test]
fn campaigns_fit_their_descriptions() {
    let config = crate::GeneratorConfig {
        users: 3_000,
        computers: 5_900,
        days: 14,
        events: Some(1_000),
        seed: 5,
        campaigns: CampaignPlan {
            attacks: 14,
            benign: 6,
            kinds: Vec::new(),
            from_day: 7,
        },
        ..Default::default()
    };
    let generator = crate::Generator::new(config);
    let graph = generator.graph();
    let campaigns = generator.campaigns(crate::Record::Lanl);
    assert_eq!(campaigns.len(), 20, "{campaigns:#?}");
    let id = |name: &str| name[1..].parse::<u32>().unwrap() - 1;
    let first_use = |u: u32, c: u32| {
        let pairs = graph.pairs.get(u as usize)?;
        let i = pairs.computers.iter().position(|&x| x == c)?;
        Some(pairs.first_use[i])
    };
    let users_of = |k: u32| {
        graph
            .pairs
            .iter()
            .filter(|p| p.computers.contains(&k))
            .count()
    };
    for c in &campaigns {
        if c.kind.is_habit() {
            assert!(
                c.start < 2 * DAY && c.end > 11 * DAY && c.end <= 14 * DAY,
                "{c:?}"
            );
        } else {
            assert!(c.start > 7 * DAY && c.end <= 14 * DAY, "{c:?}");
        }
        assert_eq!(c.benign, c.kind.is_benign());
        let span = c.end - c.start;
        let new_to_users = c.users.iter().all(|u| {
            c.computers
                .iter()
                .all(|k| first_use(id(u), id(k)).is_none())
        });
        match c.kind {
            Kind::Spray => {
                assert!(
                    (15..=60).contains(&c.computers.len()) && span <= 40 * MINUTE,
                    "{c:?}"
                );
                assert!(new_to_users, "{c:?}");
            }
            Kind::Burst => {
                assert!(
                    (120..=500).contains(&c.events) && span <= 15 * MINUTE,
                    "{c:?}"
                );
                assert!(c.computers.len() <= 5);
                let u = id(&c.users[0]);
                assert!(
                    c.computers
                        .iter()
                        .all(|k| first_use(u, id(k)).is_some_and(|t| t < c.start)),
                    "{c:?}"
                );
            }
            Kind::Chain => {
                assert!((2..=3).contains(&c.users.len()), "{c:?}");
                assert!(
                    (8..=15).contains(&c.computers.len()) && span <= 3 * HOUR + 20 * MINUTE,
                    "{c:?}"
                );
                assert!(new_to_users, "{c:?}");
            }
            Kind::Stealth => {
                assert!(
                    (3..=6).contains(&c.computers.len()) && span <= 8 * HOUR + 20 * MINUTE,
                    "{c:?}"
                );
                assert!(new_to_users, "{c:?}");
            }
            Kind::Rare => {
                assert_eq!(c.computers.len(), 2);
                assert!(new_to_users, "{c:?}");
                for k in &c.computers {
                    let users = users_of(id(k));
                    assert!((1..=2).contains(&users), "{c:?}: {k} has {users} users");
                }
            }
            Kind::FanIn => {
                assert!(
                    (20..=40).contains(&c.users.len()) && span <= 25 * MINUTE,
                    "{c:?}"
                );
                assert_eq!(c.target.as_deref(), Some(c.computers[0].as_str()));
                assert!(new_to_users, "{c:?}");
            }
            Kind::Rollout => {
                assert!(c.users.len() >= 200, "{c:?}");
                let server = id(c.target.as_ref().unwrap());
                assert!(server >= graph.computers, "a new server: {c:?}");
            }
            Kind::RoamingAdmin => {
                assert!((20..=60).contains(&c.computers.len()), "{c:?}");
                let u = id(&c.users[0]);
                assert!(
                    c.computers
                        .iter()
                        .all(|k| first_use(u, id(k)).is_some_and(|t| t + DAY <= c.start)),
                    "{c:?}"
                );
            }
            Kind::NewHire => {
                assert!(id(&c.users[0]) >= graph.users, "a new account: {c:?}");
                assert!(c.computers.len() >= 6, "{c:?}");
            }
            Kind::MultiDay => {
                assert!((3..=15).contains(&c.computers.len()), "{c:?}");
                assert!((2 * DAY..5 * DAY).contains(&span), "{c:?}");
                assert!(new_to_users, "{c:?}");
            }
            Kind::OffHours => {
                let hour = c.start % DAY / HOUR;
                assert!(hour < 5 && span <= 90 * MINUTE, "{c:?}");
                let u = id(&c.users[0]);
                assert_eq!(graph.rhythms[u as usize], crate::model::Rhythm::Office);
                let fresh = c.computers.iter().filter(|k| first_use(u, id(k)).is_none());
                assert_eq!(fresh.count(), 1, "{c:?}");
            }
            Kind::SlowFanIn => {
                assert!((8..=20).contains(&c.users.len()), "{c:?}");
                assert!((2 * HOUR..=8 * HOUR).contains(&span), "{c:?}");
                let target = id(c.target.as_ref().unwrap());
                assert!((1..=5).contains(&users_of(target)), "{c:?}");
                assert!(new_to_users, "{c:?}");
            }
            Kind::Outsider => {
                assert!((3..=4).contains(&c.computers.len()), "{c:?}");
                assert!(new_to_users && span <= 3 * HOUR, "{c:?}");
            }
            Kind::ServicePivot => {
                let u = id(&c.users[0]);
                assert_eq!(graph.rhythms[u as usize], crate::model::Rhythm::Steady);
                assert!((2..=3).contains(&c.computers.len()), "{c:?}");
                assert!(new_to_users && span <= HOUR, "{c:?}");
            }
            Kind::HelpDesk | Kind::DesktopSupport => {
                // Every weekday brings workstations it never used.
                assert!(c.computers.len() >= 20, "{c:?}");
                for k in &c.computers {
                    assert!((1..=2).contains(&users_of(id(k))), "{c:?}");
                }
            }
            Kind::NightlyScanner => {
                assert!(id(&c.users[0]) >= graph.users, "its own account: {c:?}");
                assert!(c.computers.len() >= 150, "{c:?}");
                assert!(c.events as usize >= 14 * 150, "{c:?}");
            }
            Kind::MigrationMorning => {
                assert!(c.users.len() >= 50, "{c:?}");
                assert!((4..=8).contains(&c.computers.len()), "{c:?}");
                assert!(c.computers.iter().all(|k| id(k) >= graph.computers));
            }
            Kind::PasswordSpray => {
                assert!((20..=60).contains(&c.users.len()), "{c:?}");
                assert_eq!(c.sources.len(), 1, "one foothold: {c:?}");
                assert!(!c.computers.contains(&c.sources[0]), "{c:?}");
            }
            Kind::FootholdFanOut => {
                assert!((3..=5).contains(&c.users.len()), "{c:?}");
                assert_eq!(c.sources.len(), 1, "one foothold: {c:?}");
                assert!(new_to_users, "{c:?}");
            }
            Kind::RedTeam => unreachable!("never generated"),
            Kind::ServiceAtDesktop => {
                assert_eq!(c.users.len(), 1, "{c:?}");
                assert_eq!(
                    graph.rhythms[id(&c.users[0]) as usize],
                    model::Rhythm::Steady
                );
                assert!(new_to_users, "{c:?}");
            }
        }
    }
    let mut accounts: Vec<&String> = campaigns
        .iter()
        .filter(|c| !matches!(c.kind, Kind::Rollout | Kind::MigrationMorning))
        .flat_map(|c| &c.users)
        .collect();
    let n = accounts.len();
    accounts.sort();
    accounts.dedup();
    assert_eq!(accounts.len(), n, "no account is in two campaigns");
}
