//! The event store stage: where accepted events are kept. An embedded `redb` file in
//! the host's embedded mode; DynamoDB on AWS (`crate::aws::dynamodb`).

pub mod embedded;

use async_trait::async_trait;
use contract::{PluginStamp, TrackingEvent};
use plugin_engine::Event;
use retry_policy::{ClassifiedError, Classify, ErrorKind};

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
    /// The event as a stream record (the one conversion used to persist it).
    pub fn to_record(&self) -> TrackingEvent {
        let mut record = TrackingEvent::from_event(&self.event, &[]);
        record.processed_by = self.processed_by.clone();
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

/// A write that did not (entirely) happen.
#[derive(Debug)]
pub struct StoreFailure {
    /// Ids of the events that were not written; `None` when none was.
    pub unwritten: Option<Vec<String>>,
    /// What went wrong, with its kind.
    pub error: StoreError,
}

/// Why the event store could not write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend kept refusing part of a batch (throttling) after every retry.
    #[error("{count} events still unprocessed after {attempts} attempts")]
    Unprocessed {
        /// Events left.
        count: usize,
        /// Attempts made.
        attempts: usize,
    },
    /// The backend call failed.
    #[error(transparent)]
    Backend(#[from] ClassifiedError),
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unprocessed { .. } => ErrorKind::Throttled,
            StoreError::Backend(error) => error.kind(),
        }
    }
}

/// Where accepted events are written. Writes are idempotent by event id: writing the
/// same event again (a redelivered record) leaves one copy.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Writes `events`; on failure says which were not written.
    async fn put(&self, events: &[StoredEvent]) -> Result<(), StoreFailure>;
}
