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
//!
//! This file holds the kinds, the plan and the planner's state; the planner's
//! parts are apart: `pick` (accounts, computers and times that fit),
//! `attacks` and `habits` (one planner per kind), `means` (how each logon
//! is made, for the full record).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_distr::weighted::WeightedAliasIndex;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::model::{self, Graph};
use crate::record::Means;
use crate::{computer_name, user_name};

mod attacks;
mod habits;
mod means;
mod pick;

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
}

#[cfg(test)]
mod tests;
