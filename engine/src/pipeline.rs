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
//! Everything from interning on runs on one thread: the per-event work is a
//! few hash lookups and counter updates, and one ordered thread is what makes
//! results independent of batching. Batches only amortise the calls into the
//! rule modules. Parsing may run ahead on threads of its own (`parse_stage`),
//! handing lines back in order, so results do not depend on it either.
//!
//! This file holds the pipeline's parts and its construction; its work is in
//! one file per concern: `parse_stage` (lines parsed ahead of the pipeline
//! thread), `ingest` (records in, dead letters, limits),
//! `scoring` (features, rules, risk, written out), `escalation` (risk to
//! entities and incidents), `reload` (policy swaps), `commit` (checkpoints,
//! the end, a stop), `snapshots` (state written and restored), `counters`
//! (metrics and the summary), `consume` (reading a source through it),
//! `inspect` (what the operations API asks), and for a fleet's workers
//! `shared_hosts` (computer popularity traded), `fleet_pace` (when to
//! trade, how far ahead to score, waiting for the others at the end),
//! `shared_risk` (each computer's incidents decided by one worker) and
//! `first_visits` (the first visits to a computer judged again by it).

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashSet;

use crate::alerts::AlertEngine;
use crate::clock::{Arrival, ClockOptions, EventClock, Verdict};
use crate::entity::EntityRisk;
use crate::event::{Event, Interner, NameId, TimeBase};
use crate::input::{self, Format, Record};
use crate::limits::StateLimits;
use crate::order::Orderer;
use crate::policy::{Policy, PolicyError};
use crate::reload::PolicyWatcher;
use crate::rules::{Engine, RuleSet};
use crate::sinks::{AlertSink, DeadLetterSink, ReceivedSink, ScoredSink, StoredEvents};
use crate::snapshot::StateStore;
use crate::state::EngineState;

mod commit;
mod consume;
mod counters;
mod escalation;
mod first_visits;
#[cfg(test)]
mod fleet_fixtures;
mod fleet_pace;
mod ingest;
mod inspect;
mod parse_stage;
mod reload;
mod scoring;
mod shared_hosts;
mod shared_risk;
mod snapshots;
#[cfg(test)]
mod tests;
pub use consume::consume;
use counters::Counters;
pub use counters::{ReloadTimings, Summary};
pub use first_visits::SharedVisit;
pub use fleet_pace::FleetPace;
use ingest::StoredIds;
pub use inspect::{RiskyEvent, RuleInfo, Sizes, UserView};
use scoring::Batch;
pub use shared_hosts::{FleetStats, HostExchange, Progress as FleetProgress, Traded};
pub use shared_risk::{ComputerRisk, SharedContribution};

/// Longest raw text kept in a dead letter.
const DEAD_LETTER_RAW_MAX: usize = 4096;

/// Events per call into the rules unless told otherwise. Every sandboxed
/// rule gets its own copy of the batch's feature records (256 bytes an
/// event), so a batch of 4,096 wrote 10 MB into ten modules' memories and
/// read it back from the last-level cache; 256 keep the records in the
/// first two levels (5M events, all tables: 8-10% less wall and CPU time,
/// with 128 and 512 the same within the noise).
pub const DEFAULT_BATCH_SIZE: usize = 256;

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
    /// Threads that parse lines ahead of the pipeline thread (0: it parses
    /// them itself; `None`: one for JSON input on a machine with a second
    /// core, none for LANL lines). Results do not depend on it.
    pub parse_threads: Option<usize>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            format: Format::Auto,
            time_base: TimeBase::DEFAULT,
            batch_size: DEFAULT_BATCH_SIZE,
            engine: Engine::Wasm,
            commit_interval: None,
            max_batch_delay: std::time::Duration::from_millis(50),
            limits: StateLimits::default(),
            clock: ClockOptions::default(),
            parse_threads: None,
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
    /// The source's own ids of the records the clock holds, by line and
    /// event id, until they are recorded as received (only while the raw
    /// table is written; not in state snapshots).
    source_ids: rustc_hash::FxHashMap<(u64, crate::event::EventId), Box<str>>,
    orderer: Orderer,
    state: EngineState,
    entities: EntityRisk,
    alerts: AlertEngine,
    /// Event time up to which incidents have been closed.
    closed_through: i64,
    /// A restored fleet worker's state: how far its computers' incidents
    /// had been decided (`pipeline::shared_risk`).
    computers_decided: Option<crate::snapshot::ComputersDecided>,
    ready: Vec<Event>,
    batch: Batch,
    counters: Counters,
    /// The input's format as set (`None`: each line's is detected).
    format: Option<Format>,
    /// The format of the latest line read: the form a dead letter of an
    /// event no longer at hand as a line is written in.
    latest_format: Format,
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
    /// In a fleet: where host shares are traded, and how it keeps pace.
    fleet: Option<shared_hosts::Fleet<'o>>,
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
            source_ids: Default::default(),
            orderer,
            entities: EntityRisk::new(
                entity_risk.window.as_secs(),
                entity_risk.half_life.as_secs(),
            ),
            alerts: AlertEngine::new(&policy.file.alerts, policy.file.risk.bands),
            closed_through: i64::MIN,
            computers_decided: None,
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
            latest_format: format.unwrap_or(Format::Csv),
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
            fleet: None,
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

    pub fn events_read(&self) -> u64 {
        self.counters.events_read
    }

    /// In a fleet: what trading host shares has cost so far.
    pub fn fleet_stats(&self) -> FleetStats {
        self.counters.fleet
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

/// Runs `use_pipeline` on a pipeline with the built-in policy, native rules
/// and outputs that keep nothing: for tests of what it holds.
#[cfg(test)]
pub(crate) fn with_native_pipeline<R>(use_pipeline: impl FnOnce(&mut Pipeline<'_>) -> R) -> R {
    use crate::sinks::Discard;
    let (mut dead, mut alerts, mut scored) = (Discard, Discard, Discard);
    let options = PipelineOptions {
        engine: Engine::Native,
        ..PipelineOptions::default()
    };
    let outputs = Outputs {
        dead_letters: &mut dead,
        alerts: &mut alerts,
        scored: &mut scored,
        received: None,
    };
    let mut pipeline = Pipeline::new(Policy::builtin(), options, outputs).unwrap();
    use_pipeline(&mut pipeline)
}
