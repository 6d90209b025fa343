//! The statistical model behind `authpulse gen`: who uses which computers over
//! the whole nine months, and when each user/computer pair is first used.
//!
//! Fitted to published and measured figures of the 2014 LANL set
//! (`time,user,computer`, 708M events, 11,362 users, 22,284 computers):
//!
//! * **Computers per user** (over 9 months): median 22, mean ~27.5, p90 ~44,
//!   p99 ~148. Model: lognormal body (median 21, sigma 0.45) with 5% of users from
//!   a Pareto tail (x_m 60, alpha 2), plus one service-like account per 4,000
//!   users with 1,000-2,500 computers.
//! * **Users per computer**: median 3, ~24% with exactly one user, ~77% with at
//!   most five, ~50 hubs used by 20-84% of all users. Model: 50 hubs with
//!   popularity spread over 0.20..0.84; a user joins each hub with probability
//!   popularity x (their degree / mean degree), capped at 1; the rest of their
//!   budget is matched to non-hub computers by a configuration model whose
//!   computer side is `1 + NegBin(r, p)` with P(1) = 0.24 and the mean the user
//!   side needs.
//! * **Neighbourhoods**: users and computers have a place in the organisation;
//!   most of an ordinary user's non-hub stubs are matched near their place,
//!   so the accounts that share one computer tend to share others (teams),
//!   and a user's next new computer is usually one their neighbours use.
//! * **Discovery**: the share of all pairs in use after day 1 / 30 / 58 is
//!   16.2% / 35.5% / 43.5%, and 100% at the end of the ninth month. Each pair's
//!   first use is drawn from the piecewise-linear curve through those points, so
//!   after the first month ~830 new pairs appear per day at full scale.
//! * **Daily rhythm**: each account keeps its own hours ([`Rhythm`]). Most
//!   work office hours and are almost never on at night; a few work nights
//!   (shifts), and service-like accounts run around the clock. Together they
//!   make the set's daily cycle (quiet nights at a quarter of the afternoon
//!   peak), but an account's night logon is unusual for that account.

use rand::Rng;

use crate::Network;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, LogNormal, Pareto};

/// Length of the modelled period (the LANL set covers ~9 months).
pub const PERIOD_DAYS: f64 = 270.0;

/// Fraction of all pairs discovered by day `d` (the points of the fitted curve).
pub const DISCOVERY_CURVE: [(f64, f64); 5] = [
    (0.0, 0.0),
    (1.0, 0.162),
    (30.0, 0.355),
    (58.0, 0.435),
    (PERIOD_DAYS, 1.0),
];

/// Users and computers of the real set, the defaults.
pub const LANL_USERS: u32 = 11_362;
pub const LANL_COMPUTERS: u32 = 22_284;
/// Mean events per day of the real set.
pub const LANL_EVENTS_PER_DAY: f64 = 2_590_000.0;

const HUBS: u32 = 50;
const HUB_MIN_SHARE: f64 = 0.20;
const HUB_MAX_SHARE: f64 = 0.84;
/// Nominal shares overshoot on purpose: light users are capped by their small
/// budgets, so realised hub shares come out below nominal (fitted, see docs).
const HUB_BOOST: f64 = 1.3;
/// A user's neighbourhood (team): about this many users either side of
/// them in the organisation have most of their non-hub computers nearby.
const TEAM_USERS: f64 = 25.0;
/// Share of a user's non-hub computers from their neighbourhood; the rest
/// are anywhere.
const TEAM_SHARE: f64 = 0.85;
/// Non-hub computers with exactly one user (at the LANL fit).
const SINGLE_USER_SHARE: f64 = 0.24;

/// A user's computers, in the order they are first used, with the second (from
/// the start of the period) of each first use.
pub struct UserPairs {
    pub computers: Vec<u32>,
    pub first_use: Vec<u32>,
}

pub struct Graph {
    pub users: u32,
    pub computers: u32,
    pub hubs: u32,
    /// Per user.
    pub pairs: Vec<UserPairs>,
    /// Per user: relative activity (events are drawn in proportion).
    pub activity: Vec<f64>,
    /// Per user: the hours they keep.
    pub rhythms: Vec<Rhythm>,
}

/// Inverse of the discovery curve: the day by which fraction `q` of pairs is in use.
fn discovery_day(q: f64) -> f64 {
    for w in DISCOVERY_CURVE.windows(2) {
        let ((d0, f0), (d1, f1)) = (w[0], w[1]);
        if q <= f1 {
            return d0 + (q - f0) / (f1 - f0) * (d1 - d0);
        }
    }
    PERIOD_DAYS
}

/// An account's hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rhythm {
    /// Office hours, 8:00 to 18:00 most, almost never at night.
    Office,
    /// Night shifts, 20:00 to 6:00.
    Shift,
    /// Around the clock (service-like accounts, machines).
    Steady,
}

impl Rhythm {
    /// Its hourly weights (summing to 1).
    pub fn hour_weights(self) -> [f64; 24] {
        let mut w = [0.0; 24];
        for (h, slot) in w.iter_mut().enumerate() {
            let h = h as f64;
            *slot = match self {
                Rhythm::Office => {
                    let x = (h - 12.5) / 3.2;
                    0.012 + (-x * x * x * x / 3.0).exp()
                }
                Rhythm::Shift => {
                    // Peaks at 1:00; the distance to it on the clock face.
                    let d = (h - 1.0).abs().min(24.0 - (h - 1.0).abs()) / 3.5;
                    0.02 + (-d * d).exp()
                }
                Rhythm::Steady => 1.0,
            };
        }
        let sum: f64 = w.iter().sum();
        w.map(|x| x / sum)
    }

    /// Shares of ordinary accounts (service accounts are always steady).
    const SHARES: [(Rhythm, f64); 3] = [
        (Rhythm::Office, 0.86),
        (Rhythm::Shift, 0.04),
        (Rhythm::Steady, 0.10),
    ];

    fn draw<R: Rng>(rng: &mut R) -> Rhythm {
        let mut x: f64 = rng.random();
        for (rhythm, share) in Rhythm::SHARES {
            if x < share {
                return rhythm;
            }
            x -= share;
        }
        Rhythm::Office
    }
}

/// Hourly weights of the daily cycle (quiet nights, busy office hours): the
/// shape the accounts' rhythms add up to, and attackers' working hours.
pub fn hour_weights() -> [f64; 24] {
    let mut w = [0.0; 24];
    for (h, slot) in w.iter_mut().enumerate() {
        let x = (h as f64 - 13.0) / 4.0;
        *slot = 0.25 + 0.75 * (-x * x).exp();
    }
    w
}

/// Draws a second of the day following the daily cycle.
pub fn second_of_day<R: Rng>(
    rng: &mut R,
    hours: &rand_distr::weighted::WeightedAliasIndex<f64>,
) -> u32 {
    let hour = hours.sample(rng) as u32;
    hour * 3600 + rng.random_range(0..3600)
}

impl Graph {
    pub fn build<R: Rng>(users: u32, computers: u32, network: Network, rng: &mut R) -> Graph {
        let hubs = HUBS.min(computers / 20).max(1).min(computers);
        let non_hubs = computers - hubs;

        // Budget of distinct computers per user over the whole period.
        let body = LogNormal::new((21.0 * network.density).ln(), 0.45).expect("valid lognormal");
        let tail = Pareto::new(60.0 * network.density, 2.0).expect("valid pareto");
        let service_accounts = (users / 4000).max(1).min(users);
        let max_degree = f64::from(computers.max(1));
        let degree: Vec<u32> = (0..users)
            .map(|u| {
                let k = if u < service_accounts {
                    rng.random_range(1000.0..2500.0)
                } else if rng.random_bool(0.05) {
                    tail.sample(rng)
                } else {
                    body.sample(rng)
                };
                k.round().clamp(1.0, max_degree) as u32
            })
            .collect();

        // Hubs: popularity spread over 20%..84%, denser at the low end. A user
        // joins hub h with probability share_h * (their degree / mean degree),
        // capped at 1, so light users touch a few hubs and heavy users most.
        let shares: Vec<f64> = (0..hubs)
            .map(|h| {
                let x = if hubs > 1 {
                    f64::from(h) / f64::from(hubs - 1)
                } else {
                    0.0
                };
                HUB_MIN_SHARE + (HUB_MAX_SHARE - HUB_MIN_SHARE) * x * x
            })
            .collect();
        let ordinary = &degree[service_accounts as usize..];
        let mean_degree =
            ordinary.iter().map(|&k| f64::from(k)).sum::<f64>() / ordinary.len().max(1) as f64;

        let mut sets: Vec<Vec<u32>> = Vec::with_capacity(users as usize);
        let mut non_hub_stubs: Vec<u32> = Vec::new();
        for (u, &k) in degree.iter().enumerate() {
            // Hubs take the same part of a budget whatever the density.
            let scale = f64::from(k) / mean_degree * HUB_BOOST * network.density;
            let mut set: Vec<u32> = (0..hubs)
                .filter(|&h| rng.random_bool((shares[h as usize] * scale).min(1.0)))
                .collect();
            set.truncate(k as usize);
            let rest = k as usize - set.len();
            non_hub_stubs.extend(std::iter::repeat_n(u as u32, rest));
            sets.push(set);
        }

        if non_hubs > 0 && !non_hub_stubs.is_empty() {
            // Computer side of the configuration model: 1 + NegBin(r, p) users
            // each, with P(exactly one user) = 24% and the mean set by the user
            // side's stubs. One guaranteed stub per computer is listed first so
            // that every computer gets a user when there are enough user stubs.
            let mean_extra = (non_hub_stubs.len() as f64 / f64::from(non_hubs) - 1.0).max(0.05);
            let single_user_share = (SINGLE_USER_SHARE / network.sharing).clamp(0.02, 0.9);
            let (r, p) = negbin_with_zero_share(single_user_share, mean_extra);
            let extra = rand_distr::Gamma::new(r, (1.0 - p) / p).expect("valid gamma");
            let first: Vec<u32> = (hubs..computers).collect();
            let mut rest: Vec<u32> = Vec::new();
            for c in hubs..computers {
                let lambda: f64 = extra.sample(rng);
                let n = rand_distr::Poisson::new(lambda.max(1e-9))
                    .map(|p| p.sample(rng) as u32)
                    .unwrap_or(0);
                rest.extend(std::iter::repeat_n(c, n as usize));
            }
            // Neighbourhoods: users and computers get a place in the
            // organisation (a position in [0, 1)); most of a user's stubs are
            // keyed near their place, the rest anywhere, and stubs are matched
            // in key order. Degrees stay exactly as drawn, and a user's
            // computers are mostly the ones their neighbours (their team) use.
            let user_place: Vec<f64> = (0..users).map(|_| rng.random()).collect();
            let spread = TEAM_USERS / f64::from(users.max(1));
            let jitter = rand_distr::Normal::new(0.0, spread).expect("valid normal");
            let mut user_keys: Vec<(f64, u32)> = non_hub_stubs
                .iter()
                .map(|&u| {
                    // Heavy users and service accounts reach further afield.
                    let local = TEAM_SHARE * (60.0 / f64::from(degree[u as usize])).min(1.0);
                    let key = if u >= service_accounts && rng.random_bool(local) {
                        (user_place[u as usize] + jitter.sample(rng)).rem_euclid(1.0)
                    } else {
                        rng.random()
                    };
                    (key, u)
                })
                .collect();
            user_keys.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            // More computer stubs than user stubs: every computer keeps its
            // guaranteed one, and the surplus of the rest is dropped.
            rest.shuffle(rng);
            rest.truncate(user_keys.len().saturating_sub(first.len()));
            let computer_place: Vec<f64> = (0..computers).map(|_| rng.random()).collect();
            let mut computer_keys: Vec<(f64, u32)> = first
                .into_iter()
                .chain(rest)
                .map(|c| {
                    // A computer's stubs spread a little, so that they meet
                    // different users.
                    let key = computer_place[c as usize] + jitter.sample(rng) / 2.0;
                    (key.rem_euclid(1.0), c)
                })
                .collect();
            computer_keys.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
            let n = computer_keys.len();
            for (i, &(_, u)) in user_keys.iter().enumerate() {
                // The same quantile of the computer stubs (the same stub
                // when there are as many; popular places absorb a surplus).
                let c = computer_keys[i * n / user_keys.len()].1;
                sets[u as usize].push(c);
            }
        }

        let rhythms: Vec<Rhythm> = (0..users)
            .map(|u| {
                if u < service_accounts {
                    Rhythm::Steady
                } else {
                    Rhythm::draw(rng)
                }
            })
            .collect();
        let period_s = PERIOD_DAYS * 86_400.0;
        let alias = |rhythm: Rhythm| {
            rand_distr::weighted::WeightedAliasIndex::new(rhythm.hour_weights().to_vec())
                .expect("valid weights")
        };
        let hours_of = [
            alias(Rhythm::Office),
            alias(Rhythm::Shift),
            alias(Rhythm::Steady),
        ];
        let mut pairs = Vec::with_capacity(users as usize);
        for (set, &rhythm) in sets.iter_mut().zip(&rhythms) {
            let hours = &hours_of[rhythm as usize];
            set.sort_unstable();
            set.dedup();
            let mut timed: Vec<(u32, u32)> = set
                .iter()
                .map(|&c| {
                    let day = discovery_day(rng.random::<f64>()).min(PERIOD_DAYS - 1.0);
                    let t = (day.floor() * 86_400.0) as u32 + second_of_day(rng, hours);
                    (t.min(period_s as u32 - 1), c)
                })
                .collect();
            timed.sort_unstable();
            pairs.push(UserPairs {
                computers: timed.iter().map(|p| p.1).collect(),
                first_use: timed.iter().map(|p| p.0).collect(),
            });
        }

        // Activity: busier users have more computers, with individual spread.
        let spread = LogNormal::new(0.0, 0.5).expect("valid lognormal");
        let activity = degree
            .iter()
            .map(|&k| f64::from(k).powf(0.9) * spread.sample(rng))
            .collect();

        Graph {
            users,
            computers,
            hubs,
            pairs,
            activity,
            rhythms,
        }
    }
}

/// Negative-binomial `(r, p)` (failures before the r-th success) with
/// `P(0) = p^r = zero_share` and mean `r(1-p)/p = mean`, by bisection on `r`
/// (the mean falls as `r` grows with `P(0)` held).
fn negbin_with_zero_share(zero_share: f64, mean: f64) -> (f64, f64) {
    let mean_of = |r: f64| {
        let p = zero_share.powf(1.0 / r);
        r * (1.0 - p) / p
    };
    let (mut lo, mut hi): (f64, f64) = (1e-3, 1e3);
    for _ in 0..100 {
        let mid = (lo * hi).sqrt();
        if mean_of(mid) > mean {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let r = (lo * hi).sqrt();
    (r, zero_share.powf(1.0 / r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negbin_calibration() {
        let (r, p) = negbin_with_zero_share(0.24, 2.39);
        assert!((p.powf(r) - 0.24).abs() < 1e-9);
        assert!((r * (1.0 - p) / p - 2.39).abs() < 1e-6);
        assert!((r - 1.5).abs() < 0.05, "{r}");
    }

    #[test]
    fn discovery_curve_inverts() {
        assert_eq!(discovery_day(0.0), 0.0);
        assert!((discovery_day(0.162) - 1.0).abs() < 1e-9);
        assert!((discovery_day(0.355) - 30.0).abs() < 1e-9);
        assert!((discovery_day(1.0) - PERIOD_DAYS).abs() < 1e-9);
    }
}
