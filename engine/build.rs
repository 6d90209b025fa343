//! Builds the built-in rule crates (`rules/*`) for `wasm32-unknown-unknown` and
//! embeds the modules in the binary, so a fresh clone needs no manual step:
//! `cargo build` / `cargo run` / `cargo test` compile the rules as part of the build.
//!
//! The nested `cargo` uses its own target directory (under `OUT_DIR`), so it never
//! waits on the lock the outer build holds.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "wasm_build.rs"]
mod wasm_build;

use wasm_build::WASM_TARGET;

/// (rule name, package, library file stem)
const RULES: &[(&str, &str, &str)] = &[
    (
        "new_device",
        "authpulse-rule-new-device",
        "authpulse_rule_new_device",
    ),
    ("burst", "authpulse-rule-burst", "authpulse_rule_burst"),
    (
        "lateral_movement",
        "authpulse-rule-lateral-movement",
        "authpulse_rule_lateral_movement",
    ),
    (
        "rare_host",
        "authpulse-rule-rare-host",
        "authpulse_rule_rare_host",
    ),
    (
        "slow_spread",
        "authpulse-rule-slow-spread",
        "authpulse_rule_slow_spread",
    ),
    ("fan_in", "authpulse-rule-fan-in", "authpulse_rule_fan_in"),
    (
        "off_hours",
        "authpulse-rule-off-hours",
        "authpulse_rule_off_hours",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("daemon/ sits in the workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    println!("cargo:rerun-if-changed={}", root.join("rules").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("rules-sdk").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed=wasm_build.rs");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    wasm_build::ensure_wasm_target(&rustc, |note| println!("cargo:warning={note}"))
        .unwrap_or_else(|e| panic!("{e}"));

    let wasm_target_dir = out_dir.join("wasm-target");
    let mut cmd = wasm_build::cargo_build(&cargo);
    cmd.current_dir(root)
        .arg("--target-dir")
        .arg(&wasm_target_dir)
        .env_remove("CARGO_TARGET_DIR");
    for (_, package, _) in RULES {
        cmd.args(["-p", package]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {cargo:?} to build the rule modules: {e}"));
    if !status.success() {
        panic!(
            "building the rule modules for {WASM_TARGET} failed ({status}); see the output above"
        );
    }

    let mut table = String::from(
        "/// The default rule modules, built from `rules/*` for wasm32 by `build.rs`.\n\
         pub const BUILTIN_MODULES: &[(&str, &[u8])] = &[\n",
    );
    for (name, _, stem) in RULES {
        let built = wasm_target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{stem}.wasm"));
        let embedded = out_dir.join(format!("{name}.wasm"));
        copy_if_changed(&built, &embedded);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            embedded.display().to_string()
        ));
    }
    table.push_str("];\n");
    fs::write(out_dir.join("builtin_modules.rs"), table).expect("write builtin_modules.rs");
}

fn copy_if_changed(from: &Path, to: &Path) {
    let bytes =
        fs::read(from).unwrap_or_else(|e| panic!("rule module {} missing: {e}", from.display()));
    if fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        fs::write(to, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }
}
