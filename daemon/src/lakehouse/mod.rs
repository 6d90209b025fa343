//! The lakehouse: Apache Iceberg tables with Parquet data files, in a catalog.
//!
//! One seam, [`Warehouse`], owns the async runtime and the catalog; the rest of
//! the daemon is synchronous and talks to it through the table sinks
//! ([`raw::RawSink`], [`curated::CuratedSink`], [`alerts::AlertTableSink`],
//! [`findings::FindingsTableSink`], [`aggregates::AggregateSink`]), each
//! feeding [`writer::TableWriter`] threads;
//! [`start_sinks`] lists them for a run.
//! Which catalog holds the tables is [`WarehouseConfig`]'s choice (see
//! [`catalog`]): the embedded default is a local directory with a SQLite-backed
//! Iceberg SQL catalog; in production, AWS Glue with the data on S3.
//! Every commit passes a fence ([`shard_log`]), so that several fleet
//! workers can write the same tables ([`writers`]); snapshots iceberg-rust
//! cannot make yet are written by `replace`.

pub mod aggregates;
pub mod alerts;
mod buffered;
pub mod catalog;
mod columns;
pub mod curated;
mod data_files;
pub mod findings;
pub mod history;
pub mod maintain;
pub mod progress;
pub mod query;
pub mod raw;
mod replace;
pub mod shard_log;
pub mod sinks;
pub mod state_files;
pub mod stored;
pub mod tables;
pub mod writer;
pub mod writers;

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::table::Table;

use aggregates::AggregateSink;
use alerts::AlertTableSink;
use curated::CuratedSink;
use findings::FindingsTableSink;
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use raw::RawSink;
use sinks::TableSink;

pub use catalog::WarehouseConfig;
pub use catalog::glue::GlueConfig;

/// Catalog name recorded in `catalog.db` (PyIceberg: `SqlCatalog("authpulse", ...)`).
pub const CATALOG_NAME: &str = "authpulse";

#[derive(Debug, thiserror::Error)]
pub enum LakehouseError {
    #[error("cannot create {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("iceberg")]
    Iceberg(#[from] iceberg::Error),
    #[error("catalog database")]
    Sql(#[from] sqlx::Error),
    #[error("arrow")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("no warehouse in {0}")]
    NoWarehouse(String),
    /// A claim found a shard's start gone: another fleet worker claimed it
    /// since it was planned.
    #[error(
        "{table}: shard {shard} no longer starts at {start}: another worker claimed it meanwhile"
    )]
    ShardTaken {
        table: String,
        shard: String,
        start: String,
    },
    /// A snapshot written by hand (compaction, a shard's claim) could not
    /// be committed.
    #[error("{change} of {table}: {reason}")]
    Replace {
        change: &'static str,
        table: String,
        reason: String,
    },
    /// A table writer's thread stopped on an error (`what` names it).
    #[error("{what} failed")]
    Writer {
        what: String,
        #[source]
        source: Box<LakehouseError>,
    },
    /// A table writer's thread panicked: a bug, not cured by trying again.
    #[error("{0} panicked")]
    WriterPanicked(String),
    /// A table writer's thread is gone without saying why (`what` names it).
    #[error("{0} has stopped")]
    WriterGone(String),
    /// An error the writer thread reported to a waiting commit and also
    /// stopped on.
    #[error(transparent)]
    Shared(Arc<LakehouseError>),
    #[error("{0}")]
    Corrupt(String),
}

/// A table writer that did not start.
#[derive(Debug, thiserror::Error)]
#[error("start the {table} table writer")]
pub struct SinkStartError {
    pub table: &'static str,
    #[source]
    pub source: Box<LakehouseError>,
}

/// Starts the sinks of every table a run writes, in the order the pipeline
/// feeds them. `source` names the input in the raw table's rows.
pub fn start_sinks(
    warehouse: &Warehouse,
    source: &str,
    findings_origin: &findings::FindingsOrigin,
) -> Result<Vec<Box<dyn TableSink>>, SinkStartError> {
    let started = |table: &'static str, sink: Result<Box<dyn TableSink>, LakehouseError>| {
        sink.map_err(|source| SinkStartError {
            table,
            source: Box::new(source),
        })
    };
    Ok(vec![
        started("raw", RawSink::start(warehouse, source).map(boxed))?,
        started("curated", CuratedSink::start(warehouse).map(boxed))?,
        started("aggregate", AggregateSink::start(warehouse).map(boxed))?,
        started("alerts", AlertTableSink::start(warehouse).map(boxed))?,
        started(
            "findings",
            FindingsTableSink::start(warehouse, findings_origin.clone()).map(boxed),
        )?,
    ])
}

fn boxed(sink: impl TableSink + 'static) -> Box<dyn TableSink> {
    Box::new(sink)
}

impl LakehouseError {
    /// Whether trying again later may succeed: storage, the catalog or a
    /// writer failed on the way; not a setting, a damaged table or a
    /// schema this release cannot write.
    pub fn is_transient(&self) -> bool {
        match self {
            LakehouseError::Io { .. }
            | LakehouseError::Sql(_)
            | LakehouseError::Runtime(_)
            | LakehouseError::WriterGone(_) => true,
            LakehouseError::Writer { source, .. } => source.is_transient(),
            LakehouseError::Shared(e) => e.is_transient(),
            LakehouseError::Iceberg(e) => e.kind() != iceberg::ErrorKind::FeatureUnsupported,
            LakehouseError::Arrow(_)
            | LakehouseError::Config(_)
            | LakehouseError::NoWarehouse(_)
            | LakehouseError::Replace { .. }
            | LakehouseError::ShardTaken { .. }
            | LakehouseError::Corrupt(_)
            | LakehouseError::WriterPanicked(_) => false,
        }
    }
}

/// An open catalog and the runtime its async API runs on (a clone shares
/// both).
#[derive(Clone)]
pub struct Warehouse {
    runtime: Arc<tokio::runtime::Runtime>,
    catalog: Arc<dyn Catalog>,
    connection: Arc<catalog::Connection>,
    namespace: NamespaceIdent,
    description: String,
}

impl Warehouse {
    /// Opens (creating on first use) the catalog, the namespace and the tables.
    pub fn open(config: &WarehouseConfig) -> Result<Warehouse, LakehouseError> {
        let warehouse = Warehouse::connect(config)?;
        warehouse.ensure_tables(&tables::ALL)?;
        Ok(warehouse)
    }

    /// Opens a warehouse that `run` has already created, changing nothing
    /// (readers: `query`, `maintain`).
    pub fn open_existing(config: &WarehouseConfig) -> Result<Warehouse, LakehouseError> {
        catalog::check_exists(config)?;
        let warehouse = Warehouse::connect(config)?;
        let exists = warehouse
            .runtime
            .block_on(warehouse.catalog.namespace_exists(&warehouse.namespace))?;
        if !exists {
            return Err(LakehouseError::NoWarehouse(format!(
                "{}: no namespace `{}` (`authpulse run` creates it)",
                warehouse.description,
                tables::NAMESPACE
            )));
        }
        Ok(warehouse)
    }

    fn connect(config: &WarehouseConfig) -> Result<Warehouse, LakehouseError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lakehouse")
            .enable_all()
            .build()
            .map_err(LakehouseError::Runtime)?;
        let connected = runtime.block_on(catalog::connect(config, &runtime))?;
        let connection = Arc::new(connected.connection);
        let catalog = catalog::fenced::FencedCatalog::new(connected.catalog, connection.clone());
        Ok(Warehouse {
            runtime: Arc::new(runtime),
            catalog: Arc::new(catalog),
            connection,
            namespace: NamespaceIdent::new(tables::NAMESPACE.to_string()),
            description: connected.description,
        })
    }

    /// Human-readable location, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the tables live off this host (Glue on S3).
    pub fn is_remote(&self) -> bool {
        matches!(*self.connection, catalog::Connection::Glue(_))
    }

    pub fn runtime(&self) -> &Arc<tokio::runtime::Runtime> {
        &self.runtime
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    pub fn ident(&self, table: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table.to_string())
    }

    /// Events already committed to `auth_events_curated`, with the snapshot
    /// that holds them, or `None` when the table is empty.
    pub fn committed_events(&self) -> Result<Option<(u64, i64)>, LakehouseError> {
        let table = self.load(tables::CURATED)?;
        Ok(table.metadata().current_snapshot().map(|snapshot| {
            let rows = snapshot
                .summary()
                .additional_properties
                .get("total-records")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (rows, snapshot.snapshot_id())
        }))
    }

    /// Points the catalog entry of `table` from metadata file `expected` to
    /// `new`, if it still points at `expected` (compare-and-swap, as the
    /// catalog's own commits do). `false`: someone else committed first. This
    /// is the one commit path iceberg-rust's transactions do not offer yet
    /// (replacing data files, for compaction).
    pub fn swap_metadata(
        &self,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, LakehouseError> {
        self.runtime.block_on(
            self.connection
                .swap_metadata(&self.namespace, table, expected, new),
        )
    }

    /// Loads a table's current metadata.
    pub fn load(&self, table: &str) -> Result<Table, LakehouseError> {
        Ok(self
            .runtime
            .block_on(self.catalog.load_table(&self.ident(table)))?)
    }

    /// Creates missing tables, and adds to existing ones the columns their
    /// definition has gained (as optional columns: old data files are not
    /// rewritten, readers see nulls for old rows).
    fn ensure_tables(&self, definitions: &[tables::TableDefinition]) -> Result<(), LakehouseError> {
        self.runtime
            .block_on(async {
                // Another worker of a fleet may create them at the same moment.
                let already = |e: &iceberg::Error| {
                    matches!(
                        e.kind(),
                        iceberg::ErrorKind::NamespaceAlreadyExists
                            | iceberg::ErrorKind::TableAlreadyExists
                    )
                };
                if !self.catalog.namespace_exists(&self.namespace).await? {
                    match self
                        .catalog
                        .create_namespace(&self.namespace, HashMap::new())
                        .await
                    {
                        Err(e) if !already(&e) => return Err(e.into()),
                        _ => {}
                    }
                }
                let mut created = Vec::new();
                for table in definitions {
                    let ident = self.ident(table.name);
                    if self.catalog.table_exists(&ident).await? {
                        self.add_missing_columns(&ident, (table.schema)()).await?;
                        continue;
                    }
                    let creation = TableCreation::builder()
                        .name(table.name.to_string())
                        .schema((table.schema)())
                        .partition_spec(table.partition_spec())
                        .properties(HashMap::from([(
                            "write.parquet.compression-codec".to_string(),
                            "zstd".to_string(),
                        )]))
                        .build();
                    match self.catalog.create_table(&self.namespace, creation).await {
                        Ok(_) => {
                            created.push(table.name);
                            tracing::info!(table = %ident, "created table");
                        }
                        Err(e) if already(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok::<_, LakehouseError>(created)
            })
            .and_then(|created| self.join_progress(definitions, &created))
    }

    /// A table new to a warehouse whose other tables already record
    /// progress (a release added it) starts at their earliest checkpoint,
    /// with an empty commit carrying it: without it a restart would read
    /// the new table's missing progress as a first checkpoint that never
    /// landed and start the whole input over.
    fn join_progress(
        &self,
        definitions: &[tables::TableDefinition],
        created: &[&'static str],
    ) -> Result<(), LakehouseError> {
        if created.is_empty() {
            return Ok(());
        }
        let mut recorded = Vec::new();
        for table in definitions.iter().filter(|t| !created.contains(&t.name)) {
            let loaded = self.load(table.name)?;
            recorded.extend(progress::latest_progress(loaded.metadata(), table.name)?);
        }
        let Some(earliest) = recorded.into_iter().min_by_key(|p| p.checkpoint) else {
            return Ok(());
        };
        for name in created {
            let mut table = self.load(name)?;
            writer::commit(
                &self.runtime,
                self.catalog.as_ref(),
                &mut table,
                None,
                earliest.properties(),
                0,
            )?;
            tracing::info!(
                table = name,
                checkpoint = earliest.checkpoint,
                "a new table joins the warehouse's progress"
            );
        }
        Ok(())
    }

    async fn add_missing_columns(
        &self,
        ident: &TableIdent,
        wanted: iceberg::spec::Schema,
    ) -> Result<(), LakehouseError> {
        use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
        let table = self.catalog.load_table(ident).await?;
        let current = table.metadata().current_schema();
        let missing: Vec<_> = wanted
            .as_struct()
            .fields()
            .iter()
            .filter(|field| current.field_by_name(&field.name).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut update = Transaction::new(&table).update_schema();
        for field in &missing {
            update = update.add_column(AddColumn::optional(
                &field.name,
                (*field.field_type).clone(),
            ));
        }
        let transaction = update.apply(Transaction::new(&table))?;
        transaction.commit(self.catalog.as_ref()).await?;
        let names: Vec<&str> = missing.iter().map(|f| f.name.as_str()).collect();
        tracing::info!(table = %ident, columns = ?names, "added columns");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tables::TableDefinition;

    /// The curated schema as an older release had it: without
    /// `processing_time` (field 23) and the detail columns after it.
    fn older_curated_schema() -> iceberg::spec::Schema {
        let full = tables::curated_schema();
        let mut fields: Vec<_> = full.as_struct().fields().to_vec();
        fields.retain(|f| f.id < 23);
        iceberg::spec::Schema::builder()
            .with_schema_id(0)
            .with_fields(fields)
            .build()
            .unwrap()
    }

    #[test]
    fn new_columns_are_added_on_open_without_touching_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let older = [TableDefinition {
            name: tables::CURATED,
            schema: older_curated_schema,
            partitions: tables::definition(tables::CURATED).unwrap().partitions,
            layouts: &[],
        }];
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        // Simulate the older release: a fresh namespace holding the older table.
        let old_ns = NamespaceIdent::new("older".into());
        let old = Warehouse {
            runtime: Arc::clone(&warehouse.runtime),
            catalog: Arc::clone(&warehouse.catalog),
            connection: Arc::clone(&warehouse.connection),
            namespace: old_ns,
            description: String::new(),
        };
        old.ensure_tables(&older).unwrap();
        let before = old.load(tables::CURATED).unwrap();
        assert!(
            before
                .metadata()
                .current_schema()
                .field_by_name("processing_time")
                .is_none()
        );

        old.ensure_tables(&tables::ALL).unwrap();
        let after = old.load(tables::CURATED).unwrap();
        let schema = after.metadata().current_schema();
        let added = schema
            .field_by_name("processing_time")
            .expect("column added");
        assert!(!added.required, "added columns are optional");
        assert_eq!(
            schema.field_by_name("event_id").unwrap().id,
            1,
            "old field ids are kept"
        );
        assert_eq!(
            added.id,
            before.metadata().last_column_id() + 1,
            "a fresh id after the old ones"
        );
        let outcome = schema
            .field_by_name("outcome")
            .expect("detail column added");
        assert!(!outcome.required);
        assert_eq!(outcome.id, added.id + 5, "added in the schema's order");
        // Opening again changes nothing.
        old.ensure_tables(&tables::ALL).unwrap();
        let again = old.load(tables::CURATED).unwrap();
        assert_eq!(
            again.metadata().current_schema_id(),
            after.metadata().current_schema_id()
        );
    }
}
