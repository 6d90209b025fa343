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

/// The built-in rules: every `authpulse-rule-NAME` dependency of this
/// crate's manifest, in its order. That line is the one place a built-in
/// rule is listed; the rest (the modules embedded, [`BUILTIN_RULES`], the
/// native dispatch) follows from it, and a test checks the policy and the
/// docs name every one.
struct BuiltinRule {
    /// As a policy names it (`builtin:NAME`): `rare_host`.
    name: String,
    /// `authpulse-rule-rare-host`.
    package: String,
    /// `authpulse_rule_rare_host`: the library file stem and the crate path.
    stem: String,
}

fn builtin_rules(manifest: &Path) -> Vec<BuiltinRule> {
    let text =
        fs::read_to_string(manifest).unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
    text.lines()
        .filter_map(|line| {
            let key = line.split(['=', '.', ' ']).next()?.trim();
            let name = key.strip_prefix("authpulse-rule-")?;
            Some(BuiltinRule {
                name: name.replace('-', "_"),
                package: key.to_string(),
                stem: key.replace('-', "_"),
            })
        })
        .collect()
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("daemon/ sits in the workspace root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let manifest = manifest_dir.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let rules = builtin_rules(&manifest);

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
    for rule in &rules {
        cmd.args(["-p", &rule.package]);
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
    for rule in &rules {
        let built = wasm_target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", rule.stem));
        let embedded = out_dir.join(format!("{}.wasm", rule.name));
        copy_if_changed(&built, &embedded);
        table.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            rule.name,
            embedded.display().to_string()
        ));
    }
    table.push_str("];\n\n/// Names of the built-in rules (`builtin:NAME` in a policy).\n");
    table.push_str(&format!(
        "pub const BUILTIN_RULES: [&str; {}] = [{}];\n",
        rules.len(),
        rules
            .iter()
            .map(|rule| format!("{:?}", rule.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    fs::write(out_dir.join("builtin_modules.rs"), table).expect("write builtin_modules.rs");

    // The same rules compiled in, for `--engine native`, and their metadata.
    let native = [
        match_over_rules(
            &rules,
            "/// The built-in rule `name` natively, configured with `values`.\n\
             pub fn builtin(name: &str, values: &[f64]) -> Option<Box<dyn RuleModule>>",
            |stem| format!("boxed::<{stem}::ExportedRule>(values)"),
        ),
        match_over_rules(
            &rules,
            "/// The metadata JSON the built-in rule `name` exports, read without\n\
             /// compiling its module.\n\
             pub fn builtin_metadata_json(name: &str) -> Option<String>",
            |stem| {
                format!("<{stem}::ExportedRule as authpulse_rules_sdk::Rule>::METADATA.to_json()")
            },
        ),
    ]
    .join("\n");
    fs::write(out_dir.join("builtin_native.rs"), native).expect("write builtin_native.rs");
}

/// A function `signature` (with its doc lines) that matches `name` over the
/// built-in rules, each arm the expression `arm` makes of the rule's crate.
fn match_over_rules(
    rules: &[BuiltinRule],
    signature: &str,
    arm: impl Fn(&str) -> String,
) -> String {
    let mut code = format!("{signature} {{\n    Some(match name {{\n");
    for rule in rules {
        code.push_str(&format!(
            "        {:?} => {},\n",
            rule.name,
            arm(&rule.stem)
        ));
    }
    code.push_str("        _ => return None,\n    })\n}\n");
    code
}

fn copy_if_changed(from: &Path, to: &Path) {
    let bytes =
        fs::read(from).unwrap_or_else(|e| panic!("rule module {} missing: {e}", from.display()));
    if fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        fs::write(to, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
    }
}
