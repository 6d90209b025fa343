//! The policy file: a bad one refused with a precise message, the
//! reference of docs/policy.md following the built-in modules' metadata,
//! and every built-in rule named wherever the rules are listed.

use std::path::Path;
use std::process::Stdio;

use authpulse_engine::rules::BUILTIN_RULES;

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse};

#[test]
fn bad_policy_fails_with_a_precise_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n  - id: nd\n    module: builtin:burst\n    params: {score: 500}\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run", "--policy", "bad.yaml", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml: rules[0] (nd).params.score: 500 is outside 0..=100"),
        "{err}"
    );

    let out = authpulse(dir.path())
        .args(["policy", "check", "bad.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = authpulse(dir.path())
        .args(["policy", "check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("lateral_movement"));
}

/// docs/policy.md's table of the built-in rules' parameters lists exactly
/// the parameters each module declares, with its default (the modules'
/// metadata is the reference; the table must follow it).
#[test]
fn policy_reference_lists_every_builtin_parameter() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policy.md")).unwrap();
    let table = doc
        .split("### Parameters of the built-in rules")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/policy.md has the parameter table");
    // Rows are `| rule | param | default | range | meaning |`, the rule named
    // on its first row only.
    let mut documented: Vec<(String, String, String)> = Vec::new();
    let mut rule = String::new();
    for row in table.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[2].starts_with('-') || cells[2] == "parameter" {
            continue;
        }
        if !cells[1].is_empty() {
            rule = cells[1].trim_matches('`').to_string();
        }
        documented.push((
            rule.clone(),
            cells[2].trim_matches('`').to_string(),
            cells[3].to_string(),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut declared = Vec::new();
    for rule in BUILTIN_RULES {
        let out = authpulse(dir.path())
            .args(["rules", "inspect", &format!("builtin:{rule}"), "--json"])
            .output()
            .unwrap();
        assert_succeeded(&out);
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        for param in inspected["metadata"]["params"].as_array().unwrap() {
            let name = param["name"].as_str().unwrap().to_string();
            let default = param["default"].as_f64().unwrap();
            let row = documented
                .iter()
                .find(|(r, p, _)| r == rule && *p == name)
                .unwrap_or_else(|| panic!("docs/policy.md lacks {rule}.{name}"));
            let shown = match param["kind"].as_str().unwrap() {
                "seconds" if default % 86_400.0 == 0.0 => format!("{}d", default / 86_400.0),
                "seconds" => format!("{}h", default / 3_600.0),
                _ => format!("{default}"),
            };
            assert!(
                row.2 == shown || row.2.starts_with(&format!("{shown} ")),
                "docs/policy.md gives {rule}.{name} the default {:?}, the module {shown}",
                row.2
            );
            declared.push((rule.to_string(), name));
        }
    }
    for (rule, param, _) in &documented {
        assert!(
            declared.iter().any(|(r, p)| r == rule && p == param),
            "docs/policy.md documents {rule}.{param}, which the module does not declare"
        );
    }
}

/// A built-in rule is its crate under rules/ and one line in the engine's
/// manifest (which embeds it and compiles it in natively). The rest is
/// prose and configuration, and this test names what is missing: every
/// rule crate but the template built in, and every built-in rule in the
/// default policy, the policy reference and the README.
#[test]
fn every_builtin_rule_is_listed_everywhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let (policy, reference, readme) = (
        read("policies.yaml"),
        read("docs/policy.md"),
        read("README.md"),
    );
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("rules")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("Cargo.toml").exists()
            && name != "template"
            && !BUILTIN_RULES.contains(&name.as_str())
        {
            missing.push(format!(
                "rules/{name} is not built in: add authpulse-rule-{} to engine/Cargo.toml",
                name.replace('_', "-")
            ));
        }
    }
    for rule in BUILTIN_RULES {
        if !root.join("rules").join(rule).join("Cargo.toml").exists() {
            missing.push(format!("builtin:{rule} has no crate at rules/{rule}"));
        }
        if !policy.contains(&format!("module: builtin:{rule}")) {
            missing.push(format!("policies.yaml does not run builtin:{rule}"));
        }
        if !reference.contains(&format!("`{rule}`")) {
            missing.push(format!("docs/policy.md does not describe `{rule}`"));
        }
        if !readme.contains(rule) {
            missing.push(format!("README.md does not name {rule}"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
