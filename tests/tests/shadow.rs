//! Shadow mode: a rule marked `mode: shadow` runs and its hits are recorded
//! (`shadow:ID` in `risk_flags`, counted per rule), but it changes no score
//! and raises no alert.

mod common;

use std::path::Path;

use authpulse_engine::policy::{Policy, RuleMode};
use authpulse_engine::rules::Engine;
use authpulse_generator::Kind;
use common::{detailed_rules, generate, score};

/// The default policy with `lateral_movement` changed by `edit`.
fn policy_with_lateral(edit: &str) -> Policy {
    let yaml = authpulse_engine::policy::DEFAULT_POLICY_YAML.replace(
        "  - id: lateral_movement\n    module: builtin:lateral_movement\n",
        &format!("  - id: lateral_movement\n    module: builtin:lateral_movement\n{edit}"),
    );
    assert_ne!(yaml, authpulse_engine::policy::DEFAULT_POLICY_YAML);
    Policy::parse(&yaml, "p.yaml", Path::new(".")).unwrap()
}

#[test]
fn shadow_rule_is_recorded_but_never_counts() {
    let (data, attacks) = generate(400, 4, 100_000, 4, 21);
    assert!(attacks.iter().any(|a| a.kind == Kind::Spray));
    let enforced = score(&data, &Policy::builtin(), 4096, Engine::Wasm);
    let shadow = score(
        &data,
        &policy_with_lateral("    mode: shadow\n"),
        4096,
        Engine::Wasm,
    );
    // Scoring as if the rule weighed nothing; the weight stays 1.0 in the file.
    let weightless = score(
        &data,
        &Policy::parse(
            &authpulse_engine::policy::DEFAULT_POLICY_YAML.replace(
                "    module: builtin:lateral_movement\n    weight: 1.0\n",
                "    module: builtin:lateral_movement\n    weight: 0.0\n",
            ),
            "p.yaml",
            Path::new("."),
        )
        .unwrap(),
        4096,
        Engine::Wasm,
    );

    // The rule ran exactly as when enforced.
    let report = &shadow.summary.rules["lateral_movement"];
    assert_eq!(report.mode, RuleMode::Shadow);
    assert_eq!(
        report.hits, enforced.summary.rules["lateral_movement"].hits,
        "{report:?}"
    );
    assert!(report.hits > 0);
    assert_eq!(report.evaluations, enforced.summary.events_scored);
    assert_eq!(
        enforced.summary.rules["lateral_movement"].mode,
        RuleMode::Enforce
    );

    // Every row: shadow hits are flagged `shadow:` where the enforced run
    // flagged the rule, and the score is the weightless run's.
    let (e_rows, s_rows, w_rows) = (
        &enforced.collected.rows,
        &shadow.collected.rows,
        &weightless.collected.rows,
    );
    assert_eq!(s_rows.len(), e_rows.len());
    let mut shadow_flagged = 0;
    for ((e, s), w) in e_rows.iter().zip(s_rows).zip(w_rows) {
        assert_eq!(s.event_id, e.event_id);
        let enforced_hit = e.risk_flags.iter().any(|f| f == "lateral_movement");
        let shadow_hit = s.risk_flags.iter().any(|f| f == "shadow:lateral_movement");
        assert_eq!(shadow_hit, enforced_hit, "{s:?} vs {e:?}");
        assert!(!s.risk_flags.iter().any(|f| f == "lateral_movement"));
        shadow_flagged += shadow_hit as usize;
        assert_eq!(
            (s.risk_score, s.risk_level),
            (w.risk_score, w.risk_level),
            "{s:?}"
        );
    }
    assert_eq!(shadow_flagged as u64, report.hits);

    // Alerts are the weightless run's, and none names the shadow rule.
    assert_eq!(
        shadow.collected.alerts.len(),
        weightless.collected.alerts.len()
    );
    for (s, w) in shadow
        .collected
        .alerts
        .iter()
        .zip(&weightless.collected.alerts)
    {
        assert_eq!((&s.entity_id, s.risk_score), (&w.entity_id, w.risk_score));
        assert!(
            !s.risk_flags.iter().any(|f| f.contains("lateral_movement")),
            "{s:?}"
        );
    }
    // ... while enforcing it alerts on the lateral-movement attack.
    assert!(
        enforced
            .collected
            .alerts
            .iter()
            .any(|a| a.risk_flags.iter().any(|f| f == "lateral_movement"))
    );
}

#[test]
fn rule_report_counts_time_and_evaluations() {
    let (data, _) = generate(100, 2, 20_000, 0, 5);
    let run = score(&data, &Policy::builtin(), 1024, Engine::Wasm);
    assert_eq!(run.summary.rules.len(), 10);
    let detailed = detailed_rules();
    for (id, report) in &run.summary.rules {
        assert_eq!(report.evaluations, run.summary.events_scored, "{id}");
        assert_eq!(report.hits, run.summary.rule_hits[id]);
        assert_eq!(report.failures, 0);
        assert!(report.time_ms > 0.0, "{id}: {report:?}");
        // A rule about richer records has nothing to judge on LANL lines.
        if detailed.contains(id) {
            assert_eq!(report.hits, 0, "{id}");
        }
        assert!(!report.disabled);
    }
}
