//! What the commands that read input share with the shell around them: the
//! input file, stdin or stream, and stopping on Ctrl-C / SIGTERM.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use authpulse_engine::input::StreamReader;

/// What an input path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A regular file: it has a size, can be read again from an offset,
    /// and a run over it can be resumed.
    File,
    /// `-`, a pipe, a fifo or a character device: read once, in order;
    /// nothing about it can be read twice or sought.
    Stream,
}

impl InputKind {
    /// What `path` is (`-` is stdin, a stream); a missing path or a
    /// directory is an error.
    pub fn of(path: &Path) -> anyhow::Result<InputKind> {
        if path.as_os_str() == "-" {
            return Ok(InputKind::Stream);
        }
        // The path's metadata, not an open file's: opening a fifo waits for
        // its writer.
        let meta = std::fs::metadata(path).with_context(|| format!("open {}", path.display()))?;
        if meta.is_dir() {
            anyhow::bail!("{} is a directory, not an input file", path.display());
        }
        Ok(if meta.is_file() {
            InputKind::File
        } else {
            InputKind::Stream
        })
    }
}

/// `path`, or stdin for `-`, with its size when it is a regular file (for
/// progress). A stream is opened here, and waits for its writer.
pub fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    Ok((Box::new(file), size))
}

/// How long a stream's reader waits for data before the pipeline hears
/// that it is quiet (and commits, publishes, scores what it holds, looks
/// for a signal).
pub const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A stream (`-`, a pipe, a fifo) opened and read on a thread of its own
/// ([`StreamReader`]): the caller never blocks in `open` or `read`.
pub fn open_stream(path: &Path) -> anyhow::Result<StreamReader> {
    let owned = path.to_path_buf();
    let open = move || -> io::Result<Box<dyn Read + Send>> {
        if owned.as_os_str() == "-" {
            return Ok(Box::new(io::stdin()));
        }
        Ok(Box::new(File::open(&owned).map_err(|e| {
            io::Error::new(e.kind(), format!("open {}: {e}", owned.display()))
        })?))
    };
    StreamReader::spawn("authpulse-input", open, STREAM_POLL)
        .with_context(|| format!("start reading {}", path.display()))
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
