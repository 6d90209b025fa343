//! Policies refused, with the field and the reason, and accepted.

use std::path::Path;

use super::*;

#[test]
fn builtin_policy_is_valid() {
    let p = Policy::builtin();
    assert_eq!(p.file.rules.len(), 10);
    assert_eq!(p.file.watermark.allowed_lateness, Duration::from_secs(300));
    assert_eq!(p.file.alerts.min_level, RiskLevel::High);
    assert!(p.only_builtin_modules());
    let own = Policy::parse(
        "rules:\n  - {id: a, module: 'builtin:burst'}\n  - {id: b, module: rules/mine.wasm}\n",
        "p.yaml",
        Path::new("."),
    )
    .unwrap();
    assert!(!own.only_builtin_modules());
}

fn err(yaml: &str) -> String {
    Policy::parse(yaml, "p.yaml", Path::new("."))
        .unwrap_err()
        .to_string()
}

#[test]
fn refuses_bad_policies_precisely() {
    let e = err("rules: []\nbogus: 1\n");
    assert!(
        e.contains("unknown field `bogus`") && e.contains("line 2"),
        "{e}"
    );
    let e = err("rules:\n  - id: a\n    module: builtin:x\n    weight: 11\n");
    assert_eq!(e, "p.yaml: rules[0] (a).weight: must be 0..=10");
    let e = err(
        "risk:\n  bands: {medium: 70, high: 60, critical: 85}\nrules:\n  - {id: a, module: 'builtin:x'}\n",
    );
    assert!(e.contains("risk.bands"), "{e}");
    let e = err("watermark:\n  allowed_lateness: soon\nrules: []\n");
    assert!(e.contains("not a duration"), "{e}");
    let e = err("rules:\n  - {id: a, module: 'builtin:x'}\n  - {id: a, module: 'builtin:y'}\n");
    assert!(e.contains("appears twice"), "{e}");
}

#[test]
fn durations_accept_text_and_seconds() {
    let p = Policy::parse(
            "watermark: {allowed_lateness: 90}\nalerts: {dedup_window: 2h}\nrules:\n  - {id: a, module: 'builtin:x', on_failure: {disable_after: 3}}\n",
            "p",
            Path::new("."),
        )
        .unwrap();
    assert_eq!(p.file.watermark.allowed_lateness, Duration::from_secs(90));
    assert_eq!(p.file.alerts.dedup_window, Duration::from_secs(7200));
    assert_eq!(p.file.rules[0].on_failure, FailurePolicy::DisableAfter(3));
}

#[test]
fn modes_and_limit_overrides() {
    let p = Policy::parse(
        "sandbox: {max_tables: 2, allow_unpinned: true}
rules:
  - id: a
    module: 'builtin:x'
    mode: shadow
    limits: {max_memory_mib: 64, batch_deadline: 250ms}
  - {id: b, module: 'builtin:y'}
",
        "p",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(p.file.rules[0].mode, RuleMode::Shadow);
    assert_eq!(p.file.rules[1].mode, RuleMode::Enforce);
    assert_eq!(
        p.file.rules[0].limits,
        LimitOverrides {
            max_memory_mib: Some(64),
            batch_deadline: Some(Duration::from_millis(250)),
        }
    );
    assert_eq!(p.file.rules[1].limits, LimitOverrides::default());
    assert!(p.file.sandbox.allow_unpinned);
    assert_eq!(p.file.sandbox.max_tables, 2);
    assert_eq!(p.file.sandbox.max_table_elements, 100_000);

    let e = err("rules:
  - id: a
    module: 'builtin:x'
    limits: {max_memory_mib: 0}
");
    assert_eq!(
        e,
        "p.yaml: rules[0] (a).limits.max_memory_mib: 0 MiB is outside 1..=4096"
    );
    let e = err("rules:
  - id: a
    module: 'builtin:x'
    limits: {batch_deadline: 2m}
");
    assert_eq!(
        e,
        "p.yaml: rules[0] (a).limits.batch_deadline: must be 1ms..=60s"
    );
    let e = err("rules:
  - id: a
    module: 'builtin:x'
    mode: loud
");
    assert!(e.contains("unknown variant `loud`"), "{e}");
    let e = err("sandbox: {max_tables: 0}
rules:
  - {id: a, module: 'builtin:x'}
");
    assert_eq!(e, "p.yaml: sandbox.max_tables: must be 1..=16");
}

#[test]
fn levels_follow_bands() {
    let b = RiskBands::default();
    assert_eq!(b.level(29), RiskLevel::Low);
    assert_eq!(b.level(30), RiskLevel::Medium);
    assert_eq!(b.level(60), RiskLevel::High);
    assert_eq!(b.level(100), RiskLevel::Critical);
}
