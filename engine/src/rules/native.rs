//! The built-in rules running natively, in-process, behind the same
//! [`RuleModule`] seam as the sandbox: the benchmark's baseline.

use authpulse_rules_sdk::native::NativeRule;
use authpulse_rules_sdk::{Rule, Verdict};

use super::{Records, RuleFailure, RuleModule};

struct Native<R: Rule>(NativeRule<R>);

impl<R: Rule + Send> RuleModule for Native<R> {
    fn evaluate(
        &mut self,
        records: &Records<'_>,
        verdicts: &mut [Verdict],
    ) -> Result<(), RuleFailure> {
        self.0.evaluate_batch(records.features, verdicts);
        Ok(())
    }
}

fn boxed<R: Rule + Send>(values: &[f64]) -> Box<dyn RuleModule> {
    Box::new(Native(NativeRule::<R>::new(values)))
}

// `builtin(name, values)`: a match over the built-in rules, written by
// `build.rs` from the engine's manifest.
include!(concat!(env!("OUT_DIR"), "/builtin_native.rs"));
