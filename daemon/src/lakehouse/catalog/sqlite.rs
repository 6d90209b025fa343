//! The embedded catalog: an Iceberg SQL catalog in a SQLite file beside a
//! local warehouse directory, the layout PyIceberg's `SqlCatalog` reads.
//!
//! ```text
//! DIR/catalog.db                      iceberg_tables, iceberg_namespace_properties
//! DIR/warehouse/authpulse/<table>/    metadata/*.json, *.avro; data/<partition>/*.parquet
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iceberg::io::LocalFsStorageFactory;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};

use super::{Connected, Connection};
use crate::lakehouse::{CATALOG_NAME, LakehouseError};

const CATALOG_FILE: &str = "catalog.db";

/// The embedded catalog's own state: where its database file is.
pub(crate) struct Sqlite {
    database: PathBuf,
}

pub(crate) fn check_exists(dir: &Path) -> Result<(), LakehouseError> {
    if dir.join(CATALOG_FILE).is_file() {
        Ok(())
    } else {
        Err(LakehouseError::NoWarehouse(format!(
            "{} (write one with `authpulse run --output {}`)",
            dir.display(),
            dir.display()
        )))
    }
}

pub(crate) async fn connect(
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
) -> Result<Connected, LakehouseError> {
    let data = dir.join("warehouse");
    std::fs::create_dir_all(&data).map_err(|error| LakehouseError::Io {
        path: data.display().to_string(),
        error,
    })?;
    let absolute = std::fs::canonicalize(dir).map_err(|error| LakehouseError::Io {
        path: dir.display().to_string(),
        error,
    })?;
    let database = absolute.join(CATALOG_FILE);
    let uri = format!("sqlite:{}?mode=rwc", database.display());
    let warehouse = format!("file://{}", absolute.join("warehouse").display());
    let builder = SqlCatalogBuilder::default()
        .uri(uri)
        .warehouse_location(warehouse.clone())
        .sql_bind_style(SqlBindStyle::QMark)
        .with_storage_factory(Arc::new(LocalFsStorageFactory))
        .with_runtime(iceberg::Runtime::new(runtime));
    let catalog = builder.load(CATALOG_NAME, HashMap::new()).await?;
    Ok(Connected {
        catalog: Arc::new(catalog) as Arc<dyn Catalog>,
        connection: Connection::Sqlite(Sqlite { database }),
        description: warehouse,
    })
}

impl Sqlite {
    /// The same guarded `UPDATE` the SQL catalog commits with.
    pub(crate) async fn swap_metadata(
        &self,
        namespace: &NamespaceIdent,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, LakehouseError> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.database)
            .busy_timeout(Duration::from_secs(10));
        let mut connection = sqlx::ConnectOptions::connect(&options).await?;
        let done = sqlx::query(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?",
        )
        .bind(new)
        .bind(expected)
        .bind(CATALOG_NAME)
        .bind(namespace.join("."))
        .bind(table)
        .bind(expected)
        .execute(&mut connection)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
