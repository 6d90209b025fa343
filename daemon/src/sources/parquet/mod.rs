//! Parquet files of OCSF Authentication events as a source, for backfill:
//! AWS Security Lake's authentication table (its S3 prefix, e.g.
//! `s3://aws-security-data-lake-REGION-ID/aws/…/` or a custom source's
//! `ext/…/`, partitioned `region=/accountId=/eventDay=`), the data files
//! of an Iceberg table of the same shape, or a local copy of either.
//!
//! `store.rs` lists and fetches the files (a local directory or an S3
//! prefix), `table.rs` finds an Iceberg table's (its current snapshot's
//! data files, the table named by its metadata file or in the Glue
//! catalog); `merge.rs` reads them in event-time order and turns each row
//! into the OCSF JSON line the OCSF reader maps, so a row and the same
//! event sent as JSON become the same record. Rows the mapping cannot use
//! are dead-lettered as any line is.
//!
//! Read once, to the end: a run over the same location again (after a
//! failure, or a later one with more files) adds only the events the
//! tables do not hold yet (see `docs/formats.md#security-lake`).

mod merge;
mod store;
mod table;

use std::io;

use authpulse_engine::input::{Line, Source};

pub use store::{S3Access, split_s3};

use super::identity::{SourceIdentity, SourcePosition};
use super::{Opened, SourceError};
use merge::Merge;
use store::Store;

/// Why a Parquet source cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("`{0}` is not an S3 location: expected s3://BUCKET/PREFIX")]
    Location(String),
    #[error("reading {0} needs an AWS region (--aws-region or AWS_REGION)")]
    NoRegion(String),
    #[error("{0}: {1}")]
    Store(String, String),
    #[error("list {0}: {1}")]
    List(String, String),
    #[error("read {0}: {1}")]
    Read(String, String),
    #[error("start the S3 client")]
    Runtime(#[source] io::Error),
    #[error("{0} holds no Parquet files")]
    Empty(String),
}

impl ParquetError {
    fn store(location: &str, error: impl std::fmt::Display) -> ParquetError {
        ParquetError::Store(location.to_string(), error.to_string())
    }
}

/// Where the files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParquetLocation {
    /// A local directory (every `.parquet` file below it) or one file.
    Local(std::path::PathBuf),
    /// `s3://BUCKET/PREFIX`: every `.parquet` object below the prefix.
    S3(String),
    /// `iceberg:METADATA`: the current snapshot of the Iceberg table whose
    /// metadata file this is (a local path or an `s3://` URL).
    IcebergTable(String),
    /// `glue:DATABASE.TABLE`: the current snapshot of an Iceberg table of
    /// the Glue catalog.
    GlueTable { database: String, table: String },
}

impl ParquetLocation {
    /// Whether `value` is written as a Parquet location (whether valid or
    /// not): `s3://`, `parquet:`, `iceberg:` or `glue:`.
    pub fn is_written_as(value: &str) -> bool {
        ["s3://", "parquet:", "iceberg:", "glue:"]
            .iter()
            .any(|scheme| value.starts_with(scheme))
    }
}

impl std::str::FromStr for ParquetLocation {
    type Err = String;

    /// `s3://BUCKET/PREFIX`, `parquet:PATH`, `iceberg:METADATA` or
    /// `glue:DATABASE.TABLE`.
    fn from_str(value: &str) -> Result<Self, String> {
        if value.starts_with("s3://") {
            return split_s3(value)
                .map(|_| ParquetLocation::S3(value.to_string()))
                .map_err(|e| e.to_string());
        }
        if let Some(path) = value.strip_prefix("parquet:") {
            if path.is_empty() {
                return Err(format!(
                    "`{value}`: expected parquet:PATH (a directory or a file)"
                ));
            }
            return Ok(ParquetLocation::Local(path.into()));
        }
        if let Some(metadata) = value.strip_prefix("iceberg:") {
            if metadata.is_empty() {
                return Err(format!(
                    "`{value}`: expected iceberg:METADATA (a table's metadata file, a path or s3:// URL)"
                ));
            }
            return Ok(ParquetLocation::IcebergTable(metadata.to_string()));
        }
        if let Some(name) = value.strip_prefix("glue:") {
            return match name.split_once('.') {
                Some((database, table))
                    if !database.is_empty() && !table.is_empty() && !table.contains('.') =>
                {
                    Ok(ParquetLocation::GlueTable {
                        database: database.to_string(),
                        table: table.to_string(),
                    })
                }
                _ => Err(format!("`{value}`: expected glue:DATABASE.TABLE")),
            };
        }
        Err(format!(
            "`{value}`: expected s3://BUCKET/PREFIX, parquet:PATH, iceberg:METADATA or glue:DATABASE.TABLE"
        ))
    }
}

impl std::fmt::Display for ParquetLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParquetLocation::Local(path) => write!(f, "{}", path.display()),
            ParquetLocation::S3(url) => f.write_str(url),
            ParquetLocation::IcebergTable(metadata) => write!(f, "iceberg:{metadata}"),
            ParquetLocation::GlueTable { database, table } => {
                write!(f, "glue:{database}.{table}")
            }
        }
    }
}

/// A Parquet source, as configured.
#[derive(Clone, Debug)]
pub struct ParquetSpec {
    pub location: ParquetLocation,
    pub s3: S3Access,
    /// Longest row taken, as JSON; longer ones are dead-lettered.
    pub max_line_bytes: usize,
}

impl ParquetSpec {
    /// Lists the files and reads their footers; the rows are read as the
    /// pipeline asks for them. `earlier` is the tables' latest position:
    /// an Iceberg table it says was read to the end of a snapshot is read
    /// from the data files added since.
    pub(super) fn open(&self, earlier: Option<&SourcePosition>) -> Result<Opened, SourceError> {
        let mut read_through = None;
        let (store, listed) = match &self.location {
            ParquetLocation::Local(path) => {
                if !path.exists() {
                    return Err(SourceError::open(
                        path,
                        io::Error::new(io::ErrorKind::NotFound, "no such file or directory"),
                    ));
                }
                let store = Store::local(path);
                let listed = store.list()?;
                (store, listed)
            }
            ParquetLocation::S3(url) => {
                let store = Store::s3(url, &self.s3)?;
                let listed = store.list()?;
                (store, listed)
            }
            ParquetLocation::IcebergTable(_) | ParquetLocation::GlueTable { .. } => {
                let before = match earlier {
                    Some(SourcePosition::Table {
                        table_uuid,
                        table_snapshot,
                    }) => Some(table::ReadBefore {
                        table_uuid: table_uuid.clone(),
                        snapshot: *table_snapshot,
                    }),
                    _ => None,
                };
                let table = table::plan(&self.location, &self.s3, before.as_ref())?;
                match table.after {
                    Some(after) => tracing::info!(
                        table = %self.location,
                        metadata = %table.metadata_location,
                        snapshot = table.snapshot,
                        after,
                        files = table.files.len(),
                        "reading the data files added since the snapshot an earlier run read"
                    ),
                    None => tracing::info!(
                        table = %self.location,
                        metadata = %table.metadata_location,
                        snapshot = table.snapshot,
                        "reading the table's current snapshot"
                    ),
                }
                read_through = table.snapshot.map(|table_snapshot| SourcePosition::Table {
                    table_uuid: table.table_uuid.clone(),
                    table_snapshot,
                });
                if table.after.is_some() && table.files.is_empty() {
                    // Nothing new: a run of no events, whose progress says
                    // so again.
                    return Ok(Opened {
                        source: Box::new(ParquetSource {
                            merge: None,
                            done: false,
                            rows: 0,
                            max_line: self.max_line_bytes,
                            read_through,
                        }),
                        size: Some(0),
                        name: self.name(),
                        resuming: false,
                        identity: self.identity(),
                    });
                }
                (table.store, table.files)
            }
        };
        let merge = Merge::plan(store, listed)?;
        if merge.files().is_empty() {
            return Err(ParquetError::Empty(self.location.to_string()).into());
        }
        let size = merge.files().iter().map(|f| f.file.size).sum();
        let rows: u64 = merge.files().iter().map(|f| f.rows).sum();
        tracing::info!(
            location = %self.location,
            files = merge.files().len(),
            rows,
            bytes = size,
            "reading Parquet files in event-time order"
        );
        Ok(Opened {
            source: Box::new(ParquetSource {
                merge: Some(merge),
                done: false,
                rows: 0,
                max_line: self.max_line_bytes,
                read_through,
            }),
            size: Some(size),
            name: self.name(),
            resuming: false,
            identity: self.identity(),
        })
    }

    /// An Iceberg table (not a prefix of files).
    pub fn is_table(&self) -> bool {
        matches!(
            self.location,
            ParquetLocation::IcebergTable(_) | ParquetLocation::GlueTable { .. }
        )
    }

    pub(super) fn identity(&self) -> SourceIdentity {
        SourceIdentity::Parquet {
            parquet: self.location.to_string(),
        }
    }

    /// As the raw table records it.
    pub(super) fn name(&self) -> String {
        match &self.location {
            ParquetLocation::IcebergTable(_) | ParquetLocation::GlueTable { .. } => {
                self.location.to_string()
            }
            ParquetLocation::Local(_) | ParquetLocation::S3(_) => {
                format!("parquet:{}", self.location)
            }
        }
    }
}

/// The rows of a [`Merge`] as the pipeline's lines.
struct ParquetSource {
    /// `None`: nothing to read (no data file added to a table since it was
    /// last read).
    merge: Option<Merge>,
    /// Read to the end.
    done: bool,
    rows: u64,
    max_line: usize,
    /// A table's snapshot, the position once its files are read to the end.
    read_through: Option<SourcePosition>,
}

impl Source for ParquetSource {
    fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        let max = self.max_line;
        let Some(merge) = self.merge.as_mut() else {
            self.done = true;
            return Ok(None);
        };
        let Some(row) = merge.next_row().map_err(io::Error::other)? else {
            self.done = true;
            return Ok(None);
        };
        self.rows += 1;
        Ok(Some(if row.len() > max {
            Line::TooLong {
                len: row.len() as u64,
                max,
                prefix: &row[..256.min(row.len())],
            }
        } else {
            Line::Complete(row)
        }))
    }

    fn line_no(&self) -> u64 {
        self.rows
    }

    fn bytes_consumed(&self) -> u64 {
        self.merge.as_ref().map_or(0, Merge::bytes_read)
    }

    /// None while reading (a rerun then reads again, and adds what the
    /// tables lack); a table's snapshot once read to the end.
    fn position(&self) -> serde_json::Value {
        match &self.read_through {
            Some(read) if self.done => {
                serde_json::to_value(read).expect("a position is plain data")
            }
            _ => serde_json::Value::Null,
        }
    }
}
