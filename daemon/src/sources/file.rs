//! A file, stdin, a pipe or a fifo as a source: read to its end, or (a
//! regular file with `follow`) as it grows; a regular file can be read
//! again from a checkpoint's byte offset.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use authpulse_engine::input::{LineReader, Source, StreamReader};

use super::identity::SourceIdentity;
use super::{Opened, SourceError};

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
    pub fn of(path: &Path) -> Result<InputKind, SourceError> {
        if path.as_os_str() == "-" {
            return Ok(InputKind::Stream);
        }
        // The path's metadata, not an open file's: opening a fifo waits for
        // its writer.
        let meta = std::fs::metadata(path).map_err(|e| SourceError::open(path, e))?;
        if meta.is_dir() {
            return Err(SourceError::Directory(path.to_path_buf()));
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
pub fn open_input(path: &Path) -> Result<(Box<dyn Read>, Option<u64>), SourceError> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = File::open(path).map_err(|e| SourceError::open(path, e))?;
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
pub fn open_stream(path: &Path) -> Result<StreamReader, SourceError> {
    let owned = path.to_path_buf();
    let open = move || -> io::Result<Box<dyn Read + Send>> {
        if owned.as_os_str() == "-" {
            return Ok(Box::new(io::stdin()));
        }
        Ok(Box::new(File::open(&owned).map_err(|e| {
            io::Error::new(e.kind(), format!("open {}: {e}", owned.display()))
        })?))
    };
    StreamReader::spawn("authpulse-input", open, STREAM_POLL).map_err(|source| SourceError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A file source: which file, and how it is read.
#[derive(Clone, Debug)]
pub struct FileSpec {
    /// The file, or `-` for stdin.
    pub path: PathBuf,
    /// Keep reading a regular file as it grows, until stopped.
    pub follow: bool,
    /// Longest line taken; longer ones are dead-lettered.
    pub max_line_bytes: usize,
}

impl FileSpec {
    /// Opens the file (or stdin, or another stream) from its start.
    pub(super) fn open(&self, stop: &Arc<AtomicBool>) -> Result<Opened, SourceError> {
        let path = &self.path;
        if InputKind::of(path)? == InputKind::Stream {
            if self.follow {
                return Err(SourceError::FollowStream(path.clone()));
            }
            let lines = LineReader::new(open_stream(path)?, self.max_line_bytes);
            let (name, identity) = if path.as_os_str() == "-" {
                ("stdin".to_string(), SourceIdentity::Stdin { stdin: true })
            } else {
                (
                    format!("stream:{}", path.display()),
                    SourceIdentity::Stream {
                        stream: path.clone(),
                    },
                )
            };
            return Ok(Opened {
                source: Box::new(lines),
                size: None,
                name,
                resuming: false,
                identity,
            });
        }
        let (reader, size) = open_input(path)?;
        // A followed file has no end to show progress against.
        let size = size.filter(|_| !self.follow);
        let mut lines = LineReader::new(reader, self.max_line_bytes);
        if self.follow {
            lines = lines.follow(Arc::clone(stop));
        }
        let identity = SourceIdentity::of_file(path).map_err(|source| SourceError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(Opened {
            source: Box::new(lines),
            size,
            name: self.name(),
            resuming: false,
            identity,
        })
    }

    /// The file again, from byte `offset` (line `line`) on.
    pub(super) fn reopen(
        &self,
        offset: u64,
        line: u64,
        stop: &Arc<AtomicBool>,
    ) -> Result<Box<dyn Source>, SourceError> {
        let path = &self.path;
        let mut file = File::open(path).map_err(|e| SourceError::open(path, e))?;
        let read_error = |source| SourceError::Read {
            path: path.clone(),
            source,
        };
        let size = file.metadata().map_err(read_error)?.len();
        if size < offset {
            return Err(SourceError::Shrunk {
                path: path.clone(),
                size,
                offset,
            });
        }
        file.seek(io::SeekFrom::Start(offset)).map_err(read_error)?;
        let mut lines = LineReader::new(file, self.max_line_bytes).resuming_at(line, offset);
        if self.follow {
            lines = lines.follow(Arc::clone(stop));
        }
        Ok(Box::new(lines))
    }

    /// As the raw table records it.
    pub(super) fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }
}
