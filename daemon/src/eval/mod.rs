//! Detection quality, measured: labelled campaigns hidden in background
//! activity, the pipeline's alerts matched against them, and the same data
//! judged by a naive baseline (an alert on every new device), side by side.
//!
//! An alert *detects* a campaign when its entity is one of the campaign's
//! accounts (a user alert) or computers, or the computers it works from
//! (a computer alert), its evidence
//! involves the campaign's computers (a user alert) or accounts (a computer
//! alert), and its span of contributing events overlaps the campaign's; a
//! computer alert whose events are the campaign's accounts on its
//! computers detects it too, whatever the computer (a source rule's alert
//! on the desk an attack works from, when that is its account's own and
//! so not among the campaign's `sources`). Time to detect is from the
//! attack's first event to the event that opened the alert (event time). An
//! alert opened after the burn-in that detects no attack is a false alert,
//! unless it is *after an attack*: on one of an attack's accounts or
//! computers, opened within [`AFTER_ATTACK_S`] of the attack's end. The
//! rules weigh the last three days of an account against its history, so
//! an account that was just sprayed across dozens of computers keeps
//! looking like it for three days: such an alert's evidence is the attack,
//! and it is counted apart (neither a detection nor a false alert). Benign
//! cases (roll-outs, roaming admins, new hires, and the habits that
//! run from the first day: help desk, desktop support, nightly scanners)
//! are counted apart as well, since each must stay quiet once the burn-in
//! is over.
//!
//! `matching` judges the alerts against the campaigns, `baseline` watches
//! every scored event (the naive baseline, and how near each campaign
//! came); this file turns both into the [`Scorecard`].

use std::collections::BTreeMap;

use authpulse_generator::{Campaign, Kind};
use serde::Serialize;

mod baseline;
mod matching;

pub use baseline::{Closest, NaiveBaseline};
pub use matching::{AlertLog, Matched};

/// How this scorecard counts (raised when the counting changes): part of
/// the key under which `tune` keeps an evaluation, so that one counted
/// differently is run again.
pub const SCORECARD_VERSION: u32 = 2;

/// How long after an attack an alert on one of its accounts or computers
/// counts as about the attack: the longest look-back of the built-in
/// rules (`slow_spread`'s three days).
pub const AFTER_ATTACK_S: u32 = 3 * 86_400;

/// Results for one kind of campaign.
#[derive(Clone, Debug, Serialize)]
pub struct KindResult {
    pub kind: Kind,
    /// Attacks alike in what gives them away (see `Kind::family`).
    pub family: &'static str,
    /// One of the six kinds the built-in rules were first written for.
    pub first: bool,
    pub campaigns: u32,
    pub detected: u32,
    /// Time to detect (event time, seconds): median and 95th percentile of
    /// the detected ones.
    pub ttd_p50_s: Option<u32>,
    pub ttd_p95_s: Option<u32>,
    pub naive_detected: u32,
    pub naive_ttd_p50_s: Option<u32>,
}

/// Totals over the attacks, for AuthPulse or the naive baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub campaigns: u32,
    pub detected: u32,
    pub recall: f64,
    /// Alerts opened after the burn-in.
    pub alerts: u64,
    /// Of those, alerts on an attack's entity within three days after it,
    /// detecting no attack: the attack's evidence still counting.
    pub after_attack: u64,
    /// Alerts that detect no attack and are not after one.
    pub false_alerts: u64,
    pub false_alerts_per_day: f64,
    /// Alerts after the burn-in that are not false (they detect an attack
    /// or come after one), over all of them.
    pub precision: f64,
    pub ttd_p50_s: Option<u32>,
    pub ttd_p95_s: Option<u32>,
}

/// A benign kind and how many of its cases alerted.
#[derive(Clone, Debug, Serialize)]
pub struct BenignResult {
    pub kind: Kind,
    pub cases: u32,
    pub alerted: u32,
}

/// A campaign the pipeline missed, or an alert that matched no attack.
#[derive(Clone, Debug, Serialize)]
pub struct Note {
    pub id: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scorecard {
    pub kinds: Vec<KindResult>,
    pub authpulse: Totals,
    pub naive: Totals,
    pub benign: Vec<BenignResult>,
    /// Alerts during the burn-in, per day (not counted as false alerts).
    pub burn_in_alerts: Vec<u64>,
    /// Per rule: how many burn-in alerts and false alerts it took part in.
    pub burn_in_alerts_by_rule: BTreeMap<String, u64>,
    pub false_alerts_by_rule: BTreeMap<String, u64>,
    pub missed: Vec<Note>,
    /// The false alerts (at most 50).
    pub false_alerts: Vec<Note>,
    /// The alerts after an attack on its entity (at most 50).
    pub after_attack: Vec<Note>,
    /// The alerts on benign cases.
    pub benign_alerts: Vec<Note>,
}

/// Matches the alerts in `log` and the baseline's hits against `campaigns`.
/// `days` of data, the first `burn_in_days` of them burn-in.
pub fn score(
    campaigns: &[Campaign],
    log: &AlertLog,
    naive: &NaiveBaseline,
    days: u32,
    burn_in_days: u32,
) -> Scorecard {
    let burn_in_end = burn_in_days * 86_400;
    let judged_days = f64::from(days.saturating_sub(burn_in_days).max(1));
    let Matched {
        detected_at,
        alerts,
        true_alerts,
        burn_in_alerts,
        mut false_alerts,
        mut after_attack,
        benign_alerts,
        burn_in_alerts_by_rule,
        false_alerts_by_rule,
    } = log.match_campaigns(campaigns, burn_in_end);
    let attacks: Vec<(usize, &Campaign)> = campaigns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.benign)
        .collect();
    let ttd = |hits: &[Option<u32>], idx: &[usize]| -> Vec<u32> {
        let mut v: Vec<u32> = idx
            .iter()
            .filter_map(|&i| hits[i].map(|t| t.saturating_sub(campaigns[i].start)))
            .collect();
        v.sort_unstable();
        v
    };
    let mut kinds: Vec<Kind> = attacks.iter().map(|(_, c)| c.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let kind_results = kinds
        .iter()
        .map(|&kind| {
            let idx: Vec<usize> = attacks
                .iter()
                .filter(|(_, c)| c.kind == kind)
                .map(|&(i, _)| i)
                .collect();
            let ours = ttd(&detected_at, &idx);
            let theirs = ttd(&naive.first_hit, &idx);
            KindResult {
                kind,
                family: kind.family(),
                first: Kind::FIRST.contains(&kind),
                campaigns: idx.len() as u32,
                detected: ours.len() as u32,
                ttd_p50_s: quantile(&ours, 0.5),
                ttd_p95_s: quantile(&ours, 0.95),
                naive_detected: theirs.len() as u32,
                naive_ttd_p50_s: quantile(&theirs, 0.5),
            }
        })
        .collect();
    let all: Vec<usize> = attacks.iter().map(|&(i, _)| i).collect();
    let totals = |hits: &[Option<u32>], alerts: u64, after_attack: u64, false_alerts: u64| {
        let found = ttd(hits, &all);
        Totals {
            campaigns: all.len() as u32,
            detected: found.len() as u32,
            recall: ratio(found.len() as u64, all.len() as u64),
            alerts,
            after_attack,
            false_alerts,
            false_alerts_per_day: false_alerts as f64 / judged_days,
            precision: ratio(alerts - false_alerts, alerts),
            ttd_p50_s: quantile(&found, 0.5),
            ttd_p95_s: quantile(&found, 0.95),
        }
    };
    let after = after_attack.len() as u64;
    let authpulse = totals(&detected_at, alerts, after, alerts - true_alerts - after);
    let naive_totals = totals(
        &naive.first_hit,
        naive.alerts,
        naive.after_attack,
        naive.false_alerts,
    );
    let mut benign: BTreeMap<Kind, BenignResult> = BTreeMap::new();
    for (i, c) in campaigns.iter().enumerate().filter(|(_, c)| c.benign) {
        let entry = benign.entry(c.kind).or_insert(BenignResult {
            kind: c.kind,
            cases: 0,
            alerted: 0,
        });
        entry.cases += 1;
        entry.alerted += u32::from(detected_at[i].is_some());
    }
    let missed = attacks
        .iter()
        .filter(|&&(i, _)| detected_at[i].is_none())
        .map(|&(i, c)| Note {
            id: format!("campaign {}", c.id),
            text: format!(
                "{} ({}); {}",
                c.description,
                c.users.join(" "),
                naive.closest[i].describe()
            ),
        })
        .collect();
    false_alerts.truncate(50);
    after_attack.truncate(50);
    Scorecard {
        kinds: kind_results,
        authpulse,
        naive: naive_totals,
        benign: benign.into_values().collect(),
        burn_in_alerts,
        burn_in_alerts_by_rule,
        false_alerts_by_rule,
        missed,
        false_alerts,
        after_attack,
        benign_alerts,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests;
