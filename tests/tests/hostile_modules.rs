//! Hostile rule modules cannot crash, hang or corrupt a run: load-time problems
//! are refused with a clear message; run-time failures are contained to the
//! rule (fail open, counted) while the other rules keep scoring.

mod common;

use std::path::Path;

use authpulse_engine::policy::Policy;
use authpulse_engine::rules::Engine;
use common::{generate, score};

const METADATA: &str = r#"{"abi_version":1,"name":"hostile","version":"0.0.1","description":"misbehaves","severity":"low","mitre":[],"params":[],"reasons":["r"]}"#;

/// A module that speaks the ABI, with `evaluate_body` as `authpulse_evaluate`
/// (its parameter is local 0, the batch size; `$cap` is the reserved capacity).
fn module(abi_version: u32, extra: &str, evaluate_body: &str) -> Vec<u8> {
    module_with_metadata_len(abi_version, extra, METADATA.len(), evaluate_body)
}

/// [`module`], with the metadata's length as `authpulse_metadata` reports it.
fn module_with_metadata_len(
    abi_version: u32,
    extra: &str,
    metadata_len: usize,
    evaluate_body: &str,
) -> Vec<u8> {
    let escaped = METADATA.replace('"', "\\\"");
    let wat = format!(
        r#"(module
          {extra}
          (memory (export "memory") 8)
          (global $cap (mut i32) (i32.const 0))
          (data (i32.const 1024) "{escaped}")
          (func (export "authpulse_abi_version") (result i32) (i32.const {abi_version}))
          (func (export "authpulse_metadata") (result i64)
            (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {metadata_len})))
          (func (export "authpulse_reserve") (param i32 i32) (result i32)
            (global.set $cap (local.get 0)) (i32.const 8192))
          (func (export "authpulse_configure") (result i32) (i32.const 0))
          (func $recurse (call $recurse))
          (func (export "authpulse_evaluate") (param i32) (result i32) {evaluate_body}))"#
    );
    wat::parse_str(wat).expect("valid WAT")
}

/// The built-in policy plus `hostile.wasm`, with a short batch deadline of
/// its own. The built-in rules keep the default deadline: theirs is wall
/// time, and on a machine whose cores are all taken a healthy module's
/// batch can wait past 20ms for one.
fn policy_with(dir: &Path, wasm: &[u8]) -> Result<Policy, String> {
    std::fs::write(dir.join("hostile.wasm"), wasm).unwrap();
    let yaml = authpulse_engine::policy::DEFAULT_POLICY_YAML.replace(
        "batch_deadline: 100ms",
        "batch_deadline: 100ms\n  allow_unpinned: true",
    ) + "\n  - id: hostile\n    module: hostile.wasm\n    on_failure: fail_open\n    limits: { batch_deadline: 20ms }\n";
    let policy = Policy::parse(&yaml, "hostile-policy.yaml", dir).map_err(|e| e.to_string())?;
    authpulse_engine::rules::RuleSet::load(&policy, Engine::Wasm, 4096)
        .map_err(|e| e.to_string())?;
    Ok(policy)
}

fn data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| generate(200, 3, 30_000, 2, 4).0)
}

/// Runs the data with the hostile rule added; asserts it failed on every batch
/// and that everything else equals a run without it.
fn assert_contained(evaluate_body: &str) {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_with(dir.path(), &module(1, "", evaluate_body)).expect("module loads");
    let baseline = common::score_default(data(), 4096);
    let started = std::time::Instant::now();
    let run = score(data(), &policy, 4096, Engine::Wasm);
    let batches = run.summary.events_scored.div_ceil(4096);
    assert_eq!(
        run.summary.rule_failures["hostile"], batches,
        "{:?}",
        run.summary
    );
    assert_eq!(run.summary.rule_hits["hostile"], 0);
    for rule in authpulse_engine::rules::BUILTIN_RULES {
        assert_eq!(
            run.summary.rule_hits[rule], baseline.summary.rule_hits[rule],
            "{rule}"
        );
    }
    assert_eq!(run.summary.alerts, baseline.summary.alerts);
    assert!(run.summary.alerts >= 2);
    // Each failing batch costs at most its deadline (20ms) and a fresh instance.
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn infinite_loop_is_interrupted() {
    assert_contained("(loop $forever (br $forever)) (i32.const 0)");
}

#[test]
fn memory_growth_hits_the_cap() {
    // 1000 pages = 64 MiB, over the 16 MiB cap: grow fails, the module traps.
    assert_contained(
        "(if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable)) (i32.const 0)",
    );
}

#[test]
fn trap_is_contained() {
    assert_contained("unreachable");
}

#[test]
fn deep_recursion_overflows_safely() {
    assert_contained("(call $recurse) (i32.const 0)");
}

#[test]
fn nan_score_is_rejected() {
    // Verdict 0 lives after `capacity` 64-byte feature records.
    assert_contained(
        "(f32.store (i32.add (i32.const 8192) (i32.mul (global.get $cap) (i32.const 64))) (f32.const nan)) (local.get 0)",
    );
}

#[test]
fn out_of_range_score_is_rejected() {
    assert_contained(
        "(f32.store (i32.add (i32.const 8192) (i32.mul (global.get $cap) (i32.const 64))) (f32.const 1000)) (local.get 0)",
    );
}

#[test]
fn error_status_is_a_failure() {
    assert_contained("(i32.const -7)");
}

fn refused(wasm: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    policy_with(dir.path(), wasm).expect_err("module must be refused")
}

#[test]
fn imports_are_refused() {
    let wasm = module(
        1,
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.const 0)",
    );
    let e = refused(&wasm);
    assert!(
        e.contains("rules[10] (hostile).module")
            && e.contains("`wasi_snapshot_preview1::fd_write`"),
        "{e}"
    );
    assert!(e.contains("may not import anything"), "{e}");
}

#[test]
fn wrong_abi_version_is_refused() {
    let e = refused(&module(5, "", "(i32.const 0)"));
    assert!(
        e.contains("declares ABI version 5; this host runs versions 1 to 4"),
        "{e}"
    );
    // The export and the metadata must agree.
    let e = refused(&module(2, "", "(i32.const 0)"));
    assert!(
        e.contains("module exports ABI version 2 but its metadata says 1"),
        "{e}"
    );
}

#[test]
fn malformed_binary_is_refused() {
    let e = refused(b"\0asm\x01\0\0\0garbage");
    assert!(e.contains("not a valid WebAssembly module"), "{e}");
    let e = refused(b"definitely not wasm");
    assert!(e.contains("not a valid WebAssembly module"), "{e}");
}

#[test]
fn missing_export_is_refused() {
    let wasm = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    let e = refused(&wasm);
    assert!(e.contains("authpulse_abi_version"), "{e}");
}

/// A well-behaved module written as `hostile.wasm` in a fresh directory, its
/// sha256, and a loader for policies in that directory.
struct ModuleFile {
    dir: tempfile::TempDir,
    sha256: String,
}

impl ModuleFile {
    fn new() -> ModuleFile {
        let dir = tempfile::tempdir().unwrap();
        let wasm = module(1, "", "(i32.const 0)");
        std::fs::write(dir.path().join("hostile.wasm"), &wasm).unwrap();
        let sha256 = authpulse_engine::rules::hex_sha256(&wasm);
        ModuleFile { dir, sha256 }
    }

    fn load(&self, yaml: &str) -> Result<(), String> {
        let policy = Policy::parse(yaml, "p.yaml", self.dir.path()).unwrap();
        authpulse_engine::rules::RuleSet::load(&policy, Engine::Wasm, 16)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[test]
fn hash_pin_is_enforced() {
    let file = ModuleFile::new();
    let yaml = |hash: &str| {
        format!("rules:\n  - id: pinned\n    module: hostile.wasm\n    sha256: {hash}\n")
    };
    assert!(file.load(&yaml(&file.sha256)).is_ok());
    let e = file.load(&yaml(&"ab".repeat(32))).unwrap_err();
    assert!(
        e.contains("module hash is") && e.contains(&file.sha256),
        "{e}"
    );
}

#[test]
fn huge_output_is_rejected() {
    // Claims more hits than the batch has events.
    assert_contained("(i32.const 2147483647)");
    // Metadata of 2 GiB is refused before it is read.
    let e = refused(&module_with_metadata_len(
        1,
        "",
        0x7fff_ffff,
        "(i32.const 0)",
    ));
    assert!(
        e.contains("module metadata: 2147483647 bytes is more than 65536"),
        "{e}"
    );
}

#[test]
fn oversized_table_is_refused() {
    let e = refused(&module(1, "(table 200000 funcref)", "(i32.const 0)"));
    assert!(
        e.contains("rules[10] (hostile).module: module failed to start"),
        "{e}"
    );
}

#[test]
fn unpinned_file_module_is_refused_unless_allowed() {
    let file = ModuleFile::new();
    let hash = &file.sha256;
    let load = |yaml: &str| file.load(yaml);
    let e = load("rules:\n  - id: unpinned\n    module: hostile.wasm\n").unwrap_err();
    assert!(
        e.starts_with("p.yaml: rules[0] (unpinned).sha256: ")
            && e.contains("hostile.wasm is not pinned")
            && e.contains(&format!("sha256: {hash}"))
            && e.contains("sandbox.allow_unpinned: true"),
        "{e}"
    );
    load("sandbox: {allow_unpinned: true}\nrules:\n  - id: unpinned\n    module: hostile.wasm\n")
        .unwrap();
    // Built-in modules are part of the binary: no pin needed.
    load("rules:\n  - id: builtin\n    module: builtin:burst\n").unwrap();
}

#[test]
fn per_rule_memory_override() {
    // Grows to ~63 MiB once: over the default 16 MiB cap, under a 128 MiB
    // override for this rule alone.
    let body = "(if (i32.lt_u (memory.size) (i32.const 1000)) (then (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable)))) (i32.const 0)";
    let dir = tempfile::tempdir().unwrap();
    let failures = |limits: &str| {
        std::fs::write(dir.path().join("hungry.wasm"), module(1, "", body)).unwrap();
        let yaml = format!(
            "sandbox: {{allow_unpinned: true}}\nrules:\n  - id: hungry\n    module: hungry.wasm\n{limits}"
        );
        let policy = Policy::parse(&yaml, "p.yaml", dir.path()).unwrap();
        let cut = data()[..200_000].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let run = score(&data()[..cut], &policy, 4096, Engine::Wasm);
        assert!(run.summary.events_scored > 4096, "{:?}", run.summary);
        run.summary.rule_failures["hungry"]
    };
    assert!(failures("") > 0);
    assert_eq!(failures("    limits: {max_memory_mib: 128}\n"), 0);
}
