//! The catalog every table writer commits through: the catalog of the
//! warehouse's kind, whose commit first checks the fence of a fleet
//! writer's progress ([`crate::lakehouse::shard_log`]) against the table as
//! it is, then writes the new metadata and swaps it in only if the table is
//! still exactly what was checked. A commit without a fleet writer's
//! progress is committed as before.
//!
//! A lost swap is a retryable conflict: iceberg's transaction loads the
//! table again, rebuilds the commit on it, and this checks again.

use std::str::FromStr;
use std::sync::Arc;

use iceberg::table::Table;
use iceberg::{Catalog, MetadataLocation, NamespaceIdent, TableCommit, TableCreation};

use super::Connection;
use crate::lakehouse::progress::progress_of;
use crate::lakehouse::shard_log::{self, FenceError};

pub(crate) struct FencedCatalog {
    inner: Arc<dyn Catalog>,
    connection: Arc<Connection>,
}

impl std::fmt::Debug for FencedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedCatalog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl FencedCatalog {
    pub(crate) fn new(inner: Arc<dyn Catalog>, connection: Arc<Connection>) -> Self {
        FencedCatalog { inner, connection }
    }
}

fn fence_error(error: FenceError) -> iceberg::Error {
    let kind = match error {
        // Not retryable: the shard is someone else's now.
        FenceError::Fenced(_) => iceberg::ErrorKind::DataInvalid,
        FenceError::Read(_) => iceberg::ErrorKind::Unexpected,
    };
    iceberg::Error::new(kind, "the commit's fence").with_source(error)
}

wrapping_catalog! {
FencedCatalog {

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        let ident = commit.identifier().clone();
        let current = self.inner.load_table(&ident).await?;
        let expected = current.metadata_location_result()?.to_string();
        let before = current.metadata_ref();
        let staged = commit.apply(current)?;
        let name = ident.name();
        let added = staged
            .metadata()
            .current_snapshot()
            .filter(|s| Some(s.snapshot_id()) != before.current_snapshot_id());
        if let Some(snapshot) = added {
            let progress =
                progress_of(snapshot, name).map_err(|e| fence_error(FenceError::Read(e)))?;
            if let Some(progress) = progress {
                shard_log::check_fence(&before, name, &progress).map_err(fence_error)?;
            }
        }
        let location = MetadataLocation::from_str(staged.metadata_location_result()?)?;
        staged
            .metadata()
            .write_to(staged.file_io(), &location)
            .await?;
        let swapped = self
            .connection
            .swap_metadata(ident.namespace(), name, &expected, &location.to_string())
            .await
            .map_err(|e| {
                iceberg::Error::new(iceberg::ErrorKind::Unexpected, "swap the metadata location")
                    .with_source(e)
                    .with_retryable(true)
            })?;
        if swapped {
            Ok(staged)
        } else {
            crate::ops::prometheus::count_commit_conflict(name);
            tracing::debug!(table = name, "another writer committed first: making the commit again on top of it");
            Err(iceberg::Error::new(
                iceberg::ErrorKind::CatalogCommitConflicts,
                format!("table {ident} changed during the commit"),
            )
            .with_retryable(true))
        }
    }
}
}
