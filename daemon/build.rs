//! Builds the default rule crates (`rules/*`) for `wasm32-unknown-unknown` and
//! embeds the modules in the binary, so a fresh clone needs no manual step:
//! `cargo build` / `cargo run` / `cargo test` compile the rules as part of the build.
//!
//! The nested `cargo` uses its own target directory (under `OUT_DIR`), so it never
//! waits on the lock the outer build holds.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

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

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_wasm_target();

    let wasm_target_dir = out_dir.join("wasm-target");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(&wasm_target_dir);
    for (_, package, _) in RULES {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    // Small, self-contained modules: no debug info, one codegen unit, LTO, and
    // panics abort (a panic in a rule is a trap the host contains anyway).
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3");
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

/// Installs the wasm32 target through rustup when it is missing, so the first
/// build on a fresh machine works; fails with instructions when it cannot.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(|d| d.exists()) {
        return;
    }
    println!(
        "cargo:warning=installing the {WASM_TARGET} target with rustup (needed to build the rule modules)"
    );
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        panic!(
            "the {WASM_TARGET} Rust target is not installed and `rustup target add {WASM_TARGET}` failed; \
             install it for the active toolchain and build again"
        );
    }
}
