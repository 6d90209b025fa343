//! The policy file: a bad one refused with a precise message, and the
//! reference of docs/policy.md following the built-in modules' metadata.

use std::process::Stdio;

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
    for rule in [
        "new_device",
        "burst",
        "lateral_movement",
        "rare_host",
        "slow_spread",
        "fan_in",
        "off_hours",
    ] {
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
