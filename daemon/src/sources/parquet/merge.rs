//! The rows of many Parquet files in event-time order, each as one OCSF
//! JSON line.
//!
//! Security Lake writes a file per region, account and few minutes, so
//! files of the same hours overlap in time; read one after the other their
//! events would run back and forth by hours and the watermark would refuse
//! most as late. So the files are ordered by the earliest `time` their
//! footers record, and a file is opened when the merge reaches that time:
//! every open file offers its next row, and the earliest goes first. Each
//! batch of a file is put in time order before it is offered; rows out of
//! order by more than a batch are the watermark's to judge (within the
//! allowed lateness they are reordered, later ones dead-lettered as late,
//! counted, never silently dropped).
//!
//! A row becomes the JSON object the OCSF reader takes (`time` in
//! milliseconds since the epoch, whatever the column's timestamp unit), so
//! a row is mapped exactly as the same event in a JSON line would be. Only
//! the columns that mapping reads are decoded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray};
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use datafusion::arrow::compute::cast;
use datafusion::arrow::json::LineDelimitedWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use super::ParquetError;
use super::store::{Listed, Store};

/// The top-level OCSF attributes the Authentication mapping reads
/// (`docs/formats.md`); the others (`raw_data`, `unmapped`, enrichments)
/// are not decoded.
const READ_COLUMNS: &[&str] = &[
    "class_uid",
    "activity_id",
    "time",
    "user",
    "actor",
    "src_endpoint",
    "dst_endpoint",
    "device",
    "logon_type_id",
    "auth_protocol_id",
    "auth_protocol",
    "status_id",
    "status_code",
    "status_detail",
    "metadata",
];

/// Rows decoded at a time from one file.
const BATCH_ROWS: usize = 4096;

/// A file, planned: where its events start in time, and how many it has.
#[derive(Debug)]
pub struct Planned {
    pub file: Listed,
    /// The earliest `time` of its row groups, in milliseconds (`i64::MIN`
    /// without statistics: read first).
    pub first_ms: i64,
    pub rows: u64,
}

/// A file being read: its current batch as JSON lines in time order.
struct OpenFile {
    name: String,
    reader: ParquetRecordBatchReader,
    json: Vec<u8>,
    /// (time in ms, start, end) of each line of `json`, in time order.
    lines: Vec<(i64, usize, usize)>,
    at: usize,
    /// The file's bytes per row, for progress.
    bytes_per_row: f64,
}

/// Rows of every planned file, earliest first.
pub struct Merge {
    store: Store,
    files: Vec<Planned>,
    next_file: usize,
    open: Vec<Option<OpenFile>>,
    /// (time of the next row, slot in `open`).
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    /// The slot whose row was handed out last: moved on at the next call,
    /// when the row's bytes are no longer borrowed.
    handed: Option<usize>,
    /// Bytes of the files read, pro rata of rows handed out.
    bytes_read: f64,
}

impl Merge {
    /// Plans the store's files: reads their footers.
    pub fn plan(store: Store, listed: Vec<Listed>) -> Result<Merge, ParquetError> {
        let mut files = Vec::new();
        for file in listed {
            let metadata = store.metadata(&file)?;
            files.push(Planned {
                first_ms: first_time_ms(&metadata),
                rows: metadata.file_metadata().num_rows().max(0) as u64,
                file,
            });
        }
        // By start, then name: the same files always merge the same way.
        files.sort_by(|a, b| (a.first_ms, &a.file.name).cmp(&(b.first_ms, &b.file.name)));
        Ok(Merge {
            store,
            files,
            next_file: 0,
            open: Vec::new(),
            heads: BinaryHeap::new(),
            handed: None,
            bytes_read: 0.0,
        })
    }

    pub fn files(&self) -> &[Planned] {
        &self.files
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes_read as u64
    }

    /// The next row in time order, as a JSON line.
    pub fn next_row(&mut self) -> Result<Option<&[u8]>, ParquetError> {
        if let Some(slot) = self.handed.take() {
            self.advance(slot)?;
        }
        loop {
            let earliest = self.heads.peek().map(|Reverse((time, _))| *time);
            // Open every file that starts before the earliest row offered.
            match self.files.get(self.next_file) {
                Some(next) if earliest.is_none_or(|t| next.first_ms <= t) => {
                    let index = self.next_file;
                    self.next_file += 1;
                    self.open_file(index)?;
                    continue;
                }
                _ => {}
            }
            let Some(Reverse((_, slot))) = self.heads.pop() else {
                return Ok(None);
            };
            self.handed = Some(slot);
            let file = self.open[slot].as_ref().expect("an offered file is open");
            self.bytes_read += file.bytes_per_row;
            let (_, start, end) = file.lines[file.at];
            return Ok(Some(&file.json[start..end]));
        }
    }

    fn open_file(&mut self, index: usize) -> Result<(), ParquetError> {
        let planned = &self.files[index];
        let name = self.store.describe(&planned.file);
        let handle = self.store.open(&planned.file)?;
        // The footer is read again here: keeping every file's footer from
        // the plan would hold them all in memory for the whole run.
        let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
            .map_err(|e| ParquetError::Read(name.clone(), e.to_string()))?;
        let fields = builder.parquet_schema().root_schema().get_fields();
        let roots = fields
            .iter()
            .enumerate()
            .filter(|(_, field)| READ_COLUMNS.contains(&field.name()))
            .map(|(i, _)| i);
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| ParquetError::Read(name.clone(), e.to_string()))?;
        let mut file = OpenFile {
            bytes_per_row: planned.file.size as f64 / planned.rows.max(1) as f64,
            name,
            reader,
            json: Vec::new(),
            lines: Vec::new(),
            at: 0,
        };
        if file.load()? {
            let slot = self
                .open
                .iter()
                .position(Option::is_none)
                .unwrap_or_else(|| {
                    self.open.push(None);
                    self.open.len() - 1
                });
            self.heads.push(Reverse((file.lines[0].0, slot)));
            self.open[slot] = Some(file);
        }
        Ok(())
    }

    /// Moves a file past the row handed out: offers its next row, or closes
    /// it at its end.
    fn advance(&mut self, slot: usize) -> Result<(), ParquetError> {
        let file = self.open[slot].as_mut().expect("a handed file is open");
        file.at += 1;
        if file.at == file.lines.len() && !file.load()? {
            self.open[slot] = None;
            return Ok(());
        }
        self.heads.push(Reverse((file.lines[file.at].0, slot)));
        Ok(())
    }
}

impl OpenFile {
    /// Decodes the next batch with rows; false at the file's end.
    fn load(&mut self) -> Result<bool, ParquetError> {
        loop {
            let Some(batch) = self.reader.next() else {
                return Ok(false);
            };
            let batch = batch.map_err(|e| ParquetError::Read(self.name.clone(), e.to_string()))?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.encode(&batch)
                .map_err(|e| ParquetError::Read(self.name.clone(), e.to_string()))?;
            return Ok(true);
        }
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<(), datafusion::arrow::error::ArrowError> {
        let batch = timestamps_as_millis(batch)?;
        let times: Vec<i64> = match batch.column_by_name("time") {
            Some(time) if time.data_type() == &DataType::Int64 => {
                let time = time.as_primitive::<Int64Type>();
                (0..time.len())
                    .map(|i| {
                        if time.is_null(i) {
                            i64::MIN
                        } else {
                            time.value(i)
                        }
                    })
                    .collect()
            }
            _ => vec![i64::MIN; batch.num_rows()],
        };
        self.json.clear();
        let mut writer = LineDelimitedWriter::new(&mut self.json);
        writer.write(&batch)?;
        writer.finish()?;
        self.lines.clear();
        let mut start = 0;
        for (row, end) in memchr::memchr_iter(b'\n', &self.json).enumerate() {
            self.lines.push((times[row], start, end));
            start = end + 1;
        }
        // Stable: rows of the same millisecond keep the file's order.
        self.lines.sort_by_key(|&(time, _, _)| time);
        self.at = 0;
        Ok(())
    }
}

/// The batch with every timestamp (top level or in a struct) as
/// milliseconds since the epoch, the form OCSF JSON gives `time` in.
fn timestamps_as_millis(
    batch: &RecordBatch,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| has_timestamp(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let column = as_millis(column)?;
            Ok((
                field
                    .as_ref()
                    .clone()
                    .with_data_type(column.data_type().clone()),
                column,
            ))
        })
        .collect::<Result<Vec<_>, datafusion::arrow::error::ArrowError>>()?
        .into_iter()
        .unzip();
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
}

fn has_timestamp(data_type: &DataType) -> bool {
    match data_type {
        DataType::Timestamp(..) => true,
        DataType::Struct(fields) => fields.iter().any(|f| has_timestamp(f.data_type())),
        _ => false,
    }
}

fn as_millis(column: &ArrayRef) -> Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    match column.data_type() {
        DataType::Timestamp(..) => cast(
            &cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?,
            &DataType::Int64,
        ),
        DataType::Struct(_) if has_timestamp(column.data_type()) => {
            let parts = column.as_struct();
            let children = parts
                .columns()
                .iter()
                .map(as_millis)
                .collect::<Result<Vec<_>, _>>()?;
            let fields: Fields = parts
                .fields()
                .iter()
                .zip(&children)
                .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
                .collect();
            Ok(Arc::new(StructArray::try_new(
                fields,
                children,
                parts.nulls().cloned(),
            )?))
        }
        _ => Ok(Arc::clone(column)),
    }
}

/// The earliest `time` a file's row groups record, in milliseconds.
fn first_time_ms(metadata: &ParquetMetaData) -> i64 {
    let schema = metadata.file_metadata().schema_descr();
    let Some(column) =
        (0..schema.num_columns()).find(|&i| schema.column(i).path().string() == "time")
    else {
        return i64::MIN;
    };
    let per_ms = match parquet::arrow::parquet_to_arrow_schema(schema, None)
        .ok()
        .and_then(|s| {
            s.field_with_name("time")
                .ok()
                .map(|f| f.data_type().clone())
        }) {
        Some(DataType::Timestamp(TimeUnit::Second, _)) => -1_000,
        Some(DataType::Timestamp(TimeUnit::Microsecond, _)) => 1_000,
        Some(DataType::Timestamp(TimeUnit::Nanosecond, _)) => 1_000_000,
        _ => 1,
    };
    metadata
        .row_groups()
        .iter()
        .map(|group| match group.column(column).statistics() {
            Some(Statistics::Int64(stats)) => stats.min_opt().map_or(i64::MIN, |&min| {
                if per_ms < 0 {
                    min.saturating_mul(-per_ms)
                } else {
                    min.div_euclid(per_ms)
                }
            }),
            _ => i64::MIN,
        })
        .min()
        .unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    /// Writes `times` (ms) as a file of `user` rows; `micros` stores them
    /// as a microsecond timestamp column, else as plain milliseconds.
    fn write(path: &std::path::Path, user: &str, times: &[i64], micros: bool, group_rows: usize) {
        let time: ArrayRef = if micros {
            Arc::new(TimestampMicrosecondArray::from(
                times.iter().map(|t| t * 1_000).collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(Int64Array::from(times.to_vec()))
        };
        let users: ArrayRef = Arc::new(StringArray::from(vec![user; times.len()]));
        let extra: ArrayRef = Arc::new(StringArray::from(vec!["not read"; times.len()]));
        let batch = RecordBatch::try_from_iter([
            ("time", time),
            ("raw_data", extra),
            ("class_name", users),
        ])
        .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn rows(dir: &std::path::Path) -> Vec<serde_json::Value> {
        let store = Store::local(dir);
        let listed = store.list().unwrap();
        let mut merge = Merge::plan(store, listed).unwrap();
        let mut rows = Vec::new();
        while let Some(row) = merge.next_row().unwrap() {
            rows.push(serde_json::from_slice(row).unwrap());
        }
        rows
    }

    #[test]
    fn overlapping_files_come_out_in_event_time() {
        let dir = tempfile::tempdir().unwrap();
        // Account 1's file sorts first by name but starts later; both span
        // two hours, a minute apart, and one is stored out of order.
        let later: Vec<i64> = (0..120).map(|m| 30_000 + m * 60_000).collect();
        let mut earlier: Vec<i64> = (0..120).map(|m| m * 60_000).collect();
        earlier.swap(3, 4);
        write(
            &dir.path().join("accountId=1/a.parquet"),
            "one",
            &later,
            true,
            50,
        );
        write(
            &dir.path().join("accountId=2/a.parquet"),
            "two",
            &earlier,
            false,
            50,
        );
        let rows = rows(dir.path());
        assert_eq!(rows.len(), 240);
        let times: Vec<i64> = rows.iter().map(|r| r["time"].as_i64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times[0], 0);
        assert_eq!(times[1], 30_000, "microseconds read as milliseconds");
        // Only the columns the OCSF mapping reads are decoded.
        assert!(rows.iter().all(|r| r.get("raw_data").is_none()));
        assert!(rows.iter().all(|r| r.get("class_name").is_none()));
    }

    #[test]
    fn a_file_starts_at_its_earliest_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write(&path, "u", &[5_000, 9_000, 1_000, 7_000], true, 2);
        let store = Store::local(&path);
        let file = store.list().unwrap().remove(0);
        assert_eq!(first_time_ms(&store.metadata(&file).unwrap()), 1_000);
    }
}
