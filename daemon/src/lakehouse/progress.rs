//! The run's progress as the tables record it: every commit carries the
//! checkpoint's [`Progress`] (the source's position and the state snapshot
//! that go with the data) in its snapshot summary. A run resumes from the
//! latest checkpoint every table has; a table that committed a later one
//! before a crash is put back to that checkpoint first, so that no row is
//! stored twice when the rest is read again. [`Warehouse::plan_start`]
//! decides from them how a run starts.

use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{
    MAIN_BRANCH, Snapshot, SnapshotReference, SnapshotRetention, TableMetadataBuilder,
};

use super::{LakehouseError, Warehouse, tables};
use crate::sources::{SourceIdentity, SourcePosition};
use authpulse_engine::sinks::Progress;
use authpulse_engine::snapshot::{SnapshotFiles, SnapshotStore};

/// State snapshots a run keeps: the latest three checkpoints'.
pub const KEEP_SNAPSHOTS: usize = 3;

/// How a run over a warehouse starts.
#[derive(Debug)]
pub enum Start {
    /// From the beginning of the input, with empty state.
    Fresh,
    /// As `Fresh`, into a warehouse holding another input's events: those
    /// it already stores (by `event_id`) are counted as duplicates, not
    /// stored again.
    Add,
    /// Where the last checkpoint every table has left off.
    Resume(Progress),
    /// Not at all: the whole input is committed.
    Complete(Progress),
}

/// Why the tables' progress gives no start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("read the tables' progress")]
    Progress(#[source] Box<LakehouseError>),
    #[error(
        "{warehouse}: table {table} holds data without a progress record while the others record theirs, \
         so the run cannot be resumed consistently; use a new --output (or --warehouse)"
    )]
    Unresumable {
        warehouse: String,
        table: &'static str,
    },
    #[error("read the input to tell whether the tables record its progress")]
    Identity(#[source] std::io::Error),
    #[error("look for state snapshots at {location}")]
    Snapshots {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("put {table} back to checkpoint {checkpoint}")]
    RollBack {
        table: &'static str,
        checkpoint: u64,
        #[source]
        source: Box<LakehouseError>,
    },
    #[error("{table} has no commit of checkpoint {checkpoint} to resume from")]
    NoCommit {
        table: &'static str,
        checkpoint: u64,
    },
}

/// The progress a snapshot's summary records, if any.
pub(super) fn progress_of(
    snapshot: &Snapshot,
    table: &str,
) -> Result<Option<Progress>, LakehouseError> {
    snapshot
        .summary()
        .additional_properties
        .get(Progress::PROPERTY)
        .map(|json| {
            serde_json::from_str::<Progress>(json).map_err(|e| {
                LakehouseError::Corrupt(format!(
                    "{table}: the progress record of snapshot {}: {e}",
                    snapshot.snapshot_id()
                ))
            })
        })
        .transpose()
}

/// The progress of the table's current snapshot or, if another writer
/// committed since (`maintain`'s compaction carries none), of the latest of
/// its ancestors that records one.
pub(super) fn latest_progress(
    metadata: &iceberg::spec::TableMetadata,
    table: &str,
) -> Result<Option<Progress>, LakehouseError> {
    let mut at = metadata.current_snapshot();
    while let Some(snapshot) = at {
        if let Some(progress) = progress_of(snapshot, table)? {
            return Ok(Some(progress));
        }
        at = snapshot
            .parent_snapshot_id()
            .and_then(|parent| metadata.snapshot_by_id(parent));
    }
    Ok(None)
}

/// The latest snapshot of a table that records checkpoint `checkpoint`
/// (a checkpoint committed again after a resume has more than one).
fn snapshot_at<'m>(
    metadata: &'m iceberg::spec::TableMetadata,
    table: &str,
    checkpoint: u64,
) -> Result<Option<&'m Snapshot>, LakehouseError> {
    let mut found: Option<&Snapshot> = None;
    for snapshot in metadata.snapshots() {
        let at = progress_of(snapshot, table)?.is_some_and(|p| p.checkpoint == checkpoint);
        if at && found.is_none_or(|t| snapshot.sequence_number() > t.sequence_number()) {
            found = Some(snapshot);
        }
    }
    Ok(found)
}

impl StartError {
    fn progress(error: LakehouseError) -> StartError {
        StartError::Progress(Box::new(error))
    }
}

impl Warehouse {
    /// Decides, from the progress the tables record, how a run of `input`
    /// starts: fresh (no progress yet), resumed (this input, partly
    /// committed) or not at all (this input, all committed, and not grown
    /// since: `input_size` is its length now). A table that committed a
    /// checkpoint the others did not reach is put back to the latest one
    /// they all have. A file that grew keeps the identity first recorded.
    pub fn plan_start(
        &self,
        input: &mut SourceIdentity,
        input_size: Option<u64>,
        state_files: Option<&dyn SnapshotFiles>,
    ) -> Result<Start, StartError> {
        let recorded = self.progress().map_err(StartError::progress)?;
        if recorded.iter().all(|(_, p)| p.is_none()) {
            return self.fresh_or_add().map_err(StartError::progress);
        }
        // A table without any commit has checkpoint 0 (a run killed before
        // its first checkpoint landed everywhere); one with data but no
        // progress was written otherwise, and cannot be resumed.
        let mut empty = false;
        for (table, p) in &recorded {
            if p.is_none() {
                if self.has_snapshot(table).map_err(StartError::progress)? {
                    return Err(StartError::Unresumable {
                        warehouse: self.description().to_string(),
                        table,
                    });
                }
                empty = true;
            }
        }
        let progress: Vec<(&'static str, &Progress)> = recorded
            .iter()
            .filter_map(|(table, p)| p.as_ref().map(|p| (*table, p)))
            .collect();
        let latest = progress
            .iter()
            .map(|(_, p)| *p)
            .max_by_key(|p| p.checkpoint)
            .expect("at least one table has progress");
        let theirs = SourceIdentity::recorded(&latest.source);
        let same = match &theirs {
            Some(theirs) => input.is_same_input(theirs).map_err(StartError::Identity)?,
            None => false,
        };
        let Some(theirs) = theirs.filter(|_| same) else {
            tracing::info!(theirs = %latest.source["identity"], this = %input.to_json(), "the tables record another input's progress");
            return self.fresh_or_add().map_err(StartError::progress);
        };
        // The file may have grown: its identity stays the one first recorded.
        *input = theirs;
        let earliest = if empty {
            0
        } else {
            progress
                .iter()
                .map(|(_, p)| p.checkpoint)
                .min()
                .expect("at least one table has progress")
        };
        // A stream has no end: a run that read it to its tip goes on from there.
        if earliest == latest.checkpoint && latest.complete && !input.is_stream() {
            let committed = SourcePosition::recorded(&latest.source).and_then(|p| p.file_offset());
            match (committed, input_size) {
                (Some(committed), Some(size)) if size > committed => {
                    tracing::info!(
                        committed,
                        size,
                        "the input grew since it was all committed: reading on from there"
                    );
                }
                _ => return Ok(Start::Complete(latest.clone())),
            }
        }
        // Snapshots are written while the tables commit: a crash can leave
        // the checkpoint's tables committed and its snapshot missing. The
        // run then goes back to the latest checkpoint whose snapshot
        // landed. Its snapshots are the run's that the latest progress
        // names.
        let run = latest
            .state
            .as_deref()
            .and_then(SnapshotStore::run_of)
            .unwrap_or_default();
        let kept = match state_files {
            Some(files) => SnapshotStore::latest_kept(files, run, earliest, KEEP_SNAPSHOTS as u64)
                .map_err(|source| StartError::Snapshots {
                    location: files.location(""),
                    source,
                })?,
            None => None,
        };
        let earliest = match kept.filter(|&kept| kept < earliest) {
            Some(kept) => {
                tracing::warn!(
                    checkpoint = earliest,
                    back_to = kept,
                    "the state snapshot of the last checkpoint is missing (the crash came before it \
                     was written) or damaged: resuming from the latest one kept"
                );
                kept
            }
            None => earliest,
        };
        for (table, p) in &progress {
            if p.checkpoint > earliest {
                self.roll_back_to(table, earliest)
                    .map_err(|source| StartError::RollBack {
                        table,
                        checkpoint: earliest,
                        source: Box::new(source),
                    })?;
            }
        }
        if earliest == 0 {
            // The first checkpoint did not land everywhere: start over.
            return Ok(Start::Fresh);
        }
        let (table, _) = progress[0];
        let resume_at = self
            .progress_at(table, earliest)
            .map_err(StartError::progress)?
            .ok_or(StartError::NoCommit {
                table,
                checkpoint: earliest,
            })?;
        Ok(Start::Resume(resume_at))
    }

    /// How a run starts over a warehouse without progress of its input:
    /// fresh, or, when the warehouse holds another input's events, adding
    /// to them.
    fn fresh_or_add(&self) -> Result<Start, LakehouseError> {
        match self.committed_events()? {
            Some((rows, _)) => {
                tracing::info!(
                    warehouse = self.description(),
                    stored = rows,
                    "the warehouse holds another input's events: adding this one; events it already stores are skipped"
                );
                Ok(Start::Add)
            }
            None => Ok(Start::Fresh),
        }
    }

    /// Where the input stood at the checkpoint every table holds, if that
    /// checkpoint ended its run (`complete`): what a later run of a table
    /// source reads on from.
    pub fn completed_position(&self) -> Result<Option<SourcePosition>, LakehouseError> {
        let progress = self.progress()?;
        let held_by_all = progress
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .min_by_key(|p| p.checkpoint);
        Ok(held_by_all
            .filter(|p| p.complete)
            .and_then(|p| SourcePosition::recorded(&p.source)))
    }

    /// Each table's latest committed progress, in [`tables::ALL`] order;
    /// `None` for a table none of whose current lineage carries one (or
    /// that has no snapshot).
    pub fn progress(&self) -> Result<Vec<(&'static str, Option<Progress>)>, LakehouseError> {
        tables::ALL
            .iter()
            .map(|definition| {
                let table = self.load(definition.name)?;
                Ok((
                    definition.name,
                    latest_progress(table.metadata(), definition.name)?,
                ))
            })
            .collect()
    }

    /// Whether `table` has a current snapshot (any commit at all).
    pub fn has_snapshot(&self, name: &str) -> Result<bool, LakehouseError> {
        Ok(self.load(name)?.metadata().current_snapshot().is_some())
    }

    /// Makes `table`'s current snapshot the latest one that records
    /// checkpoint `checkpoint` (checkpoint 0: none, the table empty again):
    /// the commits after it (of a checkpoint that did not land in every
    /// table) leave the table's current state. They stay in its history
    /// until `maintain` expires them.
    pub fn roll_back_to(&self, name: &str, checkpoint: u64) -> Result<(), LakehouseError> {
        let table = self.load(name)?;
        let metadata = table.metadata();
        let current = table
            .metadata_location()
            .expect("a loaded table has a metadata location");
        if checkpoint == 0 {
            if metadata.current_snapshot().is_none() {
                return Ok(());
            }
            let built = TableMetadataBuilder::new_from_metadata(
                metadata.clone(),
                Some(current.to_string()),
            )
            .remove_ref(MAIN_BRANCH)
            .build()?;
            return self.swap_to(name, current, built.metadata, checkpoint);
        }
        let target = snapshot_at(metadata, name, checkpoint)?.ok_or_else(|| {
            LakehouseError::Corrupt(format!(
                "{name} has no snapshot of checkpoint {checkpoint} to go back to"
            ))
        })?;
        if metadata.current_snapshot_id() == Some(target.snapshot_id()) {
            return Ok(());
        }
        let built =
            TableMetadataBuilder::new_from_metadata(metadata.clone(), Some(current.to_string()))
                .set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(
                        target.snapshot_id(),
                        SnapshotRetention::branch(None, None, None),
                    ),
                )?
                .build()?;
        self.swap_to(name, current, built.metadata, checkpoint)
    }

    /// The progress `table` recorded at checkpoint `checkpoint`, if it has
    /// a commit of it.
    pub fn progress_at(
        &self,
        name: &str,
        checkpoint: u64,
    ) -> Result<Option<Progress>, LakehouseError> {
        let table = self.load(name)?;
        snapshot_at(table.metadata(), name, checkpoint)?
            .map(|snapshot| progress_of(snapshot, name))
            .transpose()
            .map(Option::flatten)
    }

    /// Writes `metadata` as the table's next metadata file and points the
    /// catalog at it, if the table is still at `current`.
    fn swap_to(
        &self,
        name: &str,
        current: &str,
        metadata: iceberg::spec::TableMetadata,
        checkpoint: u64,
    ) -> Result<(), LakehouseError> {
        let table = self.load(name)?;
        let location = MetadataLocation::from_str(current)?.with_next_version();
        self.runtime()
            .block_on(metadata.write_to(table.file_io(), &location))?;
        if !self.swap_metadata(name, current, &location.to_string())? {
            return Err(LakehouseError::Corrupt(format!(
                "{name} changed while it was being put back to checkpoint {checkpoint}: is another run writing to it?"
            )));
        }
        tracing::info!(
            table = name,
            checkpoint,
            "put back to the last checkpoint every table has"
        );
        Ok(())
    }
}
