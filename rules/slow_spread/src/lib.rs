//! Rule `slow_spread`: over the last day or the last three days a user
//! started using more new computers (or more rarely used ones) than their
//! own history makes likely: a careful intruder moving a few hops a day, or
//! one account among several stolen ones taking its turn.
//!
//! It asks how likely each count would be from the user's history before
//! the last three days (for an account too young to have one, its whole
//! life after its first day: `Features::judged_history`), as
//! `Features::expected_new_computers` predicts it (a
//! gamma-Poisson prediction, shrunk toward the population's pace while
//! the history is short, so a short history surprises little) and scores
//! the largest surprise, less the cost of having looked four times, as
//! evidence (`-log10` of the chance, in decades; see
//! `stats::score_of_evidence`). `new_device` weighs each new computer on
//! its own; this rule adds what the counts say, and stays silent below
//! `min_surprise`. A help-desk account whose history is full of other
//! people's workstations is not surprised by more of them; an account that
//! adds two new computers a day for three days, each day unremarkable, is.
//!
//! Days vary (a weekday after a weekend, a busy week), so a count is judged
//! as if the user's pace on any one day differed from their usual by about
//! `1/sqrt(day_shape)`, on top of what a short history leaves unknown: a
//! help desk that reaches twice its average on three busy weekdays is
//! having a busy week, while a settled account's handful of new computers
//! is as surprising as before (what it leaves unknown is its pace, not the
//! day's). A computer that many users start on within its first day is
//! being rolled out (`Features::is_rolling_out`): a logon to it says
//! nothing of the user spreading.
//!
//! Where the logon came from counts as well, `source_weight` times
//! `Features::source_evidence`: an account spreading from the one desk it
//! always works at is less likely an intruder than one whose new computers
//! are reached from a computer it never used.

use authpulse_rules_sdk::stats::{log10, negbin_tail, score_of_evidence, surprise};
use authpulse_rules_sdk::{
    DEFAULT_INTRUDER_USUAL_SOURCE, Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec,
    Params, Rule, Severity, export_rule,
};

pub struct SlowSpread {
    min_surprise: f32,
    burn_in_s: u32,
    source_weight: f32,
    day_shape: f32,
}

pub const REASON_DAY: u32 = 0;
pub const REASON_DAYS: u32 = 1;
pub const REASON_RARE: u32 = 2;

const DAY_S: u32 = 86_400;

const MIN_SURPRISE: ParamSpec = ParamSpec::new(
    "min_surprise",
    ParamKind::Factor,
    4.0,
    "Fire when the counts had at most a 10^-x chance (x = this)",
)
.range(0.0, 30.0);

const BURN_IN: ParamSpec = ParamSpec::burn_in(2.0 * 86_400.0);

const SOURCE_WEIGHT: ParamSpec = ParamSpec::source_weight(1.0);

const DAY_SHAPE: ParamSpec = ParamSpec::day_shape(
    8.0,
    "How much an account's usual pace of new computers says of any one day's (days vary: a day's pace differs from the usual by about 1/sqrt(this))",
);

impl Rule for SlowSpread {
    const METADATA: Metadata = Metadata {
        name: "slow_spread",
        version: "2.2.0",
        description: "More new computers within a day or three than the user's own history makes likely",
        severity: Severity::Medium,
        mitre: &["T1021", "T1078", "T1550"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[MIN_SURPRISE, BURN_IN, SOURCE_WEIGHT, DAY_SHAPE],
        reasons: &[
            "more new computers in a day than the user's history makes likely",
            "more new computers over three days than the user's history makes likely",
            "more rarely used computers new to the user than their history makes likely",
        ],
    };

    fn new(p: &Params) -> Self {
        SlowSpread {
            min_surprise: p.value(&MIN_SURPRISE) as f32,
            burn_in_s: p.value(&BURN_IN) as u32,
            source_weight: p.value(&SOURCE_WEIGHT) as f32,
            day_shape: p.value(&DAY_SHAPE) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s || f.is_rolling_out() {
            return None;
        }
        // Three days are judged against a day of history before them at
        // least (after a first start, the days after the first still find
        // computers the account always had).
        let days_judged = f.user_history_s >= DAY_S;
        let three_days = |count: u32| if days_judged { count } else { 0 };
        let looks = [
            (f.user_new_computers_24h, 1.0, false, REASON_DAY),
            (
                three_days(f.user_new_computers_72h),
                3.0,
                false,
                REASON_DAYS,
            ),
            (f.user_rare_new_computers_24h, 1.0, true, REASON_RARE),
            (
                three_days(f.user_rare_new_computers_72h),
                3.0,
                true,
                REASON_RARE,
            ),
        ];
        let (mut best, mut reason) = (0.0f32, REASON_DAY);
        for (count, days, rare, why) in looks {
            if count < 2 {
                continue;
            }
            let (shape, mean) = f.expected_new_computers(days, rare);
            // The pace's uncertainty and the days' variation, as one gamma
            // (their squared coefficients of variation add).
            let shape = 1.0 / (1.0 / shape + 1.0 / (self.day_shape * days));
            let how = surprise(negbin_tail(count, shape, mean));
            if how > best {
                (best, reason) = (how, why);
            }
        }
        if best == 0.0 {
            return None;
        }
        let decades = best - log10(looks.len() as f64) as f32
            + self.source_weight * f.source_evidence(DEFAULT_INTRUDER_USUAL_SOURCE);
        (decades >= self.min_surprise).then(|| Hit::new(score_of_evidence(decades), reason))
    }
}

export_rule!(SlowSpread);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::stats::evidence_of_score;
    use authpulse_rules_sdk::{FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    /// A user with `known` computers, `usual` of them new over 20 history
    /// days, who got `day` new ones in the last 24h and `days` in 72h.
    fn spread(known: u32, usual: u32, day: u32, days: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: 24 * 86_400,
            user_known_computers: known,
            user_history_new_computers: usual,
            user_history_s: 20 * 86_400,
            user_new_computers_24h: day,
            user_new_computers_72h: days,
            population_new_per_known_ppm: 5_000,
            population_rare_share_ppm: 150_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_few_new_computers_are_surprising_for_a_settled_user() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        // Twenty computers, two new in twenty days: two in a day is ordinary
        // enough across thousands of users ...
        assert_eq!(rule.evaluate(&spread(20, 2, 2, 2)), None);
        // ... six is not.
        let hit = rule.evaluate(&spread(20, 2, 6, 6)).unwrap();
        assert_eq!(hit.reason, REASON_DAY);
        assert!(evidence_of_score(hit.score) > 4.0, "{hit:?}");
    }

    #[test]
    fn three_unremarkable_days_add_up() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        // Two a day is not enough on the day; three days of it are.
        assert_eq!(rule.evaluate(&spread(20, 1, 2, 2)), None);
        let hit = rule.evaluate(&spread(20, 1, 2, 7)).unwrap();
        assert_eq!(hit.reason, REASON_DAYS, "{hit:?}");
    }

    #[test]
    fn a_roamer_alerts_only_far_above_its_own_rate() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        // 300 computers, 160 new in 20 days: eight a day is ordinary ...
        assert_eq!(rule.evaluate(&spread(300, 160, 12, 30)), None);
        // ... forty is not.
        let hit = rule.evaluate(&spread(300, 160, 40, 50)).unwrap();
        assert!(hit.score >= 60.0, "{hit:?}");
    }

    #[test]
    fn rarely_used_computers_are_judged_against_the_users_own_share() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        let rare = |history_rare: u32| Features {
            user_rare_new_computers_24h: 4,
            user_rare_new_computers_72h: 4,
            user_history_rare_new_computers: history_rare,
            ..spread(20, 40, 4, 4)
        };
        // Forty new in twenty days, few of them rare: four rare in a day is
        // surprising; for a help desk whose new computers are all rare, not.
        assert_eq!(rule.evaluate(&rare(2)).map(|h| h.reason), Some(REASON_RARE));
        assert_eq!(rule.evaluate(&rare(40)), None);
    }

    #[test]
    fn spreading_from_the_usual_desk_weighs_less_than_from_a_stranger() {
        let rule = RuleHarness::<SlowSpread>::with_defaults().with("min_surprise", 5.0);
        // From computer 8, used for 190 of the account's 200 sourced logons,
        // or from one it never used (one of three sources so far).
        let from = |used: u32| Features {
            computer: 3,
            source_computer: 8 + 1,
            user_sourced_logins_before: 200,
            user_logins_from_source_before: used,
            user_sources_before: 3,
            ..spread(20, 2, 5, 5)
        };
        let desk = rule.evaluate(&from(190));
        let stranger = rule.evaluate(&from(0)).expect("a stranger's source fires");
        assert!(
            desk.is_none_or(|d| d.score < stranger.score),
            "{desk:?} vs {stranger:?}"
        );
        let ignored = RuleHarness::<SlowSpread>::with_defaults()
            .with("min_surprise", 5.0)
            .with("source_weight", 0.0);
        assert_eq!(ignored.evaluate(&from(190)), ignored.evaluate(&from(0)));
    }

    #[test]
    fn a_help_desks_busy_week_is_not_a_spread() {
        // Forty-one other people's workstations in six days of history (a
        // weekend among them), forty-four in the last three weekdays.
        let busy_week = Features {
            user_history_s: 6 * 86_400,
            user_history_rare_new_computers: 39,
            user_rare_new_computers_24h: 15,
            user_rare_new_computers_72h: 42,
            ..spread(70, 41, 15, 44)
        };
        let steady = RuleHarness::<SlowSpread>::with_defaults().with("day_shape", 1e9);
        assert!(steady.evaluate(&busy_week).is_some());
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        assert_eq!(rule.evaluate(&busy_week), None);
        // Days varying leave a settled account's spread as surprising.
        let settled = spread(20, 1, 2, 7);
        let (varying, exact) = (
            evidence_of_score(rule.evaluate(&settled).unwrap().score),
            evidence_of_score(steady.evaluate(&settled).unwrap().score),
        );
        assert!(exact - varying < 0.2, "{varying} vs {exact}");
    }

    #[test]
    fn a_computer_being_rolled_out_says_nothing_of_its_users() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        let spreading = spread(20, 2, 6, 6);
        assert!(rule.evaluate(&spreading).is_some());
        let moved = Features {
            host_tenure_s: 3 * 3600,
            host_new_users_24h: 40,
            ..spreading
        };
        assert_eq!(rule.evaluate(&moved), None);
    }

    #[test]
    fn quiet_in_burn_in() {
        let rule = RuleHarness::<SlowSpread>::with_defaults();
        let fresh = Features {
            user_tenure_s: 86_400,
            ..spread(20, 2, 8, 8)
        };
        assert_eq!(rule.evaluate(&fresh), None);
    }
}
