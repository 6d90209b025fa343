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

/// The built-in rule `name`, natively, configured with `values`.
pub fn builtin(name: &str, values: &[f64]) -> Option<Box<dyn RuleModule>> {
    Some(match name {
        "new_device" => boxed::<authpulse_rule_new_device::NewDevice>(values),
        "burst" => boxed::<authpulse_rule_burst::Burst>(values),
        "lateral_movement" => boxed::<authpulse_rule_lateral_movement::LateralMovement>(values),
        "rare_host" => boxed::<authpulse_rule_rare_host::RareHost>(values),
        "slow_spread" => boxed::<authpulse_rule_slow_spread::SlowSpread>(values),
        "fan_in" => boxed::<authpulse_rule_fan_in::FanIn>(values),
        "off_hours" => boxed::<authpulse_rule_off_hours::OffHours>(values),
        _ => return None,
    })
}
