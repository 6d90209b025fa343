//! Rule `fan_in`: many accounts that never used a computer log on to it
//! within the hour, or one by one over the day, far more than the
//! computer's own history makes likely
//! (credential harvesting on one host, or a password spray against it). Its
//! hits add to the *computer's* risk: the alert is about the computer, with
//! the accounts as its evidence.
//!
//! A computer needs history first (`burn_in`): a new server that hundreds of
//! users start using on its first morning is a roll-out, not an attack, and
//! after a first start every computer's first day is its discovery (a hub
//! meets hundreds of "new" users), which must be out of the hour's window
//! before the hour means anything: hence a day and two hours.
//!
//! Days vary: a busy computer's new users come in bunches (a team moved to
//! it, a new hire's first morning), so a count is judged as a gamma-Poisson
//! whose rate varies from day to day by about `1/sqrt(day_shape)`, not as a
//! Poisson with the usual rate exactly. On a rarely used computer that
//! changes little (a handful of new users is far beyond any day's rate); on
//! a hub that gets ten new users on an ordinary day, fifteen is no longer
//! four decades of surprise.

use authpulse_rules_sdk::stats::{negbin_tail, surprise};
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct FanIn {
    min_new_users: u32,
    min_surprise: f32,
    burn_in_s: u32,
    score: f32,
    day_shape: f32,
}

pub const REASON_FAN_IN: u32 = 0;
pub const REASON_SLOW_FAN_IN: u32 = 1;

/// Two looks (the hour and the day) cost `log10(2)` decades of surprise.
const LOOKS_COST: f32 = core::f32::consts::LOG10_2;

/// Each factor of ten of surprise beyond the minimum adds this much.
const SCORE_PER_DECADE: f32 = 3.0;

/// Office hours see about twice a day's mean hourly arrivals: the hour is
/// judged against that, not the mean.
const BUSY_HOUR_FACTOR: f32 = 2.0;

const MIN_NEW_USERS: ParamSpec = ParamSpec::new(
    "min_new_users",
    ParamKind::Count,
    6.0,
    "Users new to the computer within the hour (or the day) to fire",
)
.range(2.0, 1e6);

const MIN_SURPRISE: ParamSpec = ParamSpec::new(
    "min_surprise",
    ParamKind::Factor,
    4.0,
    "Fire when that many new users had at most a 10^-x chance (x = this)",
)
.range(0.0, 30.0);

const BURN_IN: ParamSpec = ParamSpec::burn_in(26.0 * 3600.0);

const DAY_SHAPE: ParamSpec = ParamSpec::day_shape(
    8.0,
    "How much a computer's usual pace of new users says of today's, in users (days vary: a day's pace differs from the usual by about 1/sqrt(this))",
);

const SCORE: ParamSpec = ParamSpec::score(
    70.0,
    "Risk contribution at the threshold; more surprise adds up to 100",
);

impl Rule for FanIn {
    const METADATA: Metadata = Metadata {
        name: "fan_in",
        version: "2.1.0",
        description: "Many accounts new to one computer within an hour, far above its usual",
        severity: Severity::High,
        mitre: &["T1110.003", "T1021", "T1078"],
        entity: Entity::Computer,
        events: Events::NewDevices,
        params: &[MIN_NEW_USERS, MIN_SURPRISE, BURN_IN, SCORE, DAY_SHAPE],
        reasons: &[
            "many accounts that never used this computer logged on to it within an hour",
            "many accounts that never used this computer logged on to it within a day",
        ],
    };

    fn new(p: &Params) -> Self {
        FanIn {
            min_new_users: p.value(&MIN_NEW_USERS) as u32,
            min_surprise: p.value(&MIN_SURPRISE) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
            score: p.value(&SCORE) as f32,
            day_shape: p.value(&DAY_SHAPE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.host_tenure_s < self.burn_in_s {
            return None;
        }
        let per_day = f.usual_new_user_rate();
        // The hour, against a busy hour's share of the usual day; and the
        // day, for accounts arriving one by one over hours.
        // The day is judged once the computer's first day (its discovery)
        // has left the day's window, and a usual rate has been measured.
        let day_judged = f.host_baseline_s > 0;
        let looks = [
            (
                f.host_new_users_1h,
                BUSY_HOUR_FACTOR * per_day / 24.0,
                REASON_FAN_IN,
            ),
            (
                if day_judged { f.host_new_users_24h } else { 0 },
                per_day,
                REASON_SLOW_FAN_IN,
            ),
        ];
        let (mut best, mut reason) = (0.0f32, REASON_FAN_IN);
        for (new_users, usual, why) in looks {
            if new_users < self.min_new_users {
                continue;
            }
            let how = surprise(negbin_tail(new_users, self.day_shape, usual));
            if how > best {
                (best, reason) = (how, why);
            }
        }
        let how = best - LOOKS_COST;
        (how >= self.min_surprise).then(|| {
            Hit::new(
                self.score + SCORE_PER_DECADE * (how - self.min_surprise),
                reason,
            )
        })
    }
}

export_rule!(FanIn);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    /// A user new to a computer a month old with `users` users, `usual` of
    /// them new over its 28 baseline days, that got `hour` new users in the
    /// last hour.
    fn arrival(users: u32, usual: u32, hour: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            host_tenure_s: 30 * 86_400,
            host_users_ever: users,
            host_baseline_new_users: usual,
            host_baseline_s: 28 * 86_400,
            host_new_users_1h: hour,
            ..Default::default()
        }
    }

    #[test]
    fn many_new_accounts_on_a_quiet_computer() {
        let rule = RuleHarness::<FanIn>::with_defaults();
        let hit = rule.evaluate(&arrival(25, 2, 20)).unwrap();
        assert_eq!(hit.reason, REASON_FAN_IN);
        assert_eq!(hit.score, 100.0);
        assert!(rule.evaluate(&arrival(10, 2, 6)).unwrap().score >= 70.0);
        assert_eq!(rule.evaluate(&arrival(10, 2, 5)), None);
    }

    #[test]
    fn a_hub_gaining_users_is_usual() {
        let rule = RuleHarness::<FanIn>::with_defaults();
        // 5,000 users, 2,800 of them new in 28 days: ~4 an hour.
        assert_eq!(rule.evaluate(&arrival(5_000, 2_800, 9)), None);
    }

    #[test]
    fn a_busy_day_on_a_busy_computer_is_a_day_not_an_attack() {
        // 300 users, 280 new in 28 days (ten a day); seven new in an hour
        // speaks when the usual pace is taken as today's exactly ...
        let steady = RuleHarness::<FanIn>::with_defaults().with("day_shape", 1e9);
        assert!(steady.evaluate(&arrival(300, 280, 7)).is_some());
        // ... and not when days vary as they do.
        let rule = RuleHarness::<FanIn>::with_defaults();
        assert_eq!(rule.evaluate(&arrival(300, 280, 7)), None);
        // On a quiet computer, the same count speaks either way.
        assert!(rule.evaluate(&arrival(40, 3, 7)).is_some());
    }

    #[test]
    fn a_new_server_is_left_alone() {
        let rule = RuleHarness::<FanIn>::with_defaults();
        let rollout = Features {
            host_tenure_s: 3 * 3600,
            host_baseline_s: 0,
            host_baseline_new_users: 0,
            ..arrival(300, 0, 120)
        };
        assert_eq!(rule.evaluate(&rollout), None);
    }
}
