//! What the commands that read input share with the shell around them:
//! stopping on Ctrl-C / SIGTERM. (Opening the input is `sources::file`'s.)

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;

/// A flag the first Ctrl-C or SIGTERM sets (finish what was read, write the
/// results); a second one exits at once, e.g. while blocked on an idle stdin.
/// The handlers are installed once per process: later calls (a run that
/// recovers and starts again, `bench`'s rounds) get the same flag, since a
/// second set of handlers would turn every signal into a second one.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    if let Some(stop) = STOP.get() {
        return Ok(Arc::clone(stop));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("install signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("install signal handler")?;
    }
    Ok(Arc::clone(STOP.get_or_init(|| stop)))
}
