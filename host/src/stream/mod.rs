//! The stream stage: protobuf records onto Kinesis (or the embedded log), batched by a
//! producer with a bounded buffer, per-record retries and backpressure.

mod config;
mod embedded;
mod kinesis;
mod producer;
mod spill;

use async_trait::async_trait;
use retry_policy::ClassifiedError;

pub use self::config::{Ack, StreamConfig};
pub use self::embedded::EmbeddedSink;
pub use self::kinesis::{KinesisSink, kinesis_client};
pub use self::producer::{ProducerSettings, StreamError, StreamProducer};
pub use self::spill::SpillFile;

/// The longest partition key Kinesis accepts, in characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// One record for the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// The message id of the event it carries (for logs and the spill file).
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Protobuf-encoded `TrackingEvent`.
    pub data: Vec<u8>,
}

impl StreamEntry {
    /// Bytes the record counts against batch limits (data and key, as Kinesis counts).
    pub fn size(&self) -> usize {
        self.data.len() + self.key.len()
    }
}

/// Why Kinesis would refuse `key` as a partition key (it must be 1 to 256 characters),
/// `None` when it accepts it. One such key fails a whole `PutRecords` call, so keys are
/// checked before they reach the producer.
pub fn partition_key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the partition key is empty".to_owned());
    }
    let chars = key.chars().count();
    (chars > MAX_PARTITION_KEY_CHARS).then(|| {
        format!("the partition key has {chars} characters; the stream takes at most {MAX_PARTITION_KEY_CHARS}")
    })
}

/// Where records go; one call is one batch.
#[async_trait]
pub trait StreamSink: Send + Sync {
    /// Puts `entries`; the result has one entry per record, in order: `Ok` when the
    /// record is stored, `Err` when it is not (its kind says whether to retry it).
    /// `Err` for the whole call means no record was stored.
    async fn put(&self, entries: &[StreamEntry]) -> Result<Vec<Result<(), SinkError>>, SinkError>;
    /// `kinesis` or `embedded`.
    fn name(&self) -> &'static str;
}

/// The stream did not store a record (or a whole batch): what it said, for people,
/// and what kind of failure it is, for the retry decision.
pub type SinkError = ClassifiedError;
