//! `authpulse maintain`: compact small files and expire old snapshots.

use std::path::PathBuf;
use std::time::Duration;

use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::maintain::{self, MaintainOptions};
use clap::Args;

use super::catalog_args::CatalogArgs;

/// Compact small data files and expire old snapshots of every table.
///
/// A daemon following a stream commits every few seconds, so each table
/// gathers many small files, manifests and snapshots, and queries slow down.
/// This rewrites each partition's small files into large ones (one `replace`
/// snapshot: readers see the same rows), expires snapshots older than
/// --expire-older-than (keeping --retain-last), and deletes the files only
/// expired snapshots referred to. It is safe to run beside a running daemon
/// (e.g. hourly from cron); a commit that races it is replayed, not lost.
/// Prints one JSON line per table with what it did.
#[derive(Args, Debug, Clone)]
pub struct MaintainArgs {
    /// The directory `run --output` wrote (with the embedded catalog: holds
    /// catalog.db and warehouse/).
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Expire snapshots older than this (time travel reaches no further back).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub expire_older_than: Duration,
    /// Keep at least this many snapshots per table, however old.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub retain_last: u32,
    /// Files smaller than this many MiB are compacted together.
    #[arg(long, default_value_t = 64)]
    pub small_file_mib: u64,
    /// Only expire snapshots; do not rewrite data files.
    #[arg(long)]
    pub no_compact: bool,
}

pub fn execute(args: MaintainArgs) -> anyhow::Result<()> {
    let warehouse = Warehouse::open_existing(&args.catalog.config(&args.output)?)?;
    let options = MaintainOptions {
        compact: !args.no_compact,
        small_file_bytes: args.small_file_mib * 1024 * 1024,
        expire_older_than: args.expire_older_than,
        retain_last: args.retain_last as usize,
    };
    for report in maintain::maintain(&warehouse, &options)? {
        tracing::info!(
            table = %report.table,
            data_files = format!("{} -> {}", report.data_files_before, report.data_files_after),
            manifests = format!("{} -> {}", report.manifests_before, report.manifests_after),
            snapshots_expired = report.snapshots_expired,
            files_deleted = report.files_deleted,
            "maintained"
        );
        outln!("{}", serde_json::to_string(&report)?)?;
    }
    Ok(())
}
