//! Rule `source_fan_out`: logons from one computer reach many destinations
//! it never reached before within an hour or two, far more than its own
//! history makes likely: an intruder on that machine spreading out with the
//! credentials it found there. Its hits add to the *source computer's*
//! risk.
//!
//! A management server or a help desk's jump host reaches new machines
//! every day; its baseline (new destinations per day after its first day)
//! says so, and the same count from it is no surprise. A workstation that
//! reaches three servers a month is surprised by six in an hour. The
//! baseline is shrunk toward a pace proportional to the destinations the
//! source knows, so a short history neither alarms nor excuses much. Its
//! first day is its discovery (every destination is new to the pipeline),
//! hence the burn-in. Only a destination new to the account logging on to
//! it counts as spreading: an admin making a round of the servers they
//! already use, from a desk they did not use for it before, is routine
//! (their account's own history says so).
//!
//! Nor does a logon from the account's own desk (where it made most of its
//! logons that named a source): a desk spreading out as its own account is
//! that account spreading out, which the account's rules (`new_device`,
//! `slow_spread`, `lateral_movement`) judge against its history. Counted
//! here as well, an ordinary account's busy morning (a migration's new
//! servers and the shared ones it had not used yet) was judged twice,
//! once as the account and again as its desk. What this rule alone sees is
//! a computer spreading as accounts that do not usually work from it: a
//! foothold. A destination being rolled out (`Features::is_rolling_out`:
//! many users started on it within its first day) is where everyone is
//! being moved, not where a foothold spreads.

use authpulse_rules_sdk::stats::{poisson_tail, surprise};
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct SourceFanOut {
    min_new: u32,
    min_surprise: f32,
    burn_in_s: u32,
    score: f32,
}

pub const REASON_FAN_OUT: u32 = 0;

/// Each factor of ten of surprise beyond the minimum adds this much.
const SCORE_PER_DECADE: f32 = 4.0;

/// The window is this clock hour and the one before; a busy stretch sees
/// about twice the day's mean pace.
const WINDOW_DAYS: f32 = 2.0 / 24.0;
const BUSY_FACTOR: f32 = 2.0;

const MIN_NEW: ParamSpec = ParamSpec::new(
    "min_new_destinations",
    ParamKind::Count,
    5.0,
    "Destinations new to the source within the two clock hours to fire",
)
.range(2.0, 1e6);

const MIN_SURPRISE: ParamSpec = ParamSpec::new(
    "min_surprise",
    ParamKind::Factor,
    4.0,
    "Fire when that many new destinations had at most a 10^-x chance (x = this)",
)
.range(0.0, 30.0);

const BURN_IN: ParamSpec = ParamSpec::burn_in(26.0 * 3600.0);

const SCORE: ParamSpec = ParamSpec::score(
    55.0,
    "Risk contribution at the threshold; more surprise adds up to 100",
);

impl Rule for SourceFanOut {
    const METADATA: Metadata = Metadata {
        name: "source_fan_out",
        version: "1.3.0",
        description: "One computer logging on to many destinations it never reached before",
        severity: Severity::High,
        mitre: &["T1021", "T1570"],
        entity: Entity::Source,
        events: Events::Detailed,
        params: &[MIN_NEW, MIN_SURPRISE, BURN_IN, SCORE],
        reasons: &["logons from this computer reached many computers it never reached before"],
    };

    fn new(p: &Params) -> Self {
        SourceFanOut {
            min_new: p.value(&MIN_NEW) as u32,
            min_surprise: p.value(&MIN_SURPRISE) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
            score: p.value(&SCORE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        let new = f.source_new_destinations_2h;
        if new < self.min_new
            || f.is_failure()
            || !f.is_new_device()
            || f.source_tenure_s < self.burn_in_s
            || f.is_from_own_desk()
            || f.is_rolling_out()
        {
            return None;
        }
        let expected = f.usual_new_destination_rate() * WINDOW_DAYS * BUSY_FACTOR;
        let how = surprise(poisson_tail(new, expected));
        (how >= self.min_surprise).then(|| {
            Hit::new(
                self.score + SCORE_PER_DECADE * (how - self.min_surprise),
                REASON_FAN_OUT,
            )
        })
    }
}

export_rule!(SourceFanOut);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::testing::RuleHarness;

    /// A source a month old that knows `known` destinations, `usual` of them
    /// new over its 28 baseline days, reaching `new` new ones now.
    fn source(known: u32, usual: u32, new: u32) -> Features {
        Features {
            source_computer: 5,
            source_tenure_s: 30 * 86_400,
            source_known_destinations: known,
            source_baseline_new_destinations: usual,
            source_baseline_s: 28 * 86_400,
            source_new_destinations_2h: new,
            source_destinations_2h: new,
            flags: authpulse_rules_sdk::FLAG_NEW_DEVICE_FOR_USER,
            ..Default::default()
        }
    }

    #[test]
    fn a_round_of_computers_the_account_already_uses_is_routine() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        let spreading = source(40, 2, 12);
        assert!(rule.evaluate(&spreading).is_some());
        let round = Features {
            flags: 0,
            ..spreading
        };
        assert_eq!(rule.evaluate(&round), None);
    }

    #[test]
    fn a_workstation_spreading_out() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        let hit = rule.evaluate(&source(6, 2, 8)).unwrap();
        assert_eq!(hit.reason, REASON_FAN_OUT);
        assert!(hit.score >= 55.0, "{}", hit.score);
        assert_eq!(rule.evaluate(&source(6, 2, 4)), None);
    }

    #[test]
    fn an_account_spreading_from_its_own_desk_is_left_to_its_own_rules() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        let spreading = source(6, 2, 8);
        let from = |this_source: u32, sourced: u32| Features {
            user_logins_from_source_before: this_source,
            user_sourced_logins_before: sourced,
            ..spreading
        };
        // A stranger's account, or one that came from here now and then.
        assert!(rule.evaluate(&from(0, 300)).is_some());
        assert!(rule.evaluate(&from(40, 300)).is_some());
        // The account that works from here.
        assert_eq!(rule.evaluate(&from(290, 300)), None);
    }

    #[test]
    fn a_destination_being_rolled_out_is_no_spread() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        let spreading = source(6, 2, 8);
        assert!(rule.evaluate(&spreading).is_some());
        let migration = Features {
            host_tenure_s: 2 * 3600,
            host_new_users_24h: 30,
            ..spreading
        };
        assert_eq!(rule.evaluate(&migration), None);
    }

    #[test]
    fn a_jump_host_reaching_new_machines_is_its_habit() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        // 40 new destinations a day for a month.
        assert_eq!(rule.evaluate(&source(1_200, 1_120, 8)), None);
    }

    #[test]
    fn a_new_source_is_left_alone() {
        let rule = RuleHarness::<SourceFanOut>::with_defaults();
        let first_day = Features {
            source_tenure_s: 3_600,
            source_baseline_s: 0,
            source_baseline_new_destinations: 0,
            ..source(20, 0, 20)
        };
        assert_eq!(rule.evaluate(&first_day), None);
    }
}
