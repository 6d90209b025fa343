//! Why a run stopped with an error, and whether resuming it from its last
//! commit may help ([`RunError::is_transient`]): storage, catalog and
//! stream faults pass; a wrong setting, a damaged table or snapshot, or a
//! refused policy do not.

use std::io;
use std::path::PathBuf;

use authpulse_engine::policy::PolicyError;
use authpulse_engine::reload::WatchError;
use authpulse_engine::snapshot::SnapshotError;

use super::outputs::OutputsError;
use crate::aws::ticker::TickerError;
use crate::lakehouse::LakehouseError;
use crate::lakehouse::progress::StartError;
use crate::sources::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("open the warehouse")]
    Warehouse(#[source] Box<LakehouseError>),
    #[error("locate the state snapshots beside the tables")]
    StateFiles(#[source] Box<LakehouseError>),
    #[error("read what the curated table already stores")]
    Stored(#[source] Box<LakehouseError>),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Start(#[from] StartError),
    /// A fleet worker could not plan or claim its shards.
    #[error("plan and claim the shards")]
    Claim(#[source] Box<LakehouseError>),
    /// Joining or working in a fleet (`--lease-table`) failed.
    #[error("{0}")]
    Fleet(String),
    /// The tables' progress cannot be resumed as they stand.
    #[error("{0}")]
    Unresumable(String),
    #[error("{what}")]
    Snapshot {
        what: String,
        #[source]
        source: SnapshotError,
    },
    #[error(transparent)]
    Outputs(#[from] OutputsError),
    #[error(transparent)]
    Ticker(#[from] TickerError),
    #[error("start the state snapshot writer for {location}")]
    StateStore {
        location: String,
        #[source]
        source: io::Error,
    },
    #[error("watch the policy")]
    Watch(#[source] WatchError),
    #[error("gave up after recovering for {tried}")]
    GaveUp {
        tried: String,
        #[source]
        last: Box<RunError>,
    },
    /// Scoring, committing or finishing failed: `what` was under way.
    #[error("{what}")]
    Scoring {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl RunError {
    pub(super) fn scoring(what: impl Into<String>) -> impl FnOnce(io::Error) -> RunError {
        let what = what.into();
        move |source| RunError::Scoring { what, source }
    }

    pub(super) fn snapshot(what: impl Into<String>) -> impl FnOnce(SnapshotError) -> RunError {
        let what = what.into();
        move |source| RunError::Snapshot { what, source }
    }

    /// Whether the same run, resumed from its last commit after a pause,
    /// may get past it: a fault of storage, the catalog or the stream. A
    /// setting, a damaged table or snapshot, or a policy is not cured by
    /// waiting.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Warehouse(e)
            | RunError::StateFiles(e)
            | RunError::Stored(e)
            | RunError::Claim(e) => e.is_transient(),
            RunError::Start(StartError::Progress(e) | StartError::RollBack { source: e, .. }) => {
                e.is_transient()
            }
            RunError::Start(StartError::Snapshots { source, .. })
            | RunError::StateStore { source, .. }
            | RunError::Scoring { source, .. } => io_is_transient(source),
            RunError::Snapshot {
                source: SnapshotError::Io(source),
                ..
            } => io_is_transient(source),
            RunError::Source(SourceError::Kinesis(_)) => true,
            RunError::Outputs(OutputsError::Tables(e)) => e.source.is_transient(),
            RunError::Outputs(OutputsError::Sns(_))
            | RunError::Ticker(TickerError::CloudWatch(_)) => true,
            _ => false,
        }
    }
}

/// An I/O error from a sink or a store: a table writer's or the catalog's
/// as it says, any other but malformed data transient.
fn io_is_transient(error: &io::Error) -> bool {
    if let Some(lakehouse) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LakehouseError>())
    {
        return lakehouse.is_transient();
    }
    !matches!(
        error.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}
