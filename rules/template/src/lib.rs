//! Rule `dormant_return` (the rule template): a user who has been silent for a
//! long time logs on again, and to a computer they have never used. A dormant
//! account that wakes up somewhere new is a classic sign of a stolen
//! credential (MITRE ATT&CK T1078, Valid Accounts).
//!
//! Copy this crate to start a rule. Everything a rule needs is here:
//! metadata (what `authpulse rules inspect` shows and the policy validates
//! parameters against), a constructor that reads parameters, one pure
//! function of the event's features, the export macro, and native tests.

use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, NO_PREVIOUS_LOGIN, ParamKind, ParamSpec, Params, Rule,
    Severity, export_rule,
};

pub struct DormantReturn {
    min_gap_s: u32,
    score: f32,
    unknown_computer_score: f32,
}

/// Indexes into `METADATA.reasons`.
pub const REASON_NEW_TO_USER: u32 = 0;
pub const REASON_NEW_TO_EVERYONE: u32 = 1;

// Each parameter is a `const`, listed in the metadata and read in `new` by
// the same name, so that a typo does not compile. `ParamSpec::new` gives the
// kind's whole range; `.range` narrows it. Common parameters come
// ready-made: `ParamSpec::score` and `ParamSpec::burn_in`.
const MIN_GAP: ParamSpec = ParamSpec::new(
    "min_gap",
    ParamKind::Seconds,
    7.0 * 86_400.0,
    "Silence before the logon that makes the account dormant",
)
.range(3_600.0, 31_536_000.0);

const SCORE: ParamSpec = ParamSpec::score(
    45.0,
    "Risk contribution when the computer is new to the user",
);

const UNKNOWN_COMPUTER_SCORE: ParamSpec = ParamSpec::new(
    "unknown_computer_score",
    ParamKind::Score,
    65.0,
    "Risk contribution when no one has used the computer before",
);

impl Rule for DormantReturn {
    const METADATA: Metadata = Metadata {
        name: "dormant_return",
        version: "1.0.0",
        description: "A long-silent account logs on again, to a computer it never used",
        severity: Severity::Medium,
        mitre: &["T1078"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[MIN_GAP, SCORE, UNKNOWN_COMPUTER_SCORE],
        reasons: &[
            "dormant account back on a computer new to it",
            "dormant account back on a computer no one used before",
        ],
    };

    fn new(p: &Params) -> Self {
        DormantReturn {
            min_gap_s: p.value(&MIN_GAP) as u32,
            score: p.value(&SCORE) as f32,
            unknown_computer_score: p.value(&UNKNOWN_COMPUTER_SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        // A user's first event ever has no gap: that is a new user, not a
        // dormant one.
        if !f.is_new_device() || f.user_gap_s == NO_PREVIOUS_LOGIN || f.user_gap_s < self.min_gap_s
        {
            return None;
        }
        Some(if f.is_new_computer() {
            Hit::new(self.unknown_computer_score, REASON_NEW_TO_EVERYONE)
        } else {
            Hit::new(self.score, REASON_NEW_TO_USER)
        })
    }
}

export_rule!(DormantReturn);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::testing::RuleHarness;
    use authpulse_rules_sdk::{FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER};

    const DAY: u32 = 86_400;

    fn back_after(gap_s: u32, flags: u32) -> Features {
        Features {
            flags,
            user_gap_s: gap_s,
            user_known_computers: 3,
            ..Default::default()
        }
    }

    #[test]
    fn fires_when_a_dormant_account_uses_a_new_computer() {
        let rule = RuleHarness::<DormantReturn>::with_defaults();
        assert_eq!(
            rule.evaluate(&back_after(8 * DAY, FLAG_NEW_DEVICE_FOR_USER)),
            Some(Hit::new(45.0, REASON_NEW_TO_USER))
        );
        assert_eq!(
            rule.evaluate(&back_after(
                8 * DAY,
                FLAG_NEW_DEVICE_FOR_USER | FLAG_NEW_COMPUTER
            )),
            Some(Hit::new(65.0, REASON_NEW_TO_EVERYONE))
        );
    }

    #[test]
    fn quiet_for_known_computers_short_gaps_and_new_users() {
        let rule = RuleHarness::<DormantReturn>::with_defaults();
        // Back on a computer it knows.
        assert_eq!(rule.evaluate(&back_after(30 * DAY, 0)), None);
        // Not silent long enough.
        assert_eq!(
            rule.evaluate(&back_after(2 * DAY, FLAG_NEW_DEVICE_FOR_USER)),
            None
        );
        // Never seen before: no previous login at all.
        assert_eq!(
            rule.evaluate(&back_after(NO_PREVIOUS_LOGIN, FLAG_NEW_DEVICE_FOR_USER)),
            None
        );
    }

    #[test]
    fn min_gap_is_a_parameter() {
        let rule = RuleHarness::<DormantReturn>::with_defaults().with("min_gap", 86_400.0);
        assert!(
            rule.evaluate(&back_after(2 * DAY, FLAG_NEW_DEVICE_FOR_USER))
                .is_some()
        );
    }
}
