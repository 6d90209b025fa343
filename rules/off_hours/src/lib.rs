//! Rule `off_hours`: an account busy at an hour of the day it (almost) never
//! uses: a stolen office account used at night, or a service account woken
//! at an hour it sleeps.
//!
//! How many logins an hour the account usually has at this hour of day (or
//! the hour before it, whichever is busier: the last hour spans both) is
//! its own history's count at that hour over the days it has been seen,
//! shrunk toward the population's share of logins at this hour times the
//! account's daily volume (a new account is judged as the population's
//! rhythm would have it). The last hour's logins are judged against that as
//! a gamma-Poisson count (a thin history leaves the rate uncertain, so
//! little surprises), and the surprise is scored as evidence.
//!
//! An account's own logins at an hour pin down its usual rate there, not
//! today's: logins come in sessions, and some days are busier. So the
//! account's own history lends the count's certainty at most `day_shape`
//! logins' worth (a day's rate varies by about `1/sqrt(day_shape)`), and a
//! busy hour that the account keeps every day (a night-shift account's
//! night, a service account's any hour) surprises only as much as its days
//! vary: volume at a kept hour is `burst`'s question. An hour the account
//! does not keep has few own logins there, so what the population's rhythm
//! lends it and its surprise are as they were.
//!
//! An hour of unusual activity is many events: the rule speaks when the
//! surprise reaches `min_surprise`, then each time it grows by another
//! `step` decades, with the decades added since, so that the account's
//! accumulated risk carries the hour's surprise once (to within a step),
//! not once per logon.

use authpulse_rules_sdk::stats::{negbin_tail, score_of_evidence, surprise};
use authpulse_rules_sdk::{
    Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec, Params, Rule, Severity,
    export_rule,
};

pub struct OffHours {
    min_logins_1h: u32,
    min_surprise: f32,
    step: f32,
    day_shape: f32,
    burn_in_s: u32,
}

pub const REASON_HOUR: u32 = 0;

const DAY: f32 = 86_400.0;
/// Days of the population's rhythm an account's own is shrunk toward.
const PRIOR_DAYS: f32 = 2.0;

const MIN_LOGINS_1H: ParamSpec = ParamSpec::new(
    "min_logins_1h",
    ParamKind::Count,
    5.0,
    "Logins within the last hour, at least",
)
.range(1.0, 1e6);

const MIN_SURPRISE: ParamSpec = ParamSpec::new(
    "min_surprise",
    ParamKind::Factor,
    4.0,
    "Speak when the hour's logins had at most a 10^-x chance (x = this)",
)
.range(0.0, 30.0);

const STEP: ParamSpec = ParamSpec::new(
    "step",
    ParamKind::Factor,
    2.0,
    "Speak again each time the surprise grows by this many decades",
)
.range(0.1, 30.0);

const DAY_SHAPE: ParamSpec = ParamSpec::day_shape(
    8.0,
    "How much certainty the account's own logins at an hour lend today's count, in logins (days vary: a day's rate at an hour differs from the usual by about 1/sqrt(this))",
);

const BURN_IN: ParamSpec = ParamSpec::burn_in(2.0 * 86_400.0);

impl Rule for OffHours {
    const METADATA: Metadata = Metadata {
        name: "off_hours",
        version: "1.1.0",
        description: "An account busy at an hour of the day its history says it is not",
        severity: Severity::Medium,
        mitre: &["T1078"],
        entity: Entity::User,
        events: Events::All,
        params: &[MIN_LOGINS_1H, MIN_SURPRISE, STEP, DAY_SHAPE, BURN_IN],
        reasons: &["busy at an hour of the day this account almost never uses"],
    };

    fn new(p: &Params) -> Self {
        OffHours {
            min_logins_1h: p.value(&MIN_LOGINS_1H) as u32,
            min_surprise: p.value(&MIN_SURPRISE) as f32,
            step: p.value(&STEP) as f32,
            day_shape: p.value(&DAY_SHAPE) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        let n = f.user_logins_1h;
        if n < self.min_logins_1h || f.user_tenure_s < self.burn_in_s {
            return None;
        }
        let days = f.user_tenure_s as f32 / DAY;
        let per_day = f.user_logins_before as f32 / days;
        // Expected logins in an hour at this hour of the day: own history,
        // plus the population's share of the account's daily volume for
        // PRIOR_DAYS. The last hour reaches into the hour of day before, so
        // the busier of the two is the measure. Today's count is judged with
        // less certainty than the mean's: the account's own logins at the
        // hour pin down its usual rate there, not today's (`day_shape`).
        let expect = |own: u32, population_ppm: u32| {
            let lent = population_ppm as f32 * 1e-6 * per_day * PRIOR_DAYS;
            let shape = own as f32 + lent;
            let today = lent + (own as f32).min(self.day_shape);
            (today, shape / (days + PRIOR_DAYS))
        };
        let this = expect(f.user_logins_at_hour_before, f.population_hour_share_ppm);
        let previous = expect(
            f.user_logins_at_previous_hour_before,
            f.population_previous_hour_share_ppm,
        );
        let (shape, mean) = if previous.1 > this.1 { previous } else { this };
        // Most hours are ordinary: nothing to compute.
        if (n as f32) < 3.0 * mean + 2.0 {
            return None;
        }
        let now = surprise(negbin_tail(n, shape, mean));
        let before = surprise(negbin_tail(n - 1, shape, mean));
        // The highest mark (min_surprise + i * step) passed by this logon.
        let mark = |s: f32| {
            (s >= self.min_surprise).then(|| ((s - self.min_surprise) / self.step).floor() as i32)
        };
        let decades = match (mark(before), mark(now)) {
            (None, Some(b)) => self.min_surprise + b as f32 * self.step,
            (Some(a), Some(b)) if b > a => (b - a) as f32 * self.step,
            _ => return None,
        };
        Some(Hit::new(score_of_evidence(decades), REASON_HOUR))
    }
}

export_rule!(OffHours);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::stats::evidence_of_score;
    use authpulse_rules_sdk::testing::RuleHarness;

    /// An account seen for 10 days, 200 logins a day, `at_hour` of them at
    /// this hour of day, with `n` logins in the last hour; the population
    /// has 1% of its logins at this hour.
    fn hour(at_hour: u32, n: u32) -> Features {
        Features {
            user_tenure_s: 10 * 86_400,
            user_logins_before: 2_000,
            user_logins_at_hour_before: at_hour,
            user_logins_1h: n,
            population_hour_share_ppm: 10_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_busy_hour_the_account_never_keeps_speaks_once_per_mark() {
        let rule = RuleHarness::<OffHours>::with_defaults();
        // Two logins at this hour in ten days: about 0.5 an hour expected.
        assert_eq!(rule.evaluate(&hour(2, 4)), None);
        let spoke: Vec<(u32, f32)> = (1..=30)
            .filter_map(|n| rule.evaluate(&hour(2, n)).map(|h| (n, h.score)))
            .collect();
        assert!(spoke.len() >= 2, "{spoke:?}");
        // The decades it added up to are the hour's surprise, to within a
        // step below.
        let total: f32 = spoke.iter().map(|&(_, s)| evidence_of_score(s)).sum();
        let (shape, mean) = (2.0 + 0.01 * 200.0 * 2.0, (2.0 + 4.0) / 12.0);
        let expected = surprise(negbin_tail(30, shape, mean));
        assert!(
            total <= expected + 0.01 && total > expected - 2.0,
            "{total} vs {expected}: {spoke:?}"
        );
    }

    #[test]
    fn a_busy_day_at_an_hour_the_account_keeps_is_not_an_odd_hour() {
        // A night-shift account: about 4 logins at this hour every day for
        // a week (29 of 700), then 14 in the last hour. Judged as if its
        // usual rate were today's (days never vary), that is a 1-in-10,000
        // hour; days do vary.
        let busy_night = Features {
            user_tenure_s: 7 * 86_400,
            user_logins_before: 700,
            user_logins_at_hour_before: 29,
            user_logins_1h: 14,
            population_hour_share_ppm: 10_000,
            ..Default::default()
        };
        let spoke = |rule: &RuleHarness<OffHours>| {
            (1..=14).any(|n| {
                let f = Features {
                    user_logins_1h: n,
                    ..busy_night
                };
                rule.evaluate(&f).is_some()
            })
        };
        assert!(spoke(
            &RuleHarness::<OffHours>::with_defaults().with("day_shape", 1e9)
        ));
        assert!(!spoke(&RuleHarness::<OffHours>::with_defaults()));
        // An office account's night is still an odd hour: two logins at
        // this hour in ten days, then 12 in an hour.
        let rule = RuleHarness::<OffHours>::with_defaults();
        assert!((1..=12).any(|n| rule.evaluate(&hour(2, n)).is_some()));
    }

    #[test]
    fn a_thin_history_at_the_hour_is_judged_as_if_days_never_varied() {
        // Two logins at this hour in ten days: fewer than `day_shape`, so
        // the day's variation changes nothing.
        let steady = RuleHarness::<OffHours>::with_defaults().with("day_shape", 1e9);
        let rule = RuleHarness::<OffHours>::with_defaults();
        for n in 1..=30 {
            assert_eq!(
                rule.evaluate(&hour(2, n)),
                steady.evaluate(&hour(2, n)),
                "{n}"
            );
        }
    }

    #[test]
    fn its_usual_hours_are_quiet() {
        let rule = RuleHarness::<OffHours>::with_defaults();
        // 400 of 2,000 logins at this hour: 40 an hour is ordinary.
        assert!((1..=60).all(|n| rule.evaluate(&hour(400, n)).is_none()));
        // Too new to know its hours.
        let fresh = Features {
            user_tenure_s: 86_400,
            ..hour(0, 30)
        };
        assert_eq!(rule.evaluate(&fresh), None);
    }
}
