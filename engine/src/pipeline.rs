//! The scoring pipeline: records in, scored events, alerts and dead letters out.
//!
//! ```text
//! line -> parse/validate -> intern -> EventClock (dated too far ahead?)
//!      -> Orderer (late? duplicate? hold; the clock moves the watermark)
//!      -> EngineState::observe (features, in event-time order) -> batch
//!      -> RuleSet::evaluate (one call per rule per batch) -> risk::combine
//!      -> EntityRisk (per user and computer) -> AlertEngine (incidents) -> sinks
//! ```
//!
//! Single-threaded by design: the per-event work is a few hash lookups and
//! counter updates, and one ordered thread is what makes results independent of
//! batching. Batches only amortise the calls into the rule modules.

use std::collections::BTreeMap;
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use authpulse_rules_sdk::Features;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::alerts::{Alert, AlertEngine, AlertStatus};
use crate::clock::{Arrival, ClockOptions, EventClock, Verdict};
use crate::entity::{Contribution, EntityKind, EntityRisk, MAX_RULES};
use crate::event::{EventId, Interner, NameId, TimeBase};
use crate::input::{self, Format, Frontier, Line, Record, Reject, Source};
use crate::limits::{Cap, CapHits, StateLimits};
use crate::metrics::{LagHistogram, MetricsSnapshot};
use crate::order::{Admission, Orderer, Pending};
use crate::policy::{Policy, PolicyError, RiskLevel};
use crate::reload::{Candidate, PolicyWatcher, ReloadEvent};
use crate::risk;
use crate::rules::{Engine, RuleReport, RuleSet};
use crate::sinks::{
    AlertSink, DeadLetter, DeadLetterSink, Disposition, Progress, Received, ReceivedSink,
    ScoredBatch, ScoredSink, StateStore, StoredEvents,
};
use crate::snapshot::{
    self, BodyRef, Counts, EncodedSnapshot, Extras, SnapshotError, SnapshotMeta,
};
use crate::state::EngineState;

mod inspect;
#[cfg(test)]
mod tests;
pub use inspect::{RiskyEvent, RuleInfo, Sizes, UserView};

/// Longest raw text kept in a dead letter.
const DEAD_LETTER_RAW_MAX: usize = 4096;

#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub format: Format,
    pub time_base: TimeBase,
    /// Events per call into the rules. Results do not depend on it.
    pub batch_size: usize,
    pub engine: Engine,
    /// How often sinks make their data durable and visible (table commits)
    /// while input continues; `None`: only at the end of input.
    pub commit_interval: Option<std::time::Duration>,
    /// Longest an event released by the watermark waits (wall clock) for
    /// its batch to fill before the batch is scored anyway: what a slow
    /// stream adds to an alert's latency.
    pub max_batch_delay: std::time::Duration,
    /// Bounds on the state.
    pub limits: StateLimits,
    /// How far ahead an event may be dated, and whether the source is live.
    pub clock: ClockOptions,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            format: Format::Auto,
            time_base: TimeBase::DEFAULT,
            batch_size: 4096,
            engine: Engine::Wasm,
            commit_interval: None,
            max_batch_delay: std::time::Duration::from_millis(50),
            limits: StateLimits::default(),
            clock: ClockOptions::default(),
        }
    }
}

/// Where the pipeline's results go.
pub struct Outputs<'a> {
    pub dead_letters: &'a mut dyn DeadLetterSink,
    pub alerts: &'a mut dyn AlertSink,
    pub scored: &'a mut dyn ScoredSink,
    /// Every valid record as received (`auth_events_raw`), if wanted.
    pub received: Option<&'a mut dyn ReceivedSink>,
}

#[derive(Default)]
struct Batch {
    events: Vec<Pending>,
    features: Vec<Features>,
    scores: Vec<u8>,
    levels: Vec<RiskLevel>,
    flags: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
struct Counters {
    events_read: u64,
    invalid: u64,
    duplicates: u64,
    late: u64,
    /// Refused as dated too far ahead; and as of the last checkpoint's log.
    future: u64,
    future_logged: u64,
    scored: u64,
    /// Incidents opened.
    alerts: u64,
    /// Alert publications (opens, updates, closes).
    alert_publications: u64,
    by_level: [u64; 4],
    invalid_by_reason: FxHashMap<&'static str, u64>,
    policy_reloads: u64,
    policy_reloads_refused: u64,
    /// Totals of rule sets replaced by reloads, by rule id.
    retired_rules: BTreeMap<String, RuleReport>,
    reload_timings: ReloadTimings,
    batches: u64,
    batch_time: std::time::Duration,
    /// Each batch's scoring time since last drained, once asked for
    /// ([`Pipeline::time_batches`]).
    batch_durations: Option<Vec<f32>>,
    /// Lag (event time to reading) of events read since the last metrics
    /// snapshot.
    lag: LagHistogram,
    /// Duplicates the warehouse already stored (not kept in snapshots).
    already_stored: u64,
    /// Times each state limit was hit, and as of the last checkpoint's log.
    caps: CapHits,
    caps_logged: CapHits,
}

/// How each policy swap went, in order (for `bench --reload`).
#[derive(Clone, Debug, Default)]
pub struct ReloadTimings {
    /// Time the hot path stood still for each swap.
    pub pause_us: Vec<u64>,
    /// From the change being noticed on disk to the swap.
    pub effective_ms: Vec<u64>,
}

/// The JSON line `run` prints at exit.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub events_read: u64,
    pub events_valid: u64,
    pub invalid: u64,
    /// Events seen before: in this input, or (`already_stored`) stored in
    /// the warehouse by another.
    pub duplicates: u64,
    /// Of the duplicates, those the warehouse already stored.
    #[serde(default)]
    pub already_stored: u64,
    pub late: u64,
    /// Refused as dated too far ahead of the event clock (or, live, of the
    /// wall clock): dead-lettered as `future`.
    #[serde(default)]
    pub future: u64,
    pub events_scored: u64,
    /// Incidents (alerts) opened.
    pub alerts: u64,
    /// Alert publications: each incident's opening, updates and closing.
    #[serde(default)]
    pub alert_publications: u64,
    pub risk_levels: BTreeMap<String, u64>,
    pub rule_hits: BTreeMap<String, u64>,
    pub rule_failures: BTreeMap<String, u64>,
    pub invalid_by_reason: BTreeMap<String, u64>,
    pub users: u64,
    pub computers: u64,
    pub device_pairs: u64,
    /// Heap memory of the detection state at exit, in bytes: windows, device
    /// history, host popularity, baselines and entity risk.
    #[serde(default)]
    pub state_bytes: u64,
    /// Times each state limit was hit ([`crate::limits`]).
    pub state_caps: BTreeMap<String, u64>,
    pub policy_version: String,
    /// Per rule (by id, across reloads): mode, evaluations, hits, failures,
    /// time spent.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleReport>,
    /// Policy changes swapped in while running.
    #[serde(default)]
    pub policy_reloads: u64,
    /// Policy changes refused (the running policy stayed).
    #[serde(default)]
    pub policy_reloads_refused: u64,
    pub engine: String,
    pub elapsed_s: f64,
    pub events_per_s: f64,
}

/// How [`Pipeline::restore_snapshot`] takes a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Carry on the run that wrote it: its open incidents and its counters
    /// too (a restart).
    Resume,
    /// Start a new run with its history: windows, device history, host
    /// popularity, baselines, entity risk and the watermark, but no open
    /// incidents and counters from zero (a warm start).
    WarmStart,
}

pub struct Pipeline<'o> {
    options: PipelineOptions,
    policy: Policy,
    rules: RuleSet,
    users: Interner,
    computers: Interner,
    allow_users: FxHashSet<NameId>,
    allow_computers: FxHashSet<NameId>,
    clock: EventClock,
    /// What the clock decided, waiting to be admitted.
    decided: Vec<(Arrival, Verdict)>,
    orderer: Orderer,
    state: EngineState,
    entities: EntityRisk,
    alerts: AlertEngine,
    /// Event time up to which incidents have been closed.
    closed_through: i64,
    ready: Vec<Pending>,
    batch: Batch,
    counters: Counters,
    format: Option<Format>,
    scratch: Vec<u8>,
    ingest_clock: i64,
    /// When the oldest event of the current batch joined it.
    batch_since: Option<Instant>,
    offers_since_clock: u32,
    started: Instant,
    last_checkpoint: Instant,
    outputs: Outputs<'o>,
    watcher: Option<PolicyWatcher>,
    /// Where each checkpoint's state snapshot goes, if anywhere.
    state_store: Option<&'o mut dyn StateStore>,
    /// With another input added to a warehouse: what it already stores.
    stored: Option<StoredIds<'o>>,
    /// Checkpoints so far.
    checkpoints: u64,
    /// Events read at the last checkpoint.
    read_at_checkpoint: u64,
    /// What the source is, for the progress record.
    source_identity: serde_json::Value,
}

impl<'o> Pipeline<'o> {
    /// Loads the policy's rules and sets up empty state.
    pub fn new(
        policy: Policy,
        options: PipelineOptions,
        outputs: Outputs<'o>,
    ) -> Result<Self, PolicyError> {
        let batch_size = options.batch_size.max(1);
        let rules = RuleSet::load(&policy, options.engine, batch_size)?;
        let mut users = Interner::default();
        let mut computers = Interner::default();
        let allow_users = intern_all(&mut users, &policy.file.allowlist.users);
        let allow_computers = intern_all(&mut computers, &policy.file.allowlist.computers);
        let format = (options.format != Format::Auto).then_some(options.format);
        let entity_risk = &policy.file.entity_risk;
        let mut orderer = Orderer::new(policy.file.watermark.allowed_lateness.as_secs());
        orderer.set_max_held(options.limits.max_held_events);
        let mut state = EngineState::default();
        state.set_max_window_events(options.limits.max_window_events);
        let clock = with_lateness(&policy, options.clock);
        Ok(Pipeline {
            clock: EventClock::new(clock),
            decided: Vec::new(),
            orderer,
            entities: EntityRisk::new(
                entity_risk.window.as_secs(),
                entity_risk.half_life.as_secs(),
            ),
            alerts: AlertEngine::new(&policy.file.alerts, policy.file.risk.bands),
            closed_through: i64::MIN,
            options: PipelineOptions {
                batch_size,
                ..options
            },
            policy,
            rules,
            users,
            computers,
            allow_users,
            allow_computers,
            state,
            ready: Vec::new(),
            batch: Batch::default(),
            counters: Counters::default(),
            format,
            scratch: Vec::new(),
            ingest_clock: unix_now(),
            batch_since: None,
            offers_since_clock: 0,
            started: Instant::now(),
            last_checkpoint: Instant::now(),
            outputs,
            watcher: None,
            state_store: None,
            stored: None,
            checkpoints: 0,
            read_at_checkpoint: 0,
            source_identity: serde_json::Value::Null,
        })
    }

    /// Counts an event `stored` already holds as a duplicate rather than
    /// score and store it again (a run that adds another input).
    pub fn skip_stored(&mut self, stored: &'o mut dyn StoredEvents) {
        self.stored = Some(StoredIds {
            source: stored,
            days: BTreeMap::new(),
        });
    }

    /// Keeps a state snapshot at every checkpoint in `store`, named in the
    /// checkpoint's progress record.
    pub fn keep_state(&mut self, store: &'o mut dyn StateStore) {
        self.state_store = Some(store);
    }

    /// Numbers the next checkpoint `done + 1`: a resumed run carries on
    /// from the checkpoint it resumed at.
    pub fn resume_checkpoints(&mut self, done: u64) {
        self.checkpoints = done;
    }

    /// Says what the source is (e.g. a file's path and the hash of its
    /// first bytes), for the progress records.
    pub fn set_source_identity(&mut self, identity: serde_json::Value) {
        self.source_identity = identity;
    }

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
    fn apply_reloads(&mut self) {
        while let Some(event) = self.watcher.as_ref().and_then(PolicyWatcher::try_next) {
            match event {
                ReloadEvent::Ready(candidate) => self.swap_policy(*candidate),
                ReloadEvent::Refused(_) => self.counters.policy_reloads_refused += 1,
            }
        }
    }

    /// Swaps in a new policy version. State (windows, devices, host
    /// popularity, open incidents) carries on; only scoring changes.
    fn swap_policy(&mut self, candidate: Candidate) {
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
        self.entities
            .remap_rules(&self.rules.flag_labels, &rules.flag_labels);
        let entity_risk = &policy.file.entity_risk;
        self.entities.reconfigure(
            entity_risk.window.as_secs(),
            entity_risk.half_life.as_secs(),
        );
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

    pub fn events_read(&self) -> u64 {
        self.counters.events_read
    }

    /// Feeds one input line.
    pub fn push_line(&mut self, line_no: u64, line: Line<'_>) -> io::Result<()> {
        let bytes = match line {
            Line::TooLong { len, max, prefix } => {
                self.counters.events_read += 1;
                let reject = Reject::LineTooLong { len, max };
                return self.reject(line_no, prefix, reject);
            }
            Line::Complete(bytes) => bytes,
            Line::Record(record) => {
                self.counters.events_read += 1;
                self.format.get_or_insert(Format::Json);
                return match input::check(&record) {
                    Ok(()) => self.offer(line_no, None, record),
                    Err(reject) => {
                        let raw = input::render_record(&record);
                        self.reject(line_no, raw.as_bytes(), reject)
                    }
                };
            }
            // A live source is quiet: the clock moves on, and what it
            // releases is scored, so a slow stream is not held back by a
            // half-full batch.
            Line::Idle => {
                self.clock.quiet(unix_now(), &mut self.decided);
                self.admit_decided()?;
                return self.score_batch();
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let format = *self.format.get_or_insert_with(|| Format::detect(bytes));
        if format == Format::Csv && self.counters.events_read == 0 && input::is_header(bytes) {
            return Ok(());
        }
        self.counters.events_read += 1;
        if format == Format::Json {
            // JSON names that needed unescaping live in `scratch`, lent out here.
            let mut scratch = std::mem::take(&mut self.scratch);
            let outcome = match input::parse_json(bytes, &mut scratch) {
                Ok(record) => self.offer(line_no, Some(bytes), record),
                Err(reject) => self.reject(line_no, bytes, reject),
            };
            self.scratch = scratch;
            return outcome;
        }
        match input::parse_csv(bytes, self.options.time_base) {
            Ok(record) => self.offer(line_no, Some(bytes), record),
            Err(reject) => self.reject(line_no, bytes, reject),
        }
    }

    /// Takes in a valid record; `raw` is its line (`None`: it came decoded,
    /// and a dead letter writes it out as JSON).
    #[inline]
    fn offer(&mut self, line_no: u64, raw: Option<&[u8]>, record: Record<'_>) -> io::Result<()> {
        // Lag at arrival: how far behind the source the pipeline reads. The
        // watermark then holds each event its allowed lateness on purpose;
        // that wait is configuration, not lag.
        self.counters
            .lag
            .record(self.ingest_clock - record.event_time);
        let limits = self.options.limits;
        let user = if self.users.len() < limits.max_users {
            self.users.intern(record.user).0
        } else {
            match self.users.get(record.user) {
                Some(id) => id,
                None => {
                    let raw = raw_text(raw, &record);
                    return self.refuse_at_cap(line_no, &raw, Cap::Users, limits.max_users);
                }
            }
        };
        let computer = if self.computers.len() < limits.max_computers {
            self.computers.intern(record.computer).0
        } else {
            match self.computers.get(record.computer) {
                Some(id) => id,
                None => {
                    let raw = raw_text(raw, &record);
                    return self.refuse_at_cap(line_no, &raw, Cap::Computers, limits.max_computers);
                }
            }
        };
        let mut pending = Pending {
            event_time: record.event_time,
            user,
            computer,
            ingestion_time: record.ingestion_time.unwrap_or(self.ingest_clock),
            event_id: record.event_id,
        };
        if (self.outputs.received.is_some() || self.stored.is_some()) && pending.event_id.is_none()
        {
            // Derived once here, so the raw and curated rows carry the same id
            // without hashing twice.
            pending.event_id =
                Some(pending.event_id(self.options.time_base, &self.users, &self.computers));
        }
        // Behind the watermark already: it can only be later still once
        // the clock has heard its neighbours.
        if let Some(watermark) = self.orderer.watermark()
            && pending.event_time < watermark
        {
            let reject = Reject::Late {
                event_time: pending.event_time,
                watermark,
            };
            self.reject(line_no, &raw_text(raw, &record), reject)?;
            self.receive(line_no, &pending, Disposition::Late)?;
        } else if !self.orderer.claim(&pending) {
            // Held, or waiting for the clock: a repeat never gets a vote.
            self.counters.duplicates += 1;
            self.receive(line_no, &pending, Disposition::Duplicate)?;
        } else {
            let arrival = Arrival {
                event: pending,
                line: line_no,
            };
            self.clock
                .arrive(arrival, self.ingest_clock, &mut self.decided);
            if !self.decided.is_empty() {
                self.admit_decided()?;
            }
        }
        // A slow stream fills a batch slowly: past the delay, score what
        // there is. The clock is read every 64 offers, not per event.
        self.offers_since_clock += 1;
        if self.offers_since_clock >= 64 {
            self.offers_since_clock = 0;
            self.score_batch_past_delay()?;
        }
        Ok(())
    }

    /// Admits what the clock decided, then moves the watermark to the
    /// clock's time and processes what that releases.
    fn admit_decided(&mut self) -> io::Result<()> {
        let mut decided = std::mem::take(&mut self.decided);
        for (arrival, verdict) in decided.drain(..) {
            self.admit(arrival, verdict)?;
        }
        self.decided = decided;
        if let Some(now) = self.clock.now() {
            self.orderer
                .advance(now, (&self.users, &self.computers), &mut self.ready);
        }
        if !self.ready.is_empty() {
            self.process_ready()?;
        }
        Ok(())
    }

    /// Offers an arrival the clock decided on to the orderer (unless it
    /// is dated too far ahead or already stored), and records it as
    /// received.
    fn admit(&mut self, arrival: Arrival, verdict: Verdict) -> io::Result<()> {
        let Arrival { event, line } = arrival;
        let disposition = match verdict {
            Verdict::Future {
                bound,
                max_ahead,
                wall_clock,
            } => {
                let reject = Reject::Future {
                    event_time: event.event_time,
                    bound,
                    max_ahead,
                    wall_clock,
                };
                self.orderer.unclaim(&event);
                self.reject_parsed(line, &event, reject)?;
                Disposition::Future
            }
            Verdict::Admitted => {
                let already_stored = match self.stored.as_mut() {
                    Some(stored) => stored.contains(
                        event.event_time,
                        event.event_id.expect("derived on arrival"),
                    )?,
                    None => false,
                };
                if already_stored {
                    self.orderer.unclaim(&event);
                    self.counters.duplicates += 1;
                    self.counters.already_stored += 1;
                    Disposition::Duplicate
                } else {
                    match self.orderer.offer_claimed(
                        event,
                        (&self.users, &self.computers),
                        &mut self.ready,
                    ) {
                        Admission::Accepted => Disposition::Accepted,
                        Admission::Duplicate => unreachable!("a claimed event is no duplicate"),
                        Admission::Late { watermark } => {
                            let reject = Reject::Late {
                                event_time: event.event_time,
                                watermark,
                            };
                            self.reject_parsed(line, &event, reject)?;
                            Disposition::Late
                        }
                    }
                }
            }
        };
        self.receive(line, &event, disposition)
    }

    /// Records a valid record as received (`auth_events_raw`), if wanted.
    fn receive(&mut self, line: u64, event: &Pending, disposition: Disposition) -> io::Result<()> {
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.receive(&Received {
                line,
                event,
                event_id: event.event_id.expect("derived on arrival"),
                users: &self.users,
                computers: &self.computers,
                disposition,
            })?;
        }
        Ok(())
    }

    /// Dead-letters a record that parsed, its raw text written out again
    /// from what was parsed (the line itself is not kept while the clock
    /// waits for its neighbours).
    #[cold]
    fn reject_parsed(&mut self, line: u64, event: &Pending, reject: Reject) -> io::Result<()> {
        let format = self.format.unwrap_or(Format::Csv);
        let raw = input::render(
            format,
            event,
            self.options.time_base,
            &self.users,
            &self.computers,
        );
        self.reject(line, raw.as_bytes(), reject)
    }

    /// Scores the partial batch if its first event has waited longer than
    /// the batch delay.
    fn score_batch_past_delay(&mut self) -> io::Result<()> {
        if self
            .batch_since
            .is_some_and(|since| since.elapsed() >= self.options.max_batch_delay)
        {
            self.score_batch()?;
        }
        Ok(())
    }

    /// A new user or computer past its limit: dead-lettered and counted.
    #[cold]
    fn refuse_at_cap(
        &mut self,
        line_no: u64,
        raw: &[u8],
        cap: Cap,
        limit: usize,
    ) -> io::Result<()> {
        self.cap_hit(cap, 1);
        self.reject(line_no, raw, Reject::StateCap { cap, limit })
    }

    /// Counts `n` hits of `cap`; the first is logged at once, the rest at
    /// each checkpoint ([`Pipeline::log_caps`]).
    fn cap_hit(&mut self, cap: Cap, n: u64) {
        if n == 0 {
            return;
        }
        if self.counters.caps.get(cap) == 0 {
            let limits = self.options.limits;
            let limit = match cap {
                Cap::Users => limits.max_users,
                Cap::Computers => limits.max_computers,
                Cap::WindowEvents => limits.max_window_events,
                Cap::HeldEvents => limits.max_held_events,
            };
            tracing::warn!(
                cap = cap.name(),
                limit,
                effect = cap.effect(),
                "a state limit was reached"
            );
            self.counters.caps_logged.add(cap, n);
        }
        self.counters.caps.add(cap, n);
    }

    /// Logs the limits hit, and the events refused as dated too far ahead,
    /// again since the last time.
    fn log_caps(&mut self) {
        let future = self.counters.future;
        if future > self.counters.future_logged {
            tracing::warn!(
                since_last = future - self.counters.future_logged,
                total = future,
                "events dated too far ahead are still arriving (dead-lettered as future)"
            );
            self.counters.future_logged = future;
        }
        for cap in Cap::ALL {
            let (total, logged) = (
                self.counters.caps.get(cap),
                self.counters.caps_logged.get(cap),
            );
            if total > logged {
                tracing::warn!(
                    cap = cap.name(),
                    since_last = total - logged,
                    total,
                    "still at a state limit"
                );
                self.counters.caps_logged.add(cap, total - logged);
            }
        }
    }

    fn reject(&mut self, line_no: u64, raw: &[u8], reject: Reject) -> io::Result<()> {
        match reject {
            Reject::Late { .. } => self.counters.late += 1,
            Reject::Future { .. } => {
                if self.counters.future == 0 {
                    tracing::warn!(
                        line = line_no,
                        reason = %reject,
                        "an event dated too far ahead was refused (dead-lettered as future); \
                         it does not move the watermark"
                    );
                    self.counters.future_logged = 1;
                }
                self.counters.future += 1;
            }
            _ => {
                self.counters.invalid += 1;
                *self
                    .counters
                    .invalid_by_reason
                    .entry(reject.kind())
                    .or_default() += 1;
            }
        }
        let raw = &raw[..raw.len().min(DEAD_LETTER_RAW_MAX)];
        self.outputs.dead_letters.write(&DeadLetter {
            line: line_no,
            kind: reject.kind().to_string(),
            reason: reject.to_string(),
            raw: String::from_utf8_lossy(raw).into_owned(),
        })
    }

    /// Computes features for released events, scoring each full batch.
    fn process_ready(&mut self) -> io::Result<()> {
        let forced = self.orderer.take_forced_releases();
        self.cap_hit(Cap::HeldEvents, forced);
        let mut ready = std::mem::take(&mut self.ready);
        for event in ready.drain(..) {
            let features = self
                .state
                .observe(event.event_time, event.user, event.computer);
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

    /// Runs the rules over the batch, aggregates, accumulates entity risk,
    /// alerts and writes it out.
    fn score_batch(&mut self) -> io::Result<()> {
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
        for (i, event) in events.iter().enumerate() {
            if event.event_time > self.closed_through {
                self.closed_through = event.event_time;
                if self.alerts.any_due(event.event_time) {
                    self.alerts.close_due(event.event_time);
                }
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
                contribute(
                    &mut self.entities,
                    &mut self.alerts,
                    &self.rules,
                    i,
                    event,
                    score,
                    fired & counting,
                    (self.options.time_base, &self.users, &self.computers),
                );
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
    fn emit_alerts(&mut self) -> io::Result<()> {
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

    /// Checkpoints the sinks if the commit interval has passed; says whether
    /// it did. `position` is where the source's next record starts.
    pub fn maybe_checkpoint(&mut self, position: serde_json::Value) -> io::Result<bool> {
        match self.options.commit_interval {
            Some(interval) if self.last_checkpoint.elapsed() >= interval => {
                // A quiet source adds nothing to commit; the last commit is
                // waited for, so that it is reported (logged, counted) now
                // rather than when input comes again.
                if self.counters.events_read == self.read_at_checkpoint {
                    self.last_checkpoint = Instant::now();
                    if let Some(received) = self.outputs.received.as_deref_mut() {
                        received.flush()?;
                    }
                    self.outputs.scored.settle()?;
                    return Ok(false);
                }
                self.checkpoint(position)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// How far scoring has got, in event time (for the source's positions).
    pub fn frontier(&self) -> Frontier {
        // Released events wait only in the batch (`offer` drains `ready`);
        // the rest are held by the orderer.
        // Arrivals the clock has not decided on wait too.
        let undecided = || self.clock.pending().map(|a| a.event.event_time);
        let waiting = [
            self.batch.events.first().map(|e| e.event_time),
            self.orderer.earliest_held(),
            undecided().min(),
        ];
        Frontier {
            latest_read: self.orderer.latest().max(undecided().max()),
            scored_before: waiting.into_iter().flatten().min().unwrap_or(i64::MAX),
        }
    }

    /// Counters so far, the lag of every event read included.
    pub fn metrics(&self) -> MetricsSnapshot {
        let c = &self.counters;
        let failures = c.retired_rules.values().map(|r| r.failures).sum::<u64>()
            + self
                .rules
                .rules
                .iter()
                .map(|r| r.stats.failures)
                .sum::<u64>();
        MetricsSnapshot {
            events_read: c.events_read,
            invalid: c.invalid,
            duplicates: c.duplicates,
            late: c.late,
            future: c.future,
            events_scored: c.scored,
            alerts: c.alerts,
            rule_failures: failures,
            batches: c.batches,
            batch_time: c.batch_time,
            lag: c.lag.clone(),
        }
    }

    /// Makes everything scored so far durable and visible. Events still held
    /// by the orderer, or waiting in a partial batch, are not part of it
    /// (they are part of the raw table's commit: it records arrivals). Table
    /// sinks may only start their commit here and finish it by the next
    /// checkpoint or [`Pipeline::finish`].
    ///
    /// With a state store, the state is snapshotted first (which scores the
    /// partial batch) and every sink's commit records the [`Progress`]:
    /// `position` (where the source's next record starts), the snapshot's
    /// name and the checkpoint's number.
    pub fn checkpoint(&mut self, position: serde_json::Value) -> io::Result<()> {
        let progress = self.progress(position, false)?;
        self.checkpoint_sinks(&progress)
    }

    fn checkpoint_sinks(&mut self, progress: &Progress) -> io::Result<()> {
        self.log_caps();
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.checkpoint(progress)?;
        }
        self.outputs.scored.checkpoint(progress)?;
        self.outputs.alerts.checkpoint(progress)?;
        self.outputs.dead_letters.flush()?;
        self.last_checkpoint = Instant::now();
        self.read_at_checkpoint = self.counters.events_read;
        Ok(())
    }

    /// The next checkpoint's progress record, its state snapshot kept.
    fn progress(&mut self, position: serde_json::Value, complete: bool) -> io::Result<Progress> {
        self.checkpoints += 1;
        let checkpoint = self.checkpoints;
        let state = match self.state_store.take() {
            Some(store) => {
                let started = Instant::now();
                let saved = store.buffer().and_then(|buffer| {
                    let (_, encoded) = self.encode_snapshot_into(buffer)?;
                    store.save(checkpoint, encoded)
                });
                self.state_store = Some(store);
                let name = saved?;
                tracing::debug!(checkpoint, state = %name, ms = started.elapsed().as_millis() as u64, "state snapshot encoded");
                Some(name)
            }
            None => None,
        };
        Ok(Progress {
            checkpoint,
            complete,
            source: serde_json::json!({
                "identity": self.source_identity,
                "position": position,
            }),
            state,
        })
    }

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
    fn encode_snapshot_into(
        &mut self,
        buffer: Vec<u8>,
    ) -> Result<(SnapshotMeta, EncodedSnapshot), SnapshotError> {
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
        let encoded = EncodedSnapshot::encode(&body, &extras, &self.state.habits, buffer)?;
        Ok((meta, encoded))
    }

    /// Takes the state of a snapshot [`Pipeline::write_snapshot`] wrote, as
    /// `restore` says, under this pipeline's policy. Only before anything
    /// has been read.
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
    fn counts(&self) -> Counts {
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

    fn restore_counts(&mut self, counts: Counts) {
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

    /// End of input: releases and scores every held event and closes every
    /// incident (their alerts go out). [`Pipeline::finish`] does this too;
    /// calling it first lets a caller read the final [`Pipeline::metrics`].
    pub fn end_of_input(&mut self) -> io::Result<()> {
        self.clock.finish(&mut self.decided);
        self.admit_decided()?;
        let mut ready = std::mem::take(&mut self.ready);
        self.orderer
            .release_all((&self.users, &self.computers), &mut ready);
        self.ready = ready;
        self.process_ready()?;
        self.score_batch()?;
        self.alerts.close_all();
        self.emit_alerts()
    }

    /// End of input: [`Pipeline::end_of_input`], then flushes the sinks and
    /// returns the summary.
    pub fn finish(self) -> io::Result<Summary> {
        self.finish_at(serde_json::Value::Null)
    }

    /// [`Pipeline::finish`], recording `position` (the end of the source)
    /// as the run's last, complete, progress.
    pub fn finish_at(mut self, position: serde_json::Value) -> io::Result<Summary> {
        self.end_of_input()?;
        self.outputs.dead_letters.flush()?;
        let progress = if self.state_store.is_some() || !position.is_null() {
            self.progress(position, true)?
        } else {
            Progress::default()
        };
        // Start the raw table's commit first, so that it runs beside the
        // curated table's, then wait for each.
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.checkpoint(&progress)?;
        }
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.flush()?;
        }
        if progress.checkpoint > 0 {
            self.outputs.scored.checkpoint(&progress)?;
            self.outputs.alerts.checkpoint(&progress)?;
        }
        self.outputs.alerts.flush()?;
        self.outputs.scored.flush()?;
        if let Some(store) = self.state_store.as_deref_mut() {
            store.flush()?;
        }
        Ok(self.summary())
    }

    /// Stops before the end of input (a signal, not the end of the file):
    /// commits what is scored, with `position` and the state, and waits for
    /// it. The events the watermark holds and the open incidents and
    /// aggregation windows stay open, in the snapshot, so that the next
    /// start resumes as if there had been no stop. Without a state store
    /// there is nothing to resume from, and this is [`Pipeline::finish_at`].
    pub fn stop_at(mut self, position: serde_json::Value) -> io::Result<Summary> {
        if self.state_store.is_none() {
            return self.finish_at(position);
        }
        self.checkpoint(position)?;
        if let Some(received) = self.outputs.received.as_deref_mut() {
            received.flush()?;
        }
        self.outputs.scored.settle()?;
        self.outputs.alerts.flush()?;
        if let Some(store) = self.state_store.as_deref_mut() {
            store.flush()?;
        }
        Ok(self.summary())
    }

    /// The summary so far (what the run prints at its end).
    pub fn summary(&self) -> Summary {
        let c = &self.counters;
        let elapsed = self.started.elapsed().as_secs_f64();
        // Rules of replaced policy versions keep their counts.
        let mut rules = c.retired_rules.clone();
        for rule in &self.rules.rules {
            rules.entry(rule.id.clone()).or_default().add(rule);
        }
        let named = |count: fn(&RuleReport) -> u64| {
            rules
                .iter()
                .map(|(id, report)| (id.clone(), count(report)))
                .collect()
        };
        Summary {
            events_read: c.events_read,
            events_valid: c.events_read - c.invalid,
            invalid: c.invalid,
            duplicates: c.duplicates,
            already_stored: c.already_stored,
            late: c.late,
            future: c.future,
            events_scored: c.scored,
            alerts: c.alerts,
            alert_publications: c.alert_publications,
            risk_levels: RiskLevel::ALL
                .iter()
                .map(|l| (l.as_str().to_string(), c.by_level[*l as usize]))
                .collect(),
            rule_hits: named(|r| r.hits),
            rule_failures: named(|r| r.failures),
            invalid_by_reason: c
                .invalid_by_reason
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            users: self.users.len() as u64,
            computers: self.computers.len() as u64,
            device_pairs: self.state.device_pairs() as u64,
            state_bytes: (self.state.heap_bytes() + self.entities.heap_bytes()) as u64,
            state_caps: Cap::ALL
                .iter()
                .map(|cap| (cap.name().to_string(), c.caps.get(*cap)))
                .collect(),
            policy_version: self.rules.version.clone(),
            rules,
            policy_reloads: c.policy_reloads,
            policy_reloads_refused: c.policy_reloads_refused,
            engine: format!("{:?}", self.options.engine).to_lowercase(),
            elapsed_s: elapsed,
            events_per_s: if elapsed > 0.0 {
                c.events_read as f64 / elapsed
            } else {
                0.0
            },
        }
    }
}

/// Adds event `i` of the batch, on which the counting rules `fired` fired,
/// to its user's and its computer's risk: the user-side rules' part to the
/// user, the computer-side rules' part to the computer. Opens, extends or
/// updates their incidents.
#[allow(clippy::too_many_arguments)]
fn contribute(
    entities: &mut EntityRisk,
    alerts: &mut AlertEngine,
    rules: &RuleSet,
    i: usize,
    event: &Pending,
    event_score: u8,
    fired: u32,
    (time_base, users, computers): (TimeBase, &Interner, &Interner),
) {
    let event_id = event.event_id(time_base, users, computers);
    let mut reasons = [0u8; MAX_RULES];
    for (r, rule) in rules.rules.iter().enumerate() {
        if fired & (1 << r) != 0 {
            reasons[r] = rule.verdicts[i].reason.min(255) as u8;
        }
    }
    let sides = [
        (
            EntityKind::User,
            event.user,
            users,
            fired & !rules.computer_mask,
        ),
        (
            EntityKind::Computer,
            event.computer,
            computers,
            fired & rules.computer_mask,
        ),
    ];
    for (kind, id, names, side) in sides {
        if side == 0 {
            continue;
        }
        let (score, _) = risk::combine(rules.scoring_weights().zip(&rules.rules).enumerate().map(
            |(r, (weight, rule))| {
                let weight = if side & (1 << r) != 0 { weight } else { 0.0 };
                (weight, &rule.verdicts[i])
            },
        ));
        let contribution = Contribution {
            time: event.event_time,
            weight: f32::from(score) / 100.0,
            event_id,
            user: event.user,
            computer: event.computer,
            event_score,
            rules: side,
            reasons,
        };
        let risk = entities.add(kind, id, contribution);
        alerts.observe(
            (kind, id),
            &contribution,
            risk,
            entities.contributions(kind, id, event.event_time),
            rules,
            names,
        );
    }
}

/// `clock` with `policy`'s allowed lateness: how long a source must be
/// quiet before the clock runs on without it.
fn with_lateness(policy: &Policy, clock: ClockOptions) -> ClockOptions {
    ClockOptions {
        lateness_s: policy.file.watermark.allowed_lateness.as_secs() as i64,
        ..clock
    }
}

/// The ids of `names` (an allowlist), interning names not seen yet.
fn intern_all(interner: &mut Interner, names: &[String]) -> FxHashSet<NameId> {
    names
        .iter()
        .map(|name| interner.intern(name.as_bytes()).0)
        .collect()
}

/// A dead letter's raw text: the record's line, or the record written out
/// as JSON when it came decoded.
#[cold]
fn raw_text<'a>(raw: Option<&'a [u8]>, record: &Record<'_>) -> std::borrow::Cow<'a, [u8]> {
    match raw {
        Some(line) => line.into(),
        None => input::render_record(record).into_bytes().into(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Pipeline<'_> {
    /// Scores in-memory input to the end and returns the summary (tests,
    /// benchmarks, embedding).
    pub fn score_bytes(mut self, data: &[u8]) -> io::Result<Summary> {
        let mut lines = crate::input::LineReader::new(data, crate::input::MAX_LINE_DEFAULT);
        consume(
            &mut self,
            &mut lines,
            &std::sync::atomic::AtomicBool::new(false),
            |_, _| {},
        )?;
        self.finish()
    }
}

/// The ids a warehouse already stores, a day of event time at a time, as
/// the input reaches it; days well behind the input are let go.
struct StoredIds<'o> {
    source: &'o mut dyn StoredEvents,
    days: BTreeMap<i64, rustc_hash::FxHashSet<u128>>,
}

impl StoredIds<'_> {
    /// Days kept behind the latest asked for (events arrive out of order
    /// within the allowed lateness, which is far less than a day).
    const DAYS_BEHIND: i64 = 2;

    fn contains(&mut self, event_time: i64, id: EventId) -> io::Result<bool> {
        let day = event_time.div_euclid(crate::state::DAY);
        if !self.days.contains_key(&day) {
            let ids = self.source.ids_of_day(day)?;
            tracing::debug!(day, stored = ids.len(), "event ids already stored");
            self.days.insert(day, ids);
            let latest = *self.days.last_key_value().expect("just inserted").0;
            self.days.retain(|&d, _| d >= latest - Self::DAYS_BEHIND);
        }
        Ok(self
            .days
            .get(&day)
            .is_some_and(|ids| ids.contains(&id.0.get())))
    }
}

/// Lines between two looks at the clock (commit interval), the stop flag and
/// the caller's tick: often enough for a 50 ms commit interval and a prompt
/// stop at a million lines a second, rarely enough to cost nothing.
const TICK_LINES: u32 = 1 << 12;

/// Reads `source` to the end (or until `stop` is set) into `pipeline`.
/// Checkpoints when the commit interval has passed, and then tells the
/// source (which saves its positions). Calls `tick(pipeline, source)` every
/// [`TICK_LINES`] events, after each read of the source's input, and
/// whenever the source is idle, for progress and metrics.
pub fn consume<S: Source + ?Sized>(
    pipeline: &mut Pipeline<'_>,
    source: &mut S,
    stop: &std::sync::atomic::AtomicBool,
    mut tick: impl FnMut(&mut Pipeline<'_>, &S),
) -> io::Result<()> {
    let mut until_tick = 0u32;
    let mut reads = source.reads();
    loop {
        let line_no = source.line_no() + 1;
        let Some(line) = source.next_line()? else {
            break;
        };
        let idle = matches!(line, Line::Idle);
        pipeline.push_line(line_no, line)?;
        until_tick += 1;
        // A trickling stream reads a few lines at a time: after each read,
        // a batch past its delay is scored.
        let read = source.reads() != reads;
        if read {
            reads = source.reads();
            pipeline.score_batch_past_delay()?;
        }
        if idle || read || until_tick == TICK_LINES {
            until_tick = 0;
            if pipeline.maybe_checkpoint(source.position())? {
                source.checkpointed(pipeline.frontier())?;
            }
            tick(pipeline, source);
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("stopping on signal");
                break;
            }
        }
    }
    tick(pipeline, source);
    Ok(())
}
