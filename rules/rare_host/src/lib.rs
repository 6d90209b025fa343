//! Rule `rare_host`: a user logs on, for the first time, to a computer that only
//! one or a few other users have ever used (someone else's workstation, a
//! forgotten server). Brand-new computers are left alone: with no history their
//! rarity means nothing yet.

use authpulse_rules_sdk::{
    Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity, export_rule,
};

pub struct RareHost {
    max_prior_users: u32,
    burn_in_s: u32,
    score: f32,
}

pub const REASON_RARE_HOST: u32 = 0;

impl Rule for RareHost {
    const METADATA: Metadata = Metadata {
        name: "rare_host",
        version: "1.0.0",
        description: "First logon to a computer very few users have ever used",
        severity: Severity::Low,
        mitre: &["T1021"],
        params: &[
            ParamSpec {
                name: "max_prior_users",
                description: "Fire when the computer had at most this many other users",
                kind: ParamKind::Count,
                default: 2.0,
                min: 1.0,
                max: 1e6,
            },
            ParamSpec {
                name: "burn_in",
                description: "Stay quiet until the user has been seen for this long",
                kind: ParamKind::Seconds,
                default: 86_400.0,
                min: 0.0,
                max: 31_536_000.0,
            },
            ParamSpec {
                name: "score",
                description: "Risk contribution",
                kind: ParamKind::Score,
                default: 30.0,
                min: 0.0,
                max: 100.0,
            },
        ],
        reasons: &["first logon to a computer few other users have ever used"],
    };

    fn new(p: &Params) -> Self {
        RareHost {
            max_prior_users: p.get("max_prior_users") as u32,
            burn_in_s: p.get("burn_in") as u32,
            score: p.get("score") as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s {
            return None;
        }
        let prior = f.host_users_before();
        (prior >= 1 && prior <= self.max_prior_users)
            .then(|| Hit::new(self.score, REASON_RARE_HOST))
    }
}

export_rule!(RareHost);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    fn first_visit(users_ever_incl_this: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: 7 * 86_400,
            host_users_ever: users_ever_incl_this,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_someone_elses_workstation() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        assert_eq!(rule.evaluate(&first_visit(2)), Some(Hit::new(30.0, 0)));
        assert_eq!(rule.evaluate(&first_visit(3)), Some(Hit::new(30.0, 0)));
    }

    #[test]
    fn quiet_on_popular_or_brand_new_computers() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        assert_eq!(rule.evaluate(&first_visit(4)), None);
        let brand_new = Features {
            flags: FLAG_NEW_DEVICE_FOR_USER | FLAG_NEW_COMPUTER,
            ..first_visit(1)
        };
        assert_eq!(rule.evaluate(&brand_new), None);
    }

    #[test]
    fn quiet_on_own_computer() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        let own = Features {
            flags: 0,
            ..first_visit(1)
        };
        assert_eq!(rule.evaluate(&own), None);
    }
}
