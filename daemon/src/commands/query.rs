//! `authpulse query "SQL"`: read-only SQL over the Iceberg tables.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use authpulse::lakehouse::Warehouse;
use authpulse::lakehouse::query::{self, QueryOutput};
use clap::{Args, ValueEnum};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::catalog_args::CatalogArgs;

/// Run SQL over the AuthPulse tables (DataFusion over Iceberg).
///
/// Tables (bare names): auth_events_raw, auth_events_curated, alerts,
/// ocsf_findings, user_behavior_hourly, host_popularity_daily; `SHOW TABLES` and
/// `DESCRIBE <table>` list them and their columns. Statements are read-only.
///
/// A statement may use --memory-limit of memory (its joins, sorts and
/// aggregations, and its result; sorts and aggregations spill to temporary
/// files up to four times that) and run for --timeout; past either it is
/// stopped with an error naming the limit.
///
/// Filters on event_time (and other columns) are pushed into the Iceberg scan,
/// which skips partitions that cannot match; `EXPLAIN SELECT ...` shows the
/// plan and, per scan, how many data files the filter leaves.
///
/// Example, the top users by total risk among HIGH/CRITICAL events in the
/// last hour of event time, with their distinct rule flags:
///
///   authpulse query "SELECT user_id, sum(risk_score) AS total_risk,
///     count(*) AS events,
///     array_sort(array_distinct(flatten(array_agg(risk_flags)))) AS flags
///   FROM auth_events_curated
///   WHERE risk_level IN ('HIGH', 'CRITICAL')
///     AND event_time > (SELECT max(event_time) FROM auth_events_curated)
///                      - INTERVAL '1 hour'
///   GROUP BY user_id ORDER BY total_risk DESC LIMIT 10"
#[derive(Args, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub struct QueryArgs {
    /// The SQL statement, or `-` to read it from stdin.
    pub sql: String,
    /// The directory `run --output` wrote (with the embedded catalog: holds
    /// catalog.db and warehouse/).
    #[arg(long, default_value = "authpulse-out")]
    pub output: PathBuf,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Memory the statement may use (`512MiB`, `2GiB`, bytes).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory_limit: usize,
    /// How long the statement may run.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// A size in bytes: a number with an optional `KiB`, `MiB`, `GiB` (or `KB`,
/// `MB`, `GB`, powers of 1000) suffix.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 512MiB, 2GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` (KiB, MiB, GiB)")),
    };
    let bytes = number
        .checked_mul(scale)
        .filter(|&b| b > 0 && b <= usize::MAX as u64)
        .ok_or_else(|| format!("`{text}` is not a usable size"))?;
    Ok(bytes as usize)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// One JSON object per row (JSON lines).
    Json,
    /// CSV with a header line.
    Csv,
}

pub fn execute(args: QueryArgs) -> anyhow::Result<()> {
    let sql = if args.sql == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("read SQL from stdin")?;
        text
    } else {
        args.sql.clone()
    };
    let warehouse = Warehouse::open_existing(&args.catalog.config(&args.output)?)?;
    let limits = query::QueryLimits {
        memory_bytes: args.memory_limit,
        timeout: args.timeout,
    };
    stop_after(args.timeout);
    let output = query::run(&warehouse, &sql, limits)?;
    let mut out = io::BufWriter::new(super::stdout());
    print(&output, args.format, &mut out)?;
    out.flush()?;
    Ok(())
}

/// Ends the process with the timeout's error if the statement is still
/// running `timeout` from now. A plan that computes without waiting for
/// anything (a cross join counted) never yields to the runtime's timer, so
/// the limit is kept by a thread of its own.
fn stop_after(timeout: std::time::Duration) {
    let watchdog = std::thread::Builder::new()
        .name("authpulse-query-timeout".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            let error = query::QueryError::Timeout(humantime::format_duration(timeout).to_string());
            eprintln!("error: {error}");
            std::process::exit(1);
        });
    if let Err(e) = watchdog {
        tracing::warn!(error = %e, "no query timeout watchdog");
    }
}

/// Writes `output` in `format`.
pub fn print(
    output: &QueryOutput,
    format: OutputFormat,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table if is_plan(output) => print_plan(output, out)?,
        OutputFormat::Table => {
            if output.batches.iter().all(|b| b.num_rows() == 0) {
                let names = column_names(output).join(", ");
                writeln!(out, "(no rows; columns: {names})")?;
            } else {
                writeln!(out, "{}", pretty_format_batches(&output.batches)?)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = LineDelimitedWriter::new(&mut *out);
            for batch in &output.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        OutputFormat::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(&mut *out);
            for batch in &output.batches {
                writer.write(batch)?;
            }
        }
    }
    Ok(())
}

/// `EXPLAIN` output: two string columns, `plan_type` and `plan`.
fn is_plan(output: &QueryOutput) -> bool {
    column_names(output) == ["plan_type", "plan"]
}

fn column_names(output: &QueryOutput) -> Vec<&str> {
    output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect()
}

/// Plans read best as indented text, not inside table cells.
fn print_plan(output: &QueryOutput, out: &mut dyn Write) -> io::Result<()> {
    for batch in &output.batches {
        let column = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>();
        let (Some(kinds), Some(plans)) = (column(0), column(1)) else {
            continue;
        };
        for row in 0..batch.num_rows() {
            if kinds.is_null(row) || plans.is_null(row) {
                continue;
            }
            writeln!(out, "{}:", kinds.value(row))?;
            for line in plans.value(row).lines() {
                writeln!(out, "  {line}")?;
            }
        }
    }
    if !output.pruning.is_empty() {
        writeln!(out, "iceberg_pruning:")?;
        for scan in &output.pruning {
            writeln!(
                out,
                "  {}: {} of {} data files, {} of {} rows; predicate: {}",
                scan.table,
                scan.files_scanned,
                scan.files_total,
                scan.rows_scanned,
                scan.rows_total,
                scan.predicate.as_deref().unwrap_or("none"),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").unwrap_err().contains("parsecs"));
    }
}
