//! What a feature record says against each entity's own history: the
//! usual pace of new computers (shrunk toward the population's while the
//! history is short), the pace an account's history predicts knowing that
//! a few accounts' work is reaching new computers, the evidence in a new
//! computer or in where a logon came from, and the shares of rarely used
//! computers and of the hour of day. The priors these assume are the
//! constants below.

use crate::features::Features;

const DAY: f32 = 86_400.0;

/// What [`Features::usual_new_computer_rate`] assumes before a user's own
/// history speaks: each day a user starts using about this share of the
/// computers they already know (the LANL set's pace after its first month).
pub const PRIOR_NEW_PER_KNOWN_PER_DAY: f32 = 0.03;
/// How many days of history that assumption weighs.
pub const PRIOR_DAYS: f32 = 2.0;
/// The share of rarely used computers among new ones assumed before the
/// population's is measured.
pub const DEFAULT_RARE_SHARE: f32 = 0.15;
/// The share of accounts whose work is reaching computers new to them
/// (help desks, desktop support, deployment and scanning accounts), as
/// [`Features::predicted_new_computer_rate`] assumes before an account's
/// own history says which kind it is.
pub const ROAMER_SHARE: f32 = 0.02;
/// How many new computers a day such an account reaches.
pub const ROAMER_NEW_PER_DAY: f32 = 8.0;
/// The share of intrusions that work from the stolen account's usual
/// computers (malware on the victim's workstation) rather than from a
/// foothold elsewhere, assumed by [`Features::source_evidence`]'s callers.
pub const DEFAULT_INTRUDER_USUAL_SOURCE: f32 = 0.3;

/// A user's history of new computers, as [`Features::judged_history`]
/// gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct History {
    /// Computers first used in it.
    pub new_computers: u32,
    /// Of those, the rarely used ones.
    pub rare_new_computers: u32,
    /// Its length in days.
    pub days: f32,
}

impl Features {
    /// How many computers a day this user usually starts using: the
    /// baseline period's rate, shrunk toward `prior_per_day` as if
    /// `prior_days` more days had shown that rate. A user with a short
    /// history gets a rate near the prior; a long history speaks for itself.
    #[inline]
    pub fn usual_new_computers_per_day(&self, prior_per_day: f32, prior_days: f32) -> f32 {
        shrunk_rate(
            self.user_baseline_new_computers,
            self.user_baseline_s,
            prior_per_day,
            prior_days,
        )
    }

    /// The rate rules judge a user's new computers against:
    /// [`Features::usual_new_computers_per_day`] with the default prior
    /// ([`Features::prior_new_per_known_per_day`] of the computers the user
    /// knows, weighing [`PRIOR_DAYS`] days), and never below that prior. A few
    /// quiet days are no proof that a user is quieter than users of their
    /// size; a busy history does show that they are busier.
    #[inline]
    pub fn usual_new_computer_rate(&self) -> f32 {
        let prior = self.prior_new_per_known_per_day() * self.user_known_computers.max(1) as f32;
        self.usual_new_computers_per_day(prior, PRIOR_DAYS)
            .max(prior)
    }

    /// The pace of new computers this user's history predicts, knowing that
    /// accounts come in two kinds: most at their own usual rate
    /// ([`Features::usual_new_computer_rate`]), and a few ([`ROAMER_SHARE`])
    /// whose work is reaching new computers ([`ROAMER_NEW_PER_DAY`]). Which
    /// kind this account is, is weighed by its baseline period's new
    /// computers and by those of the last 24 hours before this one (two
    /// Poisson counts under each pace). Days of a quiet baseline rule the
    /// roamer out, so a settled account is judged at its own rate; a young
    /// account, whose baseline is short, that keeps finding new computers is
    /// soon judged a roamer: weak history, weak evidence.
    #[inline]
    pub fn predicted_new_computer_rate(&self) -> f32 {
        let ordinary = self.usual_new_computer_rate();
        let roamer = ROAMER_NEW_PER_DAY;
        if roamer <= ordinary {
            return ordinary;
        }
        let today = self
            .user_new_computers_24h
            .saturating_sub(u32::from(self.is_new_device()));
        let baseline_days = self.user_baseline_s as f32 / DAY;
        let count = (self.user_baseline_new_computers + today) as f32;
        // log L(roamer) - log L(ordinary) of `count` new computers over the
        // baseline and the last day.
        // The SDK's own ln and exp: the same bits natively and in WebAssembly.
        let log_ratio = f64::from(count) * crate::stats::ln(f64::from(roamer / ordinary))
            - f64::from(roamer - ordinary) * f64::from(baseline_days + 1.0);
        let odds =
            f64::from(ROAMER_SHARE / (1.0 - ROAMER_SHARE)) * crate::stats::exp(log_ratio.min(80.0));
        let roamer_weight = (odds / (1.0 + odds)) as f32;
        ordinary + roamer_weight * (roamer - ordinary)
    }

    /// Decades of evidence in this user starting on a new computer: how much
    /// likelier that is from an intruder reaching `attack_per_day` new
    /// computers a day than from this user at the pace their history
    /// predicts, `log10(attack_per_day / predicted_new_computer_rate)`.
    /// Negative for a user who starts on new computers faster than that
    /// anyway.
    #[inline]
    pub fn new_computer_evidence(&self, attack_per_day: f32) -> f32 {
        crate::stats::log10(f64::from(
            attack_per_day / self.predicted_new_computer_rate(),
        )) as f32
    }

    /// True when the record names a source computer other than the one
    /// logged on to. A logon at the console names the computer itself,
    /// which says nothing about where the person came from.
    #[inline]
    pub fn has_remote_source(&self) -> bool {
        self.source_computer != 0 && self.source_computer != self.computer.wrapping_add(1)
    }

    /// The share of the user's sourced logons that came from this event's
    /// source, `n / (N + 2)`: its `n` logons from here out of `N` that named
    /// a source, as if two more had come from elsewhere.
    #[inline]
    pub fn source_share(&self) -> f32 {
        self.user_logins_from_source_before as f32 / (self.user_sourced_logins_before as f32 + 2.0)
    }

    /// True when the logon came from the computer the user made most of its
    /// sourced logons from (its desk, or the jump host it works on): a
    /// [`Features::source_share`] above one half.
    #[inline]
    pub fn is_from_own_desk(&self) -> bool {
        self.has_remote_source() && self.source_share() > 0.5
    }

    /// Decades of evidence in *where this logon came from*, as the user's
    /// own history tells. `u` is how likely the user is to log on from this
    /// source: `n / (N + 2)` for one they used `n` times out of `N` sourced
    /// logons, and their pace of new sources `(K + 1) / (N + 2)` (`K`
    /// distinct so far) for one they never used. An intruder works from
    /// the account's usual computers with probability
    /// `intruder_usual_share` (malware on the victim's own workstation) and
    /// from somewhere else otherwise (their foothold), so the evidence is
    /// `log10((q u + (1 - q)(1 - u)) / u)`: negative (down to `log10(q)`)
    /// from the one computer the user always works at, large from a
    /// computer new to an account that keeps to one or two, and small for
    /// an account that shows up from a different computer every other
    /// logon. Zero when the record names no remote source or the user has
    /// no sourced history yet.
    #[inline]
    pub fn source_evidence(&self, intruder_usual_share: f32) -> f32 {
        if !self.has_remote_source() || self.user_sourced_logins_before == 0 {
            return 0.0;
        }
        let u = if self.user_logins_from_source_before > 0 {
            self.source_share()
        } else {
            (self.user_sources_before as f32 + 1.0) / (self.user_sourced_logins_before as f32 + 2.0)
        }
        .clamp(f32::MIN_POSITIVE, 1.0);
        let q = intruder_usual_share.clamp(0.0, 1.0);
        let ratio = (q * u + (1.0 - q) * (1.0 - u)) / u;
        crate::stats::log10(f64::from(ratio.max(f32::MIN_POSITIVE))) as f32
    }

    /// [`Features::usual_new_users_per_day`] for a computer, as
    /// [`Features::usual_new_computer_rate`] does for a user: the same share
    /// of the users the computer already has is the prior and the floor.
    #[inline]
    pub fn usual_new_user_rate(&self) -> f32 {
        let prior = self.prior_new_per_known_per_day() * self.host_users_ever.max(1) as f32;
        self.usual_new_users_per_day(prior, PRIOR_DAYS).max(prior)
    }

    /// How many new destinations a day this event's source computer usually
    /// reaches: its baseline period's rate, shrunk toward
    /// [`PRIOR_NEW_PER_KNOWN_PER_DAY`] of the destinations it knows as
    /// [`Features::usual_new_computers_per_day`] does for a user, and never
    /// below that prior.
    #[inline]
    pub fn usual_new_destination_rate(&self) -> f32 {
        let prior = PRIOR_NEW_PER_KNOWN_PER_DAY * self.source_known_destinations.max(1) as f32;
        shrunk_rate(
            self.source_baseline_new_destinations,
            self.source_baseline_s,
            prior,
            PRIOR_DAYS,
        )
        .max(prior)
    }

    /// How many new users a day this computer usually gets, as
    /// [`Features::usual_new_computers_per_day`] does for users.
    #[inline]
    pub fn usual_new_users_per_day(&self, prior_per_day: f32, prior_days: f32) -> f32 {
        shrunk_rate(
            self.host_baseline_new_users,
            self.host_baseline_s,
            prior_per_day,
            prior_days,
        )
    }

    /// The pace [`Features::usual_new_computer_rate`] and
    /// [`Features::usual_new_user_rate`] assume and never go below:
    /// [`PRIOR_NEW_PER_KNOWN_PER_DAY`], or the population's pace when it is
    /// faster (in the first days after a first start, when every account
    /// is still finding computers it always had).
    #[inline]
    pub fn prior_new_per_known_per_day(&self) -> f32 {
        self.population_new_per_known_per_day()
            .map_or(PRIOR_NEW_PER_KNOWN_PER_DAY, |pace| {
                pace.max(PRIOR_NEW_PER_KNOWN_PER_DAY)
            })
    }

    /// The population's pace of new computers, per known computer per
    /// day, once measured.
    #[inline]
    pub fn population_new_per_known_per_day(&self) -> Option<f32> {
        (self.population_new_per_known_ppm > 0)
            .then_some(self.population_new_per_known_ppm as f32 * 1e-6)
    }

    /// New computers the user's history predicts in `days` days, as the
    /// `(shape, mean)` of a gamma-Poisson (negative binomial) count for
    /// [`crate::stats::negbin_tail`]: the judged history's new computers
    /// ([`Features::judged_history`])
    /// (`rare` ones only, if asked) plus a prior of [`PRIOR_DAYS`] days at
    /// the population's pace for a user who knows this many computers
    /// ([`PRIOR_NEW_PER_KNOWN_PER_DAY`] until the population has one; for
    /// rare ones, times the population's rare share). A short history
    /// leaves the rate uncertain (a small shape, a heavy tail), so little
    /// is surprising; a long one speaks for itself.
    #[inline]
    pub fn expected_new_computers(&self, days: f32, rare: bool) -> (f32, f32) {
        let pace = self
            .population_new_per_known_per_day()
            .unwrap_or(PRIOR_NEW_PER_KNOWN_PER_DAY);
        let mut prior_per_day = pace * self.user_known_computers.max(1) as f32;
        let history = self.judged_history();
        let mut seen = history.new_computers;
        if rare {
            prior_per_day *= self.population_rare_share();
            seen = history.rare_new_computers;
        }
        // The prior weighs PRIOR_DAYS at the population's pace: a gamma
        // with a small shape, so a few days of a busy history (a help desk
        // among other people's workstations) speak for themselves.
        let shape = seen as f32 + prior_per_day * PRIOR_DAYS;
        let per_day = shape / (history.days + PRIOR_DAYS);
        (shape, per_day * days)
    }

    /// What the user's history says of their new computers, as the rules
    /// that compare the last days with it judge them. Once the history
    /// period is at least as long as the 72 hours it leaves out (so that
    /// an intruder's own days do not become the account's normal), it is
    /// the history period. Before, it is the account's whole life after its
    /// first day, the last 72 hours included: a young account's recent days
    /// are all that shows its habit (a help desk's first week), and with
    /// so little history any surprise is weak evidence.
    #[inline]
    pub fn judged_history(&self) -> History {
        let recent_s = 3.0 * DAY;
        if self.user_history_s as f32 >= recent_s {
            return History {
                new_computers: self.user_history_new_computers,
                rare_new_computers: self.user_history_rare_new_computers,
                days: self.user_history_s as f32 / DAY,
            };
        }
        History {
            new_computers: self.user_history_new_computers + self.user_new_computers_72h,
            rare_new_computers: self.user_history_rare_new_computers
                + self.user_rare_new_computers_72h,
            days: (self.user_tenure_s as f32 - DAY).max(0.0) / DAY,
        }
    }

    /// The population's share of rarely used computers among new ones
    /// ([`DEFAULT_RARE_SHARE`] until measured).
    #[inline]
    pub fn population_rare_share(&self) -> f32 {
        if self.population_rare_share_ppm > 0 {
            self.population_rare_share_ppm as f32 * 1e-6
        } else {
            DEFAULT_RARE_SHARE
        }
    }

    /// The user's usual share of rarely used computers among their new
    /// ones: their judged history's ([`Features::judged_history`]), shrunk
    /// toward the population's as if `prior` more new computers had shown
    /// it.
    #[inline]
    pub fn usual_rare_share(&self, prior: f32) -> f32 {
        let history = self.judged_history();
        (history.rare_new_computers as f32 + prior * self.population_rare_share())
            / (history.new_computers as f32 + prior)
    }

    /// The share of the user's earlier logins that fell in this event's hour
    /// of day, or `None` before their first login.
    #[inline]
    pub fn hour_of_day_share(&self) -> Option<f32> {
        (self.user_logins_before > 0)
            .then(|| self.user_logins_at_hour_before as f32 / self.user_logins_before as f32)
    }
}

#[inline]
fn shrunk_rate(count: u32, seconds: u32, prior_per_day: f32, prior_days: f32) -> f32 {
    let days = seconds as f32 / DAY;
    let weight = days + prior_days;
    if weight <= 0.0 {
        return prior_per_day;
    }
    (count as f32 + prior_per_day * prior_days) / weight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FLAG_NEW_DEVICE_FOR_USER;

    /// A user new to a computer, knowing ten, with `baseline_new` new
    /// computers over `baseline_days` and `today` earlier new ones in the
    /// last 24 hours.
    fn roaming(baseline_days: u32, baseline_new: u32, today: u32) -> Features {
        Features {
            flags: FLAG_NEW_DEVICE_FOR_USER,
            user_known_computers: 10,
            user_baseline_s: baseline_days * 86_400,
            user_baseline_new_computers: baseline_new,
            user_new_computers_24h: today + 1,
            ..Default::default()
        }
    }

    #[test]
    fn weak_history_that_keeps_finding_computers_is_judged_a_roamer() {
        // A settled account, a week without new computers: five new today
        // still count at its own rate.
        let settled = roaming(7, 0, 5);
        let own = settled.usual_new_computer_rate();
        assert!(settled.predicted_new_computer_rate() < 1.01 * own);
        // Its second day: five new computers before this one, no baseline
        // yet: most likely an account whose work this is.
        let young = roaming(0, 0, 5);
        assert!(young.predicted_new_computer_rate() > 0.9 * ROAMER_NEW_PER_DAY);
        assert!(young.new_computer_evidence(24.0) < 0.55);
        // The first new computer of a young account is still judged at the
        // ordinary pace: nothing says otherwise yet.
        let first = roaming(0, 0, 0);
        assert!(first.predicted_new_computer_rate() < 0.2 * ROAMER_NEW_PER_DAY);
        // A busy baseline is a roamer's however quiet the last day.
        let desk = roaming(5, 40, 0);
        assert!(desk.predicted_new_computer_rate() >= desk.usual_new_computer_rate());
    }

    #[test]
    fn a_young_account_is_judged_by_its_whole_life_after_its_first_day() {
        // Three days old: no history period yet, ten new computers (all of
        // them rarely used) in the last 72 hours.
        let young = Features {
            user_tenure_s: 3 * 86_400,
            user_new_computers_72h: 10,
            user_rare_new_computers_72h: 10,
            user_known_computers: 15,
            ..Default::default()
        };
        let history = young.judged_history();
        assert_eq!(
            (history.new_computers, history.rare_new_computers),
            (10, 10)
        );
        assert_eq!(history.days, 2.0);
        assert!(young.usual_rare_share(2.0) > 0.8);
        // Ten days of history: the last 72 hours are left out of it.
        let settled = Features {
            user_history_s: 10 * 86_400,
            user_history_new_computers: 2,
            user_tenure_s: 14 * 86_400,
            ..young
        };
        let history = settled.judged_history();
        assert_eq!((history.new_computers, history.rare_new_computers), (2, 0));
        assert!(settled.usual_rare_share(2.0) < 0.2);
    }

    #[test]
    fn usual_rates_shrink_toward_the_prior() {
        let f = Features::default();
        assert_eq!(f.usual_new_computers_per_day(0.5, 3.0), 0.5);
        // Ten days with two new computers, prior 0.5/day over 2 days: 3 / 12.
        let f = Features {
            user_baseline_new_computers: 2,
            user_baseline_s: 10 * 86_400,
            ..Features::default()
        };
        assert!((f.usual_new_computers_per_day(0.5, 2.0) - 0.25).abs() < 1e-6);
        assert_eq!(Features::default().usual_new_users_per_day(0.0, 0.0), 0.0);
        assert_eq!(Features::default().hour_of_day_share(), None);
        let f = Features {
            user_logins_before: 40,
            user_logins_at_hour_before: 10,
            ..Features::default()
        };
        assert_eq!(f.hour_of_day_share(), Some(0.25));
    }
}
