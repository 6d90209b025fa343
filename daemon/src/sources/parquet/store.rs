//! Where a Parquet source's files are: a local directory (or one file) or
//! an S3 prefix. Lists the `.parquet` files below the location, reads each
//! one's footer (S3: two ranged reads, not the file), and hands a file to
//! the reader as a local file (S3: downloaded to a temporary file, one at a
//! time, so memory holds row batches and never a whole object).

use std::fs::File;
use std::path::{Path, PathBuf};

use opendal::Operator;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::ParquetError;

/// Parquet's footer: the metadata length (4 bytes) and the magic `PAR1`.
const FOOTER_BYTES: u64 = 8;

/// One Parquet file of the source.
#[derive(Clone, Debug)]
pub struct Listed {
    /// As the location lists it: a local path, or the key below the prefix.
    pub name: String,
    pub size: u64,
}

/// AWS access for an `s3://` location or a table of the Glue catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Access {
    /// AWS region; `None`: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Endpoint, when not the region's own (a VPC endpoint, an
    /// S3-compatible server).
    pub endpoint: Option<String>,
    /// Address the bucket by path (`ENDPOINT/bucket/key`).
    pub path_style: bool,
    /// Glue endpoint for a `glue:` table, when not the region's own
    /// (default: `AWS_ENDPOINT_URL_GLUE`, then `AWS_ENDPOINT_URL`).
    pub glue_endpoint: Option<String>,
    /// The Glue catalog's account, when not the credentials' own.
    pub glue_catalog_id: Option<String>,
}

impl S3Access {
    /// The region: as given, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub fn region(&self) -> Option<String> {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
    }

    /// An operator on `bucket` rooted at `prefix`, in `region`, with
    /// credentials from the standard chain (the environment, the profile,
    /// the instance role).
    pub fn operator(
        &self,
        bucket: &str,
        prefix: &str,
        region: &str,
    ) -> Result<Operator, opendal::Error> {
        let mut builder = opendal::services::S3::default()
            .bucket(bucket)
            .root(&format!("/{prefix}"))
            .region(region);
        if let Some(endpoint) = &self.s3_endpoint() {
            builder = builder.endpoint(endpoint);
        }
        if !self.path_style {
            builder = builder.enable_virtual_host_style();
        }
        Ok(Operator::new(builder)?.finish())
    }

    /// The S3 endpoint: as given, else `AWS_ENDPOINT_URL_S3`, else
    /// `AWS_ENDPOINT_URL`; `None`: the region's own.
    pub fn s3_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok()
        })
    }
}

/// A location of Parquet files, opened.
pub enum Store {
    Local {
        root: PathBuf,
    },
    S3 {
        operator: Operator,
        runtime: tokio::runtime::Runtime,
        /// Downloads land here, one file at a time.
        scratch: tempfile::TempDir,
        location: String,
    },
}

impl Store {
    /// A local directory or file.
    pub fn local(root: &Path) -> Store {
        Store::Local {
            root: root.to_path_buf(),
        }
    }

    /// `s3://BUCKET/PREFIX`, with credentials from the standard chain (the
    /// environment, the profile, the instance role).
    pub fn s3(location: &str, access: &S3Access) -> Result<Store, ParquetError> {
        let (bucket, prefix) = split_s3(location)?;
        let region = access
            .region()
            .ok_or_else(|| ParquetError::NoRegion(location.to_string()))?;
        let operator = access
            .operator(bucket, prefix, &region)
            .map_err(|e| ParquetError::store(location, e))?;
        let runtime = crate::net::runtime("authpulse-parquet").map_err(ParquetError::Runtime)?;
        let scratch = tempfile::tempdir().map_err(ParquetError::Runtime)?;
        Ok(Store::S3 {
            operator,
            runtime,
            scratch,
            location: location.trim_end_matches('/').to_string(),
        })
    }

    /// Every `.parquet` file below the location, by name.
    pub fn list(&self) -> Result<Vec<Listed>, ParquetError> {
        let mut files = match self {
            Store::Local { root } => {
                let mut files = Vec::new();
                list_local(root, &mut files)
                    .map_err(|e| ParquetError::List(root.display().to_string(), e.to_string()))?;
                files
            }
            Store::S3 {
                operator,
                runtime,
                location,
                ..
            } => runtime.block_on(async {
                let entries = operator
                    .list_with("")
                    .recursive(true)
                    .await
                    .map_err(|e| ParquetError::List(location.clone(), e.to_string()))?;
                let mut files = Vec::new();
                for entry in entries {
                    let meta = entry.metadata();
                    if meta.is_file() && is_parquet(entry.path()) {
                        files.push(Listed {
                            name: entry.path().to_string(),
                            size: meta.content_length(),
                        });
                    }
                }
                Ok(files)
            })?,
        };
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// A file's footer: its schema, row groups and their statistics.
    pub fn metadata(&self, file: &Listed) -> Result<ParquetMetaData, ParquetError> {
        match self {
            Store::Local { .. } => {
                let handle = File::open(&file.name).map_err(|e| self.read_error(file, e))?;
                ParquetMetaDataReader::new()
                    .parse_and_finish(&handle)
                    .map_err(|e| self.read_error(file, e))
            }
            Store::S3 {
                operator, runtime, ..
            } => runtime.block_on(async {
                if file.size < FOOTER_BYTES {
                    return Err(self.read_error(file, "shorter than a Parquet footer"));
                }
                let tail = operator
                    .read_with(&file.name)
                    .range(file.size - FOOTER_BYTES..file.size)
                    .await
                    .map_err(|e| self.read_error(file, e))?
                    .to_vec();
                if tail[4..] != *b"PAR1" {
                    return Err(self.read_error(file, "not a Parquet file (no PAR1 footer)"));
                }
                let len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
                if len + FOOTER_BYTES > file.size {
                    return Err(self.read_error(file, "its footer is longer than the file"));
                }
                let start = file.size - FOOTER_BYTES - len;
                let footer = operator
                    .read_with(&file.name)
                    .range(start..file.size - FOOTER_BYTES)
                    .await
                    .map_err(|e| self.read_error(file, e))?
                    .to_vec();
                ParquetMetaDataReader::decode_metadata(&footer)
                    .map_err(|e| self.read_error(file, e))
            }),
        }
    }

    /// The file, to read: a local one as it is; an S3 object downloaded to
    /// an unnamed file in the scratch directory, gone when it is closed.
    pub fn open(&self, file: &Listed) -> Result<File, ParquetError> {
        match self {
            Store::Local { .. } => File::open(&file.name).map_err(|e| self.read_error(file, e)),
            Store::S3 {
                operator,
                runtime,
                scratch,
                ..
            } => {
                let bytes = runtime
                    .block_on(operator.read(&file.name))
                    .map_err(|e| self.read_error(file, e))?;
                // An unnamed temporary file: gone when the reader closes it.
                let mut local =
                    tempfile::tempfile_in(scratch.path()).map_err(|e| self.read_error(file, e))?;
                use std::io::{Seek, Write};
                for chunk in bytes.into_iter() {
                    local
                        .write_all(&chunk)
                        .map_err(|e| self.read_error(file, e))?;
                }
                local.rewind().map_err(|e| self.read_error(file, e))?;
                Ok(local)
            }
        }
    }

    /// A file's full name, for errors and the raw table.
    pub fn describe(&self, file: &Listed) -> String {
        match self {
            Store::Local { .. } => file.name.clone(),
            Store::S3 { location, .. } => format!("{location}/{}", file.name),
        }
    }

    fn read_error(&self, file: &Listed, error: impl std::fmt::Display) -> ParquetError {
        ParquetError::Read(self.describe(file), error.to_string())
    }
}

fn is_parquet(name: &str) -> bool {
    name.ends_with(".parquet")
}

/// `s3://BUCKET/PREFIX` as (bucket, prefix without its slashes).
pub fn split_s3(location: &str) -> Result<(&str, &str), ParquetError> {
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| ParquetError::Location(location.to_string()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ParquetError::Location(location.to_string()));
    }
    Ok((bucket, prefix.trim_matches('/')))
}

fn list_local(path: &Path, files: &mut Vec<Listed>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        files.push(Listed {
            name: path.display().to_string(),
            size: meta.len(),
        });
        return Ok(());
    }
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let child = entry.path();
        if kind.is_dir() {
            list_local(&child, files)?;
        } else if kind.is_file() && is_parquet(&child.to_string_lossy()) {
            files.push(Listed {
                name: child.display().to_string(),
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_location_names_a_bucket() {
        assert_eq!(
            split_s3("s3://lake/ext/auth/").unwrap(),
            ("lake", "ext/auth")
        );
        assert_eq!(split_s3("s3://lake").unwrap(), ("lake", ""));
        assert!(split_s3("s3:///x").is_err());
        assert!(split_s3("lake/x").is_err());
    }
}
