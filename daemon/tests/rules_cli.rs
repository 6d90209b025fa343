//! `authpulse rules`: a module's metadata and hash, and replaying events
//! through it against expected hits.

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse};

#[test]
fn rules_inspect_shows_metadata_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let out = authpulse(dir.path())
        .args(["rules", "inspect", "builtin:new_device", "--json"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let module = authpulse_engine::rules::builtin_module("new_device").unwrap();
    assert_eq!(
        inspected["sha256"],
        authpulse_engine::rules::hex_sha256(module)
    );
    assert_eq!(inspected["size_bytes"], module.len());
    let metadata = &inspected["metadata"];
    assert_eq!(metadata["abi_version"], 4);
    assert_eq!(metadata["name"], "new_device");
    assert_eq!(metadata["entity"], "user");
    assert_eq!(metadata["mitre"], serde_json::json!(["T1078", "T1021"]));
    assert_eq!(metadata["params"][1]["name"], "attack_per_day");
    assert_eq!(metadata["params"][1]["default"], 24.0);

    // A file that is not a rule module is refused with the loader's reason.
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm\x01\0\0\0junk").unwrap();
    let out = authpulse(dir.path())
        .args(["rules", "inspect", "junk.wasm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("junk.wasm is not a usable rule module: not a valid WebAssembly module"),
        "{stderr}"
    );
}

#[test]
fn rules_test_prints_hits_and_checks_expectations() {
    let dir = tempfile::tempdir().unwrap();
    // U1 has been seen for more than the 24h burn-in when it first uses C2
    // (U3's computer); U2 uses a second computer while still in burn-in.
    std::fs::write(
        dir.path().join("events.csv"),
        "0,U1,C1\n0,U2,C3\n10,U3,C2\n3600,U2,C4\n90000,U1,C1\n90060,U1,C2\n90120,U1,C2\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        authpulse(dir.path())
            .args([
                "rules",
                "test",
                "builtin:new_device",
                "--input",
                "events.csv",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--format", "csv"]);
    assert_succeeded(&out);
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "event_time,user,computer,score,reason,event_id");
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].starts_with("2024-01-02T01:01:00Z,U1,C2,"), "{csv}");
    assert!(
        lines[1].contains(
            ",\"first logon to this computer, and new computers are unusual for this user\","
        ),
        "{csv}"
    );
    // log10(24 new computers a day / 0.06, the floor for a user with two) decades.
    let score: f32 = lines[1].split(',').nth(3).unwrap().parse().unwrap();
    assert!((score - 32.93).abs() < 0.01, "{csv}");

    // Its own output is a valid expectation file ...
    std::fs::write(dir.path().join("expected.csv"), &csv).unwrap();
    let out = run(&["--expect", "expected.csv"]);
    assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("all 1 expected hits match"));

    // ... and a parameter change that flags first logons too breaks it, precisely.
    let out = run(&["--expect", "expected.csv", "--param", "burn_in=0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unexpected: 2024-01-01T01:00:00Z U2 C4 flagged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 difference(s) from expected.csv"),
        "{stderr}"
    );

    // Missing and different hits.
    std::fs::write(
        dir.path().join("wrong.csv"),
        "# comment\nevent_time,user,computer,score\n2024-01-02T01:01:00Z,U1,C2,55\n2024-01-02T01:02:00Z,U1,C2,33\n",
    )
    .unwrap();
    let out = run(&["--expect", "wrong.csv"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "score: 2024-01-02T01:01:00Z U1 C2 scored {score}, expected 55"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing: 2024-01-02T01:02:00Z U1 C2 was expected to be flagged"),
        "{stderr}"
    );
}
