//! `authpulse run`: score events from a file, stdin or a Kinesis stream.
//! The flags and what they make of a run are `args`'; this file runs it,
//! with a progress bar, signal handling and the operations server.

use std::path::Path;
use std::sync::Arc;

use authpulse::fleet::policy_mirror::PolicyMirror;
use authpulse::ops;
pub use authpulse::run::resolve_policy;
use authpulse::run::{Context, Outcome, ReadMeter, RunSpec};

use super::{progress, shell};

mod args;

pub use args::RunArgs;

pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let outcome = score(&args)?;
    if outcome.already_complete {
        eprintln!(
            "{} already holds all of {}: nothing to do",
            args.output.display(),
            args.input().display()
        );
        outln!(
            "{}",
            serde_json::json!({"already_complete": true, "events_read": 0})
        )?;
        return Ok(());
    }
    let mut line = serde_json::to_value(&outcome.summary)?;
    if let Some(object) = line.as_object_mut() {
        if let Some(sns) = outcome.sns {
            object.insert(
                "sns".into(),
                serde_json::json!({"published": sns.published, "already_sent": sns.already_sent, "retries": sns.retries, "pending": sns.pending}),
            );
        }
        if let Some(metrics) = outcome.cloudwatch {
            object.insert(
                "cloudwatch".into(),
                serde_json::json!({"calls": metrics.calls, "datums": metrics.datums, "dropped_rounds": metrics.dropped_rounds}),
            );
        }
    }
    outln!("{line}")?;
    Ok(())
}

/// Runs `spec` with a progress bar, stopping on Ctrl-C / SIGTERM (`bench`,
/// `demo`).
pub fn score_spec(spec: &RunSpec) -> anyhow::Result<Outcome> {
    let bar = Bar::default();
    let context = Context {
        stop: shell::stop_on_signals()?,
        ops: None,
        meter: &bar,
    };
    Ok(authpulse::run::run(spec, &context)?)
}

/// Runs the pipeline as `args` say (see [`authpulse::run`]).
pub fn score(args: &RunArgs) -> anyhow::Result<Outcome> {
    let mut spec = args.spec()?;
    // Kept for the run's whole length: it keeps the copy current.
    let _policy_mirror = match args.policy.as_deref().and_then(Path::to_str) {
        Some(url) if url.starts_with("s3://") => {
            let mirror = PolicyMirror::start(
                url,
                &args.output.join("policy"),
                args.policy_poll_interval,
                &args.s3_access(),
            )?;
            spec.policy = Some(mirror.local_policy().to_path_buf());
            Some(mirror)
        }
        _ => None,
    };
    // First Ctrl-C / SIGTERM: stop reading, score what was read, write results.
    let stop = shell::stop_on_signals()?;
    let ops = start_ops_server(args)?;
    let bar = Bar::default();
    let context = Context {
        stop,
        ops: ops.as_ref().map(|(live, _)| live),
        meter: &bar,
    };
    Ok(authpulse::run::run(&spec, &context)?)
}

/// The run's progress as a bar on stderr (a new one for each attempt).
#[derive(Default)]
struct Bar(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl Bar {
    fn with(&self, f: impl FnOnce(&indicatif::ProgressBar)) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f(bar);
        }
    }
}

impl ReadMeter for Bar {
    fn start(&self, size: Option<u64>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress::bar(size, "bytes"));
    }

    fn update(&self, bytes: u64, events: u64) {
        self.with(|bar| {
            bar.set_position(bytes);
            bar.set_message(format!("{events} events"));
        });
    }

    fn finish(&self) {
        self.with(indicatif::ProgressBar::finish_and_clear);
    }
}

/// With `--listen`: the operations server, and what it shows.
fn start_ops_server(args: &RunArgs) -> anyhow::Result<Option<(Arc<ops::Live>, ops::Server)>> {
    let Some(listen) = args.listen else {
        return Ok(None);
    };
    let from_env = std::env::var("AUTHPULSE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let admin_token = match (&args.admin_token_file, from_env) {
        (Some(path), _) => Some(ops::AdminToken::from_file(path).map_err(anyhow::Error::msg)?),
        (None, Some(token)) => Some(
            ops::AdminToken::new(&token)
                .map_err(|e| anyhow::anyhow!("AUTHPULSE_ADMIN_TOKEN: {e}"))?,
        ),
        (None, None) => None,
    };
    if admin_token.is_none() {
        tracing::info!("no admin token: the admin routes (reload, rule modes) are off");
    }
    let live = ops::Live::new();
    let server = ops::Server::start(
        ops::ServerConfig {
            listen,
            admin_token,
        },
        Arc::clone(&live),
    )?;
    Ok(Some((live, server)))
}
