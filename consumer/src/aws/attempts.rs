//! Attempts per record in the event table: an item `attempts#{recordId}` per failing
//! record, counted with `ADD` and expiring (DynamoDB TTL on `expires_at`) after the
//! stream's longest retention, so the count survives across Lambda invocations.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use retry_policy::aws::failure;
use retry_policy::{ClassifiedError, ErrorKind};

use super::dynamodb::item;
use crate::attempts::AttemptLedger;

/// How long an attempt count is kept: the stream's longest retention (7 days).
const KEEP: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Attribute holding the failed attempts (N).
const ATTEMPTS: &str = "attempts";
/// Attribute DynamoDB's TTL deletes the item by, seconds since the Unix epoch (N).
pub const EXPIRES_AT: &str = "expires_at";

/// The id of a record's attempts item (event ids never hold `#`).
pub fn attempts_id(record_id: &str) -> String {
    format!("attempts#{record_id}")
}

/// Failed attempts per record, in a DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoDbAttempts {
    client: Client,
    table: String,
}

impl DynamoDbAttempts {
    /// Attempts counted in `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl AttemptLedger for DynamoDbAttempts {
    async fn failed(&self, record_id: &str) -> Result<u32, ClassifiedError> {
        let expires_at = (SystemTime::now() + KEEP)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(item::ID, AttributeValue::S(attempts_id(record_id)))
            .update_expression("ADD #attempts :one SET #expires = :expires")
            .expression_attribute_names("#attempts", ATTEMPTS)
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|error| failure(&format!("UpdateItem on {}", self.table), error))?;
        match output.attributes().and_then(|item| item.get(ATTEMPTS)) {
            Some(AttributeValue::N(count)) => count.parse().map_err(|_| {
                ClassifiedError::new(
                    ErrorKind::Permanent,
                    format!("attempts {count:?} is not a count"),
                )
            }),
            _ => Err(ClassifiedError::new(
                ErrorKind::Transient,
                "UpdateItem returned no attempt count",
            )),
        }
    }

    /// The items expire by themselves; deleting them would cost a write per record.
    async fn forget(&self, _record_ids: &[&str]) {}
}
