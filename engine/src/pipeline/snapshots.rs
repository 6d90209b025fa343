//! The pipeline's state written into and read back from a state snapshot,
//! with the counts a resumed run carries on.

use crate::clock::EventClock;
use crate::event::Interner;
use crate::input::Reject;
use crate::order::Orderer;
use crate::snapshot::{
    self, BodyRef, Counts, EncodedSnapshot, Extras, HeldDetails, SnapshotError, SnapshotMeta,
    SnapshotParts,
};
use std::io;

use super::{Pipeline, Restore, intern_all, unix_now, with_lateness};

impl<'o> Pipeline<'o> {
    /// Writes the whole state to `out` as a snapshot ([`crate::snapshot`]),
    /// after scoring the partial batch (results do not depend on batching),
    /// so that the snapshot stands for exactly the input pushed so far.
    /// Returns what it says about itself and its size in bytes.
    pub fn write_snapshot(
        &mut self,
        out: &mut impl io::Write,
    ) -> Result<(SnapshotMeta, u64), SnapshotError> {
        let (meta, encoded) = self.encode_snapshot_into(Vec::new())?;
        let bytes = encoded.write_to(out)?;
        Ok((meta, bytes))
    }

    /// [`Pipeline::write_snapshot`]'s part that needs the pipeline: the
    /// snapshot encoded (into `buffer`), to be compressed and written
    /// elsewhere.
    pub(super) fn encode_snapshot_into(
        &mut self,
        buffer: Vec<u8>,
    ) -> Result<(SnapshotMeta, EncodedSnapshot), SnapshotError> {
        self.with_snapshot_parts(|parts| EncodedSnapshot::encode(parts, buffer))
    }

    /// The snapshot's parts, as they stand after scoring the partial batch,
    /// handed to `use_parts` (to encode, or to write without encoding first).
    pub(super) fn with_snapshot_parts<R>(
        &mut self,
        use_parts: impl FnOnce(&SnapshotParts<'_, BodyRef<'_>>) -> Result<R, SnapshotError>,
    ) -> Result<(SnapshotMeta, R), SnapshotError> {
        self.process_ready()?;
        self.score_batch()?;
        let mut sinks = Vec::new();
        self.outputs.scored.snapshot_state(&mut sinks)?;
        let counts = self.counts();
        let meta = SnapshotMeta {
            policy_version: self.rules.version.clone(),
            events_read: self.counters.events_read,
            events_scored: self.counters.scored,
            alert_publications: self.counters.alert_publications,
            dead_letters: self.counters.invalid + self.counters.late + self.counters.future,
            latest_event_time: self.orderer.latest(),
            users: self.users.len() as u64,
            computers: self.computers.len() as u64,
            device_pairs: self.state.device_pairs() as u64,
            taken_at: unix_now(),
        };
        let body = BodyRef {
            meta: &meta,
            time_base_unix: self.options.time_base.base_unix,
            users: self.users.names().collect(),
            computers: self.computers.names().collect(),
            orderer: self.orderer.snapshot(),
            state: &self.state,
            entities: &self.entities,
            rule_labels: &self.rules.flag_labels,
            incidents: self.alerts.open_snapshot(),
            closed_through: self.closed_through,
            counts,
            sinks,
        };
        let extras = Extras {
            orderer_clock: self.orderer.clock(),
            clock: self.clock.snapshot(),
            future: self.counters.future,
        };
        let details = HeldDetails::of(&body.orderer, &extras.clock);
        let computers = &self.computers;
        let decided = self
            .fleet
            .as_ref()
            .map(|fleet| fleet.computers_decided(computers));
        let used = use_parts(&SnapshotParts {
            body: &body,
            extras: &extras,
            state: &self.state,
            details: &details,
            computers_decided: decided.as_ref(),
        })?;
        Ok((meta, used))
    }

    /// Takes the state of a snapshot [`Pipeline::write_snapshot`] wrote, as
    /// `restore` says, under this pipeline's policy. Only before anything
    /// has been read.
    /// Admits the arrivals a restored state kept waiting for their
    /// neighbours as they are: for a state whose clock was rewound
    /// ([`crate::clock::EventClock::admit_pending`]).
    pub fn admit_pending_arrivals(&mut self) -> io::Result<()> {
        self.clock.admit_pending(&mut self.decided);
        self.admit_decided()
    }

    pub fn restore_snapshot(
        &mut self,
        input: &mut impl io::Read,
        restore: Restore,
    ) -> Result<SnapshotMeta, SnapshotError> {
        if self.counters.events_read > 0 || self.users.len() > self.allow_users.len() {
            return Err(SnapshotError::NotFresh);
        }
        let body = snapshot::read(input)?;
        let base = self.options.time_base.base_unix;
        if body.time_base_unix != base {
            return Err(SnapshotError::TimeBase {
                snapshot: chrono::DateTime::from_timestamp(body.time_base_unix, 0)
                    .map_or_else(|| body.time_base_unix.to_string(), |t| t.to_rfc3339()),
                snapshot_unix: body.time_base_unix,
                run_unix: base,
            });
        }
        self.users = Interner::from_names(body.users.iter().map(String::as_str));
        self.computers = Interner::from_names(body.computers.iter().map(String::as_str));
        self.allow_users = intern_all(&mut self.users, &self.policy.file.allowlist.users);
        self.allow_computers =
            intern_all(&mut self.computers, &self.policy.file.allowlist.computers);
        self.orderer = Orderer::restore(
            self.policy.file.watermark.allowed_lateness.as_secs(),
            body.orderer,
            body.extras.orderer_clock,
        );
        let clock = with_lateness(&self.policy, self.options.clock);
        self.clock = EventClock::restore(clock, body.extras.clock);
        for arrival in self.clock.pending() {
            self.orderer.claim(&arrival.event);
        }
        self.orderer
            .set_max_held(self.options.limits.max_held_events);
        self.state = body.state;
        self.state
            .set_max_window_events(self.options.limits.max_window_events);
        let entity_risk = &self.policy.file.entity_risk;
        self.entities = body.entities;
        self.entities.reconfigure(
            entity_risk.window.as_secs(),
            entity_risk.half_life.as_secs(),
        );
        self.entities
            .remap_rules(&body.rule_labels, &self.rules.flag_labels);
        self.closed_through = body.closed_through;
        self.computers_decided = body.computers_decided;
        if restore == Restore::Resume {
            self.alerts
                .restore_open(body.incidents, &body.rule_labels, &self.rules.flag_labels);
            self.restore_counts(body.counts);
            self.counters.future = body.extras.future;
            self.counters.future_logged = body.extras.future;
            self.outputs
                .scored
                .restore_state(&body.sinks, &self.users, &self.computers)?;
        }
        Ok(body.meta)
    }

    /// The counters a snapshot keeps; the current rules' totals are folded
    /// into the per-rule reports.
    pub(super) fn counts(&self) -> Counts {
        let c = &self.counters;
        let mut rules = c.retired_rules.clone();
        for rule in &self.rules.rules {
            rules.entry(rule.id.clone()).or_default().add(rule);
        }
        let mut invalid_by_reason: Vec<(String, u64)> = c
            .invalid_by_reason
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        invalid_by_reason.sort();
        Counts {
            events_read: c.events_read,
            invalid: c.invalid,
            duplicates: c.duplicates,
            late: c.late,
            scored: c.scored,
            alerts: c.alerts,
            alert_publications: c.alert_publications,
            by_level: c.by_level,
            invalid_by_reason,
            policy_reloads: c.policy_reloads,
            policy_reloads_refused: c.policy_reloads_refused,
            rules: rules.into_iter().collect(),
            state_caps: c.caps,
        }
    }

    pub(super) fn restore_counts(&mut self, counts: Counts) {
        let c = &mut self.counters;
        c.events_read = counts.events_read;
        c.invalid = counts.invalid;
        c.duplicates = counts.duplicates;
        c.late = counts.late;
        c.scored = counts.scored;
        c.alerts = counts.alerts;
        c.alert_publications = counts.alert_publications;
        c.by_level = counts.by_level;
        c.invalid_by_reason = counts
            .invalid_by_reason
            .into_iter()
            .filter_map(|(kind, n)| {
                let kind = Reject::KINDS.iter().find(|k| **k == kind)?;
                Some((*kind, n))
            })
            .collect();
        c.policy_reloads = counts.policy_reloads;
        c.policy_reloads_refused = counts.policy_reloads_refused;
        c.caps = counts.state_caps;
        c.caps_logged = counts.state_caps;
        // Totals so far count as a retired rule set's: the summary adds the
        // current rules' counts from here on.
        c.retired_rules = counts
            .rules
            .into_iter()
            .map(|(id, mut report)| {
                report.disabled = false;
                (id, report)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_written_as_it_is_encoded_is_the_buffered_one() {
        crate::pipeline::with_native_pipeline(|pipeline| {
            for t in 0..3_000u32 {
                let line = format!("{},U{},C{}", t * 7, t % 40, t % 90);
                pipeline
                    .push_line(
                        u64::from(t) + 1,
                        crate::input::Line::Complete(line.as_bytes()),
                    )
                    .unwrap();
            }
            // `taken_at` is in whole seconds: the two are taken again if a
            // second turned between them.
            for _ in 0..3 {
                let mut buffered = Vec::new();
                pipeline.write_snapshot(&mut buffered).unwrap();
                let (_, streamed) = pipeline
                    .with_snapshot_parts(|parts| {
                        let mut out = Vec::new();
                        let bytes = parts.write_to(&mut out)?;
                        assert_eq!(bytes, out.len() as u64);
                        Ok(out)
                    })
                    .unwrap();
                let taken = |bytes: &[u8]| snapshot::read_meta(&mut &bytes[..]).unwrap().taken_at;
                if taken(&buffered) == taken(&streamed) {
                    assert_eq!(streamed, buffered);
                    return;
                }
            }
            panic!("three seconds turned in three tries");
        })
    }
}
