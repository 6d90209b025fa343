//! The policy file (`policies.yaml`): which rules run, their weights, parameters
//! and failure handling, the risk bands, alerting, allowlists, sandbox limits and
//! the event-time watermark. The doc comments on these structs are the reference
//! for the file; `authpulse policy check FILE` validates one.
//!
//! YAML is read with `serde_yaml_ng`, a maintained fork of `serde_yaml` (which its
//! author archived and marked deprecated in 2024).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The built-in default policy: the repository's `policies.yaml`.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../policies.yaml");

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

/// A parsed and validated policy, with what it was read from.
#[derive(Clone, Debug)]
pub struct Policy {
    pub file: PolicyFile,
    /// Where it came from, for messages (`built-in` or the path).
    pub origin: String,
    /// Directory relative module paths resolve against.
    pub base_dir: PathBuf,
    /// The exact bytes it was parsed from (hashed into the policy version).
    pub source: String,
}

impl Policy {
    /// The built-in default policy.
    pub fn builtin() -> Policy {
        Policy::parse(DEFAULT_POLICY_YAML, "built-in policy", Path::new("."))
            .expect("the built-in policy is valid (checked by tests)")
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = crate::files::read_regular_text(path, crate::files::MAX_POLICY_BYTES, "policy")
            .map_err(|error| PolicyError::Io {
                path: path.display().to_string(),
                error,
            })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Policy::parse(&text, &path.display().to_string(), &base_dir)
    }

    /// Parses and validates policy text.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Policy, PolicyError> {
        let file: PolicyFile =
            serde_yaml_ng::from_str(text).map_err(|error| PolicyError::Yaml {
                path: origin.to_string(),
                error,
            })?;
        let policy = Policy {
            file,
            origin: origin.to_string(),
            base_dir: base_dir.to_path_buf(),
            source: text.to_string(),
        };
        policy.validate()?;
        Ok(policy)
    }

    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            path: self.origin.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), PolicyError> {
        let f = &self.file;
        const WEEK: Duration = Duration::from_secs(7 * 86_400);
        if f.watermark.allowed_lateness > WEEK {
            return Err(self.invalid("watermark.allowed_lateness", "must be at most 7 days"));
        }
        let b = f.risk.bands;
        if !(0 < b.medium && b.medium < b.high && b.high < b.critical && b.critical <= 100) {
            return Err(self.invalid(
                "risk.bands",
                format!(
                    "need 0 < medium < high < critical <= 100, got medium {}, high {}, critical {}",
                    b.medium, b.high, b.critical
                ),
            ));
        }
        let e = &f.entity_risk;
        if e.window < Duration::from_secs(60) || e.window > WEEK {
            return Err(self.invalid("entity_risk.window", "must be 1m..=7d"));
        }
        if e.half_life > e.window {
            return Err(self.invalid(
                "entity_risk.half_life",
                format!(
                    "{} is longer than the window ({})",
                    humantime::format_duration(e.half_life),
                    humantime::format_duration(e.window)
                ),
            ));
        }
        if f.alerts.dedup_window.is_zero() || f.alerts.dedup_window > WEEK {
            return Err(self.invalid(
                "alerts.dedup_window",
                "must be more than 0 and at most 7 days",
            ));
        }
        if !(1..=1000).contains(&f.alerts.max_sample_events) {
            return Err(self.invalid("alerts.max_sample_events", "must be 1..=1000"));
        }
        self.check_memory("sandbox.max_memory_mib", f.sandbox.max_memory_mib)?;
        self.check_deadline("sandbox.batch_deadline", f.sandbox.batch_deadline)?;
        if !(1..=16).contains(&f.sandbox.max_tables) {
            return Err(self.invalid("sandbox.max_tables", "must be 1..=16"));
        }
        if !(1..=1_000_000).contains(&f.sandbox.max_table_elements) {
            return Err(self.invalid("sandbox.max_table_elements", "must be 1..=1000000"));
        }
        if f.rules.is_empty() {
            return Err(self.invalid("rules", "at least one rule is needed"));
        }
        if f.rules.len() > 32 {
            return Err(self.invalid("rules", "at most 32 rules (risk_flags is a 32-bit set)"));
        }
        for (i, rule) in f.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            if rule.id.is_empty()
                || !rule
                    .id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                return Err(self.invalid(
                    format!("{at}.id"),
                    format!("`{}` must be non-empty letters, digits and `_`", rule.id),
                ));
            }
            if f.rules[..i].iter().any(|r| r.id == rule.id) {
                return Err(
                    self.invalid(format!("{at}.id"), format!("`{}` appears twice", rule.id))
                );
            }
            let at = format!("rules[{i}] ({})", rule.id);
            if !(rule.weight.is_finite() && (0.0..=10.0).contains(&rule.weight)) {
                return Err(self.invalid(format!("{at}.weight"), "must be 0..=10"));
            }
            if let Some(hash) = &rule.sha256
                && (hash.len() != 64 || !hash.bytes().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(
                    self.invalid(format!("{at}.sha256"), "must be 64 hexadecimal characters")
                );
            }
            if let FailurePolicy::DisableAfter(0) = rule.on_failure {
                return Err(self.invalid(
                    format!("{at}.on_failure.disable_after"),
                    "must be at least 1",
                ));
            }
            if rule.module.trim().is_empty() {
                return Err(self.invalid(format!("{at}.module"), "is empty"));
            }
            if let Some(mib) = rule.limits.max_memory_mib {
                self.check_memory(&format!("{at}.limits.max_memory_mib"), mib)?;
            }
            if let Some(deadline) = rule.limits.batch_deadline {
                self.check_deadline(&format!("{at}.limits.batch_deadline"), deadline)?;
            }
        }
        Ok(())
    }

    fn check_memory(&self, field: &str, mib: u32) -> Result<(), PolicyError> {
        if (1..=4096).contains(&mib) {
            Ok(())
        } else {
            Err(self.invalid(field, format!("{mib} MiB is outside 1..=4096")))
        }
    }

    fn check_deadline(&self, field: &str, deadline: Duration) -> Result<(), PolicyError> {
        if deadline < Duration::from_millis(1) || deadline > Duration::from_secs(60) {
            Err(self.invalid(field, "must be 1ms..=60s"))
        } else {
            Ok(())
        }
    }

    /// Where rule `index`'s module comes from.
    pub fn module_source(&self, index: usize) -> ModuleSource {
        let module = &self.file.rules[index].module;
        match module.strip_prefix("builtin:") {
            Some(name) => ModuleSource::Builtin(name.to_string()),
            None => ModuleSource::File(self.base_dir.join(module)),
        }
    }

    /// True when every rule runs a built-in module (so the rules can also
    /// run natively, with the same verdicts).
    pub fn only_builtin_modules(&self) -> bool {
        self.file
            .rules
            .iter()
            .all(|rule| rule.module.starts_with("builtin:"))
    }

    /// Error for rule `index`'s field `field`.
    pub fn rule_error(&self, index: usize, field: &str, message: impl Into<String>) -> PolicyError {
        let id = &self.file.rules[index].id;
        self.invalid(format!("rules[{index}] ({id}).{field}"), message)
    }
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
mod tests {
    use super::*;

    #[test]
    fn builtin_policy_is_valid() {
        let p = Policy::builtin();
        assert_eq!(p.file.rules.len(), 10);
        assert_eq!(p.file.watermark.allowed_lateness, Duration::from_secs(300));
        assert_eq!(p.file.alerts.min_level, RiskLevel::High);
        assert!(p.only_builtin_modules());
        let own = Policy::parse(
            "rules:\n  - {id: a, module: 'builtin:burst'}\n  - {id: b, module: rules/mine.wasm}\n",
            "p.yaml",
            Path::new("."),
        )
        .unwrap();
        assert!(!own.only_builtin_modules());
    }

    fn err(yaml: &str) -> String {
        Policy::parse(yaml, "p.yaml", Path::new("."))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refuses_bad_policies_precisely() {
        let e = err("rules: []\nbogus: 1\n");
        assert!(
            e.contains("unknown field `bogus`") && e.contains("line 2"),
            "{e}"
        );
        let e = err("rules:\n  - id: a\n    module: builtin:x\n    weight: 11\n");
        assert_eq!(e, "p.yaml: rules[0] (a).weight: must be 0..=10");
        let e = err(
            "risk:\n  bands: {medium: 70, high: 60, critical: 85}\nrules:\n  - {id: a, module: 'builtin:x'}\n",
        );
        assert!(e.contains("risk.bands"), "{e}");
        let e = err("watermark:\n  allowed_lateness: soon\nrules: []\n");
        assert!(e.contains("not a duration"), "{e}");
        let e = err("rules:\n  - {id: a, module: 'builtin:x'}\n  - {id: a, module: 'builtin:y'}\n");
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn durations_accept_text_and_seconds() {
        let p = Policy::parse(
            "watermark: {allowed_lateness: 90}\nalerts: {dedup_window: 2h}\nrules:\n  - {id: a, module: 'builtin:x', on_failure: {disable_after: 3}}\n",
            "p",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(p.file.watermark.allowed_lateness, Duration::from_secs(90));
        assert_eq!(p.file.alerts.dedup_window, Duration::from_secs(7200));
        assert_eq!(p.file.rules[0].on_failure, FailurePolicy::DisableAfter(3));
    }

    #[test]
    fn modes_and_limit_overrides() {
        let p = Policy::parse(
            "sandbox: {max_tables: 2, allow_unpinned: true}
rules:
  - id: a
    module: 'builtin:x'
    mode: shadow
    limits: {max_memory_mib: 64, batch_deadline: 250ms}
  - {id: b, module: 'builtin:y'}
",
            "p",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(p.file.rules[0].mode, RuleMode::Shadow);
        assert_eq!(p.file.rules[1].mode, RuleMode::Enforce);
        assert_eq!(
            p.file.rules[0].limits,
            LimitOverrides {
                max_memory_mib: Some(64),
                batch_deadline: Some(Duration::from_millis(250)),
            }
        );
        assert_eq!(p.file.rules[1].limits, LimitOverrides::default());
        assert!(p.file.sandbox.allow_unpinned);
        assert_eq!(p.file.sandbox.max_tables, 2);
        assert_eq!(p.file.sandbox.max_table_elements, 100_000);

        let e = err("rules:
  - id: a
    module: 'builtin:x'
    limits: {max_memory_mib: 0}
");
        assert_eq!(
            e,
            "p.yaml: rules[0] (a).limits.max_memory_mib: 0 MiB is outside 1..=4096"
        );
        let e = err("rules:
  - id: a
    module: 'builtin:x'
    limits: {batch_deadline: 2m}
");
        assert_eq!(
            e,
            "p.yaml: rules[0] (a).limits.batch_deadline: must be 1ms..=60s"
        );
        let e = err("rules:
  - id: a
    module: 'builtin:x'
    mode: loud
");
        assert!(e.contains("unknown variant `loud`"), "{e}");
        let e = err("sandbox: {max_tables: 0}
rules:
  - {id: a, module: 'builtin:x'}
");
        assert_eq!(e, "p.yaml: sandbox.max_tables: must be 1..=16");
    }

    #[test]
    fn levels_follow_bands() {
        let b = RiskBands::default();
        assert_eq!(b.level(29), RiskLevel::Low);
        assert_eq!(b.level(30), RiskLevel::Medium);
        assert_eq!(b.level(60), RiskLevel::High);
        assert_eq!(b.level(100), RiskLevel::Critical);
    }
}
