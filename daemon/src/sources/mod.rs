//! Where a run's events come from. A [`SourceSpec`] (a file, stdin, a
//! followed file, or a Kinesis stream) opens its source, says what it is
//! ([`SourceIdentity`], recorded with every checkpoint) and reopens it at a
//! checkpoint's typed [`SourcePosition`] after a restart or a recovery.
//!
//! One room per kind of source (`file.rs`, `kinesis.rs`, `parquet/`); a
//! new one is a new file and a variant of [`SourceSpec`]. `identity.rs` is what the
//! progress records say of a source. The sources themselves (the line
//! reader, the Kinesis reader) live in `authpulse_engine::input` and
//! `aws::kinesis`.

pub mod file;
pub mod identity;
pub mod kinesis;
pub mod parquet;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use authpulse_engine::input::Source;

use crate::aws::checkpoint::Checkpoint;
pub use file::{FileSpec, InputKind};
pub use identity::{SourceIdentity, SourcePosition};
pub use kinesis::{KinesisSpec, StreamFrom, StreamStart};
pub use parquet::{ParquetLocation, ParquetSpec, S3Access, split_s3};

/// The source a run reads, as configured.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    File(FileSpec),
    Kinesis(KinesisSpec),
    Parquet(ParquetSpec),
}

/// A source, opened.
pub struct Opened {
    pub source: Box<dyn Source>,
    /// Bytes in all, when known (for the progress bar).
    pub size: Option<u64>,
    /// As the raw table records it (`file:…`, `stdin`, `kinesis:…`).
    pub name: String,
    /// Resuming a stream from its positions file (not a rerun).
    pub resuming: bool,
    pub identity: SourceIdentity,
}

/// Why a source cannot be opened or reopened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is a directory, not an input file")]
    Directory(PathBuf),
    #[error(
        "--follow reads a regular file as it grows; {0} is a stream (stdin, a pipe or a fifo), read to its end without it"
    )]
    FollowStream(PathBuf),
    #[error(
        "{path} is {size} bytes, shorter than the {offset} bytes committed before: it is not the input the warehouse has"
    )]
    Shrunk {
        path: PathBuf,
        size: u64,
        offset: u64,
    },
    #[error("the warehouse's progress is a stream's, and this run reads a file")]
    NotAStream,
    #[error("the warehouse's progress is a file's, and this run reads a stream")]
    NotAFile,
    #[error("the warehouse's progress is an Iceberg table's, and this run reads a file or stream")]
    ATable,
    #[error(
        "the tables in {output} record how far stream `{stream}` was read: --from {from} would read it again or skip part of it. \
         Leave --from out to go on from there, or use a new --output"
    )]
    FromConflicts {
        output: PathBuf,
        stream: String,
        from: String,
    },
    #[error(
        "{path} holds positions of stream `{saved}`, not `{stream}`: use another --kinesis-checkpoint or --output"
    )]
    PositionsOfOtherStream {
        path: PathBuf,
        saved: String,
        stream: String,
    },
    #[error("--from checkpoint: there is no checkpoint at {0}")]
    NoPositions(PathBuf),
    /// The Kinesis reader's own error names the stream or the file.
    #[error(transparent)]
    Kinesis(io::Error),
    #[error(transparent)]
    Parquet(#[from] parquet::ParquetError),
    #[error("a Parquet source is read whole; it has no position to resume from")]
    NoPosition,
}

impl SourceError {
    fn open(path: &std::path::Path, source: io::Error) -> SourceError {
        SourceError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl SourceSpec {
    /// Opens the source from its start (a stream: as `start` says).
    pub fn open(&self, start: StreamStart, stop: &Arc<AtomicBool>) -> Result<Opened, SourceError> {
        self.open_after(start, None, stop)
    }

    /// [`SourceSpec::open`], for an Iceberg table knowing what an earlier
    /// run read of it (`earlier`: the tables' latest position): only the
    /// data files added since.
    pub fn open_after(
        &self,
        start: StreamStart,
        earlier: Option<&SourcePosition>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Opened, SourceError> {
        match self {
            SourceSpec::File(file) => file.open(stop),
            SourceSpec::Kinesis(stream) => stream.open(start),
            SourceSpec::Parquet(files) => files.open(earlier),
        }
    }

    /// The source again, from a checkpoint's position on.
    pub fn reopen(
        &self,
        at: &SourcePosition,
        stop: &Arc<AtomicBool>,
    ) -> Result<Box<dyn Source>, SourceError> {
        match (self, at) {
            (SourceSpec::File(file), SourcePosition::File { offset, line }) => {
                file.reopen(*offset, *line, stop)
            }
            (SourceSpec::Kinesis(stream), SourcePosition::Stream { shards }) => {
                let checkpoint = Checkpoint {
                    stream: stream.stream.clone(),
                    written: String::new(),
                    shards: shards.clone(),
                };
                Ok(stream.open(StreamStart::Tables(Some(checkpoint)))?.source)
            }
            (SourceSpec::File(_), SourcePosition::Stream { .. }) => Err(SourceError::NotAStream),
            (SourceSpec::Kinesis(_), SourcePosition::File { .. }) => Err(SourceError::NotAFile),
            (SourceSpec::File(_) | SourceSpec::Kinesis(_), SourcePosition::Table { .. }) => {
                Err(SourceError::ATable)
            }
            (SourceSpec::Parquet(_), _) => Err(SourceError::NoPosition),
        }
    }

    /// What the source is, as far as it is known before it is opened (a
    /// stream's name; a file is identified when opened).
    pub fn stream_identity(&self) -> Option<SourceIdentity> {
        match self {
            SourceSpec::Kinesis(stream) => Some(stream.identity()),
            SourceSpec::File(_) | SourceSpec::Parquet(_) => None,
        }
    }

    /// As the raw table records it.
    pub fn name(&self) -> String {
        match self {
            SourceSpec::File(file) => file.name(),
            SourceSpec::Kinesis(stream) => stream.name(),
            SourceSpec::Parquet(files) => files.name(),
        }
    }
}
