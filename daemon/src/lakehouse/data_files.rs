//! A table's Parquet data files: how each column is laid out
//! ([`writer_properties`], by the table's [`ColumnLayout`]s), rolling files
//! per partition with at most two partitions open ([`PartitionedWriter`]),
//! and the [`Splitter`] that cuts a batch into its partitions, as zero-copy
//! runs where the rows come in partition order.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch, TimestampMicrosecondArray};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{
    DataFile, DataFileFormat, Literal, PartitionKey, PrimitiveType, Struct, Transform, Type,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use super::LakehouseError;
use super::tables::ColumnLayout;

/// Target size of one Parquet data file.
const TARGET_FILE_BYTES: usize = 256 * 1024 * 1024;

type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Rows per Parquet row group. A file's open row group is held in memory,
/// encoded, until it is full; parquet's default (1Mi rows) held hundreds of
/// MB across the tables' open files.
const MAX_ROW_GROUP_ROWS: usize = 256 * 1024;

/// The same bound in bytes, whichever comes first: 256Ki rows of the
/// curated table are 20-25 MB in memory, and with both tables' open files
/// the row groups held 280 MB at full scale.
const MAX_ROW_GROUP_BYTES: usize = 12 << 20;

/// Partitions whose files stay open at once. Rows reach a table in (nearly)
/// the order of its partition column (event or ingestion time), so the
/// partitions in use at any moment are the current one and perhaps its
/// neighbour; keeping every partition of a long run open held each one's
/// unflushed row group in memory (1.4 GB for 14 days of `auth_events_raw`'s
/// 336 hours), and a third open partition cost 40-80 MB at full scale for
/// the same files.
const MAX_OPEN_PARTITIONS: usize = 2;

/// Writes each partition's rows to its own rolling files, like iceberg's
/// `FanoutWriter`, but keeps at most [`MAX_OPEN_PARTITIONS`] open: writing to
/// another closes the one written least recently (its files are kept for
/// the commit). Rows that come back to a closed partition start a new file
/// in it, which Iceberg allows; memory stays bounded whatever the order.
pub(super) struct PartitionedWriter {
    builder: FileWriterBuilder,
    /// Open writers, least recently written first.
    open: Vec<(Struct, <FileWriterBuilder as IcebergWriterBuilder>::R)>,
    closed: Vec<DataFile>,
}

impl PartitionedWriter {
    fn new(builder: FileWriterBuilder) -> PartitionedWriter {
        PartitionedWriter {
            builder,
            open: Vec::new(),
            closed: Vec::new(),
        }
    }

    pub(super) async fn write(
        &mut self,
        key: PartitionKey,
        batch: RecordBatch,
    ) -> iceberg::Result<()> {
        let position = self.open.iter().position(|(p, _)| p == key.data());
        let mut entry = match position {
            Some(i) => self.open.remove(i),
            None => {
                if self.open.len() == MAX_OPEN_PARTITIONS {
                    let (_, mut oldest) = self.open.remove(0);
                    self.closed.extend(oldest.close().await?);
                }
                let writer = self.builder.build(Some(key.clone())).await?;
                (key.data().clone(), writer)
            }
        };
        let written = entry.1.write(batch).await;
        self.open.push(entry);
        written
    }

    /// Closes every file; returns all of them, the ones closed before too.
    pub(super) async fn close(mut self) -> iceberg::Result<Vec<DataFile>> {
        for (_, mut writer) in self.open.drain(..) {
            self.closed.extend(writer.close().await?);
        }
        Ok(self.closed)
    }
}

pub(super) fn new_writer(
    table: &Table,
    layouts: &[(&str, ColumnLayout)],
) -> Result<PartitionedWriter, LakehouseError> {
    let schema = table.metadata().current_schema().clone();
    let properties = writer_properties(layouts);
    let file_names = DefaultFileNameGenerator::new(
        "authpulse".to_string(),
        Some(uuid_suffix()),
        DataFileFormat::Parquet,
    );
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(properties, schema),
        TARGET_FILE_BYTES,
        table.file_io().clone(),
        DefaultLocationGenerator::new(table.metadata())?,
        file_names,
    );
    Ok(PartitionedWriter::new(DataFileWriterBuilder::new(rolling)))
}

/// How a table's files are written, column by column as `layouts` says.
fn writer_properties(layouts: &[(&str, ColumnLayout)]) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        // zstd level 3 cost 20% throughput for a smaller file.
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid zstd level"),
        ))
        // Version 2 data pages (every engine that reads Iceberg reads them):
        // the columns without a dictionary below are delta encoded, which is
        // smaller and cheaper to compress than plain values.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        // What a dictionary column would fall back to. Version 2's default
        // is a delta encoder, which the Parquet writer creates with every
        // row group of every column, reserving 1-2 MiB each whether or not
        // the dictionary ever fills: ~100 MB across the open files at full
        // scale. The dictionary columns here (names, counts, levels) never
        // leave their dictionary within a row group, so plain is only a
        // fallback, and costs nothing until it is used.
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES));
    for (column, layout) in layouts {
        let path = || ColumnPath::from(*column);
        properties = match layout {
            ColumnLayout::RandomId => properties
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), Encoding::DELTA_BYTE_ARRAY)
                .set_column_statistics_enabled(path(), EnabledStatistics::None),
            ColumnLayout::Unordered => {
                properties.set_column_statistics_enabled(path(), EnabledStatistics::None)
            }
            ColumnLayout::Ascending | ColumnLayout::ManyValues => properties
                .set_column_dictionary_enabled(path(), false)
                .set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED),
        };
    }
    properties.build()
}

/// A unique suffix per writer, so files of different commits never collide.
pub(super) fn uuid_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

/// Cuts record batches into one batch per partition.
///
/// The tables that carry volume are partitioned by `hour` or `day` of a
/// timestamp column, and their rows arrive in (or nearly in) that column's
/// order, so a batch is a few runs of equal partition value: those are cut as
/// zero-copy slices, with the partition value computed by integer division.
/// Any other spec, or a batch whose rows are scattered across partitions,
/// goes through iceberg's general splitter (which computes every row's value
/// and copies rows into per-partition batches).
pub(super) struct Splitter {
    runs: Option<RunSplit>,
    general: RecordBatchPartitionSplitter,
}

struct RunSplit {
    column: usize,
    unit_micros: i64,
    key: PartitionKey,
}

/// More runs than this in one batch: the rows are not ordered by partition.
const MAX_RUNS: usize = 64;

impl Splitter {
    pub(super) fn new(table: &Table) -> Result<Splitter, LakehouseError> {
        let schema = table.metadata().current_schema().clone();
        let spec = table.metadata().default_partition_spec().clone();
        let runs = match spec.fields() {
            [field] => {
                let unit_micros = match field.transform {
                    Transform::Hour => Some(3_600_000_000),
                    Transform::Day => Some(86_400_000_000),
                    _ => None,
                };
                let source = schema.field_by_id(field.source_id);
                let column = schema
                    .as_struct()
                    .fields()
                    .iter()
                    .position(|f| f.id == field.source_id);
                let is_timestamp = source.is_some_and(|f| {
                    matches!(
                        *f.field_type,
                        Type::Primitive(PrimitiveType::Timestamptz | PrimitiveType::Timestamp)
                    )
                });
                match (unit_micros, column, is_timestamp) {
                    (Some(unit_micros), Some(column), true) => Some(RunSplit {
                        column,
                        unit_micros,
                        key: PartitionKey::new(
                            (*spec).clone(),
                            Arc::clone(&schema),
                            Struct::from_iter([Some(Literal::int(0))]),
                        ),
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        let general = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
        Ok(Splitter { runs, general })
    }

    pub(super) fn split(
        &self,
        batch: &RecordBatch,
    ) -> Result<Vec<(PartitionKey, RecordBatch)>, LakehouseError> {
        if let Some(runs) = &self.runs
            && let Some(parts) = runs.split(batch)
        {
            return Ok(parts);
        }
        Ok(self.general.split(batch)?)
    }
}

impl RunSplit {
    /// `None` when the batch has too many runs to be worth slicing.
    fn split(&self, batch: &RecordBatch) -> Option<Vec<(PartitionKey, RecordBatch)>> {
        let times = batch
            .column(self.column)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()?;
        if times.null_count() > 0 {
            return None;
        }
        let values = times.values();
        let mut parts = Vec::new();
        let mut start = 0;
        while start < values.len() {
            let value = values[start].div_euclid(self.unit_micros);
            let run = values[start..]
                .iter()
                .position(|t| t.div_euclid(self.unit_micros) != value)
                .unwrap_or(values.len() - start);
            if parts.len() == MAX_RUNS {
                return None;
            }
            let partition = i32::try_from(value).ok()?;
            parts.push((
                self.key
                    .copy_with_data(Struct::from_iter([Some(Literal::int(partition))])),
                batch.slice(start, run),
            ));
            start += run;
        }
        Some(parts)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lakehouse::{Warehouse, WarehouseConfig, tables};
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::SchemaRef;
    use iceberg::arrow::schema_to_arrow_schema;

    #[test]
    fn only_columns_without_a_dictionary_are_delta_encoded() {
        let properties = writer_properties(&[
            ("event_id", ColumnLayout::RandomId),
            ("user_id", ColumnLayout::Unordered),
            ("event_time", ColumnLayout::Ascending),
        ]);
        let column = |name: &str| ColumnPath::from(name);
        let id = column("event_id");
        assert!(!properties.dictionary_enabled(&id));
        assert_eq!(properties.encoding(&id), Some(Encoding::DELTA_BYTE_ARRAY));
        let time = column("event_time");
        assert!(!properties.dictionary_enabled(&time));
        assert_eq!(
            properties.encoding(&time),
            Some(Encoding::DELTA_BINARY_PACKED)
        );
        // Names and every column not listed (the features) keep their
        // dictionary, with a fallback that reserves nothing up front.
        for name in ["user_id", "user_logins_1h"] {
            assert!(properties.dictionary_enabled(&column(name)), "{name}");
            assert_eq!(
                properties.encoding(&column(name)),
                Some(Encoding::PLAIN),
                "{name}"
            );
        }
    }

    /// A raw-table batch whose ingestion times cover three hours, the last
    /// hour's rows interleaved with the second's.
    pub(in crate::lakehouse) fn raw_batch(schema: &SchemaRef) -> RecordBatch {
        const HOUR: i64 = 3_600_000_000;
        let base = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
        let ingestion: Vec<i64> = (0..10)
            .map(|i| base + i * HOUR / 4)
            .chain([base + 2 * HOUR, base + HOUR + 5, base + 2 * HOUR + 7])
            .collect();
        let n = ingestion.len();
        let text = |prefix: &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{prefix}{i}")),
            ))
        };
        let times = |values: Vec<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(values).with_timezone("+00:00"))
        };
        RecordBatch::try_new(
            Arc::clone(schema),
            vec![
                text("e"),
                times(vec![base; n]),
                text("U"),
                text("C"),
                times(ingestion),
                text("s"),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                text("a"),
            ]
            .into_iter()
            // The six detail columns and source_event_id: none said.
            .chain((0..7).map(|_| arrow_array::new_null_array(&arrow_schema::DataType::Utf8, n)))
            .collect(),
        )
        .unwrap()
    }

    fn summary(parts: &[(PartitionKey, RecordBatch)]) -> Vec<(String, Vec<i64>)> {
        let mut out: Vec<(String, Vec<i64>)> = Vec::new();
        for (key, batch) in parts {
            let lines = batch
                .column(6)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec();
            let path = key.to_path();
            match out.iter_mut().find(|(p, _)| *p == path) {
                Some((_, rows)) => rows.extend(lines),
                None => out.push((path, lines)),
            }
        }
        out.sort();
        out
    }

    /// Rows spread over more partitions than may stay open: every row is
    /// in a file of its own partition, a partition written again after it
    /// was closed gets a second file, and no more than the limit is open.
    #[test]
    fn partitions_beyond_the_open_limit_are_closed_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        let table = warehouse.load(tables::RAW).unwrap();
        let splitter = Splitter::new(&table).unwrap();
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
        let parts = splitter.split(&raw_batch(&schema)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut writer = new_writer(&table, &[]).unwrap();
        // Hours 0, 1, 2, 1, 2 as sliced, then hour 0 again after three more
        // partitions (shifted by days) pushed it out.
        let mut expected_rows = 0;
        for (key, part) in parts.iter().cloned() {
            expected_rows += part.num_rows();
            runtime.block_on(writer.write(key, part)).unwrap();
        }
        let (first_key, first_part) = parts[0].clone();
        for day in 1..=3 {
            let hour = 473_352 + 24 * day;
            let key = first_key.copy_with_data(Struct::from_iter([Some(Literal::int(hour))]));
            expected_rows += first_part.num_rows();
            runtime
                .block_on(writer.write(key, first_part.clone()))
                .unwrap();
            assert!(writer.open.len() <= MAX_OPEN_PARTITIONS);
        }
        expected_rows += first_part.num_rows();
        runtime
            .block_on(writer.write(first_key, first_part))
            .unwrap();
        let files = runtime.block_on(writer.close()).unwrap();
        let rows: u64 = files.iter().map(|f| f.record_count()).sum();
        assert_eq!(rows, expected_rows as u64);
        let hour_0 = files
            .iter()
            .filter(|f| f.partition() == parts[0].0.data())
            .count();
        assert_eq!(hour_0, 2, "hour 0 was closed, then written again");
        assert_eq!(files.len(), 3 + 3 + 1);
    }

    #[test]
    fn run_slicing_partitions_like_the_general_splitter() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(&WarehouseConfig::embedded(dir.path())).unwrap();
        let table = warehouse.load(tables::RAW).unwrap();
        let splitter = Splitter::new(&table).unwrap();
        assert!(
            splitter.runs.is_some(),
            "hour(ingestion_time) is sliced by runs"
        );
        let schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).unwrap());
        let batch = raw_batch(&schema);

        let runs = splitter.runs.as_ref().unwrap().split(&batch).unwrap();
        assert_eq!(runs.len(), 5, "hours 0, 1, 2, then 1 and 2 again");
        let general = splitter.general.split(&batch).unwrap();
        assert_eq!(summary(&runs), summary(&general));
        assert_eq!(summary(&runs).len(), 3, "three hours");
        // Hours since the epoch: 2024-01-01T00 is hour 473,352.
        assert_eq!(summary(&runs)[0].0, "ingestion_hour=473352");
    }
}
