//! Rule `failed_logon_spray`: one computer's logons fail on many different
//! accounts within the last hour or two: a password spray, or a list of
//! guessed account names tried from one place. Its hits add to the *source
//! computer's* risk, so a spray is one incident about where it came from,
//! not one per account tried.
//!
//! A person mistyping a password fails on one account, however often; a
//! shared machine fails on a few. Many distinct accounts failing from one
//! source is what a spray looks like, and failures for accounts that do not
//! exist (`FAILURE_NO_SUCH_USER`) say the names are being guessed. A
//! computer many people log on through (a terminal server, a VPN or mail
//! gateway) sees many accounts mistype a password every hour: failures are
//! weighed against the accounts the source served in the same hours, and
//! fire only when they are `min_failed_share` of them or more. Only
//! records that say the outcome and the source (OCSF, ECS, the full LANL
//! record) can show it.

use authpulse_rules_sdk::stats::log2;
use authpulse_rules_sdk::{
    Entity, Events, FAILURE_NO_SUCH_USER, Features, Hit, Metadata, ParamKind, ParamSpec, Params,
    Rule, Severity, export_rule,
};

pub struct FailedLogonSpray {
    min_accounts: u32,
    min_failed_share: f32,
    score: f32,
}

pub const REASON_SPRAY: u32 = 0;
pub const REASON_GUESSING: u32 = 1;

/// Each doubling of the accounts beyond the minimum adds this much.
const SCORE_PER_DOUBLING: f32 = 12.0;

const MIN_ACCOUNTS: ParamSpec = ParamSpec::new(
    "min_accounts",
    ParamKind::Count,
    6.0,
    "Distinct accounts failing from one source within the two clock hours to fire",
)
.range(2.0, 1e6);

const MIN_FAILED_SHARE: ParamSpec = ParamSpec::new(
    "min_failed_share",
    ParamKind::Ratio,
    0.3,
    "Fire only when the failing accounts are at least this share of the accounts seen from the source",
);

const SCORE: ParamSpec = ParamSpec::score(
    60.0,
    "Risk contribution at the threshold; more accounts add up to 100",
);

impl Rule for FailedLogonSpray {
    const METADATA: Metadata = Metadata {
        name: "failed_logon_spray",
        version: "1.1.0",
        description: "Logons from one computer failing on many different accounts",
        severity: Severity::High,
        mitre: &["T1110.003", "T1110.001"],
        entity: Entity::Source,
        events: Events::Detailed,
        params: &[MIN_ACCOUNTS, MIN_FAILED_SHARE, SCORE],
        reasons: &[
            "logons from this computer failed on many different accounts",
            "logons from this computer failed on many accounts, some that do not exist",
        ],
    };

    fn new(p: &Params) -> Self {
        FailedLogonSpray {
            min_accounts: p.value(&MIN_ACCOUNTS) as u32,
            min_failed_share: p.value(&MIN_FAILED_SHARE) as f32,
            score: p.value(&SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_failure() || !f.has_source() {
            return None;
        }
        let accounts = f.source_failed_users_2h;
        if accounts < self.min_accounts {
            return None;
        }
        let seen = accounts + f.source_users_2h;
        if (accounts as f32) < self.min_failed_share * seen as f32 {
            return None;
        }
        let doublings = log2(f64::from(accounts) / f64::from(self.min_accounts)) as f32;
        let reason = if f.failure_reason == FAILURE_NO_SUCH_USER {
            REASON_GUESSING
        } else {
            REASON_SPRAY
        };
        Some(Hit::new(
            self.score + SCORE_PER_DOUBLING * doublings,
            reason,
        ))
    }
}

export_rule!(FailedLogonSpray);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{
        FAILURE_BAD_PASSWORD, OUTCOME_FAILURE, OUTCOME_SUCCESS, testing::RuleHarness,
    };

    fn failure(accounts: u32, reason: u8) -> Features {
        Features {
            outcome: OUTCOME_FAILURE,
            failure_reason: reason,
            source_computer: 8,
            source_failed_users_2h: accounts,
            source_failures_2h: accounts,
            ..Default::default()
        }
    }

    #[test]
    fn many_accounts_failing_from_one_source() {
        let rule = RuleHarness::<FailedLogonSpray>::with_defaults();
        let hit = rule.evaluate(&failure(6, FAILURE_BAD_PASSWORD)).unwrap();
        assert_eq!((hit.score, hit.reason), (60.0, REASON_SPRAY));
        let hit = rule.evaluate(&failure(24, FAILURE_NO_SUCH_USER)).unwrap();
        assert_eq!((hit.score, hit.reason), (84.0, REASON_GUESSING));
        assert_eq!(
            rule.evaluate(&failure(400, FAILURE_BAD_PASSWORD))
                .unwrap()
                .score,
            100.0
        );
    }

    #[test]
    fn a_gateway_many_log_on_through_is_no_spray() {
        let rule = RuleHarness::<FailedLogonSpray>::with_defaults();
        // 300 accounts through one gateway this hour, 9 of them mistyping.
        let gateway = Features {
            source_users_2h: 300,
            ..failure(9, FAILURE_BAD_PASSWORD)
        };
        assert_eq!(rule.evaluate(&gateway), None);
        // 40 accounts failing where two got in is a spray.
        let spray = Features {
            source_users_2h: 2,
            ..failure(40, FAILURE_BAD_PASSWORD)
        };
        assert!(rule.evaluate(&spray).is_some());
    }

    #[test]
    fn a_mistyped_password_is_no_spray() {
        let rule = RuleHarness::<FailedLogonSpray>::with_defaults();
        // One account failing twenty times from its own workstation.
        let typo = Features {
            source_failures_2h: 20,
            ..failure(1, FAILURE_BAD_PASSWORD)
        };
        assert_eq!(rule.evaluate(&typo), None);
        assert_eq!(rule.evaluate(&failure(5, FAILURE_BAD_PASSWORD)), None);
        // A success, however many failures came before, is judged elsewhere.
        let success = Features {
            outcome: OUTCOME_SUCCESS,
            ..failure(30, 0)
        };
        assert_eq!(rule.evaluate(&success), None);
        // Without a source there is nothing to tie the failures together.
        let anywhere = Features {
            source_computer: 0,
            ..failure(30, FAILURE_BAD_PASSWORD)
        };
        assert_eq!(rule.evaluate(&anywhere), None);
    }
}
