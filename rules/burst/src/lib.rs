//! Rule `burst`: a user logs on far more often in the last hour than both an
//! absolute floor and a multiple of their own hourly baseline (the 23 hours
//! before). Comparing with the user's own baseline keeps busy service accounts
//! quiet while they behave as usual; until a user has a day of history there is
//! no baseline, so the rule stays quiet (burn-in).

use authpulse_rules_sdk::{
    Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity, export_rule,
};

pub struct Burst {
    min_logins_1h: f32,
    baseline_factor: f32,
    burn_in_s: u32,
    score: f32,
}

pub const REASON_BURST: u32 = 0;
pub const REASON_SEVERE_BURST: u32 = 1;

/// A burst this many times over the limit scores 1.5x.
const SEVERE_MULTIPLE: f32 = 3.0;

impl Rule for Burst {
    const METADATA: Metadata = Metadata {
        name: "burst",
        version: "1.0.0",
        description: "Logins in the last hour far above the user's own baseline",
        severity: Severity::Medium,
        mitre: &["T1110", "T1078"],
        params: &[
            ParamSpec {
                name: "min_logins_1h",
                description: "Never fire below this many logins in an hour",
                kind: ParamKind::Count,
                default: 120.0,
                min: 1.0,
                max: 1e9,
            },
            ParamSpec {
                name: "baseline_factor",
                description: "Fire above this multiple of the user's average hourly logins",
                kind: ParamKind::Factor,
                default: 5.0,
                min: 1.0,
                max: 1000.0,
            },
            ParamSpec {
                name: "burn_in",
                description: "Stay quiet until the user has this much history (at least a day makes a baseline)",
                kind: ParamKind::Seconds,
                default: 86_400.0,
                min: 0.0,
                max: 31_536_000.0,
            },
            ParamSpec {
                name: "score",
                description: "Risk contribution of a burst (1.5x for a burst 3x over the limit)",
                kind: ParamKind::Score,
                default: 50.0,
                min: 0.0,
                max: 100.0,
            },
        ],
        reasons: &[
            "logins in the last hour far above the user's baseline",
            "logins in the last hour more than three times the burst limit",
        ],
    };

    fn new(p: &Params) -> Self {
        Burst {
            min_logins_1h: p.get("min_logins_1h") as f32,
            baseline_factor: p.get("baseline_factor") as f32,
            burn_in_s: p.get("burn_in") as u32,
            score: p.get("score") as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        let last_hour = f.user_logins_1h as f32;
        if last_hour <= self.min_logins_1h || f.user_tenure_s < self.burn_in_s {
            return None;
        }
        // Baseline: the user's mean logins per hour over the 23 hours before the last.
        let before = f.user_logins_24h.saturating_sub(f.user_logins_1h) as f32;
        let limit = self.min_logins_1h.max(self.baseline_factor * before / 23.0);
        if last_hour <= limit {
            return None;
        }
        if last_hour > SEVERE_MULTIPLE * limit {
            Some(Hit::new(self.score * 1.5, REASON_SEVERE_BURST))
        } else {
            Some(Hit::new(self.score, REASON_BURST))
        }
    }
}

export_rule!(Burst);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::testing::RuleHarness;

    fn logins(last_hour: u32, last_day: u32, tenure_h: u32) -> Features {
        Features {
            user_logins_1h: last_hour,
            user_logins_24h: last_day,
            user_tenure_s: tenure_h * 3600,
            ..Default::default()
        }
    }

    #[test]
    fn quiet_below_floor() {
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(rule.evaluate(&logins(120, 120, 48)), None);
    }

    #[test]
    fn fires_above_floor_for_quiet_user() {
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(
            rule.evaluate(&logins(200, 230, 48)),
            Some(Hit::new(50.0, REASON_BURST))
        );
    }

    #[test]
    fn busy_account_at_its_usual_rate_is_quiet() {
        // 500/h all day long: baseline 500/h, limit 2500/h.
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(rule.evaluate(&logins(500, 24 * 500, 48)), None);
        assert_eq!(
            rule.evaluate(&logins(2_600, 23 * 500 + 2_600, 48)),
            Some(Hit::new(50.0, REASON_BURST))
        );
    }

    #[test]
    fn severe_burst_scores_higher() {
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(
            rule.evaluate(&logins(400, 400, 48)),
            Some(Hit::new(75.0, REASON_SEVERE_BURST))
        );
    }

    #[test]
    fn quiet_during_burn_in() {
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(rule.evaluate(&logins(1_000, 1_000, 23)), None);
        let eager = RuleHarness::<Burst>::with_defaults().with("burn_in", 0.0);
        assert!(eager.evaluate(&logins(1_000, 1_000, 23)).is_some());
    }

    #[test]
    fn baseline_is_the_mean_of_the_23_hours_before() {
        // 23 * 50 logins before the last hour: baseline 50/h, limit 250.
        let rule = RuleHarness::<Burst>::with_defaults();
        assert_eq!(rule.evaluate(&logins(250, 23 * 50 + 250, 48)), None);
        assert!(rule.evaluate(&logins(251, 23 * 50 + 251, 48)).is_some());
    }
}
