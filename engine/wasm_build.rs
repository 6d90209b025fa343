//! How a rule crate becomes a `.wasm` module: the target, the profile, and
//! making sure the target is installed. Shared by the daemon's build script
//! (which embeds the built-in rules) and `authpulse rules build` (which builds
//! an author's rule), so both produce the same kind of module.

use std::path::PathBuf;
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// A `cargo build --release --target wasm32-unknown-unknown` command for rule
/// crates: small, self-contained modules (no debug info, stripped, one codegen
/// unit, LTO, and panics abort: a panic in a rule is a trap the host contains
/// anyway). Flags and wrappers meant for a host build are removed.
pub fn cargo_build(cargo: &std::ffi::OsStr) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", WASM_TARGET]);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3");
    cmd
}

/// Installs the wasm32 target through rustup when the active toolchain lacks
/// it, so the first build on a fresh machine works. `note` is told when it
/// installs; the error says what to do when it cannot.
pub fn ensure_wasm_target(rustc: &std::ffi::OsStr, note: impl FnOnce(&str)) -> Result<(), String> {
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(|d| d.exists()) {
        return Ok(());
    }
    note(&format!(
        "installing the {WASM_TARGET} target with rustup (needed to build rule modules)"
    ));
    let added = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if added {
        Ok(())
    } else {
        Err(format!(
            "the {WASM_TARGET} Rust target is not installed and `rustup target add {WASM_TARGET}` failed; \
             install it for the active toolchain and build again"
        ))
    }
}
