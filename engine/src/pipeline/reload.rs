//! Hot reload: the policy watcher's candidates swapped in between batches,
//! the retired rule set's counts kept.

use crate::policy::Policy;
use crate::reload::{Candidate, PolicyWatcher, ReloadEvent};
use std::time::Instant;

use super::{Pipeline, ReloadTimings, intern_all};

impl<'o> Pipeline<'o> {
    /// Takes policy changes from `watcher` from now on, swapping each in
    /// between two batches.
    pub fn watch_policy(&mut self, watcher: PolicyWatcher) {
        self.watcher = Some(watcher);
    }

    /// The policy in use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Applies what the policy watcher has ready (between batches only).
    pub(super) fn apply_reloads(&mut self) {
        while let Some(event) = self.watcher.as_ref().and_then(PolicyWatcher::try_next) {
            match event {
                ReloadEvent::Ready(candidate) => self.swap_policy(*candidate),
                ReloadEvent::Refused(_) => self.counters.policy_reloads_refused += 1,
            }
        }
    }

    /// Swaps in a new policy version. State (windows, devices, host
    /// popularity, open incidents) carries on; only scoring changes.
    pub(super) fn swap_policy(&mut self, candidate: Candidate) {
        let started = Instant::now();
        let Candidate {
            policy,
            rules,
            noticed,
        } = candidate;
        for rule in &self.rules.rules {
            self.counters
                .retired_rules
                .entry(rule.id.clone())
                .or_default()
                .add(rule);
        }
        // Matching by flag label drops the flags of a rule that went from
        // enforce to shadow: shadow hits never count toward an alert.
        self.alerts.reload(
            &policy.file.alerts,
            policy.file.risk.bands,
            &self.rules.flag_labels,
            &rules.flag_labels,
        );
        let entity_risk = &policy.file.entity_risk;
        let (old_rules, new_rules) = (&self.rules.flag_labels, &rules.flag_labels);
        let fleet_ledgers = self.fleet.as_mut().map(|fleet| fleet.computer_ledgers());
        for ledgers in std::iter::once(&mut self.entities).chain(fleet_ledgers) {
            ledgers.remap_rules(old_rules, new_rules);
            ledgers.reconfigure(
                entity_risk.window.as_secs(),
                entity_risk.half_life.as_secs(),
            );
        }
        self.allow_users = intern_all(&mut self.users, &policy.file.allowlist.users);
        self.allow_computers = intern_all(&mut self.computers, &policy.file.allowlist.computers);
        let previous = std::mem::replace(&mut self.rules, rules);
        self.policy = policy;
        self.counters.policy_reloads += 1;
        let pause = started.elapsed();
        let effective = noticed.elapsed();
        let timings = &mut self.counters.reload_timings;
        timings.pause_us.push(pause.as_micros() as u64);
        timings.effective_ms.push(effective.as_millis() as u64);
        tracing::info!(
            policy = %self.policy.origin,
            policy_version = %self.rules.version,
            previous_version = %previous.version,
            pause_us = pause.as_micros() as u64,
            effective_after_ms = effective.as_millis() as u64,
            "policy reloaded"
        );
        if let Some(watcher) = &self.watcher {
            watcher.retire(previous);
        }
    }

    /// Pause and reload-to-effect time of every policy swap so far.
    pub fn reload_timings(&self) -> &ReloadTimings {
        &self.counters.reload_timings
    }

    /// The version every scored event records.
    pub fn policy_version(&self) -> &str {
        &self.rules.version
    }
}
