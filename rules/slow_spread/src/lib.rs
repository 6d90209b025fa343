//! Rule `slow_spread`: over the last 24 hours a user started using more new
//! computers than their own history makes likely: a careful intruder moving
//! a few hops an hour, or one account among several stolen ones taking its
//! turn.
//!
//! For a user who usually starts `r` new computers a day, it asks how likely
//! the day's count would be (Poisson) and scores that surprise as evidence
//! (`-log10` of the chance, in decades; see `stats::score_of_evidence`).
//! `new_device` already weighs each new computer on its own; this rule adds
//! what the count says on top, and stays silent below `min_surprise`, so
//! that ordinary days (two or three new computers now and then) add nothing.
//! It is what catches a roaming account, whose every new computer is usual,
//! when it suddenly gets far more of them than usual.

use authpulse_rules_sdk::stats::{poisson_tail, score_of_evidence, surprise};
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct SlowSpread {
    min_surprise: f32,
    burn_in_s: u32,
}

pub const REASON_DAY: u32 = 0;

impl Rule for SlowSpread {
    const METADATA: Metadata = Metadata {
        name: "slow_spread",
        version: "1.0.0",
        description: "More new computers within a day than the user's own rate makes likely",
        severity: Severity::Medium,
        mitre: &["T1021", "T1078", "T1550"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[
            ParamSpec {
                name: "min_surprise",
                description: "Fire when the day's new computers had at most a 10^-x chance (x = this)",
                kind: ParamKind::Factor,
                default: 4.0,
                min: 0.0,
                max: 30.0,
            },
            ParamSpec::burn_in(2.0 * 86_400.0),
        ],
        reasons: &["more new computers in a day than the user's usual rate makes likely"],
    };

    fn new(p: &Params) -> Self {
        SlowSpread {
            min_surprise: p.get("min_surprise") as f32,
            burn_in_s: p.get("burn_in") as u32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s || f.user_new_computers_24h < 2 {
            return None;
        }
        let per_day = f.usual_new_computer_rate();
        let how = surprise(poisson_tail(f.user_new_computers_24h, per_day));
        (how >= self.min_surprise).then(|| Hit::new(score_of_evidence(how), REASON_DAY))
    }
}

export_rule!(SlowSpread);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::stats::evidence_of_score;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    /// A user with `known` computers, `usual` of them new over 20 baseline
    /// days, who got `day` new ones in the last 24h.
    fn spread(known: u32, usual: u32, day: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: 22 * 86_400,
            user_known_computers: known,
            user_baseline_new_computers: usual,
            user_baseline_s: 20 * 86_400,
            user_new_computers_24h: day,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_new_computers_are_surprising_for_a_settled_user() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        // A user of five computers is judged at 0.15 new ones a day (the
        // floor for their size): three in a day is a 1-in-2,000 chance, too
        // ordinary across thousands of users to add anything ...
        assert_eq!(rule.evaluate(&spread(5, 1, 3)), None);
        // ... five is one in 1.8 million: 6.25 decades.
        let hit = rule.evaluate(&spread(5, 1, 5)).unwrap();
        assert!(
            (6.1..6.4).contains(&evidence_of_score(hit.score)),
            "{hit:?}"
        );
    }

    #[test]
    fn a_roamer_alerts_only_far_above_its_own_rate() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        // 300 computers: about nine new ones a day is ordinary ...
        assert_eq!(rule.evaluate(&spread(300, 80, 12)), None);
        // ... thirty is not.
        let hit = rule.evaluate(&spread(300, 80, 30)).unwrap();
        assert!(hit.score >= 60.0, "{hit:?}");
    }

    #[test]
    fn quiet_in_burn_in() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        let fresh = Features {
            user_tenure_s: 86_400,
            ..spread(20, 2, 8)
        };
        assert_eq!(rule.evaluate(&fresh), None);
    }
}
