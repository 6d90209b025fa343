//! The run's progress as the tables record it: every commit carries the
//! checkpoint's [`Progress`] (the source's position and the state snapshot
//! that go with the data) in its snapshot summary. A run resumes from the
//! latest checkpoint every table has; a table that committed a later one
//! before a crash is put back to that checkpoint first, so that no row is
//! stored twice when the rest is read again.

use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{
    MAIN_BRANCH, Snapshot, SnapshotReference, SnapshotRetention, TableMetadataBuilder,
};

use super::{LakehouseError, Warehouse, tables};
use authpulse_engine::sinks::Progress;

/// The progress a snapshot's summary records, if any.
fn progress_of(snapshot: &Snapshot, table: &str) -> Result<Option<Progress>, LakehouseError> {
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
fn latest_progress(
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

impl Warehouse {
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
