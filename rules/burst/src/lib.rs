//! Rule `burst`: a user logs on far more often in the last hour than in their
//! own busiest hour so far. Busy accounts stay quiet at their usual pace; a
//! quiet account that suddenly makes hundreds of logons does not.
//!
//! It needs no history for the loudest cases: while a user is in burn-in
//! (after a first start, or a new account), hundreds of logons within an
//! hour, far above the user's pace since they were first seen (and above
//! that pace moved with the day's cycle), fire too.
//! That pace needs a quarter of an hour before the last hour to measure, so
//! an account's first 75 minutes are left alone: the busiest service
//! accounts make hundreds of logons an hour from the moment they appear.

use authpulse_rules_sdk::stats::log2;
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct Burst {
    min_logins_1h: f32,
    peak_factor: f32,
    cold_min_logins_1h: f32,
    burn_in_s: u32,
    score: f32,
}

pub const REASON_ABOVE_PEAK: u32 = 0;
pub const REASON_COLD: u32 = 1;

/// Each doubling beyond the limit adds this much to the score.
const SCORE_PER_DOUBLING: f32 = 15.0;

/// In burn-in, the last hour must exceed the pace so far this many times.
const COLD_PACE_FACTOR: f32 = 4.0;

const MIN_LOGINS_1H: ParamSpec = ParamSpec::new(
    "min_logins_1h",
    ParamKind::Count,
    60.0,
    "Never fire below this many logins in an hour",
)
.range(1.0, 1e9);

const PEAK_FACTOR: ParamSpec = ParamSpec::new(
    "peak_factor",
    ParamKind::Factor,
    2.0,
    "Fire above this multiple of the user's busiest hour so far",
)
.range(1.0, 1000.0);

const COLD_MIN_LOGINS_1H: ParamSpec = ParamSpec::new(
    "cold_min_logins_1h",
    ParamKind::Count,
    250.0,
    "In burn-in: fire at this many logins in an hour (far above the user's pace so far)",
)
.range(1.0, 1e9);

const BURN_IN: ParamSpec = ParamSpec::burn_in(86_400.0);

const SCORE: ParamSpec = ParamSpec::score(
    65.0,
    "Risk contribution at the limit; each doubling beyond adds 15",
);

impl Rule for Burst {
    const METADATA: Metadata = Metadata {
        name: "burst",
        version: "2.0.0",
        description: "Logins in the last hour far above the user's own busiest hour",
        severity: Severity::High,
        mitre: &["T1110", "T1078"],
        entity: Entity::User,
        events: Events::All,
        params: &[
            MIN_LOGINS_1H,
            PEAK_FACTOR,
            COLD_MIN_LOGINS_1H,
            BURN_IN,
            SCORE,
        ],
        reasons: &[
            "logins in the last hour far above the user's busiest hour",
            "hundreds of logins within an hour from an account with little history",
        ],
    };

    fn new(p: &Params) -> Self {
        Burst {
            min_logins_1h: p.value(&MIN_LOGINS_1H) as f32,
            peak_factor: p.value(&PEAK_FACTOR) as f32,
            cold_min_logins_1h: p.value(&COLD_MIN_LOGINS_1H) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
            score: p.value(&SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        let last_hour = f.user_logins_1h as f32;
        let (limit, reason) = if f.user_tenure_s >= self.burn_in_s {
            let peak = f.user_peak_logins_1h as f32;
            (
                self.min_logins_1h.max(self.peak_factor * peak),
                REASON_ABOVE_PEAK,
            )
        } else {
            // Little history: the pace since the user was first seen, in the
            // time before the last hour.
            let hours_before = f.user_tenure_s as f32 / 3600.0 - 1.0;
            if hours_before < 0.25 {
                return None;
            }
            let before = f.user_logins_24h.saturating_sub(f.user_logins_1h) as f32;
            // The busier of the account's own pace and that pace moved with
            // the day's cycle (its share of everyone's logins): an office
            // account first seen at night is not bursting at nine.
            let pace = (before / hours_before).max(f.user_paced_logins_1h as f32);
            (
                self.cold_min_logins_1h.max(COLD_PACE_FACTOR * pace),
                REASON_COLD,
            )
        };
        (last_hour > limit).then(|| {
            let doublings = log2(f64::from(last_hour / limit)) as f32;
            Hit::new(self.score + SCORE_PER_DOUBLING * doublings, reason)
        })
    }
}

export_rule!(Burst);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::testing::RuleHarness;

    fn logins(last_hour: u32, last_day: u32, peak: u32, tenure_h: u32) -> Features {
        Features {
            user_logins_1h: last_hour,
            user_logins_24h: last_day,
            user_peak_logins_1h: peak,
            user_tenure_s: tenure_h * 3600,
            ..Default::default()
        }
    }

    #[test]
    fn measured_against_the_users_busiest_hour() {
        let rule = RuleHarness::<Burst>::with_defaults();
        // Busiest hour in two weeks: 96. 242 in the last hour is 2.5x over.
        let hit = rule.evaluate(&logins(242, 400, 96, 14 * 24)).unwrap();
        assert_eq!(hit.reason, REASON_ABOVE_PEAK);
        assert!(hit.score > 65.0, "{hit:?}");
        assert_eq!(rule.evaluate(&logins(190, 400, 96, 14 * 24)), None);
    }

    #[test]
    fn busy_account_at_its_usual_pace_is_quiet() {
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(rule.evaluate(&logins(700, 12_000, 800, 48)), None);
        // Small accounts need the floor too: 10 where 4 was the most is noise.
        assert_eq!(rule.evaluate(&logins(10, 30, 4, 48)), None);
    }

    #[test]
    fn fires_in_burn_in_only_when_loud() {
        let rule = RuleHarness::<Burst>::with_defaults();
        // Five hours after a first start: 300 logons in the last hour.
        let hit = rule.evaluate(&logins(300, 320, 0, 5)).unwrap();
        assert_eq!(hit.reason, REASON_COLD);
        // An account at a steady 300 an hour since the start is not a burst.
        assert_eq!(rule.evaluate(&logins(300, 1_500, 300, 5)), None);
        assert_eq!(rule.evaluate(&logins(200, 200, 0, 2)), None);
        // Within its first 75 minutes an account has no pace yet.
        assert_eq!(rule.evaluate(&logins(900, 900, 0, 1)), None);
    }

    #[test]
    fn score_grows_with_each_doubling() {
        let rule = RuleHarness::<Burst>::with_defaults();
        let hit = rule.evaluate(&logins(400, 500, 100, 48)).unwrap();
        assert!((hit.score - 80.0).abs() < 0.01, "{hit:?}");
    }
}
