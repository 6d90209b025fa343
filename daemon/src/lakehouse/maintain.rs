//! Table maintenance, so a long-running daemon does not degrade queries.
//!
//! A following daemon commits every few seconds, and every commit adds a
//! snapshot, a manifest and, per partition touched, a small data file. Left
//! alone, planning a query reads thousands of manifests and opens thousands of
//! files. [`maintain`] does, per table:
//!
//! 1. **Compaction**: in every partition holding more than one data file
//!    smaller than [`MaintainOptions::small_file_bytes`], those files are read
//!    (through iceberg's Arrow reader, so older schemas are projected) and
//!    rewritten as large files; all live files are listed in one new manifest;
//!    the result is committed as one `replace` snapshot. Readers see the same
//!    rows before and after.
//! 2. **Snapshot expiry**: snapshots older than the cut-off are removed from
//!    the metadata, keeping at least [`MaintainOptions::retain_last`]
//!    (iceberg's `ExpireSnapshotsAction`).
//! 3. **File clean-up**: data files, manifests and manifest lists that only the
//!    removed snapshots referenced are deleted, as are metadata files that have
//!    left the table's metadata log. Nothing a live snapshot, or a commit not
//!    yet made, refers to is touched, so it is safe beside a running daemon.
//!
//! iceberg-rust's transactions cannot yet replace data files, so step 1 writes
//! the manifest, manifest list and table metadata with iceberg's own writers
//! and commits by [`Warehouse::swap_metadata`], the catalog's compare-and-swap
//! ([`super::replace`]).
//! If the daemon commits in between, the replace is rebuilt on the new
//! snapshot (the rewritten data files stay valid: the daemon only appends).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{DataFile, Operation};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::data_files::{Splitter, new_writer};
use super::replace::{self, Live, live_entries, unix_millis_now};
use super::{LakehouseError, Warehouse, tables};

/// What `maintain` does; the defaults suit a daemon committing every 5 s.
#[derive(Clone, Debug)]
pub struct MaintainOptions {
    /// Rewrite partitions' small files into large ones.
    pub compact: bool,
    /// Files below this size are candidates for compaction.
    pub small_file_bytes: u64,
    /// Snapshots older than this are expired (time travel reaches this far back).
    pub expire_older_than: Duration,
    /// Snapshots always kept, however old.
    pub retain_last: usize,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            compact: true,
            small_file_bytes: 64 * 1024 * 1024,
            expire_older_than: Duration::from_secs(24 * 3600),
            retain_last: 5,
        }
    }
}

/// What maintenance did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    pub data_files_before: usize,
    pub data_files_after: usize,
    pub manifests_before: usize,
    pub manifests_after: usize,
    pub rows: u64,
    /// Small files rewritten, and the files they became.
    pub files_compacted: usize,
    pub files_written: usize,
    pub snapshots_expired: usize,
    pub files_deleted: usize,
    pub bytes_deleted: u64,
}

/// Maintains every AuthPulse table in `warehouse`.
pub fn maintain(
    warehouse: &Warehouse,
    options: &MaintainOptions,
) -> Result<Vec<TableReport>, LakehouseError> {
    tables::ALL
        .iter()
        .map(|definition| maintain_table(warehouse, definition, options))
        .collect()
}

fn maintain_table(
    warehouse: &Warehouse,
    definition: &tables::TableDefinition,
    options: &MaintainOptions,
) -> Result<TableReport, LakehouseError> {
    let name = definition.name;
    let before = warehouse.load(name)?;
    let runtime = warehouse.runtime();
    let referenced_before = runtime.block_on(referenced_files(&before))?;
    let live = runtime.block_on(live_entries(&before))?;
    let mut report = TableReport {
        table: before.identifier().to_string(),
        data_files_before: live.entries.len(),
        manifests_before: live.manifests,
        rows: live.entries.iter().map(|e| e.record_count()).sum(),
        ..TableReport::default()
    };

    let mut table = before.clone();
    let groups = if options.compact {
        small_groups(&live, options)
    } else {
        Vec::new()
    };
    if options.compact && (live.manifests > 1 || !groups.is_empty()) {
        let replaced: Vec<DataFile> = groups.iter().flatten().cloned().collect();
        let written = runtime.block_on(rewrite(&table, definition, &replaced))?;
        report.files_compacted = replaced.len();
        report.files_written = written.len();
        table = commit_replace(warehouse, name, &replaced, &written)?;
    }

    let cutoff = unix_millis_now() - options.expire_older_than.as_millis() as i64;
    let snapshots = table.metadata().snapshots().len();
    let expire = Transaction::new(&table)
        .expire_snapshots()
        .expire_older_than_ms(cutoff)
        .retain_last(options.retain_last.max(1));
    let transaction = expire.apply(Transaction::new(&table))?;
    table = runtime.block_on(transaction.commit(warehouse.catalog().as_ref()))?;
    report.snapshots_expired = snapshots.saturating_sub(table.metadata().snapshots().len());

    // Loaded afresh, not taken from the expiry commit: a daemon commit that
    // came in meanwhile must count as referencing its files.
    let after = warehouse.load(name)?;
    let referenced_after = runtime.block_on(referenced_files(&after))?;
    let unreferenced: Vec<&String> = referenced_before
        .iter()
        .filter(|(path, _)| !referenced_after.contains_key(*path))
        .map(|(path, _)| path)
        .collect();
    for path in unreferenced {
        runtime.block_on(after.file_io().delete(path))?;
        report.files_deleted += 1;
        report.bytes_deleted += referenced_before[path];
    }
    report.files_deleted += runtime.block_on(delete_old_metadata(&before, &after))?;
    let live_after = runtime.block_on(live_entries(&after))?;
    report.data_files_after = live_after.entries.len();
    report.manifests_after = live_after.manifests;
    Ok(report)
}

/// Per partition, its small files, where there are at least two.
fn small_groups(live: &Live, options: &MaintainOptions) -> Vec<Vec<DataFile>> {
    let mut by_partition: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
    for entry in &live.entries {
        if entry.file_size_in_bytes() < options.small_file_bytes {
            let file = entry.data_file();
            by_partition
                .entry(format!("{:?}", file.partition()))
                .or_default()
                .push(file.clone());
        }
    }
    by_partition.into_values().filter(|g| g.len() > 1).collect()
}

/// Reads `files` and writes their rows into new, large files.
async fn rewrite(
    table: &Table,
    definition: &tables::TableDefinition,
    files: &[DataFile],
) -> Result<Vec<DataFile>, LakehouseError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashSet<&str> = files.iter().map(|f| f.file_path()).collect();
    let tasks: Vec<_> = table
        .scan()
        .select_all()
        .build()?
        .plan_files()
        .await?
        .try_filter(|task| std::future::ready(wanted.contains(task.data_file_path.as_str())))
        .try_collect()
        .await?;
    let reader = table.reader_builder().build();
    let mut batches = reader
        .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())?
        .stream();
    let splitter = Splitter::new(table)?;
    let mut writer = new_writer(table, definition.layouts)?;
    while let Some(batch) = batches.try_next().await? {
        for (key, part) in splitter.split(&batch)? {
            writer.write(key, part).await?;
        }
    }
    Ok(writer.close().await?)
}

/// Commits one `replace` snapshot: `replaced` out, `written` in, every other
/// live file carried over, all in one manifest.
fn commit_replace(
    warehouse: &Warehouse,
    name: &str,
    replaced: &[DataFile],
    written: &[DataFile],
) -> Result<Table, LakehouseError> {
    replace::commit_with(warehouse, name, "compaction", |_| {
        Ok(Some(replace::Change {
            operation: Operation::Replace,
            removed: replaced.to_vec(),
            added: written.to_vec(),
            properties: HashMap::from([("authpulse.operation".into(), "compaction".into())]),
            label: "compact",
        }))
    })
}

/// Every file any snapshot of `table` refers to (manifest lists, manifests,
/// data files), with its size where known.
async fn referenced_files(table: &Table) -> Result<HashMap<String, u64>, LakehouseError> {
    let mut files = HashMap::new();
    let mut manifests = HashMap::new();
    for snapshot in table.metadata().snapshots() {
        files.insert(snapshot.manifest_list().to_string(), 0);
        let list = table.manifest_list_reader(snapshot).load().await?;
        for manifest in list.entries() {
            manifests
                .entry(manifest.manifest_path.clone())
                .or_insert_with(|| manifest.clone());
        }
    }
    for (path, manifest) in manifests {
        files.insert(path, manifest.manifest_length.max(0) as u64);
        // Live entries only: a `deleted` entry is a tombstone, and the file it
        // names is needed only by snapshots whose manifests list it as live.
        let loaded = manifest.load_manifest(table.file_io()).await?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            files.insert(entry.file_path().to_string(), entry.file_size_in_bytes());
        }
    }
    Ok(files)
}

/// Deletes metadata files that have left the table's metadata log. Catalog
/// commits write a new metadata file each time and the log keeps the last
/// 100, so older ones are garbage. Local warehouses are listed (catching
/// files that left the log before maintenance ever ran); elsewhere only
/// files seen leaving the log between `before` and `after` are deleted.
async fn delete_old_metadata(before: &Table, after: &Table) -> Result<usize, LakehouseError> {
    let kept: HashSet<&str> = after
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .chain(after.metadata_location())
        .collect();
    let oldest_kept = kept.iter().filter_map(|p| metadata_version(p)).min();
    let mut doomed: Vec<String> = before
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .filter(|p| !kept.contains(p.as_str()))
        .collect();
    if let (Some(dir), Some(oldest)) = (
        after
            .metadata()
            .location()
            .strip_prefix("file://")
            .map(|d| std::path::Path::new(d).join("metadata")),
        oldest_kept,
    ) && let Ok(listing) = std::fs::read_dir(&dir)
    {
        for file in listing.flatten() {
            let path = format!("file://{}", file.path().display());
            if path.ends_with(".metadata.json")
                && metadata_version(&path).is_some_and(|v| v < oldest)
                && !kept.contains(path.as_str())
            {
                doomed.push(path);
            }
        }
    }
    doomed.sort();
    doomed.dedup();
    let mut deleted = 0;
    for path in doomed {
        if after.file_io().delete(&path).await.is_ok() {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The version number a metadata file name starts with (`00042-<uuid>.metadata.json`).
fn metadata_version(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    name.split('-').next()?.parse().ok()
}
