//! Rule `new_device`: a user logs on to a computer that is not in their device
//! history, weighed by how unusual that is *for this user* and *for that
//! computer*.
//!
//! Its score is evidence (see `stats::score_of_evidence`): the log of how
//! much likelier the logon is from an intruder moving `attack_per_day` hops
//! a day than from this user, whose history predicts about `r` new
//! computers a day, i.e. `log10(attack_per_day / r)` decades
//! (`Features::predicted_new_computer_rate`: the user's own pace, unless a
//! short history and a day of new computers say the account is one whose
//! work is reaching new computers). A computer many users share
//! (a file server, a domain controller) is where users go anyway and
//! intruders seldom need to, and a computer nobody used before is being set
//! up for its first user: on both the evidence counts `shared_weight`. A
//! computer that several users started on within its first day is being
//! rolled out: no evidence at all. A computer that the accounts this user
//! shares computers with already use (their peers: their team) counts
//! `peer_weight`: that is where a colleague goes next.
//! Where a richer record names the computer the logon came from, that adds
//! `source_weight` times its own evidence (`Features::source_evidence`): a
//! new computer reached from the workstation the user always works at is
//! their routine, one reached from a computer the account never came from
//! is how an intruder's foothold shows.
//! Alone it never alerts; two or three within hours, on a user who rarely
//! gets one, add up on the user (entity risk). Quiet during burn-in.

use authpulse_rules_sdk::stats::score_of_evidence;
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct NewDevice {
    burn_in_s: u32,
    attack_per_day: f32,
    shared_users: u32,
    shared_weight: f32,
    peer_weight: f32,
    intruder_usual_source: f32,
    source_weight: f32,
}

pub const REASON_UNUSUAL: u32 = 0;
pub const REASON_SHARED: u32 = 1;
pub const REASON_PEERS: u32 = 2;

const BURN_IN: ParamSpec = ParamSpec::burn_in(86_400.0);

const ATTACK_PER_DAY: ParamSpec = ParamSpec::attack_per_day(24.0);

const SHARED_USERS: ParamSpec = ParamSpec::new(
    "shared_users",
    ParamKind::Count,
    20.0,
    "A computer with at least this many other users is shared",
)
.range(1.0, 1e9);

const SHARED_WEIGHT: ParamSpec = ParamSpec::new(
    "shared_weight",
    ParamKind::Ratio,
    0.35,
    "Share of the evidence a shared computer counts",
);

const PEER_WEIGHT: ParamSpec = ParamSpec::new(
    "peer_weight",
    ParamKind::Ratio,
    0.5,
    "Share of the evidence a computer the user's peers use counts",
);

const INTRUDER_USUAL_SOURCE: ParamSpec = ParamSpec::new(
    "intruder_usual_source",
    ParamKind::Ratio,
    0.3,
    "Share of intrusions that work from the account's usual computers",
);

const SOURCE_WEIGHT: ParamSpec = ParamSpec::source_weight(1.0);

impl Rule for NewDevice {
    const METADATA: Metadata = Metadata {
        name: "new_device",
        version: "3.2.0",
        description: "User logs on to a computer they never used, weighed by how rare that is for them",
        severity: Severity::Low,
        mitre: &["T1078", "T1021"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[
            BURN_IN,
            ATTACK_PER_DAY,
            SHARED_USERS,
            SHARED_WEIGHT,
            PEER_WEIGHT,
            INTRUDER_USUAL_SOURCE,
            SOURCE_WEIGHT,
        ],
        reasons: &[
            "first logon to this computer, and new computers are unusual for this user",
            "first logon to a computer many users share, or nobody used before",
            "first logon to a computer that accounts sharing computers with this user use",
        ],
    };

    fn new(p: &Params) -> Self {
        NewDevice {
            burn_in_s: p.value(&BURN_IN) as u32,
            attack_per_day: p.value(&ATTACK_PER_DAY) as f32,
            shared_users: p.value(&SHARED_USERS) as u32,
            shared_weight: p.value(&SHARED_WEIGHT) as f32,
            peer_weight: p.value(&PEER_WEIGHT) as f32,
            intruder_usual_source: p.value(&INTRUDER_USUAL_SOURCE) as f32,
            source_weight: p.value(&SOURCE_WEIGHT) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s || f.is_rolling_out() {
            return None;
        }
        let mut decades = f.new_computer_evidence(self.attack_per_day);
        let others = f.host_users_before();
        let shared = others == 0 || others >= self.shared_users;
        let among_peers = f.host_peer_users > 0;
        if shared {
            decades *= self.shared_weight;
        } else if among_peers {
            decades *= self.peer_weight;
        }
        decades += self.source_weight * f.source_evidence(self.intruder_usual_source);
        let reason = if shared {
            REASON_SHARED
        } else if among_peers {
            REASON_PEERS
        } else {
            REASON_UNUSUAL
        };
        (decades > 0.0).then(|| Hit::new(score_of_evidence(decades), reason))
    }
}

export_rule!(NewDevice);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::stats::evidence_of_score;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    /// A new device for a user known for `days` with `known` computers, of
    /// which `new` arrived in their baseline period, on a computer that had
    /// `others` users.
    fn new_device(days: u32, known: u32, new: u32, others: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: days * 86_400,
            user_known_computers: known,
            user_baseline_new_computers: new,
            user_baseline_s: days.saturating_sub(2) * 86_400,
            host_users_ever: others + 1,
            ..Default::default()
        }
    }

    #[test]
    fn evidence_is_the_attack_rate_over_the_users_own() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        // 20 known, 3 new in 30 days: 0.13 a day, below the floor of 0.03 a
        // day per known computer (0.6), against 24: log10(40) = 1.6 decades.
        let hit = rule.evaluate(&new_device(32, 20, 3, 2)).unwrap();
        assert_eq!(hit.reason, REASON_UNUSUAL);
        let decades = evidence_of_score(hit.score);
        assert!((decades - 1.602).abs() < 0.01, "{hit:?}: {decades}");
        // A roamer with 300 computers, 60 new in 10 days: ~6 a day.
        let roamer = rule.evaluate(&new_device(12, 300, 60, 2)).unwrap();
        assert!(evidence_of_score(roamer.score) < 0.8, "{roamer:?}");
    }

    #[test]
    fn shared_new_and_rolled_out_computers_count_less() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        let personal = rule.evaluate(&new_device(32, 20, 3, 2)).unwrap();
        let shared = rule.evaluate(&new_device(32, 20, 3, 500)).unwrap();
        assert_eq!(shared.reason, REASON_SHARED);
        let ratio = evidence_of_score(shared.score) / evidence_of_score(personal.score);
        assert!((ratio - 0.35).abs() < 0.01, "{ratio}");
        // Its first user counts as little; the users of a computer rolled
        // out today count nothing.
        assert_eq!(rule.evaluate(&new_device(32, 20, 3, 0)), Some(shared));
        let rollout = Features {
            host_tenure_s: 3 * 3600,
            host_new_users_24h: 40,
            ..new_device(32, 20, 3, 39)
        };
        assert_eq!(rule.evaluate(&rollout), None);
    }

    #[test]
    fn the_source_weighs_in() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        let plain = evidence_of_score(rule.evaluate(&new_device(32, 20, 3, 2)).unwrap().score);
        // 300 logons, all from one workstation (id 41).
        let sourced = |from_here: u32, sources: u32| Features {
            computer: 7,
            source_computer: 42,
            user_sourced_logins_before: 300,
            user_sources_before: sources,
            user_logins_from_source_before: from_here,
            ..new_device(32, 20, 3, 2)
        };
        let routine = evidence_of_score(rule.evaluate(&sourced(300, 1)).unwrap().score);
        let foothold = evidence_of_score(rule.evaluate(&sourced(0, 1)).unwrap().score);
        // log10(0.3) and log10(0.7 * 302 / 2): -0.52 and +2.02 decades.
        assert!(
            (routine - (plain - 0.52)).abs() < 0.02,
            "{routine} vs {plain}"
        );
        assert!(
            (foothold - (plain + 2.02)).abs() < 0.02,
            "{foothold} vs {plain}"
        );
        // An account that comes from somewhere new every other logon.
        let roamer = evidence_of_score(rule.evaluate(&sourced(0, 150)).unwrap().score);
        assert!(roamer - plain < 0.2, "{roamer} vs {plain}");
        // A logon at the console names the computer itself: no evidence.
        let console = Features {
            source_computer: 8,
            ..sourced(0, 1)
        };
        let at_console = evidence_of_score(rule.evaluate(&console).unwrap().score);
        assert!((at_console - plain).abs() < 1e-3);
        let ignored = RuleHarness::<NewDevice>::with_defaults().with("source_weight", 0.0);
        let blind = evidence_of_score(ignored.evaluate(&sourced(0, 1)).unwrap().score);
        assert!((blind - plain).abs() < 1e-3);
    }

    #[test]
    fn quiet_during_burn_in_on_known_computers_and_for_heavy_roamers() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        assert_eq!(rule.evaluate(&new_device(0, 5, 0, 2)), None);
        let known = Features {
            flags: 0,
            ..new_device(30, 20, 1, 2)
        };
        assert_eq!(rule.evaluate(&known), None);
        // Thirty new computers a day is more than an intruder's pace.
        assert_eq!(rule.evaluate(&new_device(12, 2_000, 300, 2)), None);
        let eager = RuleHarness::<NewDevice>::with_defaults().with("burn_in", 0.0);
        assert!(eager.evaluate(&new_device(0, 5, 0, 2)).is_some());
    }
}
