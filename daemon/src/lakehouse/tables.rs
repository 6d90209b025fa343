//! The Iceberg tables AuthPulse writes (namespace `authpulse`): schemas and
//! partition specs. Field ids are part of the contract with every reader; new
//! columns get new ids and are optional, so schema changes are additive.

use std::sync::Arc;

use iceberg::spec::{
    ListType, NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};

/// Namespace of every AuthPulse table.
pub const NAMESPACE: &str = "authpulse";

/// `auth_events_raw`: every valid record as received (duplicates and late
/// arrivals included, with what admission made of them), partitioned by hour
/// of `ingestion_time`.
pub const RAW: &str = "auth_events_raw";

/// `auth_events_curated`: every scored event with its features and score,
/// partitioned by day of `event_time`.
pub const CURATED: &str = "auth_events_curated";

/// `alerts`: every alert publication (an incident's opening, updates and
/// closing), partitioned by day of `first_event_time`.
pub const ALERTS: &str = "alerts";

/// `user_behavior_hourly`: per user per hour (tumbling), partitioned by day.
pub const USER_HOURLY: &str = "user_behavior_hourly";

/// `host_popularity_daily`: per computer per UTC day, partitioned by month.
pub const HOST_DAILY: &str = "host_popularity_daily";

/// A table AuthPulse creates on first use.
pub struct TableDefinition {
    pub name: &'static str,
    pub schema: fn() -> Schema,
    /// The partition fields, each a transform of one column.
    pub partitions: &'static [Partition],
    /// How columns whose values have a known shape are best written
    /// (the others: dictionary encoding, min/max statistics).
    pub layouts: &'static [(&'static str, ColumnLayout)],
}

/// A table's partition field: `transform(column)`, named `name`.
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    /// Field id of the column it is computed from.
    pub column: i32,
    pub name: &'static str,
    pub transform: Transform,
}

impl TableDefinition {
    /// The partition spec, unbound (it binds to [`TableDefinition::schema`]).
    pub fn partition_spec(&self) -> UnboundPartitionSpec {
        let mut spec = UnboundPartitionSpec::builder();
        for &Partition {
            column,
            name,
            transform,
        } in self.partitions
        {
            spec = spec
                .add_partition_field(column, name, transform)
                .unwrap_or_else(|e| panic!("{}'s partition field {name}: {e}", self.name));
        }
        spec.build()
    }
}

/// The shape of a column's values, which decides its Parquet encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnLayout {
    /// Random ids: a dictionary would only cost time and space, and min/max
    /// statistics of random values prune nothing, so neither is written.
    RandomId,
    /// Names in no order within a file (users, computers): dictionary
    /// encoded, but min/max statistics would span nearly every name and
    /// prune nothing, so they are not computed.
    Unordered,
    /// Values in (nearly) ascending order (event and ingestion times, line
    /// numbers): delta encoded, which is smaller and cheaper than a
    /// dictionary for them; statistics kept (they prune by time).
    Ascending,
    /// Numbers in no order with too many distinct values for a dictionary
    /// (durations in seconds): the dictionary filled up in every row group
    /// and fell back to plain values, after hashing each one. Delta encoded
    /// they cost the curated writer 8% less CPU, and as much room on 5M
    /// events (18.6 and 18.7 MB); at the LANL set's density the curated
    /// table comes out 1.1% larger.
    ManyValues,
}

/// The definition of table `name`, if it is one of [`ALL`].
pub fn definition(name: &str) -> Option<&'static TableDefinition> {
    ALL.iter().find(|t| t.name == name)
}

/// The two event tables' column layouts (columns a table lacks are ignored).
const EVENT_LAYOUTS: &[(&str, ColumnLayout)] = &[
    ("event_id", ColumnLayout::RandomId),
    ("user_id", ColumnLayout::Unordered),
    ("computer_id", ColumnLayout::Unordered),
    ("event_time", ColumnLayout::Ascending),
    ("ingestion_time", ColumnLayout::Ascending),
    ("source_line", ColumnLayout::Ascending),
    ("src_computer_id", ColumnLayout::Unordered),
    ("src_user_id", ColumnLayout::Unordered),
    ("source_event_id", ColumnLayout::RandomId),
    ("user_tenure_s", ColumnLayout::ManyValues),
    ("user_gap_s", ColumnLayout::ManyValues),
];

/// Every table, in creation order.
pub static ALL: [TableDefinition; 6] = [
    TableDefinition {
        name: RAW,
        schema: raw_schema,
        partitions: &[Partition {
            column: 5,
            name: "ingestion_hour",
            transform: Transform::Hour,
        }],
        layouts: EVENT_LAYOUTS,
    },
    TableDefinition {
        name: CURATED,
        schema: curated_schema,
        partitions: &[Partition {
            column: 2,
            name: "event_day",
            transform: Transform::Day,
        }],
        layouts: EVENT_LAYOUTS,
    },
    TableDefinition {
        name: ALERTS,
        schema: alerts_schema,
        partitions: &[Partition {
            column: 6,
            name: "first_event_day",
            transform: Transform::Day,
        }],
        layouts: &[
            ("alert_id", ColumnLayout::RandomId),
            ("event_ids.list.element", ColumnLayout::RandomId),
        ],
    },
    TableDefinition {
        name: USER_HOURLY,
        schema: user_hourly_schema,
        partitions: &[Partition {
            column: 2,
            name: "window_day",
            transform: Transform::Day,
        }],
        layouts: &[],
    },
    TableDefinition {
        name: HOST_DAILY,
        schema: host_daily_schema,
        partitions: &[Partition {
            column: 2,
            name: "month",
            transform: Transform::Month,
        }],
        layouts: &[],
    },
    super::findings::DEFINITION,
];

fn string_list(id: i32, element_id: i32, name: &str) -> Arc<NestedField> {
    NestedField::required(
        id,
        name,
        Type::List(ListType::new(
            NestedField::list_element(element_id, Type::Primitive(PrimitiveType::String), true)
                .into(),
        )),
    )
    .into()
}

fn optional_string_list(id: i32, element_id: i32, name: &str) -> Arc<NestedField> {
    NestedField::optional(
        id,
        name,
        Type::List(ListType::new(
            NestedField::list_element(element_id, Type::Primitive(PrimitiveType::String), true)
                .into(),
        )),
    )
    .into()
}

/// A schema of `fields`, its id 0 (new columns are added on open, see
/// [`super::Warehouse`]).
fn schema(table: &str, fields: Vec<Arc<NestedField>>) -> Schema {
    Schema::builder()
        .with_schema_id(0)
        .with_fields(fields)
        .build()
        .unwrap_or_else(|e| panic!("the {table} schema: {e}"))
}

fn required(id: i32, name: &str, ty: PrimitiveType) -> Arc<NestedField> {
    NestedField::required(id, name, Type::Primitive(ty)).into()
}

fn optional(id: i32, name: &str, ty: PrimitiveType) -> Arc<NestedField> {
    NestedField::optional(id, name, Type::Primitive(ty)).into()
}

/// The columns a richer record fills in both event tables, after their
/// own, all optional: null where the record did not say. Names as
/// `docs/formats.md` lists them.
pub const DETAIL_COLUMNS: [&str; 6] = [
    "src_computer_id",
    "src_user_id",
    "logon_type",
    "auth_package",
    "outcome",
    "failure_reason",
];

/// [`DETAIL_COLUMNS`] as fields `first` to `first + 5`.
fn detail_fields(first: i32) -> impl Iterator<Item = Arc<NestedField>> {
    (first..)
        .zip(DETAIL_COLUMNS)
        .map(|(id, name)| optional(id, name, PrimitiveType::String))
}

/// Schema of `auth_events_raw`. Fields 9-15 came with richer records; a
/// table made before them gets them on open (with fresh ids).
pub fn raw_schema() -> Schema {
    use PrimitiveType::{Long, String, Timestamptz};
    schema(
        RAW,
        vec![
            required(1, "event_id", String),
            required(2, "event_time", Timestamptz),
            required(3, "user_id", String),
            required(4, "computer_id", String),
            required(5, "ingestion_time", Timestamptz),
            required(6, "source", String),
            required(7, "source_line", Long),
            required(8, "admission", String),
        ]
        .into_iter()
        .chain(detail_fields(9))
        .chain([optional(15, "source_event_id", String)])
        .collect(),
    )
}

/// Schema of `auth_events_curated`. Fields 25-30 came with richer records;
/// a table made before them gets them on open (with fresh ids).
pub fn curated_schema() -> Schema {
    use PrimitiveType::{Boolean, Int, Long, String, Timestamptz};
    schema(
        CURATED,
        vec![
            required(1, "event_id", String),
            required(2, "event_time", Timestamptz),
            required(3, "user_id", String),
            required(4, "computer_id", String),
            required(5, "ingestion_time", Timestamptz),
            required(6, "user_logins_1h", Int),
            required(7, "user_logins_24h", Int),
            required(8, "user_distinct_computers_1h", Int),
            required(9, "user_distinct_computers_24h", Int),
            required(10, "user_new_computers_1h", Int),
            required(11, "user_new_computers_24h", Int),
            required(12, "user_known_computers", Int),
            required(13, "user_tenure_s", Long),
            optional(14, "user_gap_s", Long),
            required(15, "host_users_ever", Int),
            required(16, "host_users_today", Int),
            required(17, "new_device", Boolean),
            required(18, "new_computer", Boolean),
            required(19, "risk_score", Int),
            required(20, "risk_level", String),
            string_list(21, 24, "risk_flags"),
            required(22, "policy_version", String),
            required(23, "processing_time", Timestamptz),
        ]
        .into_iter()
        .chain(detail_fields(25))
        .collect(),
    )
}

/// Schema of `alerts`: one row per publication of an incident (`status`
/// open, update or closed; the latest `sequence` of an `alert_id` is its
/// current state). Fields 25-32 came with entity incidents; a table made
/// before them gets them as optional columns, with the same ids, on open.
/// `user_id` is the user of a user incident and empty for a computer's.
pub fn alerts_schema() -> Schema {
    use PrimitiveType::{Int, Long, String, Timestamptz};
    schema(
        ALERTS,
        vec![
            required(1, "alert_id", String),
            required(2, "user_id", String),
            required(3, "risk_score", Int),
            required(4, "risk_level", String),
            string_list(5, 20, "risk_flags"),
            required(6, "first_event_time", Timestamptz),
            required(7, "last_event_time", Timestamptz),
            required(8, "event_count", Long),
            string_list(9, 21, "event_ids"),
            string_list(10, 22, "computers"),
            string_list(11, 23, "mitre_techniques"),
            string_list(12, 24, "reasons"),
            required(13, "policy_version", String),
            required(14, "summary", String),
            required(15, "raised_time", Timestamptz),
            optional(25, "status", String),
            optional(26, "sequence", Int),
            optional(27, "entity_type", String),
            optional(28, "entity_id", String),
            optional(29, "max_event_score", Int),
            optional(30, "opened_event_time", Timestamptz),
            optional_string_list(31, 32, "users"),
        ],
    )
}

/// Schema of `user_behavior_hourly`.
pub fn user_hourly_schema() -> Schema {
    use PrimitiveType::{Int, Long, String, Timestamptz};
    schema(
        USER_HOURLY,
        vec![
            required(1, "user_id", String),
            required(2, "window_start", Timestamptz),
            required(3, "window_end", Timestamptz),
            required(4, "logins", Long),
            required(5, "distinct_computers", Int),
            required(6, "new_devices", Int),
            required(7, "max_risk", Int),
            required(8, "sum_risk", Long),
        ],
    )
}

/// Schema of `host_popularity_daily`.
pub fn host_daily_schema() -> Schema {
    use PrimitiveType::{Date, Int, Long, String};
    schema(
        HOST_DAILY,
        vec![
            required(1, "computer_id", String),
            required(2, "day", Date),
            required(3, "distinct_users", Int),
            required(4, "logins", Long),
            required(5, "first_time_users", Int),
            required(6, "users_ever", Int),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::PartitionSpec;

    #[test]
    fn partition_specs_bind_to_their_schemas() {
        for table in &ALL {
            let schema = Arc::new((table.schema)());
            let spec: PartitionSpec = table.partition_spec().bind(schema).expect(table.name);
            assert_eq!(
                spec.fields().len(),
                table.partitions.len(),
                "{}",
                table.name
            );
        }
    }
}
