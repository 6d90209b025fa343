//! Released events observed into features, batched, scored by the rules,
//! combined into risk, added up per entity and alerted, and written out.

use crate::alerts::{Alert, AlertStatus};
use crate::event::Event;
use crate::limits::Cap;
use crate::policy::RiskLevel;
use crate::risk;
use crate::sinks::ScoredBatch;
use authpulse_rules_sdk::Features;
use std::io;
use std::time::Instant;

use super::escalation::Escalation;
use super::{Pipeline, inspect, unix_now};

impl<'o> Pipeline<'o> {
    /// Computes features for released events, scoring each full batch.
    pub(super) fn process_ready(&mut self) -> io::Result<()> {
        let forced = self.orderer.take_forced_releases();
        self.cap_hit(Cap::HeldEvents, forced);
        let mut ready = std::mem::take(&mut self.ready);
        for event in ready.drain(..) {
            let features = self.state.observe_event(&event);
            if self.batch.events.is_empty() {
                self.batch_since = Some(Instant::now());
            }
            self.batch.events.push(event);
            self.batch.features.push(features);
            if self.batch.events.len() == self.options.batch_size {
                self.score_batch()?;
            }
        }
        self.ready = ready;
        let trimmed = self.state.take_window_trims();
        self.cap_hit(Cap::WindowEvents, trimmed);
        Ok(())
    }

    /// Scores the partial batch if its first event has waited longer than
    /// the batch delay.
    pub(super) fn score_batch_past_delay(&mut self) -> io::Result<()> {
        if self
            .batch_since
            .is_some_and(|since| since.elapsed() >= self.options.max_batch_delay)
        {
            self.score_batch()?;
        }
        Ok(())
    }

    /// Runs the rules over the batch, aggregates, accumulates entity risk,
    /// alerts and writes it out.
    pub(super) fn score_batch(&mut self) -> io::Result<()> {
        if self.watcher.is_some() {
            self.apply_reloads();
        }
        let n = self.batch.events.len();
        if n == 0 {
            return Ok(());
        }
        self.batch_since = None;
        let started = Instant::now();
        let processed_at = unix_now();
        self.rules.evaluate(&self.batch.features);
        let bands = self.policy.file.risk.bands;
        let check_allowlist = !self.allow_users.is_empty() || !self.allow_computers.is_empty();
        let Batch {
            events,
            scores,
            levels,
            flags,
            features,
        } = &mut self.batch;
        let counting = self.rules.scoring_mask;
        let decides_computers = !self.alerts.computers_apart();
        let mut escalation = Escalation {
            entities: &mut self.entities,
            alerts: &mut self.alerts,
            rules: &self.rules,
            time_base: self.options.time_base,
            users: &self.users,
            computers: &self.computers,
            decides_computers,
        };
        for (i, event) in events.iter().enumerate() {
            if event.event_time > self.closed_through {
                self.closed_through = event.event_time;
                escalation.close_due(event.event_time);
            }
            let (mut score, mut fired) = risk::combine(
                self.rules
                    .scoring_weights()
                    .zip(&self.rules.rules)
                    .map(|(weight, rule)| (weight, &rule.verdicts[i])),
            );
            if check_allowlist
                && (self.allow_users.contains(&event.user)
                    || self.allow_computers.contains(&event.computer))
            {
                (score, fired) = (0, 0);
            }
            let level = bands.level(score);
            scores.push(score);
            levels.push(level);
            flags.push(fired);
            self.counters.by_level[level as usize] += 1;
            if fired & counting != 0 {
                escalation.add(i, event, score, fired & counting);
            }
        }
        self.counters.scored += n as u64;
        self.outputs.scored.write_batch(&ScoredBatch {
            events,
            features,
            scores,
            levels,
            flags,
            rules: &self.rules,
            users: &self.users,
            computers: &self.computers,
            time_base: self.options.time_base,
        })?;
        if let Some(fleet) = self.fleet.as_mut() {
            fleet.keep_first_visits(events, features, |event| {
                event.event_id(self.options.time_base, &self.users, &self.computers)
            });
        }
        let now = events[n - 1].event_time;
        events.clear();
        features.clear();
        scores.clear();
        levels.clear();
        flags.clear();
        // Entities quiet for a whole window hold nothing worth keeping.
        if self.counters.batches.is_multiple_of(256) {
            self.entities.expire(now);
        }
        self.emit_alerts()?;
        self.ingest_clock = processed_at;
        let took = started.elapsed();
        self.counters.batches += 1;
        self.counters.batch_time += took;
        if let Some(durations) = self.counters.batch_durations.as_mut()
            && durations.len() < inspect::MAX_PENDING_DURATIONS
        {
            durations.push(took.as_secs_f32());
        }
        Ok(())
    }

    /// Renders and sends what the alert engine has published.
    pub(super) fn emit_alerts(&mut self) -> io::Result<()> {
        let bands = self.policy.file.risk.bands;
        for publication in self.alerts.take_published() {
            let alert = Alert::render(
                &publication,
                &self.users,
                &self.computers,
                &self.rules,
                bands,
            );
            self.outputs.alerts.send(&alert)?;
            self.counters.alert_publications += 1;
            if publication.status == AlertStatus::Open {
                self.counters.alerts += 1;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Batch {
    pub(super) events: Vec<Event>,
    pub(super) features: Vec<Features>,
    pub(super) scores: Vec<u8>,
    pub(super) levels: Vec<RiskLevel>,
    pub(super) flags: Vec<u32>,
}
