//! `ocsf_findings`: every alert publication as an OCSF 1.1.0 Detection
//! Finding (class 2004), the object `--alert-format ocsf` writes to the
//! alerts file and SNS, as a table shaped and partitioned the way AWS
//! Security Lake expects of a custom source: OCSF attributes as nested
//! columns, `time` a timestamp, `cloud` saying where it was raised, and the
//! partition `region=…/accountId=…/eventDay=YYYYMMDD`. Athena, Spark,
//! DuckDB and PyIceberg read it as any OCSF table; a Security Lake custom
//! source can take its data files as they are.
//!
//! A finding becomes a row through Arrow's JSON decoder against the
//! table's own schema, so the table holds exactly what the file and SNS
//! carry (times in microseconds instead of milliseconds; `unmapped` as a
//! map of JSON texts, as Security Lake keeps it).

use std::io;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use iceberg::spec::{
    ListType, MapType, NestedField, PrimitiveType, Schema, StructType, Transform, Type,
};
use serde_json::{Value, json};

use super::buffered::Buffered;
use super::sinks::{Role, TableSink};
use super::tables::{ColumnLayout, Partition, TableDefinition};
use super::writer::WriterStats;
use super::{LakehouseError, Warehouse};
use authpulse_engine::alerts::Alert;
use authpulse_engine::findings::detection_finding;
use authpulse_engine::sinks::{AlertSink, Commit, Progress};

/// `ocsf_findings`.
pub const FINDINGS: &str = "ocsf_findings";

/// Where findings are raised: the OCSF `cloud` of every finding and the
/// table's partition (Security Lake names the partitions of a custom
/// source by the region and account it runs in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingsOrigin {
    pub region: String,
    pub account_id: String,
}

impl Default for FindingsOrigin {
    fn default() -> Self {
        FindingsOrigin {
            region: "unknown".into(),
            account_id: "unknown".into(),
        }
    }
}

/// The table's definition, as [`tables::ALL`] lists it.
pub const DEFINITION: TableDefinition = TableDefinition {
    name: FINDINGS,
    schema,
    partitions: &[
        Partition {
            column: REGION_ID,
            name: "region",
            transform: Transform::Identity,
        },
        Partition {
            column: ACCOUNT_ID,
            name: "accountId",
            transform: Transform::Identity,
        },
        Partition {
            column: EVENT_DAY_ID,
            name: "eventDay",
            transform: Transform::Identity,
        },
    ],
    layouts: &[("finding_info.uid", ColumnLayout::RandomId)],
};

const REGION_ID: i32 = 1;
const ACCOUNT_ID: i32 = 2;
const EVENT_DAY_ID: i32 = 3;

/// Field ids, handed out in order: nested fields need ids as well.
struct Ids(i32);

impl Ids {
    fn next(&mut self) -> i32 {
        self.0 += 1;
        self.0
    }

    fn field(&mut self, name: &str, ty: Type) -> Arc<NestedField> {
        NestedField::optional(self.next(), name, ty).into()
    }

    fn string(&mut self, name: &str) -> Arc<NestedField> {
        self.field(name, Type::Primitive(PrimitiveType::String))
    }

    fn int(&mut self, name: &str) -> Arc<NestedField> {
        self.field(name, Type::Primitive(PrimitiveType::Int))
    }

    fn long(&mut self, name: &str) -> Arc<NestedField> {
        self.field(name, Type::Primitive(PrimitiveType::Long))
    }

    fn time(&mut self, name: &str) -> Arc<NestedField> {
        self.field(name, Type::Primitive(PrimitiveType::Timestamptz))
    }

    fn object(&mut self, name: &str, fields: Vec<Arc<NestedField>>) -> Arc<NestedField> {
        self.field(name, Type::Struct(StructType::new(fields)))
    }

    fn list(&mut self, name: &str, element: Type) -> Arc<NestedField> {
        let id = self.next();
        let element = NestedField::list_element(self.next(), element, false).into();
        NestedField::optional(id, name, Type::List(ListType::new(element))).into()
    }

    fn object_list(&mut self, name: &str, fields: Vec<Arc<NestedField>>) -> Arc<NestedField> {
        self.list(name, Type::Struct(StructType::new(fields)))
    }
}

/// The OCSF 1.1.0 Detection Finding attributes AuthPulse fills, and the
/// partition columns.
pub fn schema() -> Schema {
    let required = |id, name| -> Arc<NestedField> {
        NestedField::required(id, name, Type::Primitive(PrimitiveType::String)).into()
    };
    let mut ids = Ids(EVENT_DAY_ID);
    let mut fields = vec![
        required(REGION_ID, "region"),
        required(ACCOUNT_ID, "accountId"),
        required(EVENT_DAY_ID, "eventDay"),
    ];
    for name in ["activity_id", "category_uid", "class_uid"] {
        fields.push(ids.int(name));
    }
    for name in ["activity_name", "category_name", "class_name"] {
        fields.push(ids.string(name));
    }
    fields.push(ids.long("type_uid"));
    fields.push(ids.string("type_name"));
    fields.push(ids.time("time"));
    for (id, name) in [("severity_id", "severity"), ("status_id", "status")] {
        fields.push(ids.int(id));
        fields.push(ids.string(name));
    }
    fields.push(ids.int("risk_score"));
    fields.push(ids.int("risk_level_id"));
    fields.push(ids.string("risk_level"));
    fields.push(ids.string("message"));
    fields.push(ids.int("count"));
    let analytic = vec![
        ids.string("name"),
        ids.string("uid"),
        ids.string("version"),
        ids.string("desc"),
        ids.int("type_id"),
        ids.string("type"),
    ];
    let technique = vec![ids.string("uid")];
    let attack = vec![ids.object("technique", technique), ids.string("version")];
    let related = vec![
        ids.string("uid"),
        ids.time("time"),
        ids.long("type_uid"),
        ids.string("type_name"),
    ];
    let finding_info = vec![
        ids.string("uid"),
        ids.string("title"),
        ids.string("desc"),
        ids.list("types", Type::Primitive(PrimitiveType::String)),
        ids.time("created_time"),
        ids.time("first_seen_time"),
        ids.time("last_seen_time"),
        ids.time("modified_time"),
        ids.object("analytic", analytic),
        ids.object_list("attacks", attack),
        ids.object_list("related_events", related),
    ];
    fields.push(ids.object("finding_info", finding_info));
    let resource = vec![ids.string("type"), ids.string("name"), ids.string("uid")];
    fields.push(ids.object_list("resources", resource));
    let product = vec![
        ids.string("name"),
        ids.string("vendor_name"),
        ids.string("version"),
    ];
    let metadata = vec![
        ids.string("version"),
        ids.string("uid"),
        ids.string("correlation_uid"),
        ids.long("sequence"),
        ids.object("product", product),
        ids.list("labels", Type::Primitive(PrimitiveType::String)),
    ];
    fields.push(ids.object("metadata", metadata));
    let account = vec![ids.string("uid")];
    let cloud = vec![
        ids.string("provider"),
        ids.string("region"),
        ids.object("account", account),
    ];
    fields.push(ids.object("cloud", cloud));
    let unmapped = Type::Map(MapType::new(
        NestedField::map_key_element(ids.next(), Type::Primitive(PrimitiveType::String)).into(),
        NestedField::map_value_element(ids.next(), Type::Primitive(PrimitiveType::String), false)
            .into(),
    ));
    fields.push(ids.field("unmapped", unmapped));
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .unwrap_or_else(|e| panic!("the {FINDINGS} schema: {e}"))
}

/// The row of one finding: the finding with `cloud`, the partition values,
/// times in microseconds and `unmapped` as JSON texts.
pub fn row(mut finding: Value, origin: &FindingsOrigin) -> Value {
    let day = finding["time"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "19700101".into(), |t| t.format("%Y%m%d").to_string());
    millis_to_micros(&mut finding);
    let Some(fields) = finding.as_object_mut() else {
        return finding;
    };
    if let Some(Value::Object(unmapped)) = fields.get_mut("unmapped") {
        for value in unmapped.values_mut() {
            if !value.is_string() {
                *value = Value::String(value.to_string());
            }
        }
    }
    fields.insert(
        "cloud".into(),
        json!({"provider": "AWS", "region": origin.region, "account": {"uid": origin.account_id}}),
    );
    fields.insert("region".into(), origin.region.clone().into());
    fields.insert("accountId".into(), origin.account_id.clone().into());
    fields.insert("eventDay".into(), day.into());
    finding
}

/// OCSF times (`time`, `*_time`) are milliseconds; Iceberg's microseconds.
fn millis_to_micros(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let is_time = key == "time" || key.ends_with("_time");
                match value {
                    Value::Number(n) if is_time => {
                        if let Some(ms) = n.as_i64() {
                            *value = Value::from(ms.saturating_mul(1_000));
                        }
                    }
                    _ => millis_to_micros(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(millis_to_micros),
        _ => {}
    }
}

/// An [`AlertSink`] writing the `ocsf_findings` table ([`Buffered`]:
/// findings are few).
pub struct FindingsTableSink {
    table: Buffered<Value>,
    origin: FindingsOrigin,
}

impl FindingsTableSink {
    pub fn start(
        warehouse: &Warehouse,
        origin: FindingsOrigin,
    ) -> Result<FindingsTableSink, LakehouseError> {
        Ok(FindingsTableSink {
            table: Buffered::start(warehouse, FINDINGS, batch)?,
            origin,
        })
    }
}

/// The rows, decoded against the table's own schema.
fn batch(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, ArrowError> {
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(rows.len())
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(schema))))
}

impl Commit for FindingsTableSink {
    fn checkpoint(&mut self, progress: &Progress) -> io::Result<()> {
        self.table.checkpoint(progress)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.table.flush()
    }
}

impl AlertSink for FindingsTableSink {
    fn send(&mut self, alert: &Alert) -> io::Result<()> {
        self.table.push(row(detection_finding(alert), &self.origin));
        Ok(())
    }
}

impl TableSink for FindingsTableSink {
    fn role(&mut self) -> Role<'_> {
        Role::Alerts(self)
    }

    fn stats(&self) -> Vec<&WriterStats> {
        vec![self.table.stats()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_the_finding_in_the_tables_units_and_partition() {
        let finding = serde_json::json!({
            "time": 1_704_153_600_123i64,
            "finding_info": {"uid": "a", "first_seen_time": 1_704_153_000_000i64,
                             "related_events": [{"uid": "e", "time": 5}]},
            "unmapped": {"users": ["U1"], "max_event_score": 80, "note": "x"},
        });
        let origin = FindingsOrigin {
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
        };
        let row = row(finding, &origin);
        assert_eq!(row["time"], 1_704_153_600_123_000i64);
        assert_eq!(
            row["finding_info"]["first_seen_time"],
            1_704_153_000_000_000i64
        );
        assert_eq!(row["finding_info"]["related_events"][0]["time"], 5_000);
        assert_eq!(row["eventDay"], "20240102");
        assert_eq!(row["region"], "eu-west-1");
        assert_eq!(row["cloud"]["account"]["uid"], "123456789012");
        assert_eq!(row["unmapped"]["users"], "[\"U1\"]");
        assert_eq!(row["unmapped"]["note"], "x");
    }

    #[test]
    fn the_partition_binds_to_the_schema() {
        let spec = DEFINITION
            .partition_spec()
            .bind(Arc::new(schema()))
            .unwrap();
        let names: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["region", "accountId", "eventDay"]);
        assert!(super::super::tables::definition(FINDINGS).is_some());
    }
}
