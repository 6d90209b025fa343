//! The catalog every table writer commits through: the catalog of the
//! warehouse's kind, whose commit first checks the fence of a fleet
//! writer's progress ([`crate::lakehouse::shard_log`]) against the table as
//! it is, then writes the new metadata and swaps it in only if the table is
//! still exactly what was checked. A commit without a fleet writer's
//! progress is committed as before.
//!
//! A lost swap is a retryable conflict: iceberg's transaction loads the
//! table again, rebuilds the commit on it, and this checks again.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use iceberg::table::Table;
use iceberg::{
    Catalog, MetadataLocation, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
};

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

#[async_trait::async_trait]
impl Catalog for FencedCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn load_table(&self, ident: &TableIdent) -> iceberg::Result<Table> {
        self.inner.load_table(ident).await
    }

    async fn drop_table(&self, ident: &TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(ident).await
    }

    async fn purge_table(&self, ident: &TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(ident).await
    }

    async fn table_exists(&self, ident: &TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(ident).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(
        &self,
        ident: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        self.inner.register_table(ident, metadata_location).await
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
            Err(iceberg::Error::new(
                iceberg::ErrorKind::CatalogCommitConflicts,
                format!("table {ident} changed during the commit"),
            )
            .with_retryable(true))
        }
    }
}
