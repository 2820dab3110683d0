//! The stream stage: protobuf records onto Kinesis (or the embedded log), batched by a
//! producer with a bounded buffer, per-record retries and backpressure.

mod config;
mod embedded;
mod kinesis;
mod producer;

use async_trait::async_trait;
use retry_policy::ClassifiedError;

pub use self::config::{Ack, StreamConfig};
pub use self::embedded::EmbeddedSink;
pub use self::kinesis::KinesisSink;
pub use self::producer::{ProducerSettings, StreamError, StreamProducer};

/// One record for the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    /// Partition key (the message id).
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
