//! # AuthPulse data generator
//!
//! LANL-format authentication data (`time,user,computer`, sorted by time) that
//! looks like the real set, deterministic for a seed: what `authpulse gen`
//! writes and what `eval`, the demo, the benchmarks and the tests run on. The
//! statistical model is in [`model`], the labelled campaigns hidden in the data
//! in [`campaigns`]; this file turns them into lines.
//!
//! Each day gets its share of events (weekends 0.6x weekdays); each event falls
//! on a second drawn from the daily cycle. A pair's first use is an event at its
//! discovery time; every other event picks a user by activity and the hours
//! they keep, and one of the computers that user has already used, favouring
//! the ones first used earliest (their own workstation, the domain
//! controllers). 0.5% of lines are
//! duplicates: natural same-second repeats, topped up with deliberate copies.
//! Campaigns ([`CampaignPlan`]) are merged into the stream at their seconds,
//! and reported as ground truth ([`Campaign`]). The same data can be written
//! as the full LANL record ([`record`]): the same logons, with where each
//! came from and how, and the failed ones besides.

pub mod campaigns;
pub mod model;
pub mod record;

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_distr::Distribution;
use rand_distr::weighted::WeightedAliasIndex;
use rand_pcg::Pcg64Mcg;
use serde::Serialize;

pub use campaigns::{Campaign, CampaignPlan, Kind};
pub use model::{Graph, LANL_COMPUTERS, LANL_EVENTS_PER_DAY, LANL_USERS, PERIOD_DAYS};
pub use record::Record;

/// Share of duplicate lines, as in the real set. Busy accounts log on to the
/// same computer twice within a second now and then (more so in denser data);
/// the generator counts those and writes deliberate copies to make up the rest.
pub const DUPLICATE_SHARE: f64 = 0.005;
const WEEKEND_FACTOR: f64 = 0.6;
pub(crate) const DAY: u32 = 86_400;

#[derive(Clone, Debug)]
pub struct GeneratorConfig {
    pub users: u32,
    pub computers: u32,
    pub days: u32,
    /// Total lines; `None` means the real set's rate scaled to `users`.
    pub events: Option<u64>,
    pub seed: u64,
    /// Labelled campaigns to hide in the data.
    pub campaigns: CampaignPlan,
    /// How dense the network is and how much of it is shared; 1.0 and 1.0
    /// are the LANL fit.
    pub network: Network,
}

/// Variations of the organisation around the LANL fit, so that detection
/// can be measured on networks unlike the one its priors were fitted to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Network {
    /// Scales how many computers each account uses over the period (the
    /// degree distribution's body and tail); 0.5 is a sparser network, 2.0
    /// a denser one.
    pub density: f64,
    /// Divides the share of non-hub computers that have one user (24% at
    /// the fit): more sharing, fewer single-user computers and more
    /// computers used by many accounts.
    pub sharing: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            density: 1.0,
            sharing: 1.0,
        }
    }
}

impl Network {
    /// The range each factor may take: the model draws sensible networks
    /// within it.
    pub const FACTOR_RANGE: std::ops::RangeInclusive<f64> = 0.1..=4.0;
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            users: LANL_USERS,
            computers: LANL_COMPUTERS,
            days: 1,
            events: None,
            seed: 1,
            campaigns: CampaignPlan::default(),
            network: Network::default(),
        }
    }
}

impl GeneratorConfig {
    /// Events per weekday and weekend day.
    fn daily_events(&self) -> Vec<u64> {
        let weights: Vec<f64> = (0..self.days)
            .map(|d| if d % 7 >= 5 { WEEKEND_FACTOR } else { 1.0 })
            .collect();
        let total = self.events.unwrap_or_else(|| {
            // 2.59M/day is the 9-month mean, weekends included.
            let per_day = LANL_EVENTS_PER_DAY * f64::from(self.users) / f64::from(LANL_USERS);
            let mean_weight = (5.0 + 2.0 * WEEKEND_FACTOR) / 7.0;
            (per_day / mean_weight * weights.iter().sum::<f64>()) as u64
        });
        let sum: f64 = weights.iter().sum();
        let mut out: Vec<u64> = weights
            .iter()
            .map(|w| (total as f64 * w / sum) as u64)
            .collect();
        let assigned: u64 = out.iter().sum();
        if let Some(last) = out.last_mut() {
            *last += total - assigned;
        }
        out
    }
}

/// What was written.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenerateStats {
    pub lines: u64,
    pub duplicates: u64,
    pub first_uses: u64,
    /// Lines written for campaigns.
    pub campaign_events: u64,
    /// Failed logons written (the full record only).
    pub failures: u64,
}

pub struct Generator {
    config: GeneratorConfig,
    graph: Graph,
    planned: campaigns::Planned,
}

impl Generator {
    pub fn new(config: GeneratorConfig) -> Generator {
        let mut rng = Pcg64Mcg::seed_from_u64(config.seed);
        let graph = Graph::build(
            config.users.max(1),
            config.computers.max(1),
            config.network,
            &mut rng,
        );
        let planned = campaigns::plan(&graph, config.days, &config.campaigns, &mut rng);
        Generator {
            config,
            graph,
            planned,
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The campaigns hidden in the data (ground truth), with the accounts
    /// named as `record` names them (the full record adds the domain).
    pub fn campaigns(&self, record: Record) -> Vec<Campaign> {
        let mut campaigns = self.planned.campaigns.clone();
        if record == Record::Full {
            for c in &mut campaigns {
                for user in &mut c.users {
                    *user = format!("{user}@{}", record::DOMAIN);
                }
            }
        }
        campaigns
    }

    /// Writes the data set as `time,user,computer` lines. `progress(lines)`
    /// is called every ~1M lines.
    pub fn write<W: Write>(
        &self,
        out: &mut W,
        progress: impl FnMut(u64),
    ) -> io::Result<GenerateStats> {
        self.write_as(out, Record::Lanl, progress)
    }

    /// Writes the data set as `record` says. The logons are the same either
    /// way; the full record adds how each was made and the failed ones.
    pub fn write_as<W: Write>(
        &self,
        out: &mut W,
        record: Record,
        mut progress: impl FnMut(u64),
    ) -> io::Result<GenerateStats> {
        let mut rng = Pcg64Mcg::seed_from_u64(self.config.seed ^ 0x9e37_79b9_7f4a_7c15);
        // Mistyped passwords draw from their own stream, so that both
        // records hold the same logons.
        let mut typos = Pcg64Mcg::seed_from_u64(self.config.seed ^ 0x7e57_0f7a_11ed_0001);
        let full = record == Record::Full;
        let homes = record::Homes::of(&self.graph, self.planned.users, &self.planned.homes);
        let graph = &self.graph;
        let seed = self.config.seed;
        // Campaigns may bring accounts and computers of their own.
        let user_names: Vec<Vec<u8>> = (0..self.planned.users)
            .map(|u| user_name(u).into_bytes())
            .collect();
        let computer_names: Vec<Vec<u8>> = (0..self.planned.computers)
            .map(|c| computer_name(c).into_bytes())
            .collect();
        let campaign_events = &self.planned.events;
        // Who is on depends on the hour: each account's activity times its
        // rhythm's weight of that hour; the hours' totals are the day's cycle.
        let rhythm_weights = [
            model::Rhythm::Office.hour_weights(),
            model::Rhythm::Shift.hour_weights(),
            model::Rhythm::Steady.hour_weights(),
        ];
        let weight = |u: usize, hour: usize| {
            graph.activity[u] * rhythm_weights[graph.rhythms[u] as usize][hour]
        };
        let activity: Vec<WeightedAliasIndex<f64>> = (0..24)
            .map(|hour| {
                let weights = (0..graph.activity.len()).map(|u| weight(u, hour)).collect();
                WeightedAliasIndex::new(weights).expect("positive activity weights")
            })
            .collect();
        let cycle: Vec<f64> = (0..24)
            .map(|hour| (0..graph.activity.len()).map(|u| weight(u, hour)).sum())
            .collect();
        let hours = WeightedAliasIndex::new(cycle).expect("valid weights");

        // First uses within the generated days, in time order.
        let horizon = self.config.days.saturating_mul(DAY);
        let mut first_uses: Vec<(u32, u32)> = graph
            .pairs
            .iter()
            .enumerate()
            .flat_map(|(u, p)| {
                p.first_use
                    .iter()
                    .filter(|&&t| t < horizon)
                    .map(move |&t| (t, u as u32))
            })
            .collect();
        first_uses.sort_unstable();
        let mut discovered = vec![0u32; graph.users as usize];
        // Users with at least one computer so far: the fallback when the activity
        // draw keeps hitting users who have not appeared yet (early on day 1).
        let mut active: Vec<u32> = Vec::new();

        let mut stats = GenerateStats::default();
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut next_first = 0usize;
        let mut next_campaign = 0usize;
        let mut per_second = vec![0u32; DAY as usize];
        let mut next_report = 1u64 << 20;
        let mut time_text = itoa::Buffer::new();
        let mut this_second: rustc_hash::FxHashSet<u64> = Default::default();

        for (day, &day_events) in self.config.daily_events().iter().enumerate() {
            let day_start = day as u32 * DAY;
            let day_end = day_start + DAY;
            let firsts_today =
                first_uses[next_first..].partition_point(|&(t, _)| t < day_end) as u64;
            let background = day_events.saturating_sub(firsts_today);
            per_second.fill(0);
            for _ in 0..background {
                per_second[model::second_of_day(&mut rng, &hours) as usize] += 1;
            }
            for (sec, &count) in per_second.iter().enumerate() {
                let t = day_start + sec as u32;
                let time = time_text.format(u64::from(t) + 1).as_bytes().to_vec();
                this_second.clear();
                // Writes a logon (and a mistyped attempt before it, now and
                // then); false when the record has no line for it (a failed
                // logon in `time,user,computer`).
                let mut emit = |buf: &mut Vec<u8>,
                                rng: &mut Pcg64Mcg,
                                u: u32,
                                c: u32,
                                how: Option<record::Means>,
                                stats: &mut GenerateStats|
                 -> bool {
                    let means = match how {
                        Some(m) if !full && m.failed => return false,
                        _ if !full => None,
                        Some(m) => Some(m),
                        None => Some(record::background(graph, &homes, seed, u, c)),
                    };
                    let failed = means.is_some_and(|m| m.failed);
                    // A natural repeat within the second counts as a duplicate;
                    // deliberate copies top the share up to DUPLICATE_SHARE.
                    if !failed && !this_second.insert((u64::from(u) << 32) | u64::from(c)) {
                        stats.duplicates += 1;
                    }
                    // Failed logons are no duplicates' business: the same
                    // logons get the same copies in either record.
                    let logons = stats.lines - stats.failures;
                    let behind = (stats.duplicates as f64) < DUPLICATE_SHARE * logons as f64;
                    let copies = if !failed && behind && rng.random_bool(0.02) {
                        2
                    } else {
                        1
                    };
                    let Some(means) = means else {
                        for _ in 0..copies {
                            buf.extend_from_slice(&time);
                            buf.push(b',');
                            buf.extend_from_slice(&user_names[u as usize]);
                            buf.push(b',');
                            buf.extend_from_slice(&computer_names[c as usize]);
                            buf.push(b'\n');
                        }
                        stats.lines += copies;
                        stats.duplicates += copies - 1;
                        return true;
                    };
                    let source = match means.origin {
                        record::Origin::Home => homes.get(u).unwrap_or(c),
                        record::Origin::Computer(s) => s,
                        record::Origin::Itself => c,
                    };
                    let line = |buf: &mut Vec<u8>, means: &record::Means| {
                        record::write_line(
                            buf,
                            &time,
                            &user_names[u as usize],
                            &computer_names[source as usize],
                            &computer_names[c as usize],
                            means,
                        );
                    };
                    if how.is_none()
                        && record::may_mistype(&means)
                        && typos.random_bool(record::TYPO_SHARE)
                    {
                        line(
                            buf,
                            &record::Means {
                                failed: true,
                                ..means
                            },
                        );
                        stats.lines += 1;
                        stats.failures += 1;
                    }
                    for _ in 0..copies {
                        line(buf, &means);
                    }
                    stats.lines += copies;
                    stats.duplicates += copies - 1;
                    stats.failures += if failed { copies } else { 0 };
                    true
                };
                while next_first < first_uses.len() && first_uses[next_first].0 == t {
                    let u = first_uses[next_first].1;
                    let c = graph.pairs[u as usize].computers[discovered[u as usize] as usize];
                    discovered[u as usize] += 1;
                    if discovered[u as usize] == 1 {
                        active.push(u);
                    }
                    emit(&mut buf, &mut rng, u, c, None, &mut stats);
                    stats.first_uses += 1;
                    next_first += 1;
                }
                while next_campaign < campaign_events.len() && campaign_events[next_campaign].0 == t
                {
                    let (_, u, c, how) = campaign_events[next_campaign];
                    if emit(&mut buf, &mut rng, u, c, Some(how), &mut stats) {
                        stats.campaign_events += 1;
                    }
                    next_campaign += 1;
                }
                for _ in 0..count {
                    if active.is_empty() {
                        break;
                    }
                    // Users with nothing discovered yet cannot log on: redraw a
                    // few times, then take any user who has appeared.
                    let activity = &activity[sec / 3600];
                    let mut u = activity.sample(&mut rng) as u32;
                    for _ in 0..8 {
                        if discovered[u as usize] > 0 {
                            break;
                        }
                        u = activity.sample(&mut rng) as u32;
                    }
                    if discovered[u as usize] == 0 {
                        u = active[rng.random_range(0..active.len())];
                    }
                    let known = discovered[u as usize];
                    // Cubing skews towards the computers first used earliest.
                    let x: f64 = rng.random();
                    let i = ((f64::from(known) * x * x * x) as u32).min(known - 1);
                    let c = graph.pairs[u as usize].computers[i as usize];
                    emit(&mut buf, &mut rng, u, c, None, &mut stats);
                }
                if buf.len() >= (1 << 20) - 4096 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
                if stats.lines >= next_report {
                    progress(stats.lines);
                    next_report = stats.lines + (1 << 20);
                }
            }
        }
        out.write_all(&buf)?;
        out.flush()?;
        progress(stats.lines);
        Ok(stats)
    }
}

/// The name of user id `u` (`U1` for 0).
pub fn user_name(u: u32) -> String {
    format!("U{}", u + 1)
}

/// The name of computer id `c` (`C1` for 0).
pub fn computer_name(c: u32) -> String {
    format!("C{}", c + 1)
}

/// Statistics of the modelled nine months (the graph), set against the real
/// set's figures. Printed by `gen --report`, checked by tests.
#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub users: u32,
    pub computers: u32,
    pub pairs: u64,
    pub computers_per_user: Quantiles,
    pub users_per_computer_median: f64,
    pub computers_with_one_user: f64,
    pub computers_with_at_most_five_users: f64,
    /// Computers used by at least 20% of users, and the largest share.
    pub hubs_over_20pct: u32,
    pub max_hub_share: f64,
    /// Share of pairs in use after day 1, 30 and 58.
    pub discovered_day_1: f64,
    pub discovered_day_30: f64,
    pub discovered_day_58: f64,
    /// Mean new pairs per day from day 30 to the end, scaled to the real set's users.
    pub new_pairs_per_day_after_month_1: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quantiles {
    pub median: f64,
    pub mean: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    pub fn of(mut values: Vec<f64>) -> Quantiles {
        values.sort_by(f64::total_cmp);
        let q = |p: f64| -> f64 {
            if values.is_empty() {
                return 0.0;
            }
            values[((values.len() - 1) as f64 * p).round() as usize]
        };
        Quantiles {
            median: q(0.5),
            mean: values.iter().sum::<f64>() / values.len().max(1) as f64,
            p90: q(0.9),
            p99: q(0.99),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}

impl ModelReport {
    pub fn of(graph: &Graph) -> ModelReport {
        let degrees: Vec<f64> = graph
            .pairs
            .iter()
            .map(|p| p.computers.len() as f64)
            .collect();
        let mut users_per_computer = vec![0u32; graph.computers as usize];
        let mut times: Vec<u32> = Vec::new();
        for p in &graph.pairs {
            for &c in &p.computers {
                users_per_computer[c as usize] += 1;
            }
            times.extend_from_slice(&p.first_use);
        }
        let used: Vec<f64> = users_per_computer
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| f64::from(n))
            .collect();
        let n_used = used.len().max(1) as f64;
        let pairs = times.len() as u64;
        times.sort_unstable();
        let by_day = |d: u32| times.partition_point(|&t| t < d * DAY) as f64 / pairs.max(1) as f64;
        let after_month = pairs as f64 * (1.0 - by_day(30)) / (PERIOD_DAYS - 30.0);
        let users = f64::from(graph.users);
        ModelReport {
            users: graph.users,
            computers: graph.computers,
            pairs,
            computers_per_user: Quantiles::of(degrees),
            users_per_computer_median: Quantiles::of(used.clone()).median,
            computers_with_one_user: used.iter().filter(|&&n| n == 1.0).count() as f64 / n_used,
            computers_with_at_most_five_users: used.iter().filter(|&&n| n <= 5.0).count() as f64
                / n_used,
            hubs_over_20pct: used.iter().filter(|&&n| n >= 0.2 * users).count() as u32,
            max_hub_share: used.iter().copied().fold(0.0, f64::max) / users,
            discovered_day_1: by_day(1),
            discovered_day_30: by_day(30),
            discovered_day_58: by_day(58),
            new_pairs_per_day_after_month_1: after_month * f64::from(LANL_USERS) / users,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modelled nine months match the published LANL figures.
    #[test]
    fn model_fits_the_lanl_statistics() {
        let generator = Generator::new(GeneratorConfig::default());
        let r = ModelReport::of(generator.graph());
        let near = |value: f64, target: f64, tolerance: f64| (value - target).abs() <= tolerance;
        let cpu = &r.computers_per_user;
        assert!(near(cpu.median, 22.0, 2.0), "{r:?}");
        assert!(near(cpu.mean, 27.5, 2.5), "{r:?}");
        assert!(near(cpu.p90, 44.0, 4.0), "{r:?}");
        assert!(near(cpu.p99, 148.0, 20.0), "{r:?}");
        assert!(
            cpu.max >= 1000.0,
            "service-like accounts reach thousands: {r:?}"
        );
        assert_eq!(r.users_per_computer_median, 3.0, "{r:?}");
        assert!(near(r.computers_with_one_user, 0.24, 0.03), "{r:?}");
        assert!(
            near(r.computers_with_at_most_five_users, 0.77, 0.05),
            "{r:?}"
        );
        assert!(near(f64::from(r.hubs_over_20pct), 50.0, 5.0), "{r:?}");
        assert!(near(r.pairs as f64, 312_283.0, 0.08 * 312_283.0), "{r:?}");
        assert!(near(r.discovered_day_1, 0.162, 0.01), "{r:?}");
        assert!(near(r.discovered_day_30, 0.355, 0.01), "{r:?}");
        assert!(near(r.discovered_day_58, 0.435, 0.01), "{r:?}");
        assert!(
            (570.0..=1450.0).contains(&r.new_pairs_per_day_after_month_1),
            "{r:?}"
        );
    }

    /// Weekly and daily cycles, and the duplicate share, in the written lines.
    #[test]
    fn lines_have_weekly_and_daily_cycles_and_duplicates() {
        let config = GeneratorConfig {
            users: 500,
            computers: 1000,
            days: 7,
            events: None,
            seed: 2,
            campaigns: CampaignPlan::default(),
            network: Network::default(),
        };
        let mut out = Vec::new();
        Generator::new(config).write(&mut out, |_| {}).unwrap();
        let mut per_day = [0u64; 7];
        let mut per_hour = [0u64; 24];
        let mut duplicates = 0u64;
        let mut previous: &[u8] = b"";
        let mut seen_this_second: std::collections::HashSet<&[u8]> = Default::default();
        let mut second = 0u64;
        let mut lines = 0u64;
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let comma = line.iter().position(|&b| b == b',').unwrap();
            let t: u64 = std::str::from_utf8(&line[..comma])
                .unwrap()
                .parse()
                .unwrap();
            if t != second {
                seen_this_second.clear();
                second = t;
            }
            if !seen_this_second.insert(line) {
                duplicates += 1;
            }
            per_day[((t - 1) / 86_400) as usize] += 1;
            per_hour[(((t - 1) % 86_400) / 3600) as usize] += 1;
            lines += 1;
            previous = line;
        }
        assert!(!previous.is_empty());
        let weekday = per_day[..5].iter().sum::<u64>() as f64 / 5.0;
        let weekend = per_day[5..].iter().sum::<u64>() as f64 / 2.0;
        assert!((0.55..0.65).contains(&(weekend / weekday)), "{per_day:?}");
        // 2.59M/day at 11,362 users, scaled to 500.
        let mean = per_day.iter().sum::<u64>() as f64 / 7.0;
        assert!(
            (mean / (2_590_000.0 * 500.0 / 11_362.0) - 1.0).abs() < 0.02,
            "{mean}"
        );
        assert!(
            per_hour[13] > 3 * per_hour[2],
            "office hours are busier than nights: {per_hour:?}"
        );
        let share = duplicates as f64 / lines as f64;
        assert!((0.003..0.008).contains(&share), "duplicate lines: {share}");
    }

    #[test]
    fn same_seed_same_bytes() {
        let config = GeneratorConfig {
            users: 200,
            computers: 400,
            days: 1,
            events: Some(20_000),
            seed: 7,
            campaigns: CampaignPlan {
                attacks: 6,
                benign: 3,
                from_day: 0,
                kinds: Vec::new(),
            },
            ..Default::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        Generator::new(config.clone())
            .write(&mut a, |_| {})
            .unwrap();
        Generator::new(config).write(&mut b, |_| {}).unwrap();
        assert_eq!(a, b);
    }

    /// The full record holds the same logons as `time,user,computer`, plus
    /// how each was made and the failed ones; the campaigns say where they
    /// came from.
    #[test]
    fn the_full_record_holds_the_same_logons_and_more() {
        let config = GeneratorConfig {
            users: 400,
            computers: 800,
            days: 4,
            seed: 9,
            campaigns: CampaignPlan {
                attacks: 14,
                benign: 7,
                from_day: 2,
                kinds: Vec::new(),
            },
            ..Default::default()
        };
        let generator = Generator::new(config);
        let (mut lanl, mut full) = (Vec::new(), Vec::new());
        generator.write(&mut lanl, |_| {}).unwrap();
        let stats = generator.write_as(&mut full, Record::Full, |_| {}).unwrap();
        let lanl = String::from_utf8(lanl).unwrap();
        let full = String::from_utf8(full).unwrap();
        let mut successes = Vec::new();
        let mut failures = 0;
        let mut types = std::collections::BTreeSet::new();
        for line in full.lines() {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 9, "{line}");
            assert_eq!(f[1], f[2], "{line}");
            assert_eq!(f[7], "LogOn");
            types.insert(f[6]);
            let user = f[1].strip_suffix("@DOM1").unwrap();
            match f[8] {
                "Success" => successes.push(format!("{},{user},{}", f[0], f[4])),
                "Fail" => failures += 1,
                other => panic!("outcome {other}"),
            }
        }
        let lanl: Vec<&str> = lanl.lines().collect();
        assert_eq!(successes.len(), lanl.len());
        let first_difference = successes.iter().zip(&lanl).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "the same logons in the same order");
        assert_eq!(failures, stats.failures);
        let share = failures as f64 / stats.lines as f64;
        assert!((0.002..0.05).contains(&share), "{share}");
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            [
                "Batch",
                "Interactive",
                "Network",
                "RemoteInteractive",
                "Service"
            ]
        );
        let campaigns = generator.campaigns(Record::Full);
        let spray = campaigns
            .iter()
            .find(|c| c.kind == Kind::PasswordSpray)
            .unwrap();
        assert!(spray.users.iter().all(|u| u.ends_with("@DOM1")));
        let foothold = format!(",{},", spray.sources[0]);
        let tried = full
            .lines()
            .filter(|l| l.contains(&foothold) && l.ends_with(",Fail"))
            .count();
        assert!(
            tried >= 20,
            "the spray's failures come from its foothold: {tried}"
        );
        let help_desk = campaigns.iter().find(|c| c.kind == Kind::HelpDesk).unwrap();
        let account = format!(",{},", help_desk.users[0]);
        let sources: std::collections::BTreeSet<&str> = full
            .lines()
            .filter(|l| l.contains(&account) && l.contains("RemoteInteractive"))
            .map(|l| l.split(',').nth(3).unwrap())
            .collect();
        assert_eq!(
            sources.len(),
            1,
            "a help desk works from its own desk: {sources:?}"
        );
    }

    #[test]
    fn output_is_sorted_lanl_csv_of_about_the_requested_size() {
        let config = GeneratorConfig {
            users: 300,
            computers: 600,
            days: 3,
            events: Some(60_000),
            seed: 3,
            campaigns: CampaignPlan::default(),
            network: Network::default(),
        };
        let mut out = Vec::new();
        let stats = Generator::new(config).write(&mut out, |_| {}).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut last = 0u64;
        let mut lines = 0u64;
        for line in text.lines() {
            let mut f = line.split(',');
            let t: u64 = f.next().unwrap().parse().unwrap();
            assert!(f.next().unwrap().starts_with('U') && f.next().unwrap().starts_with('C'));
            assert!(t >= last, "sorted by time");
            last = t;
            lines += 1;
        }
        assert_eq!(lines, stats.lines);
        assert!((59_000..=61_000).contains(&lines), "{lines}");
        let dup_rate = stats.duplicates as f64 / lines as f64;
        assert!((0.004..0.006).contains(&dup_rate), "{dup_rate}");
    }
}
