//! An Iceberg table as the source: the data files of its current snapshot,
//! read by the same event-time merge as a prefix's files. Security Lake
//! keeps each source's events in an Iceberg table of the Glue catalog;
//! reading through the table (rather than its `data/` prefix) reads
//! exactly the files of one snapshot: none that a failed write left
//! behind, none that compaction replaced.
//!
//! `iceberg:LOCATION` names the table's metadata file (a local path or an
//! `s3://` URL: what any catalog's entry points at), `glue:DATABASE.TABLE`
//! asks the Glue catalog for it. Only tables without row-level deletes are
//! read: a snapshot whose data files carry delete files is refused, since
//! their rows would otherwise come back as if never deleted. Columns are
//! read by name, as in a prefix's files.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use iceberg::io::{FileIO, FileIOBuilder, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION};
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use iceberg_storage_opendal::OpenDalStorageFactory;

use super::store::{Listed, S3Access, Store};
use super::{ParquetError, ParquetLocation};

/// The Glue table parameter that points at an Iceberg table's metadata.
const METADATA_LOCATION: &str = "metadata_location";

/// A table's data files, and the store that reads them.
pub struct Planned {
    pub store: Store,
    pub files: Vec<Listed>,
    /// The table's own id (its metadata's `table-uuid`).
    pub table_uuid: String,
    /// The snapshot read (`None`: the table has none yet).
    pub snapshot: Option<i64>,
    /// The earlier snapshot whose data files were left out (read before).
    pub after: Option<i64>,
    pub metadata_location: String,
}

/// What an earlier run read of a table: its id, and the snapshot it read
/// to the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBefore {
    pub table_uuid: String,
    pub snapshot: i64,
}

/// Plans the current snapshot of the table `location` names; with
/// `before` (of this table, a snapshot it still has), only the data files
/// added since that snapshot.
pub fn plan(
    location: &ParquetLocation,
    access: &S3Access,
    before: Option<&ReadBefore>,
) -> Result<Planned, ParquetError> {
    let runtime = crate::net::runtime("authpulse-iceberg").map_err(ParquetError::Runtime)?;
    let shown = location.to_string();
    let metadata_location = match location {
        ParquetLocation::IcebergTable(metadata) => metadata.clone(),
        ParquetLocation::GlueTable { database, table } => runtime
            .block_on(glue_metadata_location(database, table, access))
            .map_err(|e| ParquetError::Store(shown.clone(), e))?,
        ParquetLocation::Local(_) | ParquetLocation::S3(_) => {
            unreachable!("a prefix is listed, not planned")
        }
    };
    let file_io = file_io(&metadata_location, access);
    let (table, data_files, after) = runtime
        .block_on(data_files(&metadata_location, file_io, before))
        .map_err(|e| ParquetError::Store(shown.clone(), e))?;
    let snapshot = table.metadata().current_snapshot_id();
    let table_uuid = table.metadata().uuid().to_string();
    let store = store_for(&data_files, &metadata_location, access)?;
    let files = data_files
        .into_iter()
        .map(|(path, size)| Listed {
            name: store_name(&path),
            size,
        })
        .collect();
    Ok(Planned {
        store,
        files,
        table_uuid,
        snapshot,
        after,
        metadata_location,
    })
}

/// The table, the data files of its current snapshot with their sizes
/// (those of `before`'s snapshot left out, if it is this table's and it
/// still has it), and the snapshot left out.
async fn data_files(
    metadata_location: &str,
    file_io: FileIO,
    before: Option<&ReadBefore>,
) -> Result<(Table, Vec<(String, u64)>, Option<i64>), String> {
    let metadata = TableMetadata::read_from(&file_io, metadata_location)
        .await
        .map_err(|e| format!("read the table metadata {metadata_location}: {e}"))?;
    let after = before
        .filter(|b| b.table_uuid == metadata.uuid().to_string())
        .map(|b| b.snapshot);
    let after = match after {
        Some(id) if metadata.snapshot_by_id(id).is_none() => {
            tracing::warn!(
                snapshot = id,
                "the snapshot an earlier run read is no longer in the table (expired): reading \
                 the whole current snapshot; events already stored are skipped"
            );
            None
        }
        after => after,
    };
    let table = Table::builder()
        .metadata(metadata)
        .metadata_location(metadata_location)
        .identifier(TableIdent::new(
            NamespaceIdent::new("source".into()),
            "table".into(),
        ))
        .file_io(file_io)
        .runtime(iceberg::Runtime::current())
        .readonly(true)
        .build()
        .map_err(|e| e.to_string())?;
    let mut files = snapshot_files(&table, None).await?;
    if let Some(id) = after {
        // A file compaction rewrote is read again: its events are stored
        // already, and skipped.
        let read: std::collections::HashSet<String> = snapshot_files(&table, Some(id))
            .await?
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        files.retain(|(path, _)| !read.contains(path));
    }
    Ok((table, files, after))
}

/// The data files of a snapshot of `table` (`None`: the current one).
async fn snapshot_files(
    table: &Table,
    snapshot: Option<i64>,
) -> Result<Vec<(String, u64)>, String> {
    let mut scan = table.scan().select_all();
    if let Some(id) = snapshot {
        scan = scan.snapshot_id(id);
    }
    let scan = scan.build().map_err(|e| e.to_string())?;
    let tasks: Vec<_> = scan
        .plan_files()
        .await
        .map_err(|e| format!("plan the snapshot's files: {e}"))?
        .try_collect()
        .await
        .map_err(|e| format!("plan the snapshot's files: {e}"))?;
    let mut files = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(delete) = task.deletes.first() {
            return Err(format!(
                "{} has row-level deletes ({}); only tables without deletes are read",
                task.data_file_path, delete.file_path
            ));
        }
        files.push((task.data_file_path, task.file_size_in_bytes));
    }
    // A data file split into several tasks is listed once.
    files.sort();
    files.dedup();
    Ok(files)
}

/// Asks Glue where `DATABASE.TABLE`'s current metadata is.
async fn glue_metadata_location(
    database: &str,
    table: &str,
    access: &S3Access,
) -> Result<String, String> {
    let mut sdk = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &access.region {
        sdk = sdk.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &access.glue_endpoint {
        sdk = sdk.endpoint_url(endpoint);
    }
    let client = aws_sdk_glue::Client::new(&sdk.load().await);
    let output = client
        .get_table()
        .database_name(database)
        .name(table)
        .set_catalog_id(access.glue_catalog_id.clone())
        .send()
        .await
        .map_err(|e| {
            format!(
                "ask Glue for the table: {}",
                aws_sdk_glue::error::DisplayErrorContext(e)
            )
        })?;
    output
        .table()
        .and_then(|t| t.parameters())
        .and_then(|p| p.get(METADATA_LOCATION))
        .cloned()
        .ok_or_else(|| format!("the Glue table has no `{METADATA_LOCATION}`: not an Iceberg table"))
}

fn is_s3(path: &str) -> bool {
    ["s3://", "s3a://", "s3n://"]
        .iter()
        .any(|scheme| path.starts_with(scheme))
}

/// A path as the store names it: an S3 key (the bucket is the store's), or
/// a local path.
fn store_name(path: &str) -> String {
    match path.split_once("://") {
        Some(("file", local)) => local.to_string(),
        Some((_, bucket_and_key)) if is_s3(path) => bucket_and_key
            .split_once('/')
            .map_or("", |(_, key)| key)
            .to_string(),
        _ => path.to_string(),
    }
}

fn file_io(metadata_location: &str, access: &S3Access) -> FileIO {
    if !is_s3(metadata_location) {
        return FileIO::new_with_fs();
    }
    let mut props = HashMap::from([(
        S3_PATH_STYLE_ACCESS.to_string(),
        access.path_style.to_string(),
    )]);
    if let Some(region) = access.region() {
        props.insert(S3_REGION.to_string(), region);
    }
    if let Some(endpoint) = access.s3_endpoint() {
        props.insert(S3_ENDPOINT.to_string(), endpoint);
    }
    FileIOBuilder::new(Arc::new(OpenDalStorageFactory::S3 {
        customized_credential_load: None,
    }))
    .with_props(props)
    .build()
}

/// The store the data files are read from: the local file system, or the
/// one bucket they are in.
fn store_for(
    files: &[(String, u64)],
    metadata_location: &str,
    access: &S3Access,
) -> Result<Store, ParquetError> {
    let buckets: Vec<&str> = files
        .iter()
        .filter(|(path, _)| is_s3(path))
        .filter_map(|(path, _)| path.split_once("://")?.1.split('/').next())
        .collect();
    let Some(bucket) = buckets.first() else {
        return Ok(Store::local(std::path::Path::new(metadata_location)));
    };
    if buckets.len() != files.len() || buckets.iter().any(|b| b != bucket) {
        return Err(ParquetError::Store(
            metadata_location.to_string(),
            "the table's data files are not all in one S3 bucket".into(),
        ));
    }
    Store::s3(&format!("s3://{bucket}"), access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_is_named_as_its_store_reads_it() {
        assert_eq!(
            store_name("s3://lake/ext/auth/data/a.parquet"),
            "ext/auth/data/a.parquet"
        );
        assert_eq!(store_name("s3a://lake/a.parquet"), "a.parquet");
        assert_eq!(store_name("file:///var/wh/a.parquet"), "/var/wh/a.parquet");
        assert_eq!(store_name("/var/wh/a.parquet"), "/var/wh/a.parquet");
    }

    #[test]
    fn files_in_two_buckets_are_refused() {
        let files = [
            ("s3://a/x.parquet".to_string(), 1),
            ("s3://b/y.parquet".to_string(), 1),
        ];
        let access = S3Access {
            region: Some("eu-west-1".into()),
            ..S3Access::default()
        };
        let error = store_for(&files, "s3://a/m.json", &access).err().unwrap();
        assert!(
            error.to_string().contains("not all in one S3 bucket"),
            "{error}"
        );
    }
}
