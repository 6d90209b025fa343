//! `authpulse rules build`: a rule crate compiled to `wasm32-unknown-unknown`
//! with the recipe the built-in rules use, and checked as the host would load it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

// The recipe the engine's build script uses for the built-in rules.
use authpulse_engine::wasm_build::{self, WASM_TARGET};

use super::inspect::print_inspection;
use super::{ModuleArg, load};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The rule crate (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    pub crate_dir: PathBuf,
    /// Also copy the module here.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub(super) fn build(args: BuildArgs) -> anyhow::Result<()> {
    let manifest = args.crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} has no Cargo.toml", args.crate_dir.display());
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    wasm_build::ensure_wasm_target(&rustc, |note| eprintln!("{note}"))
        .map_err(anyhow::Error::msg)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building {} for {WASM_TARGET} (release) ...",
        args.crate_dir.display()
    );
    let output = wasm_build::cargo_build(&cargo)
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        bail!("cargo build failed ({})", output.status);
    }
    let wasm = built_module(&output.stdout, &manifest)?;
    let module = ModuleArg(wasm.display().to_string());
    let mut inspection = load(&module)?;
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::copy(&wasm, out).with_context(|| format!("cannot write {}", out.display()))?;
        inspection.module = out.display().to_string();
    }
    print_inspection(&mut crate::commands::stdout(), &inspection)?;
    Ok(())
}

/// The `.wasm` cargo reported for the crate at `manifest`.
fn built_module(messages: &[u8], manifest: &Path) -> anyhow::Result<PathBuf> {
    #[derive(Deserialize)]
    struct Message {
        reason: String,
        #[serde(default)]
        manifest_path: Option<PathBuf>,
        #[serde(default)]
        filenames: Vec<PathBuf>,
    }
    let manifest = std::fs::canonicalize(manifest)?;
    let mut found = None;
    for line in messages.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(message) = serde_json::from_slice::<Message>(line) else {
            continue;
        };
        if message.reason != "compiler-artifact"
            || message.manifest_path.as_deref() != Some(manifest.as_path())
        {
            continue;
        }
        if let Some(wasm) = message
            .filenames
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        {
            found = Some(wasm);
        }
    }
    found.with_context(|| {
        format!(
            "cargo built no .wasm for {}: its [lib] needs crate-type = [\"cdylib\", \"rlib\"]",
            manifest.display()
        )
    })
}
