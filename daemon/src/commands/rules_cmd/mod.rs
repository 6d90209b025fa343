//! `authpulse rules`: tooling for rule authors. `build` compiles a rule crate
//! to a checked `.wasm`, `inspect` shows what a module declares, and `test`
//! replays events through one rule with the host's real features, printing
//! what it flags and, with `--expect`, failing on any difference (so a rule's
//! expectations run in its author's CI). One file per subcommand:
//! `build`, `inspect`, `test` (`backtest` is `commands::backtest`).

use std::path::Path;

use anyhow::Context;
use authpulse_engine::files;
use authpulse_engine::rules::{
    BUILTIN_RULES, RuleMetadata, SandboxLimits, WasmModule, builtin_module, hex_sha256,
};
use clap::Subcommand;
use serde::Serialize;

// The recipe the engine's build script uses for the built-in rules.

mod build;
mod inspect;
mod test;

pub use build::BuildArgs;
pub use inspect::InspectArgs;
pub use test::TestArgs;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Build a rule crate into a `.wasm` module and check it as the daemon would.
    ///
    /// Runs `cargo build --release --target wasm32-unknown-unknown` on the
    /// crate (adding the target with rustup if it is missing), loads the result
    /// in the sandbox, and prints its hash and a policy entry to paste.
    Build(BuildArgs),
    /// Show a module's ABI version, metadata, parameter schema, size and hash.
    Inspect(InspectArgs),
    /// Replay events through one rule and print what it flags.
    ///
    /// The events go through the real pipeline (parsing, ordering,
    /// deduplication, windows, device history, host popularity), so the rule
    /// sees exactly the features the daemon would give it. With --expect, the
    /// hits are compared with a file of expected hits and any difference fails
    /// the command.
    Test(TestArgs),
    /// Replay the stored history through a candidate policy and the current
    /// one, side by side, and show what would change.
    Backtest(super::backtest::BacktestArgs),
}

/// A rule module: a `.wasm` file, or `builtin:NAME` for one embedded in the binary.
#[derive(Clone, Debug)]
pub struct ModuleArg(String);

impl ModuleArg {
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self.0.strip_prefix("builtin:") {
            Some(name) => builtin_module(name).map(<[u8]>::to_vec).with_context(|| {
                format!(
                    "no built-in module `{name}` (built-in: {})",
                    BUILTIN_RULES.join(", ")
                )
            }),
            None => files::read_regular(Path::new(&self.0), files::MAX_MODULE_BYTES, "rule module")
                .with_context(|| format!("cannot read {}", self.0)),
        }
    }

    /// The module as a policy names it: built-in, or an absolute path.
    fn policy_module(&self) -> anyhow::Result<String> {
        if self.0.starts_with("builtin:") {
            return Ok(self.0.clone());
        }
        let path =
            std::path::absolute(&self.0).with_context(|| format!("cannot resolve {}", self.0))?;
        Ok(path.display().to_string())
    }
}

impl std::str::FromStr for ModuleArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ModuleArg(s.to_string()))
    }
}

impl std::fmt::Display for ModuleArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn execute(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Build(args) => build::build(args),
        RulesCommand::Inspect(args) => inspect::inspect(args),
        RulesCommand::Test(args) => test::test(args),
        RulesCommand::Backtest(args) => super::backtest::execute(args),
    }
}

/// What `inspect` reports about a module.
#[derive(Serialize)]
pub(super) struct Inspection {
    pub(super) module: String,
    pub(super) size_bytes: usize,
    pub(super) sha256: String,
    pub(super) metadata: RuleMetadata,
}

pub(super) fn load(module: &ModuleArg) -> anyhow::Result<Inspection> {
    let bytes = module.read()?;
    let compiled = WasmModule::compile(&bytes, SandboxLimits::default())
        .with_context(|| format!("{module} is not a usable rule module"))?;
    Ok(Inspection {
        module: module.to_string(),
        size_bytes: bytes.len(),
        sha256: hex_sha256(&bytes),
        metadata: (*compiled.metadata).clone(),
    })
}
