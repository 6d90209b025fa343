//! # AuthPulse engine
//!
//! Real-time risk scoring of authentication events, without the storage and
//! cloud around it: records in, scored events and alerts out, through the
//! sink traits the daemon's lakehouse and AWS outputs implement.
//!
//! `event` is the engine's event (an accepted record, its names interned
//! by `names`) and its identity; `logon` what a richer record adds (source, logon type,
//! package, outcome). Data flows `input` (parse, validate; streams on a thread of their own)
//! -> `clock` (what time the stream's majority says it is; records dated
//! too far ahead refused) -> `order` (watermark, dedup,
//! reorder) -> `state` (windows, device history, host popularity, each
//! entity's own baselines, and `habits`: longer horizons, peers, the
//! population's pace and rhythm -> features) -> `rules` (WASM modules, batched) ->
//! `risk` (an event's score, level, flags) -> `entity` (risk accumulated per
//! user and per computer) -> `alerts` (incidents, published as they open,
//! grow and close; `findings` writes them as OCSF Detection Findings) -> `sinks`, driven by `pipeline`. `policy` is the policy
//! file, `reload` swaps it while running, `metrics` keeps what publishers
//! report, `snapshot` writes and reads the whole state (and `StateStore`,
//! where a run keeps it), `shards` divides it by user between workers (what
//! moves is `state`'s `handoff`), `limits` bounds it, `files` reads the files an
//! operator names (regular and bounded only).

pub mod alerts;
pub mod clock;
pub mod entity;
pub mod event;
pub mod files;
pub mod findings;
pub mod habits;
pub mod input;
pub mod limits;
pub mod logon;
pub mod metrics;
pub mod names;
pub mod order;
pub mod pipeline;
pub mod policy;
pub mod reload;
pub mod risk;
pub mod rules;
pub mod shards;
pub mod sinks;
pub mod snapshot;
pub mod state;

/// How a rule crate becomes a `.wasm` module (shared with the build script).
#[doc(hidden)]
#[path = "../wasm_build.rs"]
pub mod wasm_build;
