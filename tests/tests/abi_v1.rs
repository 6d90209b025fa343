//! Modules built for older ABI versions keep loading and running,
//! unchanged, next to version-3 modules. The fixtures in
//! `tests/fixtures/abi-v1/` are the four rules of release 0.1, built by that
//! release's SDK (64-byte feature records, no `entity` in their metadata);
//! those in `tests/fixtures/abi-v2/` are `new_device` and `slow_spread` as
//! the version-2 SDK built them (128-byte records). They are never rebuilt.

mod common;

use std::collections::HashMap;
use std::path::Path;

use authpulse_engine::policy::Policy;
use authpulse_engine::rules::RuleEntity;
use authpulse_engine::rules::{Engine, RuleSet};
use common::{generate, score};

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/abi-v1"))
}

/// The default policy plus the 0.1 modules `new_device` and `burst` as
/// rules `new_device_v1` and `burst_v1`, in shadow mode (recorded, not
/// scored), pinned as the policy file requires.
fn mixed_policy() -> Policy {
    let v1 = Policy::load(&fixtures().join("policy-0.1.yaml")).unwrap();
    let mut extra = String::new();
    for id in ["new_device", "burst"] {
        let rule = v1.file.rules.iter().find(|r| r.id == id).unwrap();
        extra.push_str(&format!(
            "  - id: {id}_v1\n    module: {}\n    sha256: {}\n    mode: shadow\n    params: {{ burn_in: 24h }}\n",
            fixtures().join(&rule.module).display(),
            rule.sha256.as_ref().unwrap()
        ));
    }
    let yaml = format!("{}{extra}", authpulse_engine::policy::DEFAULT_POLICY_YAML);
    Policy::parse(&yaml, "mixed.yaml", Path::new(".")).unwrap()
}

#[test]
fn version_1_modules_load_beside_the_current_version() {
    let rules = RuleSet::load(&mixed_policy(), Engine::Wasm, 64).unwrap();
    let abi = abi_versions(&rules);
    assert_eq!(abi["new_device_v1"], 1);
    assert_eq!(abi["burst_v1"], 1);
    assert_eq!(abi["new_device"], authpulse_rules_sdk::ABI_VERSION);
    assert_eq!(abi["fan_in"], authpulse_rules_sdk::ABI_VERSION);
    // A version-1 module declares no entity: its hits are the user's.
    let v1 = rules.rules.iter().find(|r| r.id == "burst_v1").unwrap();
    assert_eq!(v1.metadata.entity, RuleEntity::User);
    let fan_in = rules.rules.iter().find(|r| r.id == "fan_in").unwrap();
    assert_eq!(fan_in.metadata.entity, RuleEntity::Computer);

    // The whole 0.1 policy loads as it was.
    let old = Policy::load(&fixtures().join("policy-0.1.yaml")).unwrap();
    let old_rules = RuleSet::load(&old, Engine::Wasm, 64).unwrap();
    assert_eq!(old_rules.rules.len(), 4);
    assert!(old_rules.rules.iter().all(|r| r.metadata.abi_version == 1));
}

/// The version-1 modules see exactly the version-1 fields: their hits are
/// those of release 0.1's logic, recomputed here from the scored rows.
#[test]
fn version_1_modules_score_as_they_did() {
    let (data, _) = generate(300, 3, 90_000, 2, 9);
    let run = score(&data, &mixed_policy(), 1000, Engine::Wasm);
    let rows = &run.collected.rows;
    assert_eq!(rows.len() as u64, run.summary.events_scored);
    let mut first_seen: HashMap<&str, i64> = HashMap::new();
    let (mut new_device_hits, mut burst_hits) = (0u64, 0u64);
    for row in rows {
        let time = chrono_free_seconds(&row.event_time);
        let tenure = time - *first_seen.entry(row.user_id.as_str()).or_insert(time);
        let flagged = |id: &str| row.risk_flags.iter().any(|f| f == &format!("shadow:{id}"));
        // 0.1's new_device: any new device after the burn-in.
        let expect_new_device = row.new_device && tenure >= 86_400;
        assert_eq!(flagged("new_device_v1"), expect_new_device, "{row:?}");
        new_device_hits += u64::from(expect_new_device);
        // 0.1's burst: over 120 an hour and 5x the 23 hours before.
        let (hour, day) = (row.user_logins_1h as f32, row.user_logins_24h as f32);
        let limit = 120f32.max(5.0 * (day - hour) / 23.0);
        let expect_burst = tenure >= 86_400 && hour > 120.0 && hour > limit;
        assert_eq!(flagged("burst_v1"), expect_burst, "{row:?}");
        burst_hits += u64::from(expect_burst);
    }
    assert!(new_device_hits > 100, "{new_device_hits}");
    assert!(burst_hits > 0, "the hidden burst fires the 0.1 rule too");
    assert_eq!(run.summary.rule_hits["new_device_v1"], new_device_hits);
    assert_eq!(run.summary.rule_hits["burst_v1"], burst_hits);
    assert_eq!(run.summary.rule_failures["new_device_v1"], 0);
}

/// Seconds since the epoch of `2024-01-02T03:04:05Z`.
fn chrono_free_seconds(time: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| time[range].parse::<i64>().unwrap();
    let (year, month, day) = (n(0..4), n(5..7), n(8..10));
    assert_eq!((year, month), (2024, 1), "generated data starts 2024-01-01");
    (day - 1) * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// Each rule's ABI version, by id.
fn abi_versions(rules: &RuleSet) -> HashMap<String, u32> {
    rules
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.metadata.abi_version))
        .collect()
}

/// The default policy plus modules an older SDK built
/// (`fixtures/abi-vN/ID.wasm`, for each of `ids`) as `ID_vN`, in shadow mode.
fn policy_with_older(version: u32, ids: &[&str]) -> Policy {
    policy_with_older_beside(authpulse_engine::policy::DEFAULT_POLICY_YAML, version, ids)
}

/// [`policy_with_older`] beside the rules of `current` (a policy's YAML).
fn policy_with_older_beside(current: &str, version: u32, ids: &[&str]) -> Policy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("abi-v{version}"));
    let mut extra = String::new();
    for id in ids {
        let path = dir.join(format!("{id}.wasm"));
        let module = std::fs::read(&path).unwrap();
        extra.push_str(&format!(
            "  - id: {id}_v{version}\n    module: {}\n    sha256: {}\n    mode: shadow\n",
            path.display(),
            authpulse_engine::rules::hex_sha256(&module)
        ));
    }
    let yaml = format!("{current}{extra}");
    Policy::parse(&yaml, "older.yaml", Path::new(".")).unwrap()
}

/// Version-2 modules get the first 128 bytes of each record and run as
/// they did: `new_device` of version 2 fires on new devices after its
/// burn-in only, on as many as ever.
#[test]
fn version_2_modules_run_beside_the_current_version() {
    let policy = policy_with_older(2, &["new_device", "slow_spread"]);
    let abi = abi_versions(&RuleSet::load(&policy, Engine::Wasm, 64).unwrap());
    assert_eq!(abi["new_device_v2"], 2);
    assert_eq!(abi["slow_spread_v2"], 2);
    assert_eq!(abi["new_device"], authpulse_rules_sdk::ABI_VERSION);

    let (data, _) = generate(300, 3, 90_000, 2, 9);
    let run = score(&data, &policy, 1000, Engine::Wasm);
    let mut first_seen: HashMap<&str, i64> = HashMap::new();
    for row in &run.collected.rows {
        let time = chrono_free_seconds(&row.event_time);
        let tenure = time - *first_seen.entry(row.user_id.as_str()).or_insert(time);
        if row.risk_flags.iter().any(|f| f == "shadow:new_device_v2") {
            assert!(row.new_device && tenure >= 86_400, "{row:?}");
        }
    }
    assert!(
        run.summary.rule_hits["new_device_v2"] > 100,
        "{:?}",
        run.summary.rule_hits
    );
    for id in ["new_device_v2", "slow_spread_v2"] {
        assert_eq!(run.summary.rule_failures[id], 0, "{id}");
    }
}

/// Version-3 modules get the first 192 bytes of each record: `off_hours` and
/// `rare_host` as the version 3 SDK built them (`fixtures/abi-v3/`), in
/// shadow mode beside today's, fire on exactly the same events. (Today's
/// SDK judges an account younger than a week by its own short history, so
/// `rare_host` is compared from each account's eighth day on; and today's
/// `off_hours` lends an account's own logins at an hour at most `day_shape`
/// logins of certainty, where version 3's lent them all: it is compared
/// with that limit lifted.)
#[test]
fn version_3_modules_fire_as_the_current_ones_do() {
    let current = authpulse_engine::policy::DEFAULT_POLICY_YAML;
    // (`fan_in`'s and `slow_spread`'s, lifted too, are not compared here.)
    let unlimited = current.replace("day_shape: 8 ", "day_shape: 1e9 ");
    assert_eq!(
        unlimited.matches("day_shape: 1e9 ").count(),
        3,
        "the default policy sets off_hours', fan_in's and slow_spread's day_shape"
    );
    let policy = policy_with_older_beside(&unlimited, 3, &["off_hours", "rare_host"]);
    let abi = abi_versions(&RuleSet::load(&policy, Engine::Wasm, 64).unwrap());
    assert_eq!(abi["off_hours_v3"], 3);
    assert_eq!(abi["rare_host_v3"], 3);

    let (data, _) = generate(300, 10, 300_000, 2, 23);
    let run = score(&data, &policy, 1000, Engine::Wasm);
    let mut first_seen: HashMap<&str, i64> = HashMap::new();
    let settled: Vec<bool> = run
        .collected
        .rows
        .iter()
        .map(|row| {
            let time = chrono_free_seconds(&row.event_time);
            time - *first_seen.entry(row.user_id.as_str()).or_insert(time) >= 7 * 86_400
        })
        .collect();
    for (id, from_day_8) in [("off_hours", false), ("rare_host", true)] {
        let (now, then) = (id.to_string(), format!("shadow:{id}_v3"));
        let fired = |flag: &str| -> Vec<&str> {
            run.collected
                .rows
                .iter()
                .zip(&settled)
                .filter(|(_, settled)| **settled || !from_day_8)
                .filter(|(r, _)| r.risk_flags.iter().any(|f| f == flag))
                .map(|(r, _)| r.event_id.as_str())
                .collect()
        };
        let (current, older) = (fired(&now), fired(&then));
        assert!(!current.is_empty(), "{id} fires on the sample");
        assert_eq!(current, older, "{id}");
        assert_eq!(run.summary.rule_failures[&format!("{id}_v3")], 0);
    }
}
