//! Rule `rare_host`: a user logs on, for the first time, to a computer that only
//! one or a few other users have ever used (someone else's workstation, a
//! forgotten server). Ordinary users seldom do (about one new computer in
//! ten is that rare), intruders often. It adds `extra` times the evidence
//! `new_device` finds in the new computer (how unusual new computers are for
//! this user), so that for a user who rarely starts on new computers two
//! rare ones within hours alert, while a roaming account's many rare
//! computers add nothing. The evidence is weighed by how unusual rarity is
//! for this user: a help-desk account whose history is mostly other
//! people's workstations gets none from one more. Computers in their first day are left alone: with
//! no history their rarity means nothing yet. Where the record names the
//! computer the logon came from, what `new_device` finds includes where it
//! came from (`Features::source_evidence`), weighed by `source_weight`: a
//! rarely used computer reached from the user's own desk is less telling
//! than one reached from a computer the account never came from.

use authpulse_rules_sdk::stats::{log10, score_of_evidence};
use authpulse_rules_sdk::{
    DEFAULT_INTRUDER_USUAL_SOURCE, Entity, Events, Features, Hit, Metadata, ParamKind, ParamSpec,
    Params, Rule, Severity, export_rule,
};

pub struct RareHost {
    max_prior_users: u32,
    burn_in_s: u32,
    attack_per_day: f32,
    extra: f32,
    source_weight: f32,
}

pub const REASON_RARE_HOST: u32 = 0;

/// A computer's rarity means something once it has a day of history.
const ESTABLISHED_S: u32 = 86_400;
/// Share of rarely used computers among an intruder's new ones (they go
/// where the accounts they steal lead, not where teams work).
const INTRUDER_RARE_SHARE: f32 = 0.5;
/// How many new computers of population-typical share a user's own share
/// is shrunk toward.
const RARE_SHARE_PRIOR: f32 = 8.0;

const MAX_PRIOR_USERS: ParamSpec = ParamSpec::new(
    "max_prior_users",
    ParamKind::Count,
    2.0,
    "Fire when the computer had at most this many other users",
)
.range(1.0, 1e6);

const BURN_IN: ParamSpec = ParamSpec::burn_in(86_400.0);

const ATTACK_PER_DAY: ParamSpec = ParamSpec::attack_per_day(24.0);

const EXTRA: ParamSpec = ParamSpec::new(
    "extra",
    ParamKind::Factor,
    0.8,
    "Evidence added, as a multiple of what the new computer says on its own",
)
.range(0.0, 10.0);

const SOURCE_WEIGHT: ParamSpec = ParamSpec::source_weight(1.0);

impl Rule for RareHost {
    const METADATA: Metadata = Metadata {
        name: "rare_host",
        version: "3.2.0",
        description: "First logon to a computer very few users have ever used",
        severity: Severity::Low,
        mitre: &["T1021"],
        entity: Entity::User,
        events: Events::NewDevices,
        params: &[
            MAX_PRIOR_USERS,
            BURN_IN,
            ATTACK_PER_DAY,
            EXTRA,
            SOURCE_WEIGHT,
        ],
        reasons: &["first logon to a computer few other users have ever used"],
    };

    fn new(p: &Params) -> Self {
        RareHost {
            max_prior_users: p.value(&MAX_PRIOR_USERS) as u32,
            burn_in_s: p.value(&BURN_IN) as u32,
            attack_per_day: p.value(&ATTACK_PER_DAY) as f32,
            extra: p.value(&EXTRA) as f32,
            source_weight: p.value(&SOURCE_WEIGHT) as f32,
        }
    }

    #[inline]
    fn evaluate(&self, f: &Features) -> Option<Hit> {
        if !f.is_new_device() || f.user_tenure_s < self.burn_in_s {
            return None;
        }
        if !(1..=self.max_prior_users).contains(&f.host_users_before())
            || f.host_tenure_s < ESTABLISHED_S
        {
            return None;
        }
        // What rarity says depends on the user: for most, rarely used
        // computers are a small share of their new ones; for a help desk,
        // nearly all. Weighed by how far the user's own share is from an
        // intruder's.
        let usual = f.usual_rare_share(RARE_SHARE_PRIOR);
        let typical = f.population_rare_share();
        let weight = if usual >= INTRUDER_RARE_SHARE {
            0.0
        } else {
            (log10(f64::from(INTRUDER_RARE_SHARE / usual))
                / log10(f64::from(INTRUDER_RARE_SHARE / typical.min(0.49))))
            .clamp(0.0, 1.0) as f32
        };
        let found = f.new_computer_evidence(self.attack_per_day)
            + self.source_weight * f.source_evidence(DEFAULT_INTRUDER_USUAL_SOURCE);
        let decades = weight * self.extra * found;
        (decades > 0.0).then(|| Hit::new(score_of_evidence(decades), REASON_RARE_HOST))
    }
}

export_rule!(RareHost);

#[cfg(test)]
mod tests {
    use super::*;
    use authpulse_rules_sdk::{FLAG_NEW_COMPUTER, FLAG_NEW_DEVICE_FOR_USER, testing::RuleHarness};

    /// A first visit by a user with 20 computers (none new lately).
    fn first_visit(users_ever_incl_this: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_tenure_s: 7 * 86_400,
            user_known_computers: 20,
            host_users_ever: users_ever_incl_this,
            host_tenure_s: 30 * 86_400,
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_someone_elses_workstation() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        // 0.8 x log10(24 / 0.6) = 1.28 decades.
        let hit = rule.evaluate(&first_visit(2)).unwrap();
        assert_eq!(hit.reason, REASON_RARE_HOST);
        assert!((17.0..18.0).contains(&hit.score), "{hit:?}");
        assert_eq!(rule.evaluate(&first_visit(3)), Some(hit));
    }

    #[test]
    fn the_source_weighs_in() {
        use authpulse_rules_sdk::stats::evidence_of_score;
        let rule = RuleHarness::<RareHost>::with_defaults();
        let plain = evidence_of_score(rule.evaluate(&first_visit(2)).unwrap().score);
        let from = |logons_from_there: u32| Features {
            computer: 7,
            source_computer: 42,
            user_sourced_logins_before: 300,
            user_sources_before: 1,
            user_logins_from_source_before: logons_from_there,
            ..first_visit(2)
        };
        let desk = evidence_of_score(rule.evaluate(&from(300)).unwrap().score);
        let foothold = evidence_of_score(rule.evaluate(&from(0)).unwrap().score);
        // 0.8 x (1.6 - 0.52) and 0.8 x (1.6 + 2.02) decades.
        assert!(
            (desk - 0.8 * (plain / 0.8 - 0.52)).abs() < 0.02,
            "{desk} vs {plain}"
        );
        assert!(
            (foothold - 0.8 * (plain / 0.8 + 2.02)).abs() < 0.02,
            "{foothold}"
        );
    }

    #[test]
    fn adds_nothing_for_a_roaming_account() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        let roamer = Features {
            user_known_computers: 2_000,
            ..first_visit(2)
        };
        assert_eq!(rule.evaluate(&roamer), None);
    }

    #[test]
    fn quiet_on_popular_or_brand_new_computers() {
        let rule = RuleHarness::<RareHost>::with_defaults();
        assert_eq!(rule.evaluate(&first_visit(4)), None);
        let young = Features {
            host_tenure_s: 3600,
            ..first_visit(2)
        };
        assert_eq!(rule.evaluate(&young), None);
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
