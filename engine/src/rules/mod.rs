//! Rules at run time: loading the modules a policy names (WASM in the sandbox,
//! or natively for comparison), resolving their parameters, evaluating them one
//! batch at a time, and containing their failures. Loading is `load`'s; the
//! sandbox is `wasm`'s; this file holds the loaded set and its evaluation.

mod builtin;
mod load;
mod native;
mod wasm;

pub use builtin::{BUILTIN_RULES, builtin_module};
pub use load::hex_sha256;
pub use wasm::{LoadError, SUPPORTED_ABI_VERSIONS, SandboxLimits, WasmModule, WasmRule};

use std::sync::Arc;
use std::time::Instant;

use authpulse_rules_sdk::{Features, Verdict, record_bytes};
use serde::{Deserialize, Serialize};

use crate::entity::EntityKind;
use crate::policy::{FailurePolicy, Policy, RuleMode};

/// A module's metadata as the host reads it (the JSON of `authpulse_metadata`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct RuleMetadata {
    pub abi_version: u32,
    pub name: String,
    pub version: String,
    pub description: String,
    pub severity: String,
    pub mitre: Vec<String>,
    /// Whose risk the rule's hits add to (ABI version 1 modules: the user).
    #[serde(default)]
    pub entity: RuleEntity,
    /// Which events the rule judges (ABI version 1 modules: all).
    #[serde(default)]
    pub events: EventFilter,
    pub params: Vec<ParamSchema>,
    pub reasons: Vec<String>,
}

/// Whose risk a rule's hits add to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleEntity {
    /// The account that logged on.
    #[default]
    User,
    /// The computer logged on to.
    Computer,
    /// The computer the logon came from (the one logged on to, when the
    /// record names none).
    Source,
}

impl RuleEntity {
    /// The kind of entity whose risk and incidents the hits go to.
    pub fn kind(self) -> EntityKind {
        match self {
            RuleEntity::User => EntityKind::User,
            RuleEntity::Computer | RuleEntity::Source => EntityKind::Computer,
        }
    }
}

/// The events a rule declares it judges; the host passes it no others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventFilter {
    #[default]
    All,
    /// Only a user's first logon to a computer.
    NewDevices,
    /// Only events whose record said more than who, where and when.
    Detailed,
}

/// The ABI versions before the current one, whose modules read the first
/// [`record_bytes`] bytes of each record.
const OLDER_ABIS: [u32; 3] = [1, 2, 3];

/// A batch's feature records, as each ABI version lays them out.
pub struct Records<'a> {
    pub features: &'a [Features],
    /// For each of [`OLDER_ABIS`], the first bytes of each record, packed;
    /// empty when no module of that version runs.
    older: [&'a [u8]; OLDER_ABIS.len()],
}

impl Records<'_> {
    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The records as a module of ABI version `abi` reads them.
    pub fn bytes(&self, abi: u32) -> &[u8] {
        match OLDER_ABIS.iter().position(|&v| v == abi) {
            Some(i) => {
                debug_assert_eq!(
                    self.older[i].len(),
                    self.features.len() * record_bytes(abi).expect("a known version")
                );
                self.older[i]
            }
            None => Features::slice_as_bytes(self.features),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct ParamSchema {
    pub name: String,
    pub description: String,
    pub kind: String,
    pub default: f64,
    pub min: f64,
    pub max: f64,
}

/// How rules execute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Sandboxed WebAssembly modules (production).
    #[default]
    Wasm,
    /// The built-in rules compiled into the daemon (to measure the sandbox's cost).
    Native,
}

impl Engine {
    /// Native when every rule of `policies` is built in (the same verdicts,
    /// faster), else WASM: for offline work (`tune`, `rules backtest`) that
    /// may run policies with rule modules of their own.
    pub fn fastest_for(policies: &[&Policy]) -> Engine {
        if policies.iter().all(|p| p.only_builtin_modules()) {
            Engine::Native
        } else {
            Engine::Wasm
        }
    }
}

/// Why a batch got no verdicts from a rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleFailure {
    #[error("trapped: {0}")]
    Trap(String),
    #[error("exceeded its batch deadline")]
    Timeout,
    #[error("returned an invalid result: {0}")]
    BadOutput(String),
}

/// A configured rule instance.
pub trait RuleModule: Send {
    /// Scores `records` into `verdicts` (same length, at most the batch capacity).
    fn evaluate(
        &mut self,
        records: &Records<'_>,
        verdicts: &mut [Verdict],
    ) -> Result<(), RuleFailure>;
}

/// Counters per rule, for the summary and metrics.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleStats {
    pub evaluations: u64,
    pub hits: u64,
    pub failures: u64,
    pub nanos: u64,
    pub disabled: bool,
    #[serde(skip)]
    consecutive_failures: u32,
}

/// One rule's totals over a run, across policy versions (by rule id).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleReport {
    /// The rule's mode in the latest policy version that had it.
    pub mode: RuleMode,
    /// Events evaluated (successful batches only).
    pub evaluations: u64,
    pub hits: u64,
    /// Failed batches.
    pub failures: u64,
    /// Wall-clock time spent in the rule, host-to-guest copies included.
    pub time_ms: f64,
    /// Switched off by `disable_after` (until the next reload).
    pub disabled: bool,
}

impl RuleReport {
    /// Adds `rule`'s counts, and takes its mode and state.
    pub fn add(&mut self, rule: &ActiveRule) {
        self.mode = rule.mode;
        self.evaluations += rule.stats.evaluations;
        self.hits += rule.stats.hits;
        self.failures += rule.stats.failures;
        self.time_ms += rule.stats.nanos as f64 / 1e6;
        self.disabled = rule.stats.disabled;
    }
}

pub struct ActiveRule {
    pub id: String,
    pub weight: f32,
    pub mode: RuleMode,
    pub metadata: Arc<RuleMetadata>,
    pub module_sha256: String,
    pub on_failure: FailurePolicy,
    pub stats: RuleStats,
    /// Verdicts of the last batch, one per event.
    pub verdicts: Vec<Verdict>,
    module: Box<dyn RuleModule>,
}

/// The rules of one policy version, ready to score batches.
pub struct RuleSet {
    pub rules: Vec<ActiveRule>,
    /// Content hash of the policy text and every module: every scored event
    /// records it.
    pub version: String,
    /// Bit `r` set when rule `r`'s hits count: enforced, with a weight above 0.
    pub scoring_mask: u32,
    /// Bit `r` set when rule `r`'s hits add to the computer's risk (not the user's).
    pub computer_mask: u32,
    /// Bit `r` set when rule `r`'s hits add to the source computer's risk.
    pub source_mask: u32,
    /// What `risk_flags` says for each rule's hit: its id, or `shadow:ID`.
    pub flag_labels: Vec<String>,
    capacity: usize,
    /// For each of [`OLDER_ABIS`] some rule was built for: records are also
    /// packed in its layout, into this buffer, once per batch.
    older_records: [Option<Vec<u8>>; OLDER_ABIS.len()],
    /// The batch's new-device events, for `new_devices` rules.
    new_devices: Selection,
    /// The batch's detailed events, for `detailed` rules.
    detailed: Selection,
}

/// The events of a batch that rules of one [`EventFilter`] judge, gathered
/// once per batch: their positions in the batch, their records (packed for
/// older ABI versions too), and a rule's verdicts on them.
#[derive(Default)]
struct Selection {
    /// Some rule judges these events.
    wanted: bool,
    positions: Vec<u32>,
    features: Vec<Features>,
    older: [Option<Vec<u8>>; OLDER_ABIS.len()],
    verdicts: Vec<Verdict>,
}

impl Selection {
    fn new(
        rules: &[ActiveRule],
        filter: EventFilter,
        older: &[Option<Vec<u8>>; OLDER_ABIS.len()],
    ) -> Selection {
        Selection {
            wanted: rules.iter().any(|r| r.metadata.events == filter),
            older: older.clone(),
            ..Selection::default()
        }
    }

    /// Gathers the events of `features` that `keep` accepts.
    fn gather(&mut self, features: &[Features], keep: impl Fn(&Features) -> bool) {
        self.positions.clear();
        self.features.clear();
        if self.wanted {
            for (i, f) in features.iter().enumerate() {
                if keep(f) {
                    self.positions.push(i as u32);
                    self.features.push(*f);
                }
            }
        }
        self.verdicts.resize(self.positions.len(), Verdict::NONE);
    }

    /// Runs `rule` on the gathered events, and spreads its verdicts over
    /// the batch's (`verdicts`; none for the events not gathered).
    fn evaluate(
        &mut self,
        module: &mut dyn RuleModule,
        verdicts: &mut [Verdict],
    ) -> Result<(), RuleFailure> {
        let m = self.positions.len();
        let outcome = if m == 0 {
            Ok(())
        } else {
            let records = Records {
                features: &self.features,
                older: pack(&mut self.older, &self.features),
            };
            module.evaluate(&records, &mut self.verdicts[..m])
        };
        verdicts.fill(Verdict::NONE);
        if outcome.is_ok() {
            for (&i, v) in self.positions.iter().zip(&self.verdicts) {
                verdicts[i as usize] = *v;
            }
        }
        outcome
    }
}

impl RuleSet {
    /// Each rule's weight in the score: a shadow rule's is 0, so its hits
    /// are flagged but move nothing.
    #[inline]
    pub fn scoring_weights(&self) -> impl Iterator<Item = f32> + '_ {
        self.rules.iter().map(|rule| match rule.mode {
            RuleMode::Enforce => rule.weight,
            RuleMode::Shadow => 0.0,
        })
    }

    /// What the rules in `side` (bit `r`: rule `r`) make together of event
    /// `i` of the last evaluation, weighed as [`crate::risk::combine`]
    /// weighs an event's: an entity's part of the event's risk.
    pub fn side_score(&self, i: usize, side: u32) -> u8 {
        crate::risk::combine(self.scoring_weights().zip(&self.rules).enumerate().map(
            |(r, (weight, rule))| {
                let weight = if side & (1 << r) != 0 { weight } else { 0.0 };
                (weight, &rule.verdicts[i])
            },
        ))
        .0
    }

    /// [`RuleSet::evaluate`] on records judged a second time (a fleet's
    /// first visits, `pipeline::first_visits`): the rules' evaluations and
    /// hits stay those of the events scored; failures and time count.
    pub fn judge_again(&mut self, features: &[Features]) {
        let counted: Vec<(u64, u64)> = self
            .rules
            .iter()
            .map(|rule| (rule.stats.evaluations, rule.stats.hits))
            .collect();
        self.evaluate(features);
        for (rule, (evaluations, hits)) in self.rules.iter_mut().zip(counted) {
            (rule.stats.evaluations, rule.stats.hits) = (evaluations, hits);
        }
    }

    /// Runs every rule over the batch; afterwards `rule.verdicts[..features.len()]`
    /// holds each rule's verdicts. A failing rule contributes nothing to this
    /// batch (and may be disabled, per its policy); the others are unaffected.
    pub fn evaluate(&mut self, features: &[Features]) {
        assert!(
            features.len() <= self.capacity,
            "batch larger than the rule set's capacity"
        );
        let n = features.len();
        let records = Records {
            features,
            older: pack(&mut self.older_records, features),
        };
        // Most logons are to known computers, and LANL lines say nothing
        // more: rules about new computers or richer records run on the few
        // events they judge, gathered once per batch.
        self.new_devices.gather(features, Features::is_new_device);
        self.detailed.gather(features, Features::is_detailed);
        for rule in &mut self.rules {
            let verdicts = &mut rule.verdicts[..n];
            if rule.stats.disabled {
                verdicts.fill(Verdict::NONE);
                continue;
            }
            let started = Instant::now();
            let outcome = match rule.metadata.events {
                EventFilter::All => rule.module.evaluate(&records, verdicts),
                EventFilter::NewDevices => {
                    self.new_devices.evaluate(rule.module.as_mut(), verdicts)
                }
                EventFilter::Detailed => self.detailed.evaluate(rule.module.as_mut(), verdicts),
            };
            rule.stats.nanos += started.elapsed().as_nanos() as u64;
            match outcome {
                Ok(()) => {
                    rule.stats.evaluations += n as u64;
                    rule.stats.hits += verdicts.iter().filter(|v| v.is_hit()).count() as u64;
                    rule.stats.consecutive_failures = 0;
                }
                Err(failure) => {
                    verdicts.fill(Verdict::NONE);
                    rule.stats.failures += 1;
                    rule.stats.consecutive_failures += 1;
                    let disable = matches!(rule.on_failure,
                        FailurePolicy::DisableAfter(limit) if rule.stats.consecutive_failures >= limit);
                    tracing::warn!(rule = %rule.id, batch_events = n, disabled = disable, "rule failed: {failure}");
                    if disable {
                        rule.stats.disabled = true;
                        tracing::error!(rule = %rule.id, "rule disabled after {} consecutive failures", rule.stats.consecutive_failures);
                    }
                }
            }
        }
    }
}

/// `features` packed into `buffer` as records of `bytes` bytes (the first
/// `bytes` of each), when a module of that layout runs; else nothing.
/// Packs `features` into each older version's buffer there is; empty for
/// the versions without one.
fn pack<'a>(
    buffers: &'a mut [Option<Vec<u8>>; OLDER_ABIS.len()],
    features: &[Features],
) -> [&'a [u8]; OLDER_ABIS.len()] {
    let mut packed: [&[u8]; OLDER_ABIS.len()] = [&[]; OLDER_ABIS.len()];
    for ((slot, buffer), abi) in packed.iter_mut().zip(buffers.iter_mut()).zip(OLDER_ABIS) {
        if let Some(buffer) = buffer {
            let bytes = record_bytes(abi).expect("a known version");
            buffer.clear();
            for record in Features::slice_as_bytes(features).chunks_exact(size_of::<Features>()) {
                buffer.extend_from_slice(&record[..bytes]);
            }
            *slot = buffer;
        }
    }
    packed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn builtin_policy_loads_in_both_engines_with_same_version() {
        let policy = Policy::builtin();
        let wasm = RuleSet::load(&policy, Engine::Wasm, 64).unwrap();
        let native = RuleSet::load(&policy, Engine::Native, 64).unwrap();
        assert_eq!(wasm.rules.len(), 10);
        assert_eq!(wasm.version, native.version);
        assert_eq!(wasm.version.len(), 16);
        assert_eq!(wasm.rules[2].metadata.name, "lateral_movement");
        assert_eq!(Engine::fastest_for(&[&policy]), Engine::Native);
        let own = Policy::parse(
            "rules:\n  - {id: a, module: rules/mine.wasm}\n",
            "p.yaml",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(Engine::fastest_for(&[&policy, &own]), Engine::Wasm);
    }

    /// A native run reads each built-in rule's metadata without compiling
    /// its module: it must be what the module exports.
    #[test]
    fn native_metadata_is_what_each_module_exports() {
        for name in BUILTIN_RULES {
            let module = builtin::builtin_module(name).unwrap();
            let wasm = WasmModule::compile(module, SandboxLimits::default()).unwrap();
            let native = native::builtin_metadata(name).unwrap().unwrap();
            assert_eq!(*wasm.metadata, native, "{name}");
        }
        assert!(native::builtin_metadata("no_such_rule").is_none());
    }

    fn policy_err(yaml: &str) -> String {
        let policy = Policy::parse(yaml, "p.yaml", Path::new(".")).unwrap();
        match RuleSet::load(&policy, Engine::Wasm, 8) {
            Ok(_) => panic!("policy should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_bad_params_precisely() {
        assert_eq!(
            policy_err("rules:\n  - id: nd\n    module: builtin:burst\n    params: {score: 101}\n"),
            "p.yaml: rules[0] (nd).params.score: 101 is outside 0..=100"
        );
        let e =
            policy_err("rules:\n  - id: nd\n    module: builtin:burst\n    params: {scroe: 1}\n");
        assert!(
            e.contains("has no parameter `scroe`") && e.contains("score"),
            "{e}"
        );
        let e = policy_err("rules:\n  - id: x\n    module: builtin:nope\n");
        assert!(e.contains("no built-in module `nope`"), "{e}");
        let e = policy_err(&format!(
            "rules:\n  - id: x\n    module: builtin:burst\n    sha256: {}\n",
            "0".repeat(64)
        ));
        assert!(e.contains("rules[0] (x).sha256: module hash is"), "{e}");
    }

    #[test]
    fn wasm_and_native_agree() {
        let policy = Policy::builtin();
        let mut wasm = RuleSet::load(&policy, Engine::Wasm, 256).unwrap();
        let mut native = RuleSet::load(&policy, Engine::Native, 256).unwrap();
        let features: Vec<Features> = (0..256u32)
            .map(|i| Features {
                // The last 55 records count up one login at a time.
                user_logins_1h: if i > 200 { i - 200 } else { i * 3 },
                user_logins_24h: i * 5,
                user_new_computers_1h: i % 30,
                user_distinct_computers_1h: i % 40 + 1,
                user_new_computers_24h: i % 13,
                user_known_computers: i % 20 + 1,
                user_tenure_s: i * 1500,
                user_peak_logins_1h: i % 50,
                user_logins_before: i * 20,
                user_logins_at_hour_before: i % 7,
                population_hour_share_ppm: 10_000,
                user_new_computers_72h: i % 17,
                user_rare_new_computers_24h: i % 5,
                user_rare_new_computers_72h: i % 9,
                user_history_s: i * 400,
                user_history_new_computers: i % 4,
                host_new_users_24h: i % 19,
                host_peer_users: i % 3,
                population_new_per_known_ppm: 5_000,
                population_rare_share_ppm: 150_000,
                user_baseline_new_computers: i % 3,
                user_baseline_s: i * 500,
                host_users_ever: if i % 4 == 1 { 2 } else { i % 5 + i / 8 },
                host_new_users_1h: i % 11,
                host_tenure_s: i * 2000,
                host_baseline_new_users: i % 4,
                host_baseline_s: i * 900,
                flags: i % 2,
                // A richer record for most: failures from a source, logon
                // types, destinations.
                outcome: (i % 3) as u8,
                logon_type: [0, 3, 10, 2][(i % 4) as usize],
                source_computer: i % 5,
                source_failed_users_2h: i % 16,
                user_logon_types_before: if i % 8 < 4 { 1 << 3 } else { 1 << 2 },
                user_typed_logins_before: i,
                source_new_destinations_2h: i % 12,
                source_known_destinations: i % 10 + 1,
                source_tenure_s: i * 2000,
                source_baseline_s: i * 800,
                ..Default::default()
            })
            .collect();
        wasm.evaluate(&features);
        native.evaluate(&features);
        for (w, n) in wasm.rules.iter().zip(&native.rules) {
            assert_eq!(w.verdicts, n.verdicts, "rule {}", w.id);
            assert!(w.stats.hits > 0, "rule {} never fired on the sample", w.id);
            assert_eq!(w.stats.failures, 0);
        }
    }
}
