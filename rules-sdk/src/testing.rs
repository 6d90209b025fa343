//! Native test harness for rule authors: configure a rule with its defaults,
//! override parameters by name, and score hand-written [`Features`].
//!
//! ```
//! # use authpulse_rules_sdk::{Entity, Events, Features, Hit, Metadata, Params, Rule, Severity};
//! # struct Always;
//! # impl Rule for Always {
//! #     const METADATA: Metadata = Metadata { name: "always", version: "1", description: "",
//! #         severity: Severity::Low, mitre: &[], entity: Entity::User, events: Events::All, params: &[], reasons: &["always"] };
//! #     fn new(_: &Params) -> Self { Always }
//! #     fn evaluate(&self, _: &Features) -> Option<Hit> { Some(Hit::new(1.0, 0)) }
//! # }
//! use authpulse_rules_sdk::testing::RuleHarness;
//! let rule = RuleHarness::<Always>::with_defaults();
//! assert!(rule.evaluate(&Features::default()).is_some());
//! ```

use crate::{Features, Hit, Rule, Verdict, native::NativeRule};

/// A rule configured for a test.
pub struct RuleHarness<R: Rule> {
    values: Vec<f64>,
    rule: NativeRule<R>,
}

impl<R: Rule> RuleHarness<R> {
    /// The rule with every parameter at its declared default.
    pub fn with_defaults() -> Self {
        let values: Vec<f64> = R::METADATA.default_values().collect();
        let rule = NativeRule::new(&values);
        RuleHarness { values, rule }
    }

    /// The rule with parameter `name` set to `value` (others unchanged).
    ///
    /// # Panics
    /// If the rule declares no such parameter, or `value` is outside its range:
    /// the host would refuse such a policy.
    pub fn with(mut self, name: &str, value: f64) -> Self {
        let index = R::METADATA
            .param_index(name)
            .unwrap_or_else(|| panic!("{} has no parameter `{name}`", R::METADATA.name));
        let spec = &R::METADATA.params[index];
        assert!(
            (spec.min..=spec.max).contains(&value),
            "{name} = {value} is outside {}..={}",
            spec.min,
            spec.max
        );
        self.values[index] = value;
        self.rule = NativeRule::new(&self.values);
        self
    }

    /// Scores one event.
    pub fn evaluate(&self, features: &Features) -> Option<Hit> {
        self.rule.rule().evaluate(features)
    }

    /// Scores a batch, as the host would.
    pub fn evaluate_batch(&self, features: &[Features]) -> Vec<Verdict> {
        let mut verdicts = vec![Verdict::NONE; features.len()];
        self.rule.evaluate_batch(features, &mut verdicts);
        verdicts
    }
}
