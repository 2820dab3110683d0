//! The DynamoDB event store: `BatchWriteItem` in chunks of 25, retrying
//! `UnprocessedItems` and retryable failures of the call with the retry policy. The item layout is documented in the crate README.
//!
//! Writes are `PutRequest`s keyed by the message id (`id`), so writing a redelivered
//! event again replaces the item with an identical one: no duplicates.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use contract::attribute;
use retry_policy::aws::{classify, failure};
use retry_policy::{ClassifiedError, ErrorKind, RetryPolicy};

use crate::store::{EventStore, StoreError, StoreFailure, StoredEvent};

/// Most items one `BatchWriteItem` call takes.
pub const BATCH_WRITE_LIMIT: usize = 25;

/// Names of the item attributes (see the crate README for the layout).
pub mod item {
    /// Partition key: the message id (S).
    pub const ID: &str = "id";
    /// The customer owning the program (N), when the event names one.
    pub const CUSTOMER_ID: &str = "customer_id";
    /// The tracked program (S).
    pub const PROGRAM_ID: &str = "program_id";
    /// The program's name (S).
    pub const PROGRAM_NAME: &str = "program_name";
    /// The program's checksum (S).
    pub const CHECKSUM: &str = "checksum";
    /// The customer's name (S).
    pub const CUSTOMER_NAME: &str = "customer_name";
    /// The client's user agent (S).
    pub const USER_AGENT: &str = "user_agent";
    /// Whether validation accepted the event (BOOL).
    pub const VALID: &str = "valid";
    /// When the host accepted the event, ms since the Unix epoch (N).
    pub const TIMESTAMP_MS: &str = "timestamp_ms";
    /// Stream partition key (S).
    pub const PARTITION_KEY: &str = "partition_key";
    /// Media type of the payload (S), when set.
    pub const CONTENT_TYPE: &str = "content_type";
    /// The event body (B), when not empty.
    pub const PAYLOAD: &str = "payload";
    /// Every attribute of the event (M of S).
    pub const ATTRIBUTES: &str = "attributes";
    /// Plugins that processed the event (L of M {name S, version S}).
    pub const PROCESSED_BY: &str = "processed_by";
    /// The plugin release the host ran (N), when it came from the registry.
    pub const HOST_RELEASE: &str = "host_release";
    /// The plugin release the consumer ran (N), when it came from the registry.
    pub const CONSUMER_RELEASE: &str = "consumer_release";
}

/// Accepted events in a DynamoDB table keyed by `id` (S).
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    retry: RetryPolicy,
}

impl DynamoDbStore {
    /// A store writing to `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy for unprocessed items and retryable failures.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The table written to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Writes one chunk of at most 25 requests, retrying what DynamoDB leaves
    /// unprocessed and calls that failed retryably.
    async fn write_chunk(&self, mut requests: Vec<WriteRequest>) -> Result<(), ChunkFailure> {
        let mut delays = self.retry.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .client
                .batch_write_item()
                .request_items(&self.table, requests.clone())
                .send()
                .await;
            let retry_reason = match sent {
                Ok(output) => {
                    requests = output
                        .unprocessed_items()
                        .and_then(|unprocessed| unprocessed.get(&self.table))
                        .cloned()
                        .unwrap_or_default();
                    if requests.is_empty() {
                        return Ok(());
                    }
                    StoreError::Unprocessed {
                        count: requests.len(),
                        attempts,
                    }
                }
                Err(error) if classify(&error).is_retryable() => {
                    StoreError::Backend(failure("BatchWriteItem", error))
                }
                Err(error) => {
                    return Err(ChunkFailure {
                        unwritten: requests,
                        error: StoreError::Backend(failure("BatchWriteItem", error)),
                    });
                }
            };
            let Some(delay) = delays.next() else {
                return Err(ChunkFailure {
                    unwritten: requests,
                    error: retry_reason,
                });
            };
            tracing::debug!(table = %self.table, reason = %retry_reason, attempts, "retrying BatchWriteItem");
            tokio::time::sleep(delay).await;
        }
    }
}

struct ChunkFailure {
    unwritten: Vec<WriteRequest>,
    error: StoreError,
}

#[async_trait]
impl EventStore for DynamoDbStore {
    async fn put(&self, events: &[StoredEvent]) -> Result<(), StoreFailure> {
        let mut unwritten: Vec<String> = Vec::new();
        let mut last_error = None;
        for chunk in events.chunks(BATCH_WRITE_LIMIT) {
            let mut requests = Vec::with_capacity(chunk.len());
            for event in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(to_item(event)))
                    .build()
                    .map_err(|error| StoreFailure {
                        unwritten: Some(vec![event.event.id.clone()]),
                        error: StoreError::Backend(ClassifiedError::caused_by(
                            ErrorKind::Permanent,
                            error.to_string(),
                            error,
                        )),
                    })?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            if let Err(failure) = self.write_chunk(requests).await {
                unwritten.extend(failure.unwritten.iter().filter_map(request_id));
                last_error = Some(failure.error);
            }
        }
        match last_error {
            None => Ok(()),
            Some(error) => Err(StoreFailure {
                unwritten: Some(unwritten),
                error,
            }),
        }
    }
}

/// The item for `event` (layout in the crate README).
pub fn to_item(stored: &StoredEvent) -> HashMap<String, AttributeValue> {
    let event = &stored.event;
    let text = |value: &str| AttributeValue::S(value.to_owned());
    let mut item = HashMap::new();
    item.insert(item::ID.to_owned(), text(&event.id));
    if let Some(customer_id) = event
        .attribute(attribute::CUSTOMER_ID)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    {
        item.insert(
            item::CUSTOMER_ID.to_owned(),
            AttributeValue::N(customer_id.to_owned()),
        );
    }
    for (name, field) in [
        (item::PROGRAM_ID, attribute::PROGRAM_ID),
        (item::PROGRAM_NAME, attribute::PROGRAM_NAME),
        (item::CHECKSUM, attribute::CHECKSUM),
        (item::CUSTOMER_NAME, attribute::CUSTOMER_NAME),
        (item::USER_AGENT, attribute::USER_AGENT),
    ] {
        if let Some(value) = event.attribute(field).filter(|value| !value.is_empty()) {
            item.insert(name.to_owned(), text(value));
        }
    }
    item.insert(
        item::VALID.to_owned(),
        AttributeValue::Bool(event.attribute(attribute::VALID) == Some("true")),
    );
    item.insert(
        item::TIMESTAMP_MS.to_owned(),
        AttributeValue::N(event.timestamp_ms.to_string()),
    );
    item.insert(item::PARTITION_KEY.to_owned(), text(&event.key));
    if !event.content_type.is_empty() {
        item.insert(item::CONTENT_TYPE.to_owned(), text(&event.content_type));
    }
    if !event.payload.is_empty() {
        item.insert(
            item::PAYLOAD.to_owned(),
            AttributeValue::B(Blob::new(event.payload.clone())),
        );
    }
    if !event.attributes.is_empty() {
        let attributes = event
            .attributes
            .iter()
            .map(|(name, value)| (name.clone(), text(value)))
            .collect();
        item.insert(item::ATTRIBUTES.to_owned(), AttributeValue::M(attributes));
    }
    let processed_by = stored
        .processed_by
        .iter()
        .map(|plugin| {
            AttributeValue::M(HashMap::from([
                ("name".to_owned(), text(&plugin.name)),
                ("version".to_owned(), text(&plugin.version)),
            ]))
        })
        .collect();
    item.insert(
        item::PROCESSED_BY.to_owned(),
        AttributeValue::L(processed_by),
    );
    for (name, release) in [
        (item::HOST_RELEASE, stored.host_release),
        (item::CONSUMER_RELEASE, stored.consumer_release),
    ] {
        if release > 0 {
            item.insert(name.to_owned(), AttributeValue::N(release.to_string()));
        }
    }
    item
}

/// The message id of a put request.
fn request_id(request: &WriteRequest) -> Option<String> {
    match request.put_request()?.item().get(item::ID)? {
        AttributeValue::S(id) => Some(id.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::PluginStamp;
    use plugin_engine::Event;

    #[test]
    fn the_item_keys_on_the_message_id_and_types_customer_id_as_a_number() {
        let stored = StoredEvent {
            event: Event {
                id: "msg-1".into(),
                key: "msg-1".into(),
                timestamp_ms: 1_700_000_000_000,
                content_type: String::new(),
                payload: Vec::new(),
                attributes: vec![
                    ("programId".into(), "212313".into()),
                    ("customerId".into(), "4712".into()),
                    ("valid".into(), "true".into()),
                ],
            },
            processed_by: vec![PluginStamp {
                name: "validate-tracking".into(),
                version: "ab".repeat(32),
            }],
            ..StoredEvent::default()
        };
        let item = to_item(&stored);
        assert_eq!(item[item::ID], AttributeValue::S("msg-1".into()));
        assert_eq!(item[item::CUSTOMER_ID], AttributeValue::N("4712".into()));
        assert_eq!(item[item::PROGRAM_ID], AttributeValue::S("212313".into()));
        assert_eq!(item[item::VALID], AttributeValue::Bool(true));
        assert!(!item.contains_key(item::PAYLOAD));
        assert!(!item.contains_key(item::CUSTOMER_NAME));
        let AttributeValue::L(plugins) = &item[item::PROCESSED_BY] else {
            panic!("processed_by is not a list");
        };
        assert_eq!(plugins.len(), 1);
    }

    #[test]
    fn a_non_numeric_customer_id_is_left_out_instead_of_failing_the_write() {
        let stored = StoredEvent {
            event: Event {
                id: "msg-2".into(),
                attributes: vec![("customerId".into(), "n/a".into())],
                ..Event::default()
            },
            processed_by: Vec::new(),
            ..StoredEvent::default()
        };
        assert!(!to_item(&stored).contains_key(item::CUSTOMER_ID));
    }
}
