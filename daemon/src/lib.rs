//! AuthPulse: real-time risk scoring of authentication events.
//!
//! Data flows `input` -> `order` (watermark, dedup, reorder) -> `state`
//! (windows, devices, host popularity -> features) -> `rules` (WASM, batched)
//! -> `risk` (score, level, flags) -> `alerts` (per-user incidents), driven by
//! `pipeline`. `generator` writes realistic LANL-format data; `profile` measures
//! a data set against the published LANL statistics.

pub mod alerts;
pub mod aws;
pub mod event;
pub mod generator;
pub mod input;
pub mod lakehouse;
pub mod metrics;
pub mod order;
pub mod pipeline;
pub mod policy;
pub mod reload;
pub mod risk;
pub mod rules;
pub mod sinks;
pub mod state;
