//! What the binary's tests share: running `authpulse`, generating data,
//! reading the summary line, signals and logs.
#![allow(dead_code)]

pub mod moto;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// `authpulse` in `dir`, logging warnings only.
pub fn authpulse(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authpulse"));
    cmd.current_dir(dir).env("AUTHPULSE_LOG", "warn");
    cmd
}

/// `authpulse ARGS` in `dir`, logging warnings only, run to its end.
pub fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    authpulse(dir).args(args).output().unwrap()
}

/// As [`run_in`], failing with the command's stderr unless it succeeded.
#[track_caller]
pub fn run_ok(dir: &Path, args: &[&str]) -> std::process::Output {
    let out = run_in(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails with the command's stderr unless it succeeded.
#[track_caller]
pub fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `authpulse gen` in `dir` with `args` (split at spaces; the output
/// file among them).
pub fn generate(dir: &Path, args: &str) {
    let out = authpulse(dir)
        .arg("gen")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert_succeeded(&out);
}

/// The summary: stdout's last line, as JSON.
pub fn summary(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary line in {text:?}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {last}"))
}

/// Sends `child` signal `name` (TERM, INT, ...).
pub fn signal(child: &std::process::Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits until the log file at `path` says `what`.
pub fn wait_for_log(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(path).is_ok_and(|log| log.contains(what)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never said {what:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Starts `command` (logging at info) with stdin, stdout and stderr piped;
/// its stderr lines arrive on the receiver as they are written.
pub fn spawn_logged(command: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command
        .env("AUTHPULSE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    (child, log)
}

/// The next line of `log` that holds `needle` (waiting at most a minute
/// for each line).
pub fn wait_for_line(log: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no log line with {needle:?}: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// The default policy with `new_device`'s weight doubled and the `burst`
/// rule running the rare_host module from the (pinned) file `module`.
pub fn changed_policy(module: &str) -> String {
    let yaml = authpulse_engine::policy::DEFAULT_POLICY_YAML;
    let start = yaml.find("  - id: burst").unwrap();
    let end = yaml.find("  - id: lateral_movement").unwrap();
    let mut changed = yaml[..start].replacen("weight: 1.0", "weight: 2.0", 1);
    let pin = authpulse_engine::rules::hex_sha256(
        authpulse_engine::rules::builtin_module("rare_host").unwrap(),
    );
    changed.push_str(&format!(
        "  - id: burst\n    module: {module}\n    sha256: {pin}\n    on_failure: fail_open\n\n"
    ));
    changed.push_str(&yaml[end..]);
    changed
}
