//! `run --config`: the file, the flags over it, and a bad file refused.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{assert_succeeded, authpulse};

/// `run --config`: the file sets what the command line leaves unset, a flag
/// overrides it, and a bad file is refused with the file, the key and the
/// reason. `config check` loads the example configurations of deploy/.
#[test]
fn a_configuration_file_sets_what_flags_leave_unset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e.csv"), "1,U1,C1\n2,U2,C1\n3,U1,C2\n").unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "source:\n  file: e.csv\noutput:\n  dir: from-config\n  tables: false\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run", "--config", "c.yaml"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["events_read"], 3);
    assert!(dir.path().join("from-config/alerts.jsonl").exists());
    assert!(
        !dir.path().join("from-config/catalog.db").exists(),
        "output.tables: false"
    );

    // A flag wins over the file.
    let out = authpulse(dir.path())
        .args(["run", "--config", "c.yaml", "--output", "from-flag"])
        .output()
        .unwrap();
    assert_succeeded(&out);
    assert!(dir.path().join("from-flag/alerts.jsonl").exists());

    // So does an AUTHPULSE_* variable: the file says embedded, the
    // variable glue (which wants a warehouse). AUTHPULSE_CONFIG names the
    // file.
    std::fs::write(
        dir.path().join("tables.yaml"),
        "source:\n  file: e.csv\noutput:\n  dir: tables\ncatalog:\n  kind: embedded\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["run"])
        .env("AUTHPULSE_CONFIG", "tables.yaml")
        .env("AUTHPULSE_CATALOG", "glue")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--warehouse"),
        "glue from the variable: {stderr}"
    );

    std::fs::write(
        dir.path().join("bad.yaml"),
        "output:\n  dir: x\n  comit_interval: 5s\n",
    )
    .unwrap();
    for args in [
        &["run", "--config", "bad.yaml"][..],
        &["config", "check", "bad.yaml"][..],
    ] {
        let out = authpulse(dir.path()).args(args).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bad.yaml: output.comit_interval: unknown field `comit_interval`"),
            "{stderr}"
        );
    }
    std::fs::write(
        dir.path().join("bad-from.yaml"),
        "source:\n  kinesis:\n    stream: s\n    from: yesterday\n",
    )
    .unwrap();
    let out = authpulse(dir.path())
        .args(["config", "check", "bad-from.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-from.yaml: source.kinesis.from: "),
        "{stderr}"
    );

    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    for name in ["embedded.yaml", "production.yaml"] {
        let out = authpulse(dir.path())
            .args(["config", "check"])
            .arg(deploy.join(name))
            .output()
            .unwrap();
        assert_succeeded(&out);
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(shown["http"]["listen"].is_string(), "{name}: {shown}");
    }
}
