//! A policy file read and validated: every field checked with a message
//! that names it (`rules[2].params.min_surprise: ...`), module paths
//! resolved against the file's directory, and the exact text kept, since
//! the policy version is its hash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DEFAULT_POLICY_YAML, FailurePolicy, ModuleSource, PolicyError, PolicyFile};

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
