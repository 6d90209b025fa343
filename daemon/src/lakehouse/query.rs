//! SQL over the warehouse's tables, with DataFusion and iceberg-rust's
//! DataFusion integration.
//!
//! Every namespace of the catalog is a schema of the DataFusion catalog
//! `authpulse`, and `authpulse.authpulse` is the default, so the tables are
//! named bare (`FROM auth_events_curated`). Statements are read-only: DDL, DML
//! and `SET` are refused, so a query can never write to a table.
//!
//! Filters on a table's columns are pushed into the Iceberg scan, which skips
//! the data files whose partition (or column bounds) cannot match. For
//! `EXPLAIN`, [`QueryOutput::pruning`] says per scan how many data files the
//! predicate leaves out of how many, so the pruning is visible and not only
//! the pushed-down predicate.
//!
//! A statement is bounded ([`QueryLimits`]): its operators share a memory
//! pool (hash tables, sorts and the result itself count against it; sorts
//! and aggregations spill to temporary files, up to four times the pool),
//! and it is stopped when it runs past its time limit (when it next waits:
//! a plan that computes without ever waiting is stopped by the `query`
//! command's own watchdog). A statement past either ends with an error that
//! says which limit and how to raise it.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use iceberg::expr::Predicate;
use iceberg::table::Table;
use iceberg_datafusion::IcebergCatalogProvider;
use iceberg_datafusion::physical_plan::IcebergTableScan;

use super::{CATALOG_NAME, Warehouse, tables};
use authpulse_engine::files::human_bytes;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not a source: DataFusion's message already holds its causes, each of
    /// which would be printed again.
    #[error("{0}")]
    DataFusion(datafusion::error::DataFusionError),
    #[error("iceberg")]
    Iceberg(#[from] iceberg::Error),
    #[error("the query needs more than its {limit} of memory (--memory-limit): {detail}")]
    Memory { limit: String, detail: String },
    #[error("the query ran past its {0} time limit (--timeout) and was stopped")]
    Timeout(String),
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> QueryError {
        QueryError::DataFusion(error)
    }
}

/// What one statement may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Memory for its operators and its result, in bytes.
    pub memory_bytes: usize,
    /// Wall time, from planning to the last row.
    pub timeout: std::time::Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// A statement's result.
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// For `EXPLAIN`: what each Iceberg scan in the plan would read.
    pub pruning: Vec<ScanPruning>,
}

/// The data files one Iceberg scan reads, against the table's total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPruning {
    pub table: String,
    /// The predicate pushed into the scan (Iceberg's rendering), if any.
    pub predicate: Option<String>,
    pub files_scanned: usize,
    pub files_total: usize,
    pub rows_scanned: u64,
    pub rows_total: u64,
}

/// Runs one read-only SQL statement over the warehouse's tables, within
/// `limits`.
pub fn run(
    warehouse: &Warehouse,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    let memory = human_bytes(limits.memory_bytes as u64);
    let outcome = warehouse.runtime().block_on(async {
        tokio::time::timeout(limits.timeout, run_async(warehouse, sql, limits)).await
    });
    match outcome {
        Err(_) => Err(QueryError::Timeout(
            humantime::format_duration(limits.timeout).to_string(),
        )),
        Ok(Err(QueryError::DataFusion(e))) if is_resources_exhausted(&e) => {
            Err(QueryError::Memory {
                limit: memory,
                detail: e.find_root().to_string(),
            })
        }
        Ok(other) => other,
    }
}

fn is_resources_exhausted(error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::ResourcesExhausted(_))
}

async fn run_async(
    warehouse: &Warehouse,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput, QueryError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema(CATALOG_NAME, tables::NAMESPACE);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limits.memory_bytes, 1.0)
        .with_max_temp_directory_size(4 * limits.memory_bytes as u64)
        .build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let catalog = IcebergCatalogProvider::try_new(Arc::clone(warehouse.catalog())).await?;
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));

    let state = ctx.state();
    let plan = state.create_logical_plan(sql).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)?;
    let mut pruning = Vec::new();
    if let LogicalPlan::Explain(explain) = &plan {
        let physical = state.create_physical_plan(&explain.plan).await?;
        collect_pruning(physical.as_ref(), &mut pruning).await?;
    }
    let frame = ctx.execute_logical_plan(plan).await?;
    let schema = Arc::clone(frame.schema().inner());
    // The result counts against the pool too: a cross join's rows are
    // refused as they grow, not collected until memory runs out.
    let result = MemoryConsumer::new("query result").register(&ctx.runtime_env().memory_pool);
    let mut stream = frame.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        result.try_grow(batch.get_array_memory_size())?;
        batches.push(batch);
    }
    Ok(QueryOutput {
        schema,
        batches,
        pruning,
    })
}

/// Finds the Iceberg scans in `plan` and plans each twice, with and without
/// its predicate.
async fn collect_pruning(
    plan: &dyn ExecutionPlan,
    out: &mut Vec<ScanPruning>,
) -> Result<(), QueryError> {
    if let Some(scan) = plan.as_any().downcast_ref::<IcebergTableScan>() {
        let table = scan.table();
        let (files_total, rows_total) = planned_files(table, scan.snapshot_id(), None).await?;
        let (files_scanned, rows_scanned) =
            planned_files(table, scan.snapshot_id(), scan.predicates().cloned()).await?;
        out.push(ScanPruning {
            table: table.identifier().to_string(),
            predicate: scan.predicates().map(ToString::to_string),
            files_scanned,
            files_total,
            rows_scanned,
            rows_total,
        });
    }
    for child in plan.children() {
        Box::pin(collect_pruning(child.as_ref(), out)).await?;
    }
    Ok(())
}

/// Data files (and their rows) a scan of `table` plans to read.
async fn planned_files(
    table: &Table,
    snapshot: Option<i64>,
    predicate: Option<Predicate>,
) -> Result<(usize, u64), QueryError> {
    if table.metadata().current_snapshot().is_none() {
        return Ok((0, 0));
    }
    let mut scan = table.scan().select_all();
    if let Some(snapshot) = snapshot {
        scan = scan.snapshot_id(snapshot);
    }
    if let Some(predicate) = predicate {
        scan = scan.with_filter(predicate);
    }
    let tasks = scan.build()?.plan_files().await?;
    let (files, rows) = tasks
        .try_fold((0usize, 0u64), |(files, rows), task| async move {
            Ok((files + 1, rows + task.record_count.unwrap_or(0)))
        })
        .await?;
    Ok((files, rows))
}
