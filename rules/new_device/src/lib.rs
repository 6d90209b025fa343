//! Rule `new_device`: a user logs on to a computer that is not in their device
//! history. Quiet while the user is in burn-in (the host has not yet seen enough of
//! them), and softer for users who already roam many computers (admins, service
//! accounts), for whom one more computer says less.

use authpulse_rules_sdk::{
    Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity, export_rule,
};

pub struct NewDevice {
    burn_in_s: u32,
    score: f32,
    roamer_computers: u32,
    roamer_factor: f32,
}

pub const REASON_NEW_DEVICE: u32 = 0;
pub const REASON_NEW_DEVICE_ROAMER: u32 = 1;

impl Rule for NewDevice {
    const METADATA: Metadata = Metadata {
        name: "new_device",
        version: "1.0.0",
        description: "User logs on to a computer they have never used before",
        severity: Severity::Medium,
        mitre: &["T1078", "T1021"],
        params: &[
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
                description: "Risk contribution of a new device",
                kind: ParamKind::Score,
                default: 40.0,
                min: 0.0,
                max: 100.0,
            },
            ParamSpec {
                name: "roamer_computers",
                description: "Users who already used more computers than this are roamers",
                kind: ParamKind::Count,
                default: 150.0,
                min: 1.0,
                max: 1e9,
            },
            ParamSpec {
                name: "roamer_factor",
                description: "Multiplier on the score for roamers",
                kind: ParamKind::Ratio,
                default: 0.5,
                min: 0.0,
                max: 1.0,
            },
        ],
        reasons: &[
            "first logon by this user to this computer",
            "first logon to this computer by a user who already roams many computers",
        ],
    };

    fn new(p: &Params) -> Self {
        NewDevice {
            burn_in_s: p.get("burn_in") as u32,
            score: p.get("score") as f32,
            roamer_computers: p.get("roamer_computers") as u32,
            roamer_factor: p.get("roamer_factor") as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s {
            return None;
        }
        // `user_known_computers` includes this one.
        if f.user_known_computers > self.roamer_computers {
            Some(Hit::new(
                self.score * self.roamer_factor,
                REASON_NEW_DEVICE_ROAMER,
            ))
        } else {
            Some(Hit::new(self.score, REASON_NEW_DEVICE))
        }
    }
}

export_rule!(NewDevice);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    fn new_device(tenure_s: u32, known: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: tenure_s,
            user_known_computers: known,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_new_device_after_burn_in() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        assert_eq!(
            rule.evaluate(&new_device(2 * 86_400, 5)),
            Some(Hit::new(40.0, REASON_NEW_DEVICE))
        );
    }

    #[test]
    fn quiet_during_burn_in() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        assert_eq!(rule.evaluate(&new_device(86_399, 5)), None);
        let short = RuleHarness::<NewDevice>::with_defaults().with("burn_in", 60.0);
        assert!(short.evaluate(&new_device(60, 5)).is_some());
    }

    #[test]
    fn quiet_on_known_device() {
        let rule = RuleHarness::<NewDevice>::with_defaults();
        let known = Features {
            flags: 0,
            ..new_device(10 * 86_400, 5)
        };
        assert_eq!(rule.evaluate(&known), None);
    }

    #[test]
    fn softer_for_roamers() {
        let rule = RuleHarness::<NewDevice>::with_defaults().with("roamer_computers", 10.0);
        assert_eq!(
            rule.evaluate(&new_device(10 * 86_400, 11)),
            Some(Hit::new(20.0, REASON_NEW_DEVICE_ROAMER))
        );
        assert_eq!(
            rule.evaluate(&new_device(10 * 86_400, 10)),
            Some(Hit::new(40.0, REASON_NEW_DEVICE))
        );
    }
}
