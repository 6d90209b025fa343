//! The lease table in DynamoDB: created when absent (on-demand capacity,
//! `leaseKey` as its hash key, as the KCL creates it), read whole with
//! consistent scans, and written only by conditional writes. Every write
//! that changes a held lease names the `leaseCounter` it read and raises it,
//! so a worker whose lease was taken meanwhile (it stalled past the
//! failover time) learns it at its next write, which fails as
//! [`LeaseError::Lost`], and cannot checkpoint for the shard again.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};

use super::lease::{
    BadItem, CHECKPOINT, CHECKPOINT_SUB, CHILDREN, LEASE_COUNTER, LEASE_KEY, LEASE_OWNER, Lease,
    LeaseCheckpoint, OWNER_SWITCHES, number,
};
use crate::aws::error_text;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// A conditional write found the lease changed: another worker took it,
    /// or its holder moved on. The caller no longer holds it.
    #[error("the lease on `{key}` was taken by another worker")]
    Lost { key: String },
    #[error("lease table `{table}`: {message}")]
    Table { table: String, message: String },
    #[error(transparent)]
    BadItem(#[from] BadItem),
}

/// How long to wait for a new table to become active.
const CREATE_WAIT: Duration = Duration::from_secs(120);

/// The lease table of one application (one stream read by one fleet).
#[derive(Clone, Debug)]
pub struct LeaseTable {
    client: Client,
    name: String,
}

impl LeaseTable {
    pub fn new(client: Client, name: impl Into<String>) -> LeaseTable {
        LeaseTable {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, message: String) -> LeaseError {
        LeaseError::Table {
            table: self.name.clone(),
            message,
        }
    }

    /// Creates the table unless it exists, and waits until it is active.
    pub async fn ensure_exists(&self) -> Result<(), LeaseError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.name)
            .send()
            .await;
        match described {
            Ok(_) => {}
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
                let key = AttributeDefinition::builder()
                    .attribute_name(LEASE_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.error(e.to_string()))?;
                let schema = KeySchemaElement::builder()
                    .attribute_name(LEASE_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| self.error(e.to_string()))?;
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.name)
                    .attribute_definitions(key)
                    .key_schema(schema)
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await;
                match created {
                    Ok(_) => tracing::info!(table = %self.name, "created the lease table"),
                    // Another worker created it first.
                    Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => {}
                    Err(e) => return Err(self.error(format!("create: {}", error_text(&e)))),
                }
            }
            Err(e) => return Err(self.error(error_text(&e))),
        }
        let deadline = tokio::time::Instant::now() + CREATE_WAIT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.name)
                .send()
                .await
                .map_err(|e| self.error(error_text(&e)))?;
            let status = described.table().and_then(|t| t.table_status()).cloned();
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(self.error(format!(
                    "not active after {CREATE_WAIT:?} (status {status:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every lease, read consistently, in key order.
    pub async fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.name)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| match &e {
                    SdkError::ServiceError(s) if s.err().is_resource_not_found_exception() => {
                        self.error("no such table".into())
                    }
                    _ => self.error(error_text(&e)),
                })?;
            for item in page.items() {
                leases.push(Lease::from_item(item)?);
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(leases)
    }

    /// Writes a new lease unless one exists for its shard; whether it did.
    pub async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let written = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(lease.to_item()))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", LEASE_KEY)
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(self.error(format!("create `{}`: {}", lease.key, error_text(&e)))),
        }
    }

    /// Raises the counter of a lease `worker` holds: the heartbeat that
    /// keeps others from taking it.
    pub async fn renew(&self, lease: &Lease, worker: &str) -> Result<Lease, LeaseError> {
        self.update(lease, Some(worker), "SET #counter = :next", Vec::new())
            .await
    }

    /// Takes a lease (expired, unowned or stolen) for `worker`, as read with
    /// `lease.counter`: fails as lost if anyone wrote it since.
    pub async fn take(&self, lease: &Lease, worker: &str) -> Result<Lease, LeaseError> {
        // A switch is counted from one owner to another, not from none.
        let switches = match lease.owner.as_deref() {
            Some(owner) if owner != worker => " ADD #switches :one",
            _ => "",
        };
        let expression = format!("SET #counter = :next, #owner = :worker{switches}");
        let mut values = vec![(":worker", AttributeValue::S(worker.to_string()))];
        if !switches.is_empty() {
            values.push((":one", number(1)));
        }
        self.update(lease, None, &expression, values).await
    }

    /// Gives up a lease `worker` holds (a graceful stop): the next worker
    /// takes it at once instead of waiting for it to expire.
    pub async fn evict(&self, lease: &Lease, worker: &str) -> Result<Lease, LeaseError> {
        self.update(
            lease,
            Some(worker),
            "SET #counter = :next REMOVE #owner",
            Vec::new(),
        )
        .await
    }

    /// Records how far the shard is processed, if `worker` still holds the
    /// lease as it last wrote it.
    pub async fn checkpoint(
        &self,
        lease: &Lease,
        worker: &str,
        checkpoint: &LeaseCheckpoint,
    ) -> Result<Lease, LeaseError> {
        let values = vec![
            (
                ":checkpoint",
                AttributeValue::S(checkpoint.sequence_text().to_string()),
            ),
            (":sub", number(checkpoint.sub_sequence())),
            (":zero", number(0)),
        ];
        self.update(
            lease,
            Some(worker),
            "SET #counter = :next, #checkpoint = :checkpoint, #sub = :sub, #switches = :zero",
            values,
        )
        .await
    }

    /// Records a closed shard's children on its lease (what the KCL writes
    /// when it sees a reshard); no fencing: nobody else writes them.
    pub async fn set_children(&self, key: &str, children: &[String]) -> Result<(), LeaseError> {
        if children.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(key.to_string()))
            .update_expression("SET #children = :children")
            .condition_expression("attribute_exists(#key)")
            .expression_attribute_names("#children", CHILDREN)
            .expression_attribute_names("#key", LEASE_KEY)
            .expression_attribute_values(":children", AttributeValue::Ss(children.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error(format!("children of `{key}`: {}", error_text(&e))))
    }

    /// One conditional update of `lease`: the counter must still be the one
    /// read (and the owner `owner`, when given); the counter is raised.
    async fn update(
        &self,
        lease: &Lease,
        owner: Option<&str>,
        expression: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Lease, LeaseError> {
        let mut condition = "#counter = :expected".to_string();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.name)
            .key(LEASE_KEY, AttributeValue::S(lease.key.clone()))
            .update_expression(expression)
            .expression_attribute_names("#counter", LEASE_COUNTER)
            .expression_attribute_values(":expected", number(lease.counter))
            .expression_attribute_values(":next", number(lease.counter + 1))
            .return_values(ReturnValue::AllNew);
        if let Some(owner) = owner {
            condition.push_str(" AND #owner = :holder");
            request =
                request.expression_attribute_values(":holder", AttributeValue::S(owner.into()));
        }
        for name in ["#owner", "#checkpoint", "#sub", "#switches"] {
            if expression.contains(name) || condition.contains(name) {
                let attribute = match name {
                    "#owner" => LEASE_OWNER,
                    "#checkpoint" => CHECKPOINT,
                    "#sub" => CHECKPOINT_SUB,
                    _ => OWNER_SWITCHES,
                };
                request = request.expression_attribute_names(name, attribute);
            }
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.condition_expression(condition).send().await {
            Ok(output) => match output.attributes {
                Some(item) => Ok(Lease::from_item(&item)?),
                None => Err(self.error(format!("`{}`: the update returned no item", lease.key))),
            },
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(LeaseError::Lost {
                    key: lease.key.clone(),
                })
            }
            Err(e) => Err(self.error(format!("`{}`: {}", lease.key, error_text(&e)))),
        }
    }
}
