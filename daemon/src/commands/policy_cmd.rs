//! `authpulse policy check`: validate a policy file and its rule modules.

use std::path::PathBuf;

use authpulse_engine::policy::{Policy, RuleMode};
use authpulse_engine::rules::{Engine, RuleSet};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Parse, validate and load every rule of a policy; print its version.
    Check {
        /// The policy file (default: the built-in policy).
        file: Option<PathBuf>,
    },
}

pub fn execute(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Check { file } => {
            let policy = match &file {
                Some(path) => Policy::load(path)?,
                None => Policy::builtin(),
            };
            let rules = RuleSet::load(&policy, Engine::Wasm, 1)?;
            outln!("{}: ok, policy_version {}", policy.origin, rules.version)?;
            for rule in &rules.rules {
                let mode = match rule.mode {
                    RuleMode::Enforce => "",
                    RuleMode::Shadow => " [shadow: recorded, not scored]",
                };
                outln!(
                    "  {:<18} {} v{} weight {}{mode} ({})",
                    rule.id,
                    rule.metadata.name,
                    rule.metadata.version,
                    rule.weight,
                    rule.metadata.description
                )?;
            }
            Ok(())
        }
    }
}
