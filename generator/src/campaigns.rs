//! Labelled campaigns hidden in generated data: attacks that detection should
//! catch, and hard benign cases it must leave alone (ground truth for `eval`,
//! the demo and the tests).
//!
//! Each campaign is planned against the model's graph (who uses what, and
//! since when), so an attack's "never-used computers" are new to the account
//! at that moment, a roaming admin's computers are ones it already knows, and
//! a rarely used computer has the one or two users it is said to have. Sizes
//! and pacing are drawn at random within each kind's ranges; starts follow
//! the daily cycle (attackers work when everyone else does).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_distr::weighted::WeightedAliasIndex;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::model::{self, Graph};
use crate::record::{Auth, LogonKind, Means, Origin};
use crate::{DAY, computer_name, user_name};

const MINUTE: u32 = 60;
const HOUR: u32 = 3_600;

/// What a campaign is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One stolen account reaches 15-60 computers it never used, in 5-40 minutes.
    Spray,
    /// 150-500 logons in 3-15 minutes on the account's own computers.
    Burst,
    /// 2-3 stolen accounts take turns on 8-15 computers new to them, over 40
    /// minutes to 3 hours.
    Chain,
    /// One account on 3-6 computers new to it, spread over 2-8 hours.
    Stealth,
    /// An ordinary account logs on to two computers that only one or two
    /// other accounts ever used, minutes to two hours apart.
    Rare,
    /// 20-40 accounts that never used it log on to one computer within 15 minutes.
    FanIn,
    /// Benign: 200-600 users get one new server on one weekday morning, and
    /// keep using it.
    Rollout,
    /// Benign: an admin account touches 20-60 computers it already knows
    /// within two hours.
    RoamingAdmin,
    /// Benign: a new account's first three days: a fresh workstation, hubs,
    /// a colleague's servers.
    NewHire,
    /// One account on 1-3 computers new to it a day, over 3-5 days in a row,
    /// at working hours: each day unremarkable.
    MultiDay,
    /// An office-hours account used at night (0:00-5:00) for 30-90 minutes:
    /// 8-25 logons on a few of its own computers and one new to it.
    OffHours,
    /// 8-20 accounts that never used it log on to one rarely used computer,
    /// spread over 3-8 hours.
    SlowFanIn,
    /// One account on 3-4 computers that none of the accounts it shares a
    /// computer with ever use (not rarely used ones), over 1-3 hours.
    Outsider,
    /// A round-the-clock service-like account with few computers logs on to
    /// 2-3 computers new to it within an hour.
    ServicePivot,
    /// Benign, from the first day: a help-desk account that every weekday
    /// logs on to 6-15 workstations it never used (their one or two users'),
    /// during office hours.
    HelpDesk,
    /// Benign, from the first day: a desktop-support account that every
    /// weekday visits 2-5 workstations new to it and a few it knows.
    DesktopSupport,
    /// Benign, from the first day: a scanner's account that every night
    /// (1:00-3:00) logs on to the same 150-300 computers, a few more each
    /// night.
    NightlyScanner,
    /// Benign: one weekday morning, 50-150 accounts each start on 2-3 of 4-8
    /// new servers (a migration), and keep using them.
    MigrationMorning,
    /// From one foothold computer, 20-60 accounts' passwords are tried on a
    /// domain controller within 10-40 minutes; 1-2 of them work, and those
    /// accounts go on to 2-4 computers new to them within the hour (only
    /// the successes show in a `time,user,computer` record).
    PasswordSpray,
    /// From one foothold computer, 3-5 stolen accounts each reach 2-6
    /// computers new to them, over 1-2 hours.
    FootholdFanOut,
    /// A round-the-clock service-like account logs on interactively (at the
    /// console or by remote desktop) to 1-2 workstations new to it.
    ServiceAtDesktop,
    /// An account's logons a red-team file labels (LANL's `redteam.txt`),
    /// never generated.
    RedTeam,
}

impl Kind {
    /// The attacks, in the order `--campaigns N` cycles through them: the
    /// six the built-in rules were first written for, then the rest.
    pub const ATTACKS: [Kind; 14] = [
        Kind::Spray,
        Kind::Burst,
        Kind::Chain,
        Kind::Stealth,
        Kind::Rare,
        Kind::FanIn,
        Kind::MultiDay,
        Kind::OffHours,
        Kind::SlowFanIn,
        Kind::Outsider,
        Kind::ServicePivot,
        Kind::PasswordSpray,
        Kind::FootholdFanOut,
        Kind::ServiceAtDesktop,
    ];
    /// The benign cases, in the order `--benign N` cycles through them.
    pub const BENIGN: [Kind; 7] = [
        Kind::Rollout,
        Kind::RoamingAdmin,
        Kind::NewHire,
        Kind::HelpDesk,
        Kind::DesktopSupport,
        Kind::NightlyScanner,
        Kind::MigrationMorning,
    ];
    /// The six attacks and three benign cases the built-in rules were first
    /// written and tuned for (the demo's).
    pub const FIRST: [Kind; 9] = [
        Kind::Spray,
        Kind::Burst,
        Kind::Chain,
        Kind::Stealth,
        Kind::Rare,
        Kind::FanIn,
        Kind::Rollout,
        Kind::RoamingAdmin,
        Kind::NewHire,
    ];

    pub fn is_benign(self) -> bool {
        Kind::BENIGN.contains(&self)
    }

    /// Whether it is a habit that runs from the first day (so history shows
    /// it), not an event after the burn-in.
    pub fn is_habit(self) -> bool {
        matches!(
            self,
            Kind::HelpDesk | Kind::DesktopSupport | Kind::NightlyScanner
        )
    }

    /// Attacks alike in what gives them away (for leave-one-family-out
    /// evaluation): new computers spread out (`spread`), a burst of logons
    /// (`volume`), rarely used computers (`rare`), many accounts converging
    /// on one computer (`fan_in`), the hour (`time`), an account of few
    /// computers (`service`), failed logons (`failures`). Benign cases are
    /// their own family.
    pub fn family(self) -> &'static str {
        match self {
            Kind::Spray
            | Kind::Chain
            | Kind::Stealth
            | Kind::MultiDay
            | Kind::Outsider
            | Kind::FootholdFanOut => "spread",
            Kind::PasswordSpray => "failures",
            Kind::Burst => "volume",
            Kind::Rare => "rare",
            Kind::FanIn | Kind::SlowFanIn => "fan_in",
            Kind::OffHours => "time",
            Kind::ServicePivot | Kind::ServiceAtDesktop => "service",
            Kind::RedTeam => "red_team",
            _ => "benign",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Spray => "spray",
            Kind::Burst => "burst",
            Kind::Chain => "chain",
            Kind::Stealth => "stealth",
            Kind::Rare => "rare",
            Kind::FanIn => "fan_in",
            Kind::Rollout => "rollout",
            Kind::RoamingAdmin => "roaming_admin",
            Kind::NewHire => "new_hire",
            Kind::MultiDay => "multi_day",
            Kind::OffHours => "off_hours",
            Kind::SlowFanIn => "slow_fan_in",
            Kind::Outsider => "outsider",
            Kind::ServicePivot => "service_pivot",
            Kind::HelpDesk => "help_desk",
            Kind::DesktopSupport => "desktop_support",
            Kind::NightlyScanner => "nightly_scanner",
            Kind::MigrationMorning => "migration_morning",
            Kind::PasswordSpray => "password_spray",
            Kind::FootholdFanOut => "foothold_fan_out",
            Kind::ServiceAtDesktop => "service_at_desktop",
            Kind::RedTeam => "red_team",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ATTACKS
            .into_iter()
            .chain(Kind::BENIGN)
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Kind::ATTACKS
                    .iter()
                    .chain(&Kind::BENIGN)
                    .map(|k| k.as_str())
                    .collect();
                format!("unknown campaign kind `{s}` (kinds: {})", all.join(", "))
            })
    }
}

/// A hidden campaign, as ground truth (one JSON line of `--truth`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// 1-based, in planning order.
    pub id: u32,
    pub kind: Kind,
    /// Benign cases must not alert; attacks should.
    pub benign: bool,
    /// The accounts it uses.
    pub users: Vec<String>,
    /// The computers it logs on to.
    pub computers: Vec<String>,
    /// The computer a fan-in or a roll-out converges on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The computers an attack works from that are none of its accounts'
    /// own (its foothold): a full record names them as the logons' source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// LANL times (seconds from the start) of its first and last event.
    pub start: u32,
    pub end: u32,
    pub events: u32,
    /// One line on what it does.
    pub description: String,
}

impl Campaign {
    /// Whether the logon `(time, user, computer)` (LANL time) is one of its own.
    pub fn contains(&self, time: u32, user: &str, computer: &str) -> bool {
        (self.start..=self.end).contains(&time)
            && self.users.iter().any(|u| u == user)
            && self.computers.iter().any(|c| c == computer)
    }
}

/// Which campaigns to hide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignPlan {
    /// Attacks, cycling through `kinds` (those that are attacks).
    pub attacks: u32,
    /// Benign cases, cycling through `kinds` (those that are benign).
    pub benign: u32,
    /// Kinds to draw from; empty means all.
    pub kinds: Vec<Kind>,
    /// Campaigns start on this day or later (0-based): the days before are
    /// the detection's burn-in.
    pub from_day: u32,
}

impl CampaignPlan {
    /// The kind of each campaign, attacks first.
    fn kinds(&self) -> Vec<Kind> {
        let pick = |all: &[Kind]| -> Vec<Kind> {
            all.iter()
                .copied()
                .filter(|k| self.kinds.is_empty() || self.kinds.contains(k))
                .collect()
        };
        let (attacks, benign) = (pick(&Kind::ATTACKS), pick(&Kind::BENIGN));
        let cycle = |kinds: &[Kind], n: u32| -> Vec<Kind> {
            if kinds.is_empty() {
                return Vec::new();
            }
            (0..n as usize).map(|i| kinds[i % kinds.len()]).collect()
        };
        let mut all = cycle(&attacks, self.attacks);
        all.extend(cycle(&benign, self.benign));
        all
    }
}

/// Planned campaigns and their events `(LANL time - 1, user, computer, how)`,
/// sorted; user and computer ids past the graph's are new accounts and
/// computers.
pub struct Planned {
    pub campaigns: Vec<Campaign>,
    pub events: Vec<(u32, u32, u32, Means)>,
    /// Highest user and computer id used, plus one.
    pub users: u32,
    pub computers: u32,
    /// The workstations of the accounts campaigns bring: `(user, computer)`.
    pub homes: Vec<(u32, u32)>,
}

/// Plans `plan` over `days` days of `graph`. A campaign that finds no fitting
/// account or computer (a tiny graph) is left out, with a warning.
pub fn plan<R: Rng>(graph: &Graph, days: u32, plan: &CampaignPlan, rng: &mut R) -> Planned {
    let mut planner = Planner::new(graph, days, plan.from_day.min(days.saturating_sub(1)));
    let mut out = Planned {
        campaigns: Vec::new(),
        events: Vec::new(),
        users: graph.users,
        computers: graph.computers,
        homes: Vec::new(),
    };
    if days == 0 {
        return out;
    }
    for kind in plan.kinds() {
        let Some(mut events) = planner.plan(kind, rng) else {
            tracing::warn!(
                kind = kind.as_str(),
                "no fitting account or computer; campaign left out"
            );
            planner.failed.clear();
            planner.foothold = None;
            continue;
        };
        events.sort_unstable();
        events.dedup();
        let (means, sources) = planner.means(kind, &events, rng);
        let users: BTreeSet<u32> = events.iter().map(|e| e.1).collect();
        let computers: BTreeSet<u32> = events.iter().map(|e| e.2).collect();
        let (start, end) = (events[0].0, events.last().expect("non-empty").0);
        let target = planner.target.take();
        let description = describe(
            kind,
            users.len(),
            computers.len(),
            events.len(),
            end - start,
        );
        out.campaigns.push(Campaign {
            id: out.campaigns.len() as u32 + 1,
            kind,
            benign: kind.is_benign(),
            users: users.iter().map(|&u| user_name(u)).collect(),
            computers: computers.iter().map(|&c| computer_name(c)).collect(),
            target: target.map(computer_name),
            sources: sources.into_iter().map(computer_name).collect(),
            start: start + 1,
            end: end + 1,
            events: events.len() as u32,
            description,
        });
        out.events.extend(
            events
                .into_iter()
                .zip(means)
                .map(|((t, u, c), how)| (t, u, c, how)),
        );
    }
    out.events.sort_unstable();
    out.users = planner.next_user;
    out.computers = planner.next_computer;
    out.homes = std::mem::take(&mut planner.homes);
    out
}

fn describe(kind: Kind, users: usize, computers: usize, events: usize, span: u32) -> String {
    let span = if span >= 2 * HOUR {
        format!("{:.1} h", f64::from(span) / f64::from(HOUR))
    } else {
        format!("{} min", span.div_ceil(MINUTE))
    };
    format!("{kind}: {users} account(s), {computers} computer(s), {events} logons over {span}")
}

/// Finds accounts, computers and times for campaigns.
struct Planner<'g> {
    graph: &'g Graph,
    days: u32,
    from_day: u32,
    /// Per computer: when each of its users first used it, sorted.
    first_uses: Vec<Vec<u32>>,
    /// Per computer: its users (over the whole period).
    users_of: Vec<Vec<u32>>,
    /// Accounts already in a campaign (labels stay unambiguous).
    taken: FxHashSet<u32>,
    next_user: u32,
    next_computer: u32,
    hours: WeightedAliasIndex<f64>,
    /// The target of the campaign just planned, if it has one.
    target: Option<u32>,
    /// The computer the campaign just planned works from, if it chose one.
    foothold: Option<u32>,
    /// Its logons that fail.
    failed: FxHashSet<(u32, u32, u32)>,
    /// The workstations of the accounts campaigns bring.
    homes: Vec<(u32, u32)>,
}

impl<'g> Planner<'g> {
    fn new(graph: &'g Graph, days: u32, from_day: u32) -> Planner<'g> {
        let mut first_uses = vec![Vec::new(); graph.computers as usize];
        let mut users_of = vec![Vec::new(); graph.computers as usize];
        for (u, pairs) in graph.pairs.iter().enumerate() {
            for (&c, &t) in pairs.computers.iter().zip(&pairs.first_use) {
                first_uses[c as usize].push(t);
                users_of[c as usize].push(u as u32);
            }
        }
        for times in &mut first_uses {
            times.sort_unstable();
        }
        Planner {
            graph,
            days,
            from_day,
            first_uses,
            users_of,
            taken: FxHashSet::default(),
            next_user: graph.users,
            next_computer: graph.computers,
            hours: WeightedAliasIndex::new(model::hour_weights().to_vec()).expect("valid weights"),
            target: None,
            foothold: None,
            failed: FxHashSet::default(),
            homes: Vec::new(),
        }
    }

    fn plan<R: Rng>(&mut self, kind: Kind, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        match kind {
            Kind::Spray => self.spray(rng),
            Kind::Burst => self.burst(rng),
            Kind::Chain => self.chain(rng),
            Kind::Stealth => self.stealth(rng),
            Kind::Rare => self.rare(rng),
            Kind::FanIn => self.fan_in(rng),
            Kind::Rollout => self.rollout(rng),
            Kind::RoamingAdmin => self.roaming_admin(rng),
            Kind::NewHire => self.new_hire(rng),
            Kind::MultiDay => self.multi_day(rng),
            Kind::OffHours => self.off_hours(rng),
            Kind::SlowFanIn => self.slow_fan_in(rng),
            Kind::Outsider => self.outsider(rng),
            Kind::ServicePivot => self.service_pivot(rng),
            Kind::HelpDesk => self.help_desk(rng, 6..=15, 0..=1),
            Kind::DesktopSupport => self.help_desk(rng, 2..=5, 2..=5),
            Kind::NightlyScanner => self.nightly_scanner(rng),
            Kind::MigrationMorning => self.migration_morning(rng),
            Kind::PasswordSpray => self.password_spray(rng),
            Kind::FootholdFanOut => self.foothold_fan_out(rng),
            Kind::ServiceAtDesktop => self.service_at_desktop(rng),
            Kind::RedTeam => None,
        }
    }

    /// A start (0-based second) on a day from `from_day` on, at a second of
    /// the daily cycle, leaving `span` seconds before the end.
    fn start<R: Rng>(&self, rng: &mut R, span: u32) -> u32 {
        let day = rng.random_range(self.from_day..self.days);
        let t = day * DAY + model::second_of_day(rng, &self.hours);
        t.min((self.days * DAY).saturating_sub(span + 1))
    }

    /// 8:00-10:00 on a weekday from `from_day` on (any day if there is none).
    fn weekday_morning<R: Rng>(&self, rng: &mut R) -> u32 {
        let weekdays: Vec<u32> = (self.from_day..self.days).filter(|d| d % 7 < 5).collect();
        let day = weekdays
            .choose(rng)
            .copied()
            .unwrap_or_else(|| rng.random_range(self.from_day..self.days));
        day * DAY + rng.random_range(8 * HOUR..10 * HOUR)
    }

    /// An ordinary account (5-150 computers over the period, active since the
    /// first half-day) that already used at least `min_known` computers at
    /// `t` and is in no other campaign.
    fn account<R: Rng>(&mut self, rng: &mut R, t: u32, min_known: usize) -> Option<u32> {
        self.account_where(rng, t, min_known, |_| true)
    }

    /// [`Planner::account`] among the accounts `fits` accepts.
    fn account_where<R: Rng>(
        &mut self,
        rng: &mut R,
        t: u32,
        min_known: usize,
        fits: impl Fn(u32) -> bool,
    ) -> Option<u32> {
        for _ in 0..20_000 {
            let u = rng.random_range(0..self.graph.users);
            let pairs = &self.graph.pairs[u as usize];
            if self.taken.contains(&u)
                || !(5..=150).contains(&pairs.computers.len())
                || pairs.first_use.first().is_none_or(|&f| f >= DAY / 2)
                || self.known(u, t).len() < min_known
                || !fits(u)
            {
                continue;
            }
            self.taken.insert(u);
            return Some(u);
        }
        None
    }

    /// A second of office hours (8:30-17:30) of day `day`.
    fn office_hours<R: Rng>(rng: &mut R, day: u32) -> u32 {
        day * DAY + rng.random_range(8 * HOUR + 30 * MINUTE..17 * HOUR + 30 * MINUTE)
    }

    /// Up to `n` accounts, at random, that are in no campaign and were seen
    /// before `start`.
    fn free_accounts<R: Rng>(&self, rng: &mut R, start: u32, n: usize) -> Vec<u32> {
        let mut users: Vec<u32> = (0..self.graph.users)
            .filter(|&u| {
                !self.taken.contains(&u)
                    && self.graph.pairs[u as usize]
                        .first_use
                        .first()
                        .is_some_and(|&f| f < start)
            })
            .collect();
        users.shuffle(rng);
        users.truncate(n);
        users
    }

    /// `n` accounts that never used `target` each log on to it once or
    /// twice within `span` from `start`.
    fn strangers_visit<R: Rng>(
        &mut self,
        rng: &mut R,
        target: u32,
        n: usize,
        start: u32,
        span: u32,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let graph = self.graph;
        let mut events = Vec::new();
        for _ in 0..n {
            let user = (0..1_000).find_map(|_| {
                let u = self.account(rng, start, 1)?;
                if graph.pairs[u as usize].computers.contains(&target) {
                    self.taken.remove(&u);
                    None
                } else {
                    Some(u)
                }
            })?;
            events.extend(visit(rng, user, &[target], start, span, 1..=2));
        }
        Some(events)
    }

    /// The computers `u` has used before `t`, earliest first (the most used).
    fn known(&self, u: u32, t: u32) -> Vec<u32> {
        let pairs = &self.graph.pairs[u as usize];
        let n = pairs.first_use.partition_point(|&f| f < t);
        pairs.computers[..n].to_vec()
    }

    /// `n` computers (not hubs) that `u` never uses, that someone used before
    /// `t`, and, with `rare`, that only one or two accounts ever use.
    fn new_computers<R: Rng>(
        &self,
        rng: &mut R,
        u: u32,
        n: usize,
        t: u32,
        rare: bool,
        avoid: &[u32],
    ) -> Option<Vec<u32>> {
        let graph = self.graph;
        let mine = &graph.pairs[u as usize].computers;
        let mut chosen: Vec<u32> = Vec::with_capacity(n);
        for _ in 0..200_000 {
            if chosen.len() == n {
                return Some(chosen);
            }
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            let fits = users.first().is_some_and(|&f| f < t)
                && (!rare || (users.len() <= 2))
                && !mine.contains(&c)
                && !chosen.contains(&c)
                && !avoid.contains(&c);
            if fits {
                chosen.push(c);
            }
        }
        None
    }

    fn spray<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=40 * MINUTE);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let n = rng.random_range(15..=60);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=2))
    }

    fn burst<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(3 * MINUTE..=15 * MINUTE);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 1)?;
        let own: Vec<u32> = self.known(user, start).into_iter().take(5).collect();
        // One logon per computer per second at most: the same second, user
        // and computer would be the same event.
        let slots = (span as usize + 1) * own.len();
        let n = rng.random_range(150..=500).min(slots * 4 / 5);
        let mut events = FxHashSet::default();
        while events.len() < n {
            let c = *own.choose(rng).expect("at least one known computer");
            events.insert((start + rng.random_range(0..=span), user, c));
        }
        Some(events.into_iter().collect())
    }

    fn chain<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(40 * MINUTE..=3 * HOUR);
        let start = self.start(rng, span);
        let accounts: Vec<u32> = (0..rng.random_range(2..=3))
            .map(|_| self.account(rng, start, 3))
            .collect::<Option<_>>()?;
        let total = rng.random_range(8..=15);
        // Turns: each account takes 1-4 computers, then hands over.
        let mut turns: Vec<(u32, usize)> = Vec::new();
        let mut assigned = 0;
        let mut next = 0;
        while assigned < total {
            let take = rng.random_range(1..=4).min(total - assigned);
            turns.push((accounts[next % accounts.len()], take));
            assigned += take;
            next += 1;
        }
        let mut used: Vec<u32> = Vec::new();
        let mut events = Vec::new();
        let slot = span / turns.len() as u32;
        for (i, &(user, take)) in turns.iter().enumerate() {
            let targets = self.new_computers(rng, user, take, start, false, &used)?;
            used.extend(&targets);
            let from = start + i as u32 * slot;
            events.extend(visit(rng, user, &targets, from, slot, 1..=2));
        }
        Some(events)
    }

    fn stealth<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(2 * HOUR..=8 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let n = rng.random_range(3..=6);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }

    fn rare<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=2 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let targets = self.new_computers(rng, user, 2, start, true, &[])?;
        // The second computer comes `span` after the first.
        let mut events = visit(rng, user, &targets[..1], start, MINUTE, 1..=2);
        events.extend(visit(rng, user, &targets[1..], start + span, MINUTE, 1..=2));
        Some(events)
    }

    fn fan_in<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(5 * MINUTE..=15 * MINUTE);
        let start = self.start(rng, span);
        let graph = self.graph;
        // An established computer with a few users of its own.
        let target = (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            let before = users.partition_point(|&f| f + DAY < start);
            ((1..=10).contains(&before)).then_some(c)
        })?;
        let n = rng.random_range(20..=40);
        let events = self.strangers_visit(rng, target, n, start, span)?;
        self.target = Some(target);
        Some(events)
    }

    fn rollout<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let server = self.next_computer;
        self.next_computer += 1;
        let n = rng
            .random_range(200..=600)
            .min(self.graph.users as usize / 2);
        let users = self.free_accounts(rng, start, n);
        if users.is_empty() {
            return None;
        }
        let end_of_data = self.days * DAY - 1;
        let mut events = Vec::new();
        for &user in &users {
            // First logon during the morning, then 0-3 more over two days.
            let first = start + rng.random_range(0..4 * HOUR);
            events.push((first.min(end_of_data), user, server));
            for _ in 0..rng.random_range(0..=3) {
                let later = first + rng.random_range(HOUR..2 * DAY);
                if later <= end_of_data {
                    events.push((later, user, server));
                }
            }
        }
        self.target = Some(server);
        Some(events)
    }

    fn roaming_admin<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(30 * MINUTE..=2 * HOUR);
        let day = rng.random_range(self.from_day..self.days);
        // Known for a day at least, so the pipeline has seen them.
        let known_since = (day * DAY).saturating_sub(DAY);
        let graph = self.graph;
        let admin = (0..graph.users)
            .filter(|u| !self.taken.contains(u))
            .map(|u| (self.known(u, known_since).len(), u))
            .filter(|&(known, _)| known >= 24)
            .collect::<Vec<_>>()
            .choose(rng)
            .map(|&(_, u)| u)?;
        self.taken.insert(admin);
        // A round at the admin's own working hours.
        let hours = rand_distr::weighted::WeightedAliasIndex::new(
            graph.rhythms[admin as usize].hour_weights().to_vec(),
        )
        .expect("valid weights");
        let start = (day * DAY + model::second_of_day(rng, &hours))
            .min((self.days * DAY).saturating_sub(span + 1));
        let mut known = self.known(admin, known_since);
        known.shuffle(rng);
        known.truncate(rng.random_range(20..=60));
        Some(visit(rng, admin, &known, start, span, 1..=3))
    }

    fn new_hire<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let hire = self.next_user;
        self.next_user += 1;
        let workstation = self.next_computer;
        self.next_computer += 1;
        self.homes.push((hire, workstation));
        let graph = self.graph;
        // A colleague with a few computers of the team's (not hubs).
        let mut team = (0..1_000).find_map(|_| {
            let colleague = self.account(rng, start, 4)?;
            self.taken.remove(&colleague);
            let team: Vec<u32> = self
                .known(colleague, start)
                .into_iter()
                .filter(|&c| c >= graph.hubs)
                .collect();
            (team.len() >= 2).then_some(team)
        })?;
        team.shuffle(rng);
        let n_hubs = rng.random_range(3..=6);
        let hubs: Vec<u32> = (0..graph.hubs)
            .collect::<Vec<_>>()
            .choose_multiple(rng, n_hubs)
            .copied()
            .collect();
        let day_one: Vec<u32> = [workstation]
            .into_iter()
            .chain(hubs)
            .chain(team.iter().copied().take(rng.random_range(2..=6)))
            .collect();
        let mut events = Vec::new();
        let mut computers = day_one;
        for day in 0..3u32 {
            let day_start = start + day * DAY;
            if day_start + 9 * HOUR >= self.days * DAY {
                break;
            }
            if day > 0 {
                // A few more of the team's computers each day.
                let more = rng.random_range(1..=3);
                computers.extend(team.iter().copied().skip(computers.len()).take(more));
            }
            events.extend(visit(rng, hire, &computers, day_start, 8 * HOUR, 3..=10));
        }
        Some(events)
    }
}

impl Planner<'_> {
    fn multi_day<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let days = rng.random_range(3..=5u32).min(self.days - self.from_day);
        let first = rng.random_range(self.from_day..=self.days - days);
        let graph = self.graph;
        let user = self.account_where(rng, first * DAY, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mut used = Vec::new();
        let mut events = Vec::new();
        for day in first..first + days {
            let n = rng.random_range(1..=3);
            let targets = self.new_computers(rng, user, n, day * DAY, false, &used)?;
            for &c in &targets {
                let at = Self::office_hours(rng, day);
                events.extend(visit(rng, user, &[c], at, 0, 1..=2));
            }
            used.extend(targets);
        }
        Some(events)
    }

    fn off_hours<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let day = rng.random_range(self.from_day..self.days);
        let span = rng.random_range(30 * MINUTE..=90 * MINUTE);
        let start = day * DAY + rng.random_range(0..5 * HOUR);
        let graph = self.graph;
        let user = self.account_where(rng, start, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mut known = self.known(user, start);
        known.shuffle(rng);
        known.truncate(rng.random_range(2..=3));
        let fresh = self.new_computers(rng, user, 1, start, false, &[])?;
        let mut events = visit(rng, user, &known, start, span, 3..=7);
        events.extend(visit(rng, user, &fresh, start, span, 1..=3));
        Some(events)
    }

    fn slow_fan_in<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(3 * HOUR..=8 * HOUR);
        let start = self.start(rng, span);
        let graph = self.graph;
        // A rarely used computer: one to five users, all of them for a day.
        let target = (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            ((1..=5).contains(&users.len()) && users.iter().all(|&f| f + DAY < start)).then_some(c)
        })?;
        let n = rng.random_range(8..=20);
        let events = self.strangers_visit(rng, target, n, start, span)?;
        self.target = Some(target);
        Some(events)
    }

    fn outsider<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(HOUR..=3 * HOUR);
        let start = self.start(rng, span);
        let user = self.account(rng, start, 3)?;
        let graph = self.graph;
        // The computers of the accounts it shares a (non-hub) computer with.
        let mut near: FxHashSet<u32> = FxHashSet::default();
        for &c in &graph.pairs[user as usize].computers {
            if c < graph.hubs {
                continue;
            }
            for &peer in &self.users_of[c as usize] {
                near.extend(&graph.pairs[peer as usize].computers);
            }
        }
        let n = rng.random_range(3..=4);
        let mut targets = Vec::new();
        for _ in 0..200_000 {
            if targets.len() == n {
                break;
            }
            let c = rng.random_range(graph.hubs..graph.computers);
            let users = &self.first_uses[c as usize];
            if (3..=20).contains(&users.len())
                && users.first().is_some_and(|&f| f < start)
                && !near.contains(&c)
                && !targets.contains(&c)
            {
                targets.push(c);
            }
        }
        if targets.len() < n {
            return None;
        }
        Some(visit(rng, user, &targets, start, span, 1..=2))
    }

    fn service_pivot<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(20 * MINUTE..=60 * MINUTE);
        let start = self.start(rng, span);
        // Around the clock on a few computers of its own.
        let user = self.service_account(rng, start)?;
        let n = rng.random_range(2..=3);
        let targets = self.new_computers(rng, user, n, start, false, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }

    /// A round-the-clock service-like account on a few computers of its own
    /// (1-8 by a day before `start`, at most 12 ever), seen since the first
    /// half-day and in no other campaign.
    fn service_account<R: Rng>(&mut self, rng: &mut R, start: u32) -> Option<u32> {
        let graph = self.graph;
        let user = (0..20_000).find_map(|_| {
            let u = rng.random_range(0..graph.users);
            let pairs = &graph.pairs[u as usize];
            (graph.rhythms[u as usize] == model::Rhythm::Steady
                && !self.taken.contains(&u)
                && (1..=8).contains(&self.known(u, start.saturating_sub(DAY)).len())
                && pairs.computers.len() <= 12
                && pairs.first_use.first().is_some_and(|&f| f < DAY / 2))
            .then_some(u)
        })?;
        self.taken.insert(user);
        Some(user)
    }

    /// Every weekday from the first day, an account visits `new_per_day`
    /// workstations (one or two users each) it never used, and
    /// `again_per_day` of those it visited before.
    fn help_desk<R: Rng>(
        &mut self,
        rng: &mut R,
        new_per_day: std::ops::RangeInclusive<usize>,
        again_per_day: std::ops::RangeInclusive<usize>,
    ) -> Option<Vec<(u32, u32, u32)>> {
        let graph = self.graph;
        let user = self.account_where(rng, DAY / 2, 3, |u| {
            graph.rhythms[u as usize] == model::Rhythm::Office
        })?;
        let mine: FxHashSet<u32> = graph.pairs[user as usize]
            .computers
            .iter()
            .copied()
            .collect();
        let mut visited: Vec<u32> = Vec::new();
        let mut events = Vec::new();
        for day in (0..self.days).filter(|d| d % 7 < 5) {
            let mut today = Vec::new();
            for _ in 0..100_000 {
                if today.len() == *new_per_day.end() {
                    break;
                }
                let c = rng.random_range(graph.hubs..graph.computers);
                let users = &self.first_uses[c as usize];
                if (1..=2).contains(&users.len())
                    && users[0] < day * DAY
                    && !mine.contains(&c)
                    && !visited.contains(&c)
                    && !today.contains(&c)
                {
                    today.push(c);
                }
            }
            today.truncate(rng.random_range(new_per_day.clone()));
            let again = rng.random_range(again_per_day.clone()).min(visited.len());
            let revisits: Vec<u32> = visited.choose_multiple(rng, again).copied().collect();
            for &c in today.iter().chain(&revisits) {
                let at = Self::office_hours(rng, day);
                events.extend(visit(rng, user, &[c], at, 0, 1..=3));
            }
            visited.extend(today);
        }
        (!events.is_empty()).then_some(events)
    }

    fn nightly_scanner<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let scanner = self.next_user;
        self.next_user += 1;
        // The scanner's own server, that it works from.
        self.homes.push((scanner, self.next_computer));
        self.next_computer += 1;
        let graph = self.graph;
        let mut scope: Vec<u32> = (graph.hubs..graph.computers).collect();
        scope.shuffle(rng);
        let mut reach = rng.random_range(150..=300).min(scope.len());
        let mut events = Vec::new();
        for night in 0..self.days {
            let start = night * DAY + HOUR;
            events.extend(visit(rng, scanner, &scope[..reach], start, 2 * HOUR, 1..=1));
            reach = (reach + rng.random_range(0..=5)).min(scope.len());
        }
        Some(events)
    }

    fn migration_morning<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let start = self.weekday_morning(rng);
        let servers: Vec<u32> = (0..rng.random_range(4..=8))
            .map(|_| {
                self.next_computer += 1;
                self.next_computer - 1
            })
            .collect();
        let n = rng
            .random_range(50..=150)
            .min(self.graph.users as usize / 4);
        let users = self.free_accounts(rng, start, n);
        if users.is_empty() {
            return None;
        }
        let end_of_data = self.days * DAY - 1;
        let mut events = Vec::new();
        for &user in &users {
            let take = rng.random_range(2..=3);
            let mine: Vec<u32> = servers.choose_multiple(rng, take).copied().collect();
            for &server in &mine {
                let first = start + rng.random_range(0..3 * HOUR);
                events.push((first.min(end_of_data), user, server));
                for _ in 0..rng.random_range(0..=3) {
                    let later = first + rng.random_range(HOUR..2 * DAY);
                    if later <= end_of_data {
                        events.push((later, user, server));
                    }
                }
            }
        }
        self.target = servers.first().copied();
        Some(events)
    }
}

/// Campaigns that richer records tell apart, and how each campaign's logons
/// are made.
impl Planner<'_> {
    /// A computer an intruder works from: someone's workstation (not a hub)
    /// in use before `t`, none of `users`' own.
    fn pick_foothold<R: Rng>(&self, rng: &mut R, t: u32, users: &[u32]) -> Option<u32> {
        let graph = self.graph;
        (0..100_000).find_map(|_| {
            let c = rng.random_range(graph.hubs..graph.computers);
            let fits = self.first_uses[c as usize].first().is_some_and(|&f| f < t)
                && users
                    .iter()
                    .all(|&u| !graph.pairs[u as usize].computers.contains(&c));
            fits.then_some(c)
        })
    }

    fn password_spray<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(10 * MINUTE..=40 * MINUTE);
        let start = self.start(rng, span + 2 * HOUR);
        let graph = self.graph;
        let dc = rng.random_range(0..graph.hubs.max(1));
        let tried: Vec<u32> = (0..rng.random_range(20..=60))
            .map(|_| self.account(rng, start, 1))
            .collect::<Option<_>>()?;
        let foothold = self.pick_foothold(rng, start, &tried)?;
        let mut events = Vec::new();
        for &user in &tried {
            for _ in 0..rng.random_range(1..=2) {
                let at = start + rng.random_range(0..=span);
                self.failed.insert((at, user, dc));
                events.push((at, user, dc));
            }
        }
        // The ones whose password was guessed get in, and move on.
        let end = start + span;
        for &user in tried.iter().take(rng.random_range(1..=2)) {
            events.push((end + rng.random_range(1..5 * MINUTE), user, dc));
            let n = rng.random_range(2..=4);
            let targets = self.new_computers(rng, user, n, start, false, &[])?;
            events.extend(visit(rng, user, &targets, end + 5 * MINUTE, HOUR, 1..=2));
        }
        self.foothold = Some(foothold);
        Some(events)
    }

    fn foothold_fan_out<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(HOUR..=2 * HOUR);
        let start = self.start(rng, span);
        let accounts: Vec<u32> = (0..rng.random_range(3..=5))
            .map(|_| self.account(rng, start, 3))
            .collect::<Option<_>>()?;
        let foothold = self.pick_foothold(rng, start, &accounts)?;
        let mut used = Vec::new();
        let mut events = Vec::new();
        let slot = span / accounts.len() as u32;
        for (i, &user) in accounts.iter().enumerate() {
            let n = rng.random_range(2..=6);
            let targets = self.new_computers(rng, user, n, start, false, &used)?;
            used.extend(&targets);
            let from = start + i as u32 * slot;
            events.extend(visit(rng, user, &targets, from, slot, 1..=2));
        }
        self.foothold = Some(foothold);
        Some(events)
    }

    fn service_at_desktop<R: Rng>(&mut self, rng: &mut R) -> Option<Vec<(u32, u32, u32)>> {
        let span = rng.random_range(10 * MINUTE..=HOUR);
        let start = self.start(rng, span);
        let user = self.service_account(rng, start)?;
        let n = rng.random_range(1..=2);
        let targets = self.new_computers(rng, user, n, start, true, &[])?;
        Some(visit(rng, user, &targets, start, span, 1..=3))
    }

    /// How each of a campaign's `events` (sorted) is made, and the
    /// computers it works from that are none of its accounts' own.
    /// Intruders work from a foothold (seven in ten; the rest from the
    /// stolen account's own workstation, as malware on it would), mostly
    /// over the network, now and then by remote desktop, often with NTLM
    /// (a stolen hash); a chain moves on from the computer it reached last.
    /// Benign cases log on as their accounts always do.
    fn means<R: Rng>(
        &mut self,
        kind: Kind,
        events: &[(u32, u32, u32)],
        rng: &mut R,
    ) -> (Vec<Means>, Vec<u32>) {
        let failed = std::mem::take(&mut self.failed);
        let chosen = self.foothold.take();
        let mark = |mut m: Means, e: &(u32, u32, u32)| {
            m.failed = failed.contains(e);
            m
        };
        if kind.is_benign() {
            let means = events
                .iter()
                .map(|e| {
                    let m = match kind {
                        Kind::HelpDesk | Kind::DesktopSupport => {
                            Means::new(Origin::Home, LogonKind::RemoteInteractive, Auth::Kerberos)
                        }
                        Kind::NightlyScanner => {
                            // It lacks rights on some computers: a few
                            // of its logons fail every night.
                            let mut m = Means::new(Origin::Home, LogonKind::Network, Auth::Ntlm);
                            m.failed = rng.random_bool(0.04);
                            return m;
                        }
                        Kind::NewHire if self.homes.iter().any(|&(u, c)| (u, c) == (e.1, e.2)) => {
                            Means::new(Origin::Itself, LogonKind::Interactive, Auth::Kerberos)
                        }
                        Kind::RoamingAdmin if e.2 % 3 == 0 => {
                            Means::new(Origin::Home, LogonKind::RemoteInteractive, Auth::Kerberos)
                        }
                        _ => Means::new(Origin::Home, LogonKind::Network, Auth::Kerberos),
                    };
                    mark(m, e)
                })
                .collect();
            return (means, Vec::new());
        }
        let accounts: Vec<u32> = events
            .iter()
            .map(|e| e.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let start = events.first().map_or(0, |e| e.0);
        let single = accounts.len() == 1;
        let foothold = chosen.or_else(|| {
            if single && rng.random_bool(0.3) {
                None
            } else {
                self.pick_foothold(rng, start, &accounts)
            }
        });
        let origin = foothold.map_or(Origin::Home, Origin::Computer);
        let auth = if rng.random_bool(0.5) {
            Auth::Ntlm
        } else {
            Auth::Kerberos
        };
        let mut how_of: rustc_hash::FxHashMap<u32, Means> = Default::default();
        let mut last_reached = foothold;
        let means = events
            .iter()
            .map(|e| {
                let m = *how_of.entry(e.2).or_insert_with(|| {
                    let logon = if rng.random_bool(0.2) {
                        LogonKind::RemoteInteractive
                    } else {
                        LogonKind::Network
                    };
                    let m = match kind {
                        Kind::ServiceAtDesktop if rng.random_bool(0.5) => {
                            Means::new(Origin::Itself, LogonKind::Interactive, auth)
                        }
                        Kind::ServiceAtDesktop => {
                            Means::new(origin, LogonKind::RemoteInteractive, auth)
                        }
                        Kind::Chain => Means::new(
                            last_reached.map_or(Origin::Home, Origin::Computer),
                            logon,
                            auth,
                        ),
                        _ => Means::new(origin, logon, auth),
                    };
                    last_reached = Some(e.2);
                    m
                });
                mark(m, e)
            })
            .collect();
        (means, foothold.into_iter().collect())
    }
}

/// `user` logs on to each of `computers` in turn, spread over `span` seconds
/// from `start`, `logons` times each (the repeats within minutes).
fn visit<R: Rng>(
    rng: &mut R,
    user: u32,
    computers: &[u32],
    start: u32,
    span: u32,
    logons: std::ops::RangeInclusive<u32>,
) -> Vec<(u32, u32, u32)> {
    let mut times: Vec<u32> = (0..computers.len())
        .map(|_| start + rng.random_range(0..=span))
        .collect();
    times.sort_unstable();
    let mut events = Vec::new();
    for (&c, &t) in computers.iter().zip(&times) {
        for k in 0..rng.random_range(logons.clone()) {
            let t = if k == 0 {
                t
            } else {
                t + rng.random_range(1..10 * MINUTE)
            };
            events.push((t, user, c));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_cycle() {
        assert_eq!("fan_in".parse::<Kind>(), Ok(Kind::FanIn));
        assert!("nope".parse::<Kind>().unwrap_err().contains("spray"));
        let plan = CampaignPlan {
            attacks: 13,
            benign: 8,
            kinds: Vec::new(),
            from_day: 1,
        };
        let kinds = plan.kinds();
        assert_eq!(kinds.len(), 21);
        assert_eq!(
            &kinds[..7],
            &[
                Kind::Spray,
                Kind::Burst,
                Kind::Chain,
                Kind::Stealth,
                Kind::Rare,
                Kind::FanIn,
                Kind::MultiDay
            ]
        );
        assert_eq!(kinds[11], Kind::PasswordSpray);
        assert_eq!(kinds[12], Kind::FootholdFanOut);
        assert_eq!(kinds[13], Kind::Rollout);
        assert_eq!(kinds[19], Kind::MigrationMorning);
        assert_eq!(kinds[20], Kind::Rollout);
        for kind in Kind::ATTACKS.into_iter().chain(Kind::BENIGN) {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(kind.is_benign(), kind.family() == "benign");
        }
        let only = CampaignPlan {
            attacks: 3,
            benign: 2,
            kinds: vec![Kind::Burst, Kind::NewHire],
            from_day: 0,
        };
        assert_eq!(
            only.kinds(),
            [
                Kind::Burst,
                Kind::Burst,
                Kind::Burst,
                Kind::NewHire,
                Kind::NewHire
            ]
        );
    }

    /// Every kind keeps its promises against the graph it was planned on.
    #[test]
    fn campaigns_fit_their_descriptions() {
        let config = crate::GeneratorConfig {
            users: 3_000,
            computers: 5_900,
            days: 14,
            events: Some(1_000),
            seed: 5,
            campaigns: CampaignPlan {
                attacks: 14,
                benign: 6,
                kinds: Vec::new(),
                from_day: 7,
            },
            ..Default::default()
        };
        let generator = crate::Generator::new(config);
        let graph = generator.graph();
        let campaigns = generator.campaigns(crate::Record::Lanl);
        assert_eq!(campaigns.len(), 20, "{campaigns:#?}");
        let id = |name: &str| name[1..].parse::<u32>().unwrap() - 1;
        let first_use = |u: u32, c: u32| {
            let pairs = graph.pairs.get(u as usize)?;
            let i = pairs.computers.iter().position(|&x| x == c)?;
            Some(pairs.first_use[i])
        };
        let users_of = |k: u32| {
            graph
                .pairs
                .iter()
                .filter(|p| p.computers.contains(&k))
                .count()
        };
        for c in &campaigns {
            if c.kind.is_habit() {
                assert!(
                    c.start < 2 * DAY && c.end > 11 * DAY && c.end <= 14 * DAY,
                    "{c:?}"
                );
            } else {
                assert!(c.start > 7 * DAY && c.end <= 14 * DAY, "{c:?}");
            }
            assert_eq!(c.benign, c.kind.is_benign());
            let span = c.end - c.start;
            let new_to_users = c.users.iter().all(|u| {
                c.computers
                    .iter()
                    .all(|k| first_use(id(u), id(k)).is_none())
            });
            match c.kind {
                Kind::Spray => {
                    assert!(
                        (15..=60).contains(&c.computers.len()) && span <= 40 * MINUTE,
                        "{c:?}"
                    );
                    assert!(new_to_users, "{c:?}");
                }
                Kind::Burst => {
                    assert!(
                        (120..=500).contains(&c.events) && span <= 15 * MINUTE,
                        "{c:?}"
                    );
                    assert!(c.computers.len() <= 5);
                    let u = id(&c.users[0]);
                    assert!(
                        c.computers
                            .iter()
                            .all(|k| first_use(u, id(k)).is_some_and(|t| t < c.start)),
                        "{c:?}"
                    );
                }
                Kind::Chain => {
                    assert!((2..=3).contains(&c.users.len()), "{c:?}");
                    assert!(
                        (8..=15).contains(&c.computers.len()) && span <= 3 * HOUR + 20 * MINUTE,
                        "{c:?}"
                    );
                    assert!(new_to_users, "{c:?}");
                }
                Kind::Stealth => {
                    assert!(
                        (3..=6).contains(&c.computers.len()) && span <= 8 * HOUR + 20 * MINUTE,
                        "{c:?}"
                    );
                    assert!(new_to_users, "{c:?}");
                }
                Kind::Rare => {
                    assert_eq!(c.computers.len(), 2);
                    assert!(new_to_users, "{c:?}");
                    for k in &c.computers {
                        let users = users_of(id(k));
                        assert!((1..=2).contains(&users), "{c:?}: {k} has {users} users");
                    }
                }
                Kind::FanIn => {
                    assert!(
                        (20..=40).contains(&c.users.len()) && span <= 25 * MINUTE,
                        "{c:?}"
                    );
                    assert_eq!(c.target.as_deref(), Some(c.computers[0].as_str()));
                    assert!(new_to_users, "{c:?}");
                }
                Kind::Rollout => {
                    assert!(c.users.len() >= 200, "{c:?}");
                    let server = id(c.target.as_ref().unwrap());
                    assert!(server >= graph.computers, "a new server: {c:?}");
                }
                Kind::RoamingAdmin => {
                    assert!((20..=60).contains(&c.computers.len()), "{c:?}");
                    let u = id(&c.users[0]);
                    assert!(
                        c.computers
                            .iter()
                            .all(|k| first_use(u, id(k)).is_some_and(|t| t + DAY <= c.start)),
                        "{c:?}"
                    );
                }
                Kind::NewHire => {
                    assert!(id(&c.users[0]) >= graph.users, "a new account: {c:?}");
                    assert!(c.computers.len() >= 6, "{c:?}");
                }
                Kind::MultiDay => {
                    assert!((3..=15).contains(&c.computers.len()), "{c:?}");
                    assert!((2 * DAY..5 * DAY).contains(&span), "{c:?}");
                    assert!(new_to_users, "{c:?}");
                }
                Kind::OffHours => {
                    let hour = c.start % DAY / HOUR;
                    assert!(hour < 5 && span <= 90 * MINUTE, "{c:?}");
                    let u = id(&c.users[0]);
                    assert_eq!(graph.rhythms[u as usize], crate::model::Rhythm::Office);
                    let fresh = c.computers.iter().filter(|k| first_use(u, id(k)).is_none());
                    assert_eq!(fresh.count(), 1, "{c:?}");
                }
                Kind::SlowFanIn => {
                    assert!((8..=20).contains(&c.users.len()), "{c:?}");
                    assert!((2 * HOUR..=8 * HOUR).contains(&span), "{c:?}");
                    let target = id(c.target.as_ref().unwrap());
                    assert!((1..=5).contains(&users_of(target)), "{c:?}");
                    assert!(new_to_users, "{c:?}");
                }
                Kind::Outsider => {
                    assert!((3..=4).contains(&c.computers.len()), "{c:?}");
                    assert!(new_to_users && span <= 3 * HOUR, "{c:?}");
                }
                Kind::ServicePivot => {
                    let u = id(&c.users[0]);
                    assert_eq!(graph.rhythms[u as usize], crate::model::Rhythm::Steady);
                    assert!((2..=3).contains(&c.computers.len()), "{c:?}");
                    assert!(new_to_users && span <= HOUR, "{c:?}");
                }
                Kind::HelpDesk | Kind::DesktopSupport => {
                    // Every weekday brings workstations it never used.
                    assert!(c.computers.len() >= 20, "{c:?}");
                    for k in &c.computers {
                        assert!((1..=2).contains(&users_of(id(k))), "{c:?}");
                    }
                }
                Kind::NightlyScanner => {
                    assert!(id(&c.users[0]) >= graph.users, "its own account: {c:?}");
                    assert!(c.computers.len() >= 150, "{c:?}");
                    assert!(c.events as usize >= 14 * 150, "{c:?}");
                }
                Kind::MigrationMorning => {
                    assert!(c.users.len() >= 50, "{c:?}");
                    assert!((4..=8).contains(&c.computers.len()), "{c:?}");
                    assert!(c.computers.iter().all(|k| id(k) >= graph.computers));
                }
                Kind::PasswordSpray => {
                    assert!((20..=60).contains(&c.users.len()), "{c:?}");
                    assert_eq!(c.sources.len(), 1, "one foothold: {c:?}");
                    assert!(!c.computers.contains(&c.sources[0]), "{c:?}");
                }
                Kind::FootholdFanOut => {
                    assert!((3..=5).contains(&c.users.len()), "{c:?}");
                    assert_eq!(c.sources.len(), 1, "one foothold: {c:?}");
                    assert!(new_to_users, "{c:?}");
                }
                Kind::RedTeam => unreachable!("never generated"),
                Kind::ServiceAtDesktop => {
                    assert_eq!(c.users.len(), 1, "{c:?}");
                    assert_eq!(
                        graph.rhythms[id(&c.users[0]) as usize],
                        model::Rhythm::Steady
                    );
                    assert!(new_to_users, "{c:?}");
                }
            }
        }
        let mut accounts: Vec<&String> = campaigns
            .iter()
            .filter(|c| !matches!(c.kind, Kind::Rollout | Kind::MigrationMorning))
            .flat_map(|c| &c.users)
            .collect();
        let n = accounts.len();
        accounts.sort();
        accounts.dedup();
        assert_eq!(accounts.len(), n, "no account is in two campaigns");
    }
}
