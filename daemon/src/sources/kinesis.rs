//! Every shard of a Kinesis stream as a source: where reading starts (the
//! tables' progress, a positions file, or `--from`), and where positions
//! are saved.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::aws::AwsSettings;
use crate::aws::checkpoint::Checkpoint;
use crate::aws::kinesis::{KinesisSource, KinesisSourceConfig, OnSaved, StartAt};

use super::identity::SourceIdentity;
use super::{Opened, SourceError};
use authpulse_engine::input::Source;

/// Where a Kinesis source starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamFrom {
    /// The saved positions (shards it does not name: trim-horizon).
    Checkpoint,
    Start(StartAt),
}

impl std::str::FromStr for StreamFrom {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("checkpoint") {
            return Ok(StreamFrom::Checkpoint);
        }
        value.parse().map(StreamFrom::Start)
    }
}

/// A Kinesis source: which stream, from where, and how it is polled.
#[derive(Clone, Debug)]
pub struct KinesisSpec {
    pub stream: String,
    /// `--from`: `None` goes on from saved positions, else trim-horizon.
    pub from: Option<StreamFrom>,
    /// The positions file of a run whose tables keep no progress.
    pub positions_file: PathBuf,
    /// The run's output directory, named when the tables' progress and
    /// `--from` disagree.
    pub output: PathBuf,
    /// Stop once every open shard has been read to its tip.
    pub until_caught_up: bool,
    /// Wait between reads of a shard that is at its tip.
    pub poll_interval: Duration,
    pub aws: AwsSettings,
}

/// Where a stream is read from.
pub enum StreamStart {
    /// As `--from` says, the positions file included (a run whose tables
    /// keep no progress), and positions are saved to that file.
    Args,
    /// Where the tables' progress says; `None`: nothing is committed yet,
    /// so as `--from` says, except that a positions file is not the truth
    /// (the tables are) and is only read if `--from checkpoint` asks (a
    /// deployment moving to tables). No positions file is written.
    Tables(Option<Checkpoint>),
}

impl KinesisSpec {
    /// Opens the stream at `start`.
    pub(super) fn open(&self, start: StreamStart) -> Result<Opened, SourceError> {
        let stream = &self.stream;
        // Where the tables keep the positions, no file is written beside them.
        let writes_file = matches!(start, StreamStart::Args);
        let mut config =
            KinesisSourceConfig::new(stream, writes_file.then(|| self.positions_file.clone()));
        let resuming = match start {
            StreamStart::Tables(Some(checkpoint)) => {
                if let Some(StreamFrom::Start(start)) = &self.from {
                    return Err(SourceError::FromConflicts {
                        output: self.output.clone(),
                        stream: stream.clone(),
                        from: format!("{start:?}"),
                    });
                }
                config.checkpoint = Some(checkpoint);
                false
            }
            StreamStart::Tables(None) if self.from.is_none() => false,
            StreamStart::Tables(None) | StreamStart::Args => {
                let saved = Checkpoint::load(&self.positions_file).map_err(SourceError::Kinesis)?;
                match (&self.from, saved) {
                    (Some(StreamFrom::Checkpoint) | None, Some(saved)) => {
                        if saved.stream != *stream {
                            return Err(SourceError::PositionsOfOtherStream {
                                path: self.positions_file.clone(),
                                saved: saved.stream,
                                stream: stream.clone(),
                            });
                        }
                        tracing::info!(checkpoint = %self.positions_file.display(), written = %saved.written, "resuming from the checkpoint");
                        config.checkpoint = Some(saved);
                        true
                    }
                    (Some(StreamFrom::Checkpoint), None) => {
                        return Err(SourceError::NoPositions(self.positions_file.clone()));
                    }
                    (Some(StreamFrom::Start(start)), _) => {
                        config.start = start.clone();
                        false
                    }
                    // The config's default start: trim-horizon.
                    (None, None) => false,
                }
            }
        };
        config.until_caught_up = self.until_caught_up;
        config.poll_interval = self.poll_interval;
        config.aws = self.aws.clone();
        // The error names the stream.
        let source = KinesisSource::start(config).map_err(SourceError::Kinesis)?;
        Ok(Opened {
            source: Box::new(source),
            size: None,
            name: self.name(),
            resuming,
            identity: self.identity(),
        })
    }

    /// Opens the shards a fleet worker holds (`only`), each at its position
    /// in `checkpoint` (a shard it does not name starts as `--from` says),
    /// recording `writer` with every position and telling `on_saved` the
    /// positions whose events are committed.
    pub fn open_shards(
        &self,
        checkpoint: Checkpoint,
        only: BTreeSet<String>,
        writer: &str,
        on_saved: OnSaved,
    ) -> Result<Box<dyn Source>, SourceError> {
        let mut config = KinesisSourceConfig::new(&self.stream, None);
        if let Some(StreamFrom::Start(start)) = &self.from {
            config.start = start.clone();
        }
        config.checkpoint = Some(checkpoint);
        config.only = Some(only);
        config.writer = Some(writer.to_string());
        config.on_saved = Some(on_saved);
        config.until_caught_up = self.until_caught_up;
        config.poll_interval = self.poll_interval;
        config.aws = self.aws.clone();
        let source = KinesisSource::start(config).map_err(SourceError::Kinesis)?;
        Ok(Box::new(source))
    }

    pub fn identity(&self) -> SourceIdentity {
        SourceIdentity::Kinesis {
            kinesis: self.stream.clone(),
        }
    }

    /// As the raw table records it.
    pub(super) fn name(&self) -> String {
        format!("kinesis:{}", self.stream)
    }
}
