//! The built-in rules running natively, in-process, behind the same
//! [`RuleModule`] seam as the sandbox: the benchmark's baseline.

use authpulse_rules_sdk::native::NativeRule;
use authpulse_rules_sdk::{Rule, Verdict};

use super::wasm::{LoadError, parse_metadata};
use super::{Records, RuleFailure, RuleMetadata, RuleModule};

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

/// The metadata of the built-in rule `name`, as its module exports it (the
/// same `Rule::METADATA`), without compiling the module: a native run never
/// starts the sandbox.
pub fn builtin_metadata(name: &str) -> Option<Result<RuleMetadata, LoadError>> {
    builtin_metadata_json(name).map(|json| parse_metadata(json.as_bytes()))
}

// `builtin(name, values)` and `builtin_metadata_json(name)`: matches over the
// built-in rules, written by `build.rs` from the engine's manifest.
include!(concat!(env!("OUT_DIR"), "/builtin_native.rs"));
