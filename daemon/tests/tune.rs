//! `authpulse tune` at small scale: a search with every attack family left
//! out in turn keeps a floor of detection on the family it never saw, its
//! evaluations are kept and not run twice, and a knob the policy does not
//! have is refused before any evaluation.

mod common;

use std::path::Path;

use authpulse_generator::Kind;
use common::{assert_succeeded, authpulse};
use serde_json::Value;

const GRID: &str =
    "knobs:\n  rules.slow_spread.params.min_surprise: [3]\n  risk.bands.high: [50]\n";

fn tune(dir: &Path) -> std::process::Output {
    authpulse(dir)
        .args([
            "tune",
            "--grid",
            "grid.yaml",
            "--users",
            "600",
            "--days",
            "7",
            "--burn-in-days",
            "3",
            "--campaigns",
            "22",
            "--benign",
            "7",
            "--tune-seeds",
            "21",
            "--report-seeds",
            "22",
            "--leave-one-family-out",
            "--json",
        ])
        .output()
        .unwrap()
}

#[test]
fn leave_one_family_out_keeps_a_floor_and_reuses_its_evaluations() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("grid.yaml"), GRID).unwrap();
    let out = tune(dir.path());
    assert_succeeded(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("tune/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report, written);

    let left_out = report["left_out"].as_array().unwrap();
    let families: Vec<&str> = left_out
        .iter()
        .map(|t| t["family"].as_str().unwrap())
        .collect();
    assert_eq!(
        families,
        [
            "spread", "volume", "rare", "fan_in", "time", "service", "failures"
        ]
    );
    // Each family as the search that never saw it left it: together, most
    // attacks are still caught, at a bounded noise.
    let (mut detected, mut campaigns) = (0, 0);
    for tuned in left_out {
        let family = tuned["family"].as_str().unwrap();
        let kinds = tuned["report"]["kinds"].as_object().unwrap();
        for (kind, counts) in kinds {
            if kind.parse::<Kind>().unwrap().family() == family {
                detected += counts[0].as_u64().unwrap();
                campaigns += counts[1].as_u64().unwrap();
            }
        }
        let report = &tuned["report"];
        let per_day =
            report["false_alerts"].as_f64().unwrap() / report["judged_days"].as_f64().unwrap();
        assert!(per_day <= 3.0, "{family}: {report}");
    }
    assert_eq!(campaigns, 22);
    assert!(
        detected >= 14,
        "{detected}/{campaigns} detected when left out"
    );

    // The candidates are written out, and a second tune runs nothing again.
    let policies = std::fs::read_dir(dir.path().join("tune/policies"))
        .unwrap()
        .count();
    assert!(policies >= 3, "{policies} candidate policies written");
    let again = tune(dir.path());
    assert_succeeded(&again);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("evaluation "), "{stderr}");
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).unwrap(),
        report
    );
}

#[test]
fn a_knob_the_policy_lacks_is_refused_before_any_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grid.yaml"),
        "knobs:\n  rules.fan_in.params.min_surprse: [3]\n",
    )
    .unwrap();
    let out = tune(dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "knob rules.fan_in.params.min_surprse: rules.fan_in.params has no field `min_surprse`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("evaluation "), "{stderr}");
}
