//! Rule `new_logon_type`: an account that has only ever logged on over the
//! network (file shares, services, scheduled tasks) logs on interactively:
//! at a console or over remote desktop. Service and batch accounts are not
//! meant to be typed into a desktop; an intruder holding their credentials
//! does exactly that.
//!
//! Judged against the account's own history only: it needs enough logons
//! whose type was said (`min_history`), none of them interactive. An account
//! whose people use desktops has interactive logons in its history and is
//! never surprised by one.

use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, LOGON_CACHED_INTERACTIVE, LOGON_INTERACTIVE,
    LOGON_REMOTE_INTERACTIVE, LOGON_UNLOCK, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct NewLogonType {
    min_history: u32,
    score: f32,
}

pub const REASON_INTERACTIVE: u32 = 0;
pub const REASON_REMOTE_INTERACTIVE: u32 = 1;

/// The interactive logon types (console, unlock, remote desktop, cached),
/// and 12 and 13 (cached remote interactive, cached unlock), as bits of
/// `user_logon_types_before`.
const INTERACTIVE_TYPES: u32 = (1 << LOGON_INTERACTIVE)
    | (1 << LOGON_UNLOCK)
    | (1 << LOGON_REMOTE_INTERACTIVE)
    | (1 << LOGON_CACHED_INTERACTIVE)
    | (1 << 12)
    | (1 << 13);

const MIN_HISTORY: ParamSpec = ParamSpec::new(
    "min_history",
    ParamKind::Count,
    30.0,
    "Logons of a said type the account needs before its types are its habit",
)
.range(1.0, 1e9);

const SCORE: ParamSpec = ParamSpec::score(45.0, "Risk contribution of a hit");

impl Rule for NewLogonType {
    const METADATA: Metadata = Metadata {
        name: "new_logon_type",
        version: "1.0.0",
        description: "An interactive logon by an account that has only ever logged on over the network",
        severity: Severity::Medium,
        mitre: &["T1078", "T1021.001"],
        entity: Entity::User,
        events: Events::Detailed,
        params: &[MIN_HISTORY, SCORE],
        reasons: &[
            "interactive logon by an account that only ever logged on over the network",
            "remote desktop logon by an account that only ever logged on over the network",
        ],
    };

    fn new(p: &Params) -> Self {
        NewLogonType {
            min_history: p.value(&MIN_HISTORY) as u32,
            score: p.value(&SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if f.is_failure()
            || f.logon_type >= 32
            || (1u32 << f.logon_type) & INTERACTIVE_TYPES == 0
            || f.user_typed_logins_before < self.min_history
            || f.user_logon_types_before & INTERACTIVE_TYPES != 0
        {
            return None;
        }
        let reason = if f.logon_type == LOGON_REMOTE_INTERACTIVE {
            REASON_REMOTE_INTERACTIVE
        } else {
            REASON_INTERACTIVE
        };
        Some(Hit::new(self.score, reason))
    }
}

export_rule!(NewLogonType);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{LOGON_BATCH, LOGON_NETWORK, OUTCOME_FAILURE, testing::RuleHarness};

    fn logon(logon_type: u8, before: u32, history: u32) -> Features {
        Features {
            logon_type,
            user_logon_types_before: before,
            user_typed_logins_before: history,
            ..Default::default()
        }
    }

    #[test]
    fn a_network_only_account_at_a_desktop() {
        let rule = RuleHarness::<NewLogonType>::with_defaults();
        let network = 1 << LOGON_NETWORK;
        let hit = rule
            .evaluate(&logon(LOGON_REMOTE_INTERACTIVE, network, 200))
            .unwrap();
        assert_eq!((hit.score, hit.reason), (45.0, REASON_REMOTE_INTERACTIVE));
        let hit = rule.evaluate(&logon(LOGON_INTERACTIVE, network | (1 << LOGON_BATCH), 50));
        assert_eq!(hit.unwrap().reason, REASON_INTERACTIVE);
    }

    #[test]
    fn habits_and_short_histories_stay_quiet() {
        let rule = RuleHarness::<NewLogonType>::with_defaults();
        let desk = (1 << LOGON_NETWORK) | (1 << LOGON_INTERACTIVE);
        assert_eq!(
            rule.evaluate(&logon(LOGON_REMOTE_INTERACTIVE, desk, 500)),
            None
        );
        assert_eq!(
            rule.evaluate(&logon(LOGON_INTERACTIVE, 1 << LOGON_NETWORK, 10)),
            None
        );
        assert_eq!(
            rule.evaluate(&logon(LOGON_NETWORK, 1 << LOGON_BATCH, 500)),
            None
        );
        assert_eq!(rule.evaluate(&logon(0, 1 << LOGON_NETWORK, 500)), None);
        let failed = Features {
            outcome: OUTCOME_FAILURE,
            ..logon(LOGON_INTERACTIVE, 1 << LOGON_NETWORK, 500)
        };
        assert_eq!(rule.evaluate(&failed), None);
    }
}
