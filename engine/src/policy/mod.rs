//! The policy file (`policies.yaml`): which rules run, their weights, parameters
//! and failure handling, the risk bands, alerting, allowlists, sandbox limits and
//! the event-time watermark. The doc comments on these structs are the reference
//! for the file; `authpulse policy check FILE` validates one.
//!
//! YAML is read with `serde_yaml_ng`, a maintained fork of `serde_yaml` (which its
//! author archived and marked deprecated in 2024).
//!
//! This file is the file's schema; `parse` reads and validates one into a
//! [`Policy`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod parse;

pub use parse::Policy;

/// The built-in default policy: the repository's `policies.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../../policies.yaml");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Yaml {
        path: String,
        error: serde_yaml_ng::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// Root of `policies.yaml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Event-time handling.
    #[serde(default)]
    pub watermark: WatermarkConfig,
    /// How rule contributions become a score and a level.
    #[serde(default)]
    pub risk: RiskConfig,
    /// How rule contributions add up per user and per computer.
    #[serde(default)]
    pub entity_risk: EntityRiskConfig,
    /// When and how alerts are raised.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Users and computers that are never scored (their events still update state).
    #[serde(default)]
    pub allowlist: Allowlist,
    /// Default limits for every rule module.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// The rules to run, in order. Order decides the order of `risk_flags`.
    pub rules: Vec<RuleConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the latest event time an event may arrive and still be
    /// scored (and deduplicated). Older events are dead-lettered as late. Events
    /// are held this long (in event time) before scoring, so it is also the
    /// latency bought for order-independent results. Default `5m`.
    #[serde(with = "duration", default = "WatermarkConfig::default_lateness")]
    pub allowed_lateness: Duration,
}

impl WatermarkConfig {
    fn default_lateness() -> Duration {
        Duration::from_secs(300)
    }
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            allowed_lateness: Self::default_lateness(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Lowest score of each level; scores below `medium` are LOW.
    #[serde(default)]
    pub bands: RiskBands,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RiskBands {
    /// Default 30.
    pub medium: u8,
    /// Default 60.
    pub high: u8,
    /// Default 85.
    pub critical: u8,
}

impl Default for RiskBands {
    fn default() -> Self {
        RiskBands {
            medium: 30,
            high: 60,
            critical: 85,
        }
    }
}

/// Risk level of an event or alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 4] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "LOW",
            RiskLevel::Medium => "MEDIUM",
            RiskLevel::High => "HIGH",
            RiskLevel::Critical => "CRITICAL",
        }
    }
}

impl RiskBands {
    #[inline]
    pub fn level(&self, score: u8) -> RiskLevel {
        if score >= self.critical {
            RiskLevel::Critical
        } else if score >= self.high {
            RiskLevel::High
        } else if score >= self.medium {
            RiskLevel::Medium
        } else {
            RiskLevel::Low
        }
    }
}

/// Entity risk: every event's rule contributions also accumulate on its
/// user (user-side rules) and its computer (computer-side rules), so that
/// several modest events of one entity within hours add up. Contributions
/// combine as independent probabilities, fading with the half-life.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRiskConfig {
    /// Contributions older than this no longer count (1m..=7d). Default `24h`.
    #[serde(with = "duration", default = "EntityRiskConfig::default_window")]
    pub window: Duration,
    /// A contribution counts half after this long, a quarter after twice as
    /// long; `0s` keeps it whole until it leaves the window. At most the
    /// window. Default `4h`.
    #[serde(with = "duration", default = "EntityRiskConfig::default_half_life")]
    pub half_life: Duration,
}

impl EntityRiskConfig {
    fn default_window() -> Duration {
        Duration::from_secs(86_400)
    }
    fn default_half_life() -> Duration {
        Duration::from_secs(4 * 3600)
    }
}

impl Default for EntityRiskConfig {
    fn default() -> Self {
        EntityRiskConfig {
            window: Self::default_window(),
            half_life: Self::default_half_life(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// A user or computer whose accumulated risk reaches this level opens an
    /// incident, and its alert is published at once. Default `HIGH`.
    #[serde(default = "AlertConfig::default_min_level")]
    pub min_level: RiskLevel,
    /// An open incident takes every further contribution to its entity, and
    /// closes once this long (event time) has passed without one. Default `60m`.
    #[serde(with = "duration", default = "AlertConfig::default_dedup_window")]
    pub dedup_window: Duration,
    /// How many contributing events an alert lists. Default 10.
    #[serde(default = "AlertConfig::default_max_sample_events")]
    pub max_sample_events: usize,
}

impl AlertConfig {
    fn default_min_level() -> RiskLevel {
        RiskLevel::High
    }
    fn default_dedup_window() -> Duration {
        Duration::from_secs(3600)
    }
    fn default_max_sample_events() -> usize {
        10
    }
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            min_level: Self::default_min_level(),
            dedup_window: Self::default_dedup_window(),
            max_sample_events: Self::default_max_sample_events(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// User names whose events score 0 (e.g. known scanners).
    #[serde(default)]
    pub users: Vec<String>,
    /// Computer names whose events score 0.
    #[serde(default)]
    pub computers: Vec<String>,
}

/// Limits and trust settings for every rule module. Each module runs in its
/// own sandbox: one instance, one linear memory, no imports.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Linear memory cap per module, in MiB (1..=4096). Default 16.
    #[serde(default = "SandboxConfig::default_max_memory_mib")]
    pub max_memory_mib: u32,
    /// Wall-clock budget for one batch call into a module (1ms..=60s), enforced
    /// by epoch interruption. Default `100ms`.
    #[serde(with = "duration", default = "SandboxConfig::default_batch_deadline")]
    pub batch_deadline: Duration,
    /// Tables a module may define (function tables for indirect calls;
    /// 1..=16). Default 4.
    #[serde(default = "SandboxConfig::default_max_tables")]
    pub max_tables: u32,
    /// Elements in any one table (1..=1,000,000). Default 100,000.
    #[serde(default = "SandboxConfig::default_max_table_elements")]
    pub max_table_elements: u32,
    /// Whether a rule may load a `.wasm` file whose `sha256` the policy does
    /// not pin. Built-in modules are part of the binary and always trusted.
    /// Default `false`: every file module must be pinned.
    #[serde(default)]
    pub allow_unpinned: bool,
}

impl SandboxConfig {
    fn default_max_memory_mib() -> u32 {
        16
    }
    fn default_batch_deadline() -> Duration {
        Duration::from_millis(100)
    }
    fn default_max_tables() -> u32 {
        4
    }
    fn default_max_table_elements() -> u32 {
        100_000
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_memory_mib: Self::default_max_memory_mib(),
            batch_deadline: Self::default_batch_deadline(),
            max_tables: Self::default_max_tables(),
            max_table_elements: Self::default_max_table_elements(),
            allow_unpinned: false,
        }
    }
}

/// Per-rule overrides of the `sandbox` limits; unset fields inherit them.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Linear memory cap for this rule's module, in MiB (1..=4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<u32>,
    /// Budget for one batch call into this rule's module (1ms..=60s).
    #[serde(
        default,
        with = "optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_deadline: Option<Duration>,
}

/// Whether a rule's hits count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Hits add to the risk score and can raise alerts.
    #[default]
    Enforce,
    /// The rule runs and its hits are recorded (summary counts, `risk_flags`
    /// entries written `shadow:ID`), but it adds nothing to the score and
    /// raises no alert: the way to try a new rule on live traffic.
    Shadow,
}

/// What to do when a rule traps, times out or returns garbage: `fail_open`, or
/// `{ disable_after: N }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "FailurePolicyRepr", into = "FailurePolicyRepr")]
pub enum FailurePolicy {
    /// The batch gets no contribution from the rule; the failure is counted.
    #[default]
    FailOpen,
    /// Like `fail_open`, and after N consecutive failed batches the rule is
    /// disabled until the policy is reloaded.
    DisableAfter(u32),
}

/// How [`FailurePolicy`] is written in YAML (plain, not YAML tags).
#[derive(Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum FailurePolicyRepr {
    Name(String),
    DisableAfter { disable_after: u32 },
}

impl TryFrom<FailurePolicyRepr> for FailurePolicy {
    type Error = String;
    fn try_from(repr: FailurePolicyRepr) -> Result<Self, String> {
        match repr {
            FailurePolicyRepr::Name(name) if name == "fail_open" => Ok(FailurePolicy::FailOpen),
            FailurePolicyRepr::Name(other) => Err(format!(
                "unknown failure policy `{other}`, expected `fail_open` or `{{ disable_after: N }}`"
            )),
            FailurePolicyRepr::DisableAfter { disable_after } => {
                Ok(FailurePolicy::DisableAfter(disable_after))
            }
        }
    }
}

impl From<FailurePolicy> for FailurePolicyRepr {
    fn from(policy: FailurePolicy) -> Self {
        match policy {
            FailurePolicy::FailOpen => FailurePolicyRepr::Name("fail_open".into()),
            FailurePolicy::DisableAfter(n) => FailurePolicyRepr::DisableAfter { disable_after: n },
        }
    }
}

/// One rule in the policy.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Identifier used in `risk_flags` and alerts; letters, digits, `_`.
    pub id: String,
    /// `builtin:NAME` for a module embedded in the binary, or a path to a
    /// `.wasm` file (relative to the policy file).
    pub module: String,
    /// Optional hex sha256 the module must have.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Multiplier on the rule's contribution, 0..=10. Default 1.
    #[serde(default = "RuleConfig::default_weight")]
    pub weight: f64,
    /// Set false to keep the rule in the file but not run it.
    #[serde(default = "RuleConfig::default_enabled")]
    pub enabled: bool,
    /// `enforce` (default) or `shadow`: see [`RuleMode`].
    #[serde(default)]
    pub mode: RuleMode,
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Overrides of the `sandbox` limits for this rule only.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Parameter values by name (see `authpulse rules inspect`); a number, or
    /// for duration parameters a string such as `"24h"`.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
}

impl RuleConfig {
    fn default_weight() -> f64 {
        1.0
    }
    fn default_enabled() -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Number(f64),
    Text(String),
}

/// Where a rule's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    Builtin(String),
    File(PathBuf),
}

/// Durations written as `"5m"`, `"100ms"`, `"24h"` (humantime) or whole seconds.
pub mod duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!("`{t}` is not a duration like 90s, 5m, 24h: {e}"))
            }),
        }
    }
}

/// [`duration`] for optional fields.
mod optional_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests;
