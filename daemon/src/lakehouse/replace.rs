//! Commits iceberg-rust's transactions cannot make yet: a snapshot that
//! removes data files (and may add others), written with iceberg's own
//! manifest, manifest-list and metadata writers and committed by the
//! catalog's compare-and-swap ([`Warehouse::swap_metadata`]).
//!
//! `maintain`'s compaction replaces small files by large ones this way; a
//! fleet worker taking over a shard removes the files of a dead writer's
//! checkpoint that did not reach every table ([`super::writers`]).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{
    DataFile, MAIN_BRANCH, ManifestEntryRef, ManifestListWriter, ManifestWriterBuilder, Operation,
    Snapshot, Summary, TableMetadataBuilder,
};
use iceberg::table::Table;

use super::data_files::uuid_suffix;
use super::{LakehouseError, Warehouse};

/// The live data files of a table's current snapshot.
pub(super) struct Live {
    pub manifests: usize,
    pub entries: Vec<ManifestEntryRef>,
}

pub(super) async fn live_entries(table: &Table) -> Result<Live, LakehouseError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Live {
            manifests: 0,
            entries: Vec::new(),
        });
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let manifests = list.entries().len();
    let mut entries = Vec::new();
    for manifest in list.entries() {
        let loaded = manifest.load_manifest(table.file_io()).await?;
        entries.extend(loaded.entries().iter().filter(|e| e.is_alive()).cloned());
    }
    Ok(Live { manifests, entries })
}

/// A snapshot to stage on a table's current one.
pub(super) struct Change {
    pub operation: Operation,
    /// Live files to remove (each must still be live).
    pub removed: Vec<DataFile>,
    pub added: Vec<DataFile>,
    /// Summary properties besides the counts (`authpulse.operation`, a
    /// checkpoint's progress).
    pub properties: HashMap<String, String>,
    /// Names the change in file names and errors (`compact`, `claim`).
    pub label: &'static str,
}

/// A staged commit: its metadata file, waiting for the swap.
pub(super) struct Staged {
    pub metadata_location: String,
    /// Everything written for it (removed again if the swap fails).
    pub files: Vec<String>,
}

/// Writes `change` as the table's next snapshot: every live file but the
/// removed ones carried over, the added ones added, all in one manifest.
pub(super) async fn stage(table: &Table, change: &Change) -> Result<Staged, LakehouseError> {
    let metadata = table.metadata();
    let parent = metadata.current_snapshot();
    let live = live_entries(table).await?;
    let gone: HashSet<&str> = change.removed.iter().map(|f| f.file_path()).collect();
    let still_live = live
        .entries
        .iter()
        .filter(|e| gone.contains(e.file_path()))
        .count();
    if still_live != gone.len() {
        return Err(LakehouseError::Replace {
            change: change.label,
            table: table.identifier().to_string(),
            reason: "files it removes were removed by another writer".into(),
        });
    }

    let snapshot_id = new_snapshot_id(table);
    let sequence_number = metadata.next_sequence_number();
    let suffix = uuid_suffix();
    let label = change.label;
    let manifest_path = format!("{}/metadata/{suffix}-{label}-m0.avro", metadata.location());
    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-0-{suffix}-{label}.avro",
        metadata.location()
    );
    let file_io = table.file_io();
    let mut manifest = ManifestWriterBuilder::new(
        file_io.new_output(&manifest_path)?,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        (**metadata.default_partition_spec()).clone(),
    )
    .build_v2_data();
    let (mut rows, mut deleted_rows) = (0u64, 0u64);
    for entry in &live.entries {
        let sequence = entry.sequence_number().unwrap_or(0);
        if gone.contains(entry.file_path()) {
            deleted_rows += entry.record_count();
            manifest.add_delete_file(
                entry.data_file().clone(),
                sequence,
                entry.file_sequence_number,
            )?;
        } else {
            rows += entry.record_count();
            let added_by = entry
                .snapshot_id()
                .or(parent.map(|p| p.snapshot_id()))
                .unwrap_or(snapshot_id);
            manifest.add_existing_file(
                entry.data_file().clone(),
                added_by,
                sequence,
                entry.file_sequence_number,
            )?;
        }
    }
    let added_rows: u64 = change.added.iter().map(|f| f.record_count()).sum();
    for file in &change.added {
        manifest.add_file(file.clone(), sequence_number)?;
    }
    let manifest = manifest.write_manifest_file().await?;
    let parent_id = parent.map(|p| p.snapshot_id());
    let mut list = ManifestListWriter::v2(
        file_io.new_output(&list_path)?.writer().await?,
        snapshot_id,
        parent_id,
        sequence_number,
    );
    list.add_manifests(std::iter::once(manifest))?;
    list.close().await?;

    let kept_files = live.entries.len() - gone.len();
    let mut properties = HashMap::from([
        ("added-data-files".into(), change.added.len().to_string()),
        ("deleted-data-files".into(), gone.len().to_string()),
        ("added-records".into(), added_rows.to_string()),
        ("deleted-records".into(), deleted_rows.to_string()),
        ("total-records".into(), (rows + added_rows).to_string()),
        (
            "total-data-files".into(),
            (kept_files + change.added.len()).to_string(),
        ),
    ]);
    properties.extend(change.properties.clone());
    let summary = Summary {
        operation: change.operation.clone(),
        additional_properties: properties,
    };
    let not_before = parent.map_or(0, |p| p.timestamp_ms() + 1);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent_id)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(unix_millis_now().max(not_before))
        .with_manifest_list(list_path.clone())
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .build();
    let current = table
        .metadata_location()
        .expect("a loaded table has a metadata location");
    let built =
        TableMetadataBuilder::new_from_metadata(metadata.clone(), Some(current.to_string()))
            .set_branch_snapshot(snapshot, MAIN_BRANCH)?
            .build()?;
    let location = MetadataLocation::from_str(current)?.with_next_version();
    built.metadata.write_to(file_io, &location).await?;
    Ok(Staged {
        metadata_location: location.to_string(),
        files: vec![manifest_path, list_path, location.to_string()],
    })
}

/// Attempts at committing a staged change before giving up (each retry
/// follows a commit by someone else).
const COMMIT_ATTEMPTS: usize = 10;

/// Stages the change `make` builds from the table as it is now and swaps it
/// in; when another writer committed first, builds it again on their
/// commit. `make` returns `None` when there is nothing to do.
pub(super) fn commit_with(
    warehouse: &Warehouse,
    name: &str,
    label: &'static str,
    mut make: impl FnMut(&Table) -> Result<Option<Change>, LakehouseError>,
) -> Result<Table, LakehouseError> {
    let runtime = warehouse.runtime();
    for _ in 0..COMMIT_ATTEMPTS {
        let table = warehouse.load(name)?;
        let Some(change) = make(&table)? else {
            return Ok(table);
        };
        let staged = runtime.block_on(stage(&table, &change))?;
        let current = table
            .metadata_location()
            .expect("a loaded table has a metadata location");
        if warehouse.swap_metadata(name, current, &staged.metadata_location)? {
            return warehouse.load(name);
        }
        crate::ops::prometheus::count_commit_conflict(name);
        tracing::info!(
            table = name,
            change = change.label,
            "a commit came in meanwhile; making the change again on it"
        );
        for path in staged.files {
            runtime.block_on(table.file_io().delete(&path))?;
        }
    }
    Err(LakehouseError::Replace {
        change: label,
        table: name.to_string(),
        reason: format!("{COMMIT_ATTEMPTS} commits in a row conflicted with other writers"),
    })
}

/// A snapshot id not used by the table (positive, as Iceberg requires).
fn new_snapshot_id(table: &Table) -> i64 {
    let mut candidate = (unix_millis_now() << 16 | i64::from(std::process::id() as u16)).abs();
    while table.metadata().snapshot_by_id(candidate).is_some() {
        candidate += 1;
    }
    candidate
}

pub(super) fn unix_millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
