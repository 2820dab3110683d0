//! The DynamoDB event store: events written with `TransactWriteItems`, each `Put`
//! conditional on no item having its id, together with an `ADD` to its program's
//! counter item, so a redelivered event is neither overwritten nor counted twice. The
//! item layout is documented in the crate README.
//!
//! One transaction takes the events of one program (at most 99, plus the counter). A
//! cancelled transaction says per item why: events already stored are duplicates, the
//! others are written again without them. A call refused for a permanent reason (an
//! item over 400 KB) is split until the event at fault is alone; it is then reported
//! as a permanent failure, for the dead-letter queue.
//!
//! The programs of a batch are written concurrently, up to a bound
//! (`DYNAMODB_WRITE_CONCURRENCY`); the transactions of one program run one after the
//! other, since two at once would touch its counter together and cancel each other
//! (`TransactionConflict`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use contract::attribute;
use futures::{StreamExt, TryStreamExt, stream};
use retry_policy::aws::{failure, kind_of_code};
use retry_policy::{ClassifiedError, Classify, Delays, ErrorKind, RetryPolicy};

use crate::store::{EventStore, StoredEvent, WriteReport, program_of};

/// Most actions one `TransactWriteItems` call takes.
pub const TRANSACTION_LIMIT: usize = 100;

/// Programs whose transactions are in flight at once, unless configured otherwise.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 8;

/// The id of a program's counter item: `program#{programId}` (event ids never hold `#`).
pub fn counter_id(program_id: &str) -> String {
    format!("program#{program_id}")
}

/// Whether an item id is an event's (not a counter or an attempt count, whose ids hold
/// `#`).
pub fn is_event_id(id: &str) -> bool {
    !id.contains('#')
}

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
    /// On a program's counter item: events stored for the program (N).
    pub const EVENT_COUNT: &str = "event_count";
}

/// Accepted events in a DynamoDB table keyed by `id` (S).
#[derive(Clone, Debug)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    retry: RetryPolicy,
    write_concurrency: usize,
}

impl DynamoDbStore {
    /// A store writing to `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
            write_concurrency: DEFAULT_WRITE_CONCURRENCY,
        }
    }

    /// Sets how many programs' transactions may be in flight at once (at least one;
    /// one writes the programs one after the other).
    pub fn with_write_concurrency(mut self, programs: usize) -> Self {
        self.write_concurrency = programs.max(1);
        self
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

    /// [`Self::write_program`], with the program it wrote.
    async fn write_lane<'e>(
        &self,
        program: Option<&'e str>,
        events: Vec<&'e StoredEvent>,
    ) -> (Option<&'e str>, WriteReport) {
        (program, self.write_program(program, events).await)
    }

    /// Writes the events of one program (or of none), a transaction at a time.
    async fn write_program(&self, program: Option<&str>, events: Vec<&StoredEvent>) -> WriteReport {
        let mut report = WriteReport::default();
        let mut work: VecDeque<(Vec<&StoredEvent>, Delays)> = events
            .chunks(TRANSACTION_LIMIT - 1)
            .map(|chunk| (chunk.to_vec(), self.retry.delays()))
            .collect();
        while let Some((pending, mut delays)) = work.pop_front() {
            if pending.is_empty() {
                continue;
            }
            let ids = || pending.iter().map(|event| event.event.id.clone());
            let error = match self.transact(program, &pending).await {
                Ok(()) => {
                    report.stored.extend(ids());
                    continue;
                }
                Err(error) => error,
            };
            let (retry, cause) = match error {
                WriteError::Cancelled(reasons) if reasons.len() >= pending.len() => {
                    let mut retry = Vec::new();
                    let mut cause = None;
                    for (event, reason) in pending.iter().zip(&reasons) {
                        match reason.as_deref() {
                            Some("ConditionalCheckFailed") => {
                                report.duplicates.push(event.event.id.clone())
                            }
                            Some("ValidationError") => report.failed.push((
                                event.event.id.clone(),
                                ClassifiedError::new(
                                    ErrorKind::Permanent,
                                    "DynamoDB refuses the item as it is (ValidationError)",
                                ),
                            )),
                            None | Some("None") => retry.push(*event),
                            Some(code) => {
                                cause = Some(ClassifiedError::new(
                                    kind_of_code(code),
                                    format!("TransactWriteItems cancelled: {code}"),
                                ));
                                retry.push(*event);
                            }
                        }
                    }
                    // The counter's own reason, when it alone cancelled the write.
                    if let Some(Some(code)) = reasons.get(pending.len())
                        && code != "None"
                        && cause.is_none()
                    {
                        cause = Some(ClassifiedError::new(
                            kind_of_code(code),
                            format!("TransactWriteItems cancelled by the counter: {code}"),
                        ));
                    }
                    (retry, cause)
                }
                WriteError::Cancelled(_) if pending.len() > 1 => {
                    // Cancelled without saying which item: find out half by half.
                    split(&mut work, pending, &self.retry);
                    continue;
                }
                WriteError::Cancelled(_) => {
                    // A lone event whose write was cancelled without a reason: it is
                    // already stored, unless the cancellation was a conflict.
                    report.duplicates.extend(ids());
                    continue;
                }
                WriteError::Call(error)
                    if error.kind() == ErrorKind::Permanent && pending.len() > 1 =>
                {
                    split(&mut work, pending, &self.retry);
                    continue;
                }
                WriteError::Call(error) if error.kind().is_retryable() => (pending, Some(error)),
                WriteError::Call(error) => {
                    for id in ids() {
                        let copy = ClassifiedError::new(error.kind(), error.to_string());
                        report.failed.push((id, copy));
                    }
                    continue;
                }
            };
            let Some(cause) = cause else {
                // Only duplicates and invalid items held the others back.
                work.push_front((retry, delays));
                continue;
            };
            match delays.next() {
                Some(delay) => {
                    tracing::debug!(table = %self.table, reason = %cause, "retrying TransactWriteItems");
                    tokio::time::sleep(delay).await;
                    work.push_front((retry, delays));
                }
                None => {
                    for event in retry {
                        let copy = ClassifiedError::new(cause.kind(), cause.to_string());
                        report.failed.push((event.event.id.clone(), copy));
                    }
                }
            }
        }
        report
    }

    /// One transaction: a conditional `Put` per event and, for a program, the `ADD` to
    /// its counter.
    async fn transact(
        &self,
        program: Option<&str>,
        events: &[&StoredEvent],
    ) -> Result<(), WriteError> {
        let build_error = |error: aws_sdk_dynamodb::error::BuildError| {
            WriteError::Call(ClassifiedError::caused_by(
                ErrorKind::Permanent,
                error.to_string(),
                error,
            ))
        };
        let mut request = self.client.transact_write_items();
        for event in events {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(event)))
                .condition_expression("attribute_not_exists(#id)")
                .expression_attribute_names("#id", item::ID)
                .build()
                .map_err(build_error)?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        if let Some(program) = program {
            let update = Update::builder()
                .table_name(&self.table)
                .key(item::ID, AttributeValue::S(counter_id(program)))
                .update_expression("ADD #count :stored")
                .expression_attribute_names("#count", item::EVENT_COUNT)
                .expression_attribute_values(":stored", AttributeValue::N(events.len().to_string()))
                .build()
                .map_err(build_error)?;
            request = request.transact_items(TransactWriteItem::builder().update(update).build());
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(service))
                if matches!(
                    service.err(),
                    TransactWriteItemsError::TransactionCanceledException(_)
                ) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(cancelled) =
                    service.err()
                else {
                    unreachable!("matched above");
                };
                Err(WriteError::Cancelled(
                    cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|reason| reason.code().map(str::to_owned))
                        .collect(),
                ))
            }
            Err(error) => Err(WriteError::Call(failure(
                &format!("TransactWriteItems on {}", self.table),
                error,
            ))),
        }
    }

    /// Each program's count, read consistently after the writes (concurrently, within
    /// the same bound as the writes).
    async fn read_counts(
        &self,
        programs: impl Iterator<Item = &str>,
    ) -> Result<BTreeMap<String, u64>, (String, ClassifiedError)> {
        // The futures are made first (they start when polled), so that no closure
        // borrows across the stream.
        let reads: Vec<_> = programs.map(|program| self.read_count(program)).collect();
        stream::iter(reads)
            .buffer_unordered(self.write_concurrency)
            .try_collect()
            .await
    }

    /// One program's count, read consistently.
    async fn read_count(&self, program: &str) -> Result<(String, u64), (String, ClassifiedError)> {
        let failed = |error| (program.to_owned(), error);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(item::ID, AttributeValue::S(counter_id(program)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| failed(failure(&format!("GetItem on {}", self.table), error)))?;
        let count = match output.item().and_then(|item| item.get(item::EVENT_COUNT)) {
            Some(AttributeValue::N(count)) => count.parse().unwrap_or(0),
            _ => 0,
        };
        Ok((program.to_owned(), count))
    }
}

/// Why a transaction did not write.
enum WriteError {
    /// Cancelled: one reason code per action, in order (`None` for an action not at fault).
    Cancelled(Vec<Option<String>>),
    /// The call failed.
    Call(ClassifiedError),
}

/// Puts the two halves of `events` at the front of `work`, each with its own retries.
fn split<'e>(
    work: &mut VecDeque<(Vec<&'e StoredEvent>, Delays)>,
    mut events: Vec<&'e StoredEvent>,
    retry: &RetryPolicy,
) {
    let second = events.split_off(events.len() / 2);
    work.push_front((second, retry.delays()));
    work.push_front((events, retry.delays()));
}

#[async_trait]
impl EventStore for DynamoDbStore {
    async fn put(&self, events: &[StoredEvent]) -> WriteReport {
        let writes: Vec<_> = lanes(events)
            .into_iter()
            .map(|(program, events)| self.write_lane(program, events))
            .collect();
        let written: Vec<_> = stream::iter(writes)
            .buffered(self.write_concurrency)
            .collect()
            .await;
        let mut report = WriteReport::default();
        let mut counted: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (program, written) in written {
            if let Some(program) = program {
                let ids = counted.entry(program).or_default();
                ids.extend(written.stored.iter().chain(&written.duplicates).cloned());
            }
            report.stored.extend(written.stored);
            report.duplicates.extend(written.duplicates);
            report.failed.extend(written.failed);
        }
        let programs = counted
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(program, _)| *program);
        match self.read_counts(programs).await {
            Ok(counts) => report.counts = counts,
            Err((program, error)) => {
                // Stored, but their count is unknown: redelivered, they are duplicates
                // whose count is read again.
                tracing::warn!(%program, %error, "cannot read the program counts");
                let unknown: Vec<String> = counted.into_values().flatten().collect();
                report.stored.retain(|id| !unknown.contains(id));
                report.duplicates.retain(|id| !unknown.contains(id));
                for id in unknown {
                    let copy = ClassifiedError::new(error.kind(), error.to_string());
                    report.failed.push((id, copy));
                }
            }
        }
        report
    }
}

/// The writes of a batch that may run at the same time: the events of each program
/// (whose transactions share its counter item, so they run in order), and the events
/// of no program, which touch no counter, a transaction's worth each.
fn lanes(events: &[StoredEvent]) -> Vec<(Option<&str>, Vec<&StoredEvent>)> {
    let mut by_program: BTreeMap<Option<&str>, Vec<&StoredEvent>> = BTreeMap::new();
    for event in events {
        by_program.entry(program_of(event)).or_default().push(event);
    }
    let mut lanes = Vec::with_capacity(by_program.len());
    for (program, events) in by_program {
        match program {
            Some(_) => lanes.push((program, events)),
            None => lanes.extend(
                events
                    .chunks(TRANSACTION_LIMIT - 1)
                    .map(|chunk| (None, chunk.to_vec())),
            ),
        }
    }
    lanes
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
