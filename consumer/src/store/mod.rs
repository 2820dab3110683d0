//! The event store stage: where accepted events are kept. An embedded `redb` file in
//! the host's embedded mode; DynamoDB on AWS (`crate::aws::dynamodb`).

pub mod embedded;

use std::collections::BTreeMap;

use async_trait::async_trait;
use contract::{PluginStamp, TrackingEvent, attribute};
use plugin_engine::Event;
use retry_policy::ClassifiedError;

pub use embedded::EmbeddedStore;

/// An accepted event, the plugins (host side, then consumer side) that processed it and
/// the releases they came from: enough to trace it to the exact component bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredEvent {
    /// The event as the consumer chain emitted it.
    pub event: Event,
    /// Plugins that processed it, in order, with their versions.
    pub processed_by: Vec<PluginStamp>,
    /// The plugin release the host ran (0: not from the registry).
    pub host_release: u64,
    /// The plugin release the consumer ran (0: not from the registry).
    pub consumer_release: u64,
}

impl StoredEvent {
    /// The event as a stream record without its plugin stamps (the embedded store keeps
    /// those once per distinct set).
    pub fn to_record_without_stamps(&self) -> TrackingEvent {
        let mut record = TrackingEvent::from_event(&self.event, &[]);
        record.host_release = self.host_release;
        record.consumer_release = self.consumer_release;
        record
    }

    /// The stored event a stream record carries.
    pub fn from_record(mut record: TrackingEvent) -> Self {
        let processed_by = std::mem::take(&mut record.processed_by);
        let (host_release, consumer_release) = (record.host_release, record.consumer_release);
        Self {
            event: record.into_event(),
            processed_by,
            host_release,
            consumer_release,
        }
    }
}

/// What one write did, per event.
#[derive(Debug, Default)]
pub struct WriteReport {
    /// Ids of the events written now.
    pub stored: Vec<String>,
    /// Ids of the events already stored (a redelivery): left as they were and not
    /// counted again.
    pub duplicates: Vec<String>,
    /// Events not written, and why; the error's kind tells a failure worth retrying
    /// from one that will never succeed (an item the store refuses as it is).
    pub failed: Vec<(String, ClassifiedError)>,
    /// Events stored per program, in all, after the write: for every program that a
    /// stored or duplicate event names.
    pub counts: BTreeMap<String, u64>,
}

/// Where accepted events are written. Each event is written only if no event with its
/// id is stored yet, and counted for its program in the same atomic write, so a
/// redelivered record neither overwrites nor counts twice.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes `events`; says what became of each.
    async fn put(&self, events: &[StoredEvent]) -> WriteReport;
}

/// The program an event counts for, if any.
pub fn program_of(event: &StoredEvent) -> Option<&str> {
    event
        .event
        .attribute(attribute::PROGRAM_ID)
        .filter(|program| !program.is_empty())
}
