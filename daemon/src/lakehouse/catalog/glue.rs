//! The production catalog: the AWS Glue Data Catalog, with the warehouse on
//! S3 (Athena, EMR and Spark read the same tables).
//!
//! Tables are Glue tables of type `ICEBERG` whose `metadata_location`
//! parameter points at the current metadata file on S3; the database is the
//! namespace (`authpulse`). Both endpoints can be overridden, so everything
//! here also runs against an S3- and Glue-compatible server on loopback.
//!
//! Credentials come from the standard AWS chain (environment, profile, web
//! identity, instance role), for Glue through `aws-config` and for S3 through
//! OpenDAL's loader, which reads the same sources.
//!
//! [`GlueTables`] wraps iceberg-rust's `GlueCatalog` and does the two writes
//! itself, creating and committing tables: the upstream 0.10 catalog refuses
//! any schema with a `timestamptz` column when it lists the columns for Glue
//! (apache/iceberg-rust#2956), and every AuthPulse table has one. Glue has no
//! zoned timestamp type; like Spark and PyIceberg, the column is listed as
//! `timestamp` (the Iceberg schema in the metadata file keeps the zone).

use std::collections::HashMap;
use std::sync::Arc;

use std::str::FromStr;

use aws_sdk_glue::error::DisplayErrorContext;
use aws_sdk_glue::operation::create_table::CreateTableError;
use aws_sdk_glue::operation::get_table::GetTableError;
use aws_sdk_glue::operation::update_table::UpdateTableError;
use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
use iceberg::spec::{PrimitiveType, TableMetadata, TableMetadataBuilder, Type};
use iceberg::table::Table;
use iceberg::{
    Catalog, CatalogBuilder, MetadataLocation, NamespaceIdent, TableCommit, TableCreation,
    TableIdent,
};
use iceberg_catalog_glue::{
    AWS_REGION_NAME, GLUE_CATALOG_PROP_CATALOG_ID, GLUE_CATALOG_PROP_URI,
    GLUE_CATALOG_PROP_WAREHOUSE, GlueCatalogBuilder,
};
use iceberg_storage_opendal::OpenDalStorageFactory;

use super::{Connected, Connection};
use crate::lakehouse::{CATALOG_NAME, LakehouseError};

/// The Glue table parameter that points at the current metadata file.
const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";
const TABLE_TYPE: &str = "table_type";

/// An AWS Glue catalog with its warehouse on S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlueConfig {
    /// Where new tables are created: `s3://bucket/prefix`. A table's files
    /// go under `PREFIX/authpulse.db/TABLE/`.
    pub warehouse: String,
    /// AWS region of the catalog and the bucket.
    pub region: String,
    /// Glue endpoint, when not the region's public one.
    pub glue_endpoint: Option<String>,
    /// S3 endpoint, when not the region's public one (an S3-compatible
    /// server, a VPC endpoint).
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (`ENDPOINT/bucket/key`) instead of virtual
    /// hosts (`bucket.ENDPOINT/key`); most S3-compatible servers need it.
    pub s3_path_style: bool,
    /// The Glue catalog's id (an AWS account id), when it is not the
    /// caller's own account's.
    pub catalog_id: Option<String>,
}

impl GlueConfig {
    /// Checks what can be checked without calling AWS.
    pub fn validate(&self) -> Result<(), String> {
        let Some(rest) = self.warehouse.strip_prefix("s3://") else {
            return Err(format!(
                "the Glue catalog's warehouse must be an S3 location (s3://bucket/prefix), not `{}`",
                self.warehouse
            ));
        };
        if rest.split('/').next().unwrap_or("").is_empty() {
            return Err(format!(
                "the warehouse `{}` names no bucket (s3://bucket/prefix)",
                self.warehouse
            ));
        }
        if self.region.is_empty() {
            return Err("the Glue catalog needs an AWS region (--aws-region or AWS_REGION)".into());
        }
        for (name, endpoint) in [("Glue", &self.glue_endpoint), ("S3", &self.s3_endpoint)] {
            if let Some(endpoint) = endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(format!(
                    "the {name} endpoint must be an http(s) URL, not `{endpoint}`"
                ));
            }
        }
        Ok(())
    }

    /// The properties iceberg's Glue catalog and its S3 file IO take.
    fn properties(&self) -> HashMap<String, String> {
        use iceberg::io::{S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION};
        let mut props = HashMap::from([
            (
                GLUE_CATALOG_PROP_WAREHOUSE.to_string(),
                self.warehouse.clone(),
            ),
            (AWS_REGION_NAME.to_string(), self.region.clone()),
            (S3_REGION.to_string(), self.region.clone()),
            (
                S3_PATH_STYLE_ACCESS.to_string(),
                self.s3_path_style.to_string(),
            ),
        ]);
        if let Some(endpoint) = &self.glue_endpoint {
            props.insert(GLUE_CATALOG_PROP_URI.to_string(), endpoint.clone());
        }
        // Without an S3 endpoint of its own, iceberg's Glue catalog would send
        // S3 requests to the Glue endpoint; name the region's S3 explicitly.
        let s3_endpoint = match (&self.s3_endpoint, &self.glue_endpoint) {
            (Some(endpoint), _) => Some(endpoint.clone()),
            (None, Some(_)) => Some(format!("https://s3.{}.amazonaws.com", self.region)),
            (None, None) => None,
        };
        if let Some(endpoint) = s3_endpoint {
            props.insert(S3_ENDPOINT.to_string(), endpoint);
        }
        if let Some(id) = &self.catalog_id {
            props.insert(GLUE_CATALOG_PROP_CATALOG_ID.to_string(), id.clone());
        }
        props
    }
}

/// iceberg's Glue catalog for reads, with our own table writes (see the
/// module doc) and the compaction commit.
#[derive(Debug)]
pub(crate) struct GlueTables {
    inner: iceberg_catalog_glue::GlueCatalog,
    client: aws_sdk_glue::Client,
    catalog_id: Option<String>,
    warehouse: String,
    runtime: iceberg::Runtime,
}

pub(crate) async fn connect(
    config: &GlueConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<Connected, LakehouseError> {
    config.validate().map_err(LakehouseError::Config)?;
    let iceberg_runtime = iceberg::Runtime::new(runtime);
    let inner = GlueCatalogBuilder::default()
        .with_storage_factory(Arc::new(OpenDalStorageFactory::S3 {
            customized_credential_load: None,
        }))
        .with_runtime(iceberg_runtime.clone())
        .load(CATALOG_NAME, config.properties())
        .await?;
    let mut sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()));
    if let Some(endpoint) = &config.glue_endpoint {
        sdk = sdk.endpoint_url(endpoint);
    }
    let tables = Arc::new(GlueTables {
        inner,
        client: aws_sdk_glue::Client::new(&sdk.load().await),
        catalog_id: config.catalog_id.clone(),
        warehouse: config.warehouse.clone(),
        runtime: iceberg_runtime,
    });
    Ok(Connected {
        catalog: Arc::clone(&tables) as Arc<dyn Catalog>,
        connection: Connection::Glue(tables),
        description: format!("glue:{} ({})", config.warehouse, config.region),
    })
}

/// A Glue table entry as last read: where it points and its version.
struct Entry {
    table: aws_sdk_glue::types::Table,
    metadata_location: String,
}

impl GlueTables {
    fn database(namespace: &NamespaceIdent) -> iceberg::Result<String> {
        match namespace.as_ref().as_slice() {
            [name] if !name.is_empty() => Ok(name.clone()),
            _ => Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("Glue databases are one level deep, not {namespace:?}"),
            )),
        }
    }

    async fn entry(&self, ident: &TableIdent) -> iceberg::Result<Entry> {
        let database = Self::database(ident.namespace())?;
        let output = self
            .client
            .get_table()
            .database_name(&database)
            .name(ident.name())
            .set_catalog_id(self.catalog_id.clone())
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                GetTableError::EntityNotFoundException(_) => iceberg::Error::new(
                    iceberg::ErrorKind::TableNotFound,
                    format!("no table {ident} in the Glue catalog"),
                ),
                other => aws_error("get_table", other),
            })?;
        let table = output.table().cloned().ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::TableNotFound,
                format!("no table {ident} in the Glue catalog"),
            )
        })?;
        let metadata_location = table
            .parameters()
            .and_then(|p| p.get(METADATA_LOCATION))
            .cloned()
            .ok_or_else(|| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!(
                        "Glue table {ident} has no `{METADATA_LOCATION}`: not an Iceberg table"
                    ),
                )
            })?;
        Ok(Entry {
            table,
            metadata_location,
        })
    }

    fn table(
        &self,
        ident: TableIdent,
        metadata_location: String,
        metadata: TableMetadata,
    ) -> iceberg::Result<Table> {
        Table::builder()
            .identifier(ident)
            .metadata_location(metadata_location)
            .metadata(metadata)
            .file_io(self.inner.file_io())
            .runtime(self.runtime.clone())
            .build()
    }

    /// Points `ident`'s entry at `new`, on the entry's version only. `Ok(false)`:
    /// Glue refused it as a concurrent modification.
    async fn update_entry(
        &self,
        ident: &TableIdent,
        entry: &Entry,
        new: &str,
        metadata: &TableMetadata,
    ) -> iceberg::Result<bool> {
        let database = Self::database(ident.namespace())?;
        let input = table_input(
            ident.name(),
            new,
            Some(&entry.metadata_location),
            metadata,
            entry.table.parameters(),
        )?;
        let update = self
            .client
            .update_table()
            .database_name(&database)
            .table_input(input)
            .set_version_id(entry.table.version_id().map(str::to_string))
            .skip_archive(true)
            .set_catalog_id(self.catalog_id.clone())
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) => match e.into_service_error() {
                UpdateTableError::ConcurrentModificationException(_) => Ok(false),
                other => Err(aws_error("update_table", other)),
            },
        }
    }

    /// Glue's optimistic lock: read the entry with its `VersionId`, check it
    /// still points at `expected`, and update it on that version only.
    pub(crate) async fn swap_metadata(
        &self,
        namespace: &NamespaceIdent,
        table: &str,
        expected: &str,
        new: &str,
    ) -> Result<bool, LakehouseError> {
        let ident = TableIdent::new(namespace.clone(), table.to_string());
        let entry = self.entry(&ident).await?;
        if entry.metadata_location != expected {
            return Ok(false);
        }
        let metadata = TableMetadata::read_from(&self.inner.file_io(), new).await?;
        Ok(self.update_entry(&ident, &entry, new, &metadata).await?)
    }
}

wrapping_catalog! {
GlueTables {

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        mut creation: TableCreation,
    ) -> iceberg::Result<Table> {
        let database = Self::database(namespace)?;
        let name = creation.name.clone();
        let location = match &creation.location {
            Some(location) => location.clone(),
            None => {
                let location = format!("{}/{database}.db/{name}", self.warehouse);
                creation.location = Some(location.clone());
                location
            }
        };
        let metadata = TableMetadataBuilder::from_table_creation(creation)?
            .build()?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(location, &metadata);
        metadata
            .write_to(&self.inner.file_io(), &metadata_location)
            .await?;
        let metadata_location = metadata_location.to_string();
        let input = table_input(&name, &metadata_location, None, &metadata, None)?;
        self.client
            .create_table()
            .database_name(&database)
            .table_input(input)
            .set_catalog_id(self.catalog_id.clone())
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                CreateTableError::AlreadyExistsException(_) => iceberg::Error::new(
                    iceberg::ErrorKind::TableAlreadyExists,
                    format!("table {database}.{name} already exists in the Glue catalog"),
                ),
                other => aws_error("create_table", other),
            })?;
        self.table(
            TableIdent::new(namespace.clone(), name),
            metadata_location,
            metadata,
        )
    }

    /// Applies `commit` to the table as the entry's metadata file has it, and
    /// points the entry at the result on the entry's version. A concurrent
    /// commit makes this fail as retryable; iceberg's transaction retries.
    async fn update_table(&self, commit: TableCommit) -> iceberg::Result<Table> {
        let ident = commit.identifier().clone();
        let entry = self.entry(&ident).await?;
        let metadata =
            TableMetadata::read_from(&self.inner.file_io(), &entry.metadata_location).await?;
        let current = self.table(ident.clone(), entry.metadata_location.clone(), metadata)?;
        let staged = commit.apply(current)?;
        let location = MetadataLocation::from_str(staged.metadata_location_result()?)?;
        staged
            .metadata()
            .write_to(staged.file_io(), &location)
            .await?;
        if self
            .update_entry(&ident, &entry, &location.to_string(), staged.metadata())
            .await?
        {
            Ok(staged)
        } else {
            Err(iceberg::Error::new(
                iceberg::ErrorKind::CatalogCommitConflicts,
                format!("table {ident} changed in the Glue catalog during the commit"),
            )
            .with_retryable(true))
        }
    }
}
}

/// The Glue entry for an Iceberg table: its parameters (keeping any others
/// the entry had) and the columns, for Glue's console and Lake Formation.
fn table_input(
    name: &str,
    metadata_location: &str,
    previous: Option<&str>,
    metadata: &TableMetadata,
    old_parameters: Option<&HashMap<String, String>>,
) -> iceberg::Result<TableInput> {
    let mut parameters = old_parameters.cloned().unwrap_or_default();
    parameters.insert(TABLE_TYPE.into(), "ICEBERG".into());
    parameters.insert(METADATA_LOCATION.into(), metadata_location.into());
    match previous {
        Some(previous) => parameters.insert(PREVIOUS_METADATA_LOCATION.into(), previous.into()),
        None => parameters.remove(PREVIOUS_METADATA_LOCATION),
    };
    let columns = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|field| {
            Column::builder()
                .name(&field.name)
                .r#type(glue_type(&field.field_type))
                .set_comment(field.doc.clone())
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))?;
    let storage = StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(metadata.location())
        .build();
    TableInput::builder()
        .name(name)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(parameters))
        .storage_descriptor(storage)
        .build()
        .map_err(|e| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string()))
}

/// The Hive type name Glue lists for an Iceberg type.
fn glue_type(field_type: &Type) -> String {
    match field_type {
        Type::Primitive(primitive) => match primitive {
            PrimitiveType::Boolean => "boolean".into(),
            PrimitiveType::Int => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            PrimitiveType::Float => "float".into(),
            PrimitiveType::Double => "double".into(),
            PrimitiveType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            PrimitiveType::Date => "date".into(),
            PrimitiveType::Timestamp
            | PrimitiveType::Timestamptz
            | PrimitiveType::TimestampNs
            | PrimitiveType::TimestamptzNs => "timestamp".into(),
            PrimitiveType::Time | PrimitiveType::String | PrimitiveType::Uuid => "string".into(),
            PrimitiveType::Fixed(_) | PrimitiveType::Binary => "binary".into(),
        },
        Type::List(list) => format!("array<{}>", glue_type(&list.element_field.field_type)),
        Type::Map(map) => format!(
            "map<{},{}>",
            glue_type(&map.key_field.field_type),
            glue_type(&map.value_field.field_type)
        ),
        Type::Struct(fields) => format!(
            "struct<{}>",
            fields
                .fields()
                .iter()
                .map(|f| format!("{}:{}", f.name, glue_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn aws_error(operation: &str, error: impl std::error::Error + 'static) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("AWS Glue {operation}: {}", DisplayErrorContext(&error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GlueConfig {
        GlueConfig {
            warehouse: "s3://bucket/tables".into(),
            region: "eu-west-1".into(),
            glue_endpoint: None,
            s3_endpoint: None,
            s3_path_style: false,
            catalog_id: None,
        }
    }

    #[test]
    fn validation_names_the_wrong_setting() {
        assert_eq!(config().validate(), Ok(()));
        let mut c = config();
        c.warehouse = "/data/tables".into();
        assert!(c.validate().unwrap_err().contains("s3://bucket/prefix"));
        c.warehouse = "s3:///tables".into();
        assert!(c.validate().unwrap_err().contains("names no bucket"));
        let mut c = config();
        c.region.clear();
        assert!(c.validate().unwrap_err().contains("AWS_REGION"));
        let mut c = config();
        c.s3_endpoint = Some("localhost:9000".into());
        assert!(c.validate().unwrap_err().contains("S3 endpoint"));
    }

    #[test]
    fn every_table_lists_its_columns_for_glue() {
        use crate::lakehouse::tables;
        let types: Vec<String> = tables::curated_schema()
            .as_struct()
            .fields()
            .iter()
            .map(|f| glue_type(&f.field_type))
            .collect();
        assert_eq!(types[0], "string");
        assert_eq!(types[1], "timestamp", "Glue has no zoned timestamp");
        assert!(types.iter().any(|t| t == "array<string>"), "{types:?}");
        for table in &tables::ALL {
            for field in (table.schema)().as_struct().fields() {
                let glue = glue_type(&field.field_type);
                assert!(
                    !glue.is_empty() && !glue.contains("tz"),
                    "{}: {glue}",
                    field.name
                );
            }
        }
    }

    #[test]
    fn s3_never_falls_back_to_the_glue_endpoint() {
        let mut c = config();
        c.glue_endpoint = Some("https://glue.vpce.example".into());
        let props = c.properties();
        assert_eq!(props["uri"], "https://glue.vpce.example");
        assert_eq!(props["s3.endpoint"], "https://s3.eu-west-1.amazonaws.com");
        c.s3_endpoint = Some("http://127.0.0.1:9000".into());
        c.s3_path_style = true;
        let props = c.properties();
        assert_eq!(props["s3.endpoint"], "http://127.0.0.1:9000");
        assert_eq!(props["s3.path-style-access"], "true");
        assert!(!config().properties().contains_key("s3.endpoint"));
    }
}
