//! Rule `lateral_movement`: within the last hour the user reached many computers
//! they had never used, and those make up most of what they touched. Fires on each
//! new computer while the pattern holds, scoring higher the wider the spread.
//!
//! It needs no history for the widest spreads: in burn-in (after a first start
//! every computer is new, so ordinary users show a few), it fires from
//! `cold_min_new_computers` on.

use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct LateralMovement {
    min_new_computers: u32,
    cold_min_new_computers: u32,
    min_new_ratio: f32,
    burn_in_s: u32,
    score: f32,
}

pub const REASON_SPREAD: u32 = 0;
pub const REASON_COLD_SPREAD: u32 = 1;

/// Each new computer beyond the threshold adds this much, up to 100.
const SCORE_PER_EXTRA_COMPUTER: f32 = 2.0;

const MIN_NEW_COMPUTERS: ParamSpec = ParamSpec::new(
    "min_new_computers",
    ParamKind::Count,
    8.0,
    "Computers first used within the last hour to fire",
)
.range(2.0, 1e6);

const COLD_MIN_NEW_COMPUTERS: ParamSpec = ParamSpec::new(
    "cold_min_new_computers",
    ParamKind::Count,
    40.0,
    "In burn-in: computers first used within the last hour to fire",
)
.range(2.0, 1e6);

const MIN_NEW_RATIO: ParamSpec = ParamSpec::new(
    "min_new_ratio",
    ParamKind::Ratio,
    0.5,
    "Share of the hour's distinct computers that must be new",
);

const BURN_IN: ParamSpec = ParamSpec::burn_in(86_400.0);

const SCORE: ParamSpec = ParamSpec::score(
    70.0,
    "Risk contribution at the threshold; each computer beyond adds 2",
);

impl Rule for LateralMovement {
    const METADATA: Metadata = Metadata {
        name: "lateral_movement",
        version: "2.0.0",
        description: "Many distinct, mostly never-used computers within an hour",
        severity: Severity::High,
        mitre: &["T1021", "T1570"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[
            MIN_NEW_COMPUTERS,
            COLD_MIN_NEW_COMPUTERS,
            MIN_NEW_RATIO,
            BURN_IN,
            SCORE,
        ],
        reasons: &[
            "many computers never used before reached within an hour",
            "dozens of computers reached within an hour by an account with little history",
        ],
    };

    fn new(p: &Params) -> Self {
        LateralMovement {
            min_new_computers: p.value(&MIN_NEW_COMPUTERS) as u32,
            cold_min_new_computers: p.value(&COLD_MIN_NEW_COMPUTERS) as u32,
            min_new_ratio: p.value(&MIN_NEW_RATIO) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
            score: p.value(&SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        let (min, reason) = if f.user_tenure_s >= self.burn_in_s {
            (self.min_new_computers, REASON_SPREAD)
        } else {
            (self.cold_min_new_computers, REASON_COLD_SPREAD)
        };
        let new = f.user_new_computers_1h;
        if !f.is_new_device() || new < min {
            return None;
        }
        let distinct = f.user_distinct_computers_1h.max(1) as f32;
        if (new as f32) < self.min_new_ratio * distinct {
            return None;
        }
        let extra = (new - min) as f32;
        Some(Hit::new(
            self.score + extra * SCORE_PER_EXTRA_COMPUTER,
            reason,
        ))
    }
}

export_rule!(LateralMovement);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    fn spread(new: u32, distinct: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: 30 * 86_400,
            user_new_computers_1h: new,
            user_distinct_computers_1h: distinct,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_wide_new_spread_and_escalates() {
        let rule = RuleHarness::<LateralMovement>::with_defaults();
        assert_eq!(rule.evaluate(&spread(8, 12)), Some(Hit::new(70.0, 0)));
        assert_eq!(rule.evaluate(&spread(13, 15)), Some(Hit::new(80.0, 0)));
        assert_eq!(rule.evaluate(&spread(60, 60)), Some(Hit::new(100.0, 0)));
    }

    #[test]
    fn quiet_below_threshold() {
        let rule = RuleHarness::<LateralMovement>::with_defaults();
        assert_eq!(rule.evaluate(&spread(7, 7)), None);
    }

    #[test]
    fn quiet_when_mostly_known_computers() {
        // A busy admin touching 40 computers, only 10 of them new.
        let rule = RuleHarness::<LateralMovement>::with_defaults();
        assert_eq!(rule.evaluate(&spread(10, 40)), None);
    }

    #[test]
    fn quiet_on_known_computer_and_in_burn_in() {
        let rule = RuleHarness::<LateralMovement>::with_defaults();
        let known = Features {
            flags: 0,
            ..spread(20, 20)
        };
        assert_eq!(rule.evaluate(&known), None);
        let fresh = Features {
            user_tenure_s: 3600,
            ..spread(20, 20)
        };
        assert_eq!(rule.evaluate(&fresh), None);
        // ... unless the spread is wide even for a first hour.
        let wide = Features {
            user_tenure_s: 3600,
            ..spread(45, 46)
        };
        assert_eq!(
            rule.evaluate(&wide),
            Some(Hit::new(80.0, REASON_COLD_SPREAD))
        );
    }
}
