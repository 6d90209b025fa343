//! What the commands that read input share with the shell around them: the
//! input file (or stdin), and stopping on Ctrl-C / SIGTERM.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;

/// `path`, or stdin for `-`, with its size when it is a file (for progress).
pub fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let size = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(file), size))
}

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
