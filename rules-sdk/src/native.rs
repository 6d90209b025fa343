//! Running a rule natively, in-process, with the exact semantics of the module:
//! what the host uses to compare the sandbox against native code, and what
//! [`testing`](crate::testing) builds on.

use crate::{Features, Params, Rule, Verdict};

/// A configured rule instance, called the way the host calls a module.
pub struct NativeRule<R: Rule> {
    rule: R,
}

impl<R: Rule> NativeRule<R> {
    /// Configures the rule with `values` in the order of `R::METADATA.params`.
    pub fn new(values: &[f64]) -> Self {
        NativeRule {
            rule: R::new(&Params::new(R::METADATA.params, values)),
        }
    }

    /// Scores `features` into `verdicts` (same length); returns the number of hits.
    pub fn evaluate_batch(&self, features: &[Features], verdicts: &mut [Verdict]) -> usize {
        assert_eq!(
            features.len(),
            verdicts.len(),
            "one verdict slot per record"
        );
        self.rule.evaluate_batch(features, verdicts)
    }

    /// The configured rule.
    pub fn rule(&self) -> &R {
        &self.rule
    }
}
