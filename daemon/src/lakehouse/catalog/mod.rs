//! Where the tables' metadata pointers live: one file per kind of catalog.
//!
//! Every kind gives the rest of the lakehouse the same three things: an
//! iceberg [`Catalog`] (create, load and commit tables), a check that a
//! warehouse already exists (for the read-only commands), and a
//! compare-and-swap of a table's metadata location (the commit `maintain`
//! needs for compaction, which iceberg-rust's transactions do not offer yet).
//! Adding a catalog is one file here and one arm in [`WarehouseConfig`].
//! Every table commit goes through [`fenced::FencedCatalog`], whatever the kind.

/// `impl Catalog for $wrapper`: the methods given, and every other one but
/// `create_table` and `update_table` handed to its `inner` catalog
/// unchanged (the wrappers here write those two themselves).
macro_rules! wrapping_catalog {
    ($wrapper:ty { $($own:item)* }) => {
        #[async_trait::async_trait]
        impl iceberg::Catalog for $wrapper {
            $($own)*

        async fn list_namespaces(
            &self,
            parent: Option<&iceberg::NamespaceIdent>,
        ) -> iceberg::Result<Vec<iceberg::NamespaceIdent>> {
            self.inner.list_namespaces(parent).await
        }

        async fn create_namespace(
            &self,
            namespace: &iceberg::NamespaceIdent,
            properties: std::collections::HashMap<String, String>,
        ) -> iceberg::Result<iceberg::Namespace> {
            self.inner.create_namespace(namespace, properties).await
        }

        async fn get_namespace(
            &self,
            namespace: &iceberg::NamespaceIdent,
        ) -> iceberg::Result<iceberg::Namespace> {
            self.inner.get_namespace(namespace).await
        }

        async fn namespace_exists(
            &self,
            namespace: &iceberg::NamespaceIdent,
        ) -> iceberg::Result<bool> {
            self.inner.namespace_exists(namespace).await
        }

        async fn update_namespace(
            &self,
            namespace: &iceberg::NamespaceIdent,
            properties: std::collections::HashMap<String, String>,
        ) -> iceberg::Result<()> {
            self.inner.update_namespace(namespace, properties).await
        }

        async fn drop_namespace(&self, namespace: &iceberg::NamespaceIdent) -> iceberg::Result<()> {
            self.inner.drop_namespace(namespace).await
        }

        async fn list_tables(
            &self,
            namespace: &iceberg::NamespaceIdent,
        ) -> iceberg::Result<Vec<iceberg::TableIdent>> {
            self.inner.list_tables(namespace).await
        }

        async fn load_table(
            &self,
            ident: &iceberg::TableIdent,
        ) -> iceberg::Result<iceberg::table::Table> {
            self.inner.load_table(ident).await
        }

        async fn drop_table(&self, ident: &iceberg::TableIdent) -> iceberg::Result<()> {
            self.inner.drop_table(ident).await
        }

        async fn purge_table(&self, ident: &iceberg::TableIdent) -> iceberg::Result<()> {
            self.inner.purge_table(ident).await
        }

        async fn table_exists(&self, ident: &iceberg::TableIdent) -> iceberg::Result<bool> {
            self.inner.table_exists(ident).await
        }

        async fn rename_table(
            &self,
            src: &iceberg::TableIdent,
            dest: &iceberg::TableIdent,
        ) -> iceberg::Result<()> {
            self.inner.rename_table(src, dest).await
        }

        async fn register_table(
            &self,
            ident: &iceberg::TableIdent,
            metadata_location: String,
        ) -> iceberg::Result<iceberg::table::Table> {
            self.inner.register_table(ident, metadata_location).await
        }
        }
    };
}

pub(crate) mod fenced;
pub mod glue;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::{Catalog, NamespaceIdent};

use super::LakehouseError;

/// Where the tables live, and which catalog tracks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarehouseConfig {
    /// The embedded default: a local directory holding `catalog.db` (an
    /// Iceberg SQL catalog in SQLite) and `warehouse/` (the data).
    Embedded { dir: PathBuf },
    /// The AWS Glue Data Catalog, with the data on S3.
    Glue(glue::GlueConfig),
}

impl WarehouseConfig {
    /// The embedded warehouse under `dir` (`run --output DIR`).
    pub fn embedded(dir: &Path) -> Self {
        WarehouseConfig::Embedded {
            dir: dir.to_path_buf(),
        }
    }
}

/// A connected catalog, with what the kind needs for its own commits.
pub(crate) enum Connection {
    Sqlite(sqlite::Sqlite),
    Glue(Arc<glue::GlueTables>),
}

/// What [`connect`] returns.
pub(crate) struct Connected {
    pub catalog: Arc<dyn Catalog>,
    pub connection: Connection,
    /// Human-readable location, for logs.
    pub description: String,
}

/// Connects to the catalog `config` names. Creates nothing but what the kind
/// needs to hold a catalog at all (the embedded kind's directory and file).
pub(crate) async fn connect(
    config: &WarehouseConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<Connected, LakehouseError> {
    match config {
        WarehouseConfig::Embedded { dir } => sqlite::connect(dir, runtime).await,
        WarehouseConfig::Glue(glue) => glue::connect(glue, runtime).await,
    }
}

/// `Err(NoWarehouse)` unless `config` names a warehouse that `run` has
/// already written, checked without creating anything.
pub(crate) fn check_exists(config: &WarehouseConfig) -> Result<(), LakehouseError> {
    match config {
        WarehouseConfig::Embedded { dir } => sqlite::check_exists(dir),
        // A Glue catalog always exists; the namespace is checked once connected.
        WarehouseConfig::Glue(_) => Ok(()),
    }
}

impl Connection {
    /// Points the catalog entry of `table` from metadata file `expected` to
    /// `new`, if it still points at `expected`. `false`: someone else
    /// committed first.
    pub(crate) async fn swap_metadata(
        &self,
        namespace: &NamespaceIdent,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, LakehouseError> {
        match self {
            Connection::Sqlite(sqlite) => {
                sqlite.swap_metadata(namespace, table, expected, new).await
            }
            Connection::Glue(glue) => glue.swap_metadata(namespace, table, expected, new).await,
        }
    }
}
