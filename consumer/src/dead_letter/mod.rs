//! The dead-letter stage: records that can never be processed (undecodable, rejected by
//! a plugin, refused by the event store as they are, or failing on every attempt) go
//! here with their data, the reason and the plugin version, so they never block the
//! shard and can be replayed once the cause is fixed. A JSON-lines file in the embedded mode; SQS on AWS
//! (`crate::aws::sqs`).

pub mod json_lines;

use async_trait::async_trait;
use base64::Engine as _;
use plugin_engine::PluginRef;
use retry_policy::{ClassifiedError, Classify, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::handler::StreamRecord;

pub use json_lines::JsonLinesDeadLetters;

/// Why a record was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// The bytes are not a `TrackingEvent` (or carry no message id).
    Undecodable,
    /// A plugin refused the event as bad input.
    Rejected,
    /// The event store refuses the event as it is (an item over its size limit).
    Unstorable,
    /// The record failed on every attempt (a plugin that fails on it, a backend that
    /// keeps refusing it).
    Exhausted,
}

impl DeadLetterKind {
    /// The kind as it appears in messages and attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Undecodable => "undecodable",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::Unstorable => "unstorable",
            DeadLetterKind::Exhausted => "exhausted",
        }
    }
}

/// A record that will not be processed, with everything needed to look into it later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The record's id on the stream (sequence number).
    pub record_id: String,
    /// The record's partition key.
    pub partition_key: String,
    /// Why it is here.
    pub kind: DeadLetterKind,
    /// The decoder's or the plugin's reason.
    pub reason: String,
    /// The refusing plugin, for rejections.
    pub plugin: Option<String>,
    /// The refusing plugin's version (sha256 of its component), for rejections.
    pub plugin_version: Option<String>,
    /// The record bytes, base64-encoded; empty when they are kept at `data_location`.
    pub data_base64: String,
    /// Where the whole letter is kept when it is too large for the queue
    /// (`s3://bucket/key`); the queue then holds this pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_location: Option<String>,
}

impl DeadLetter {
    /// A record whose bytes could not be decoded.
    pub fn undecodable(record: &StreamRecord, reason: String) -> Self {
        Self::new(record, DeadLetterKind::Undecodable, reason, None)
    }

    /// A record a plugin rejected.
    pub fn rejected(record: &StreamRecord, by: &PluginRef, reason: String) -> Self {
        Self::new(record, DeadLetterKind::Rejected, reason, Some(by))
    }

    /// A record whose event the store refuses as it is.
    pub fn unstorable(record: &StreamRecord, reason: String) -> Self {
        Self::new(record, DeadLetterKind::Unstorable, reason, None)
    }

    /// A record that failed on each of its `attempts`, the last time for `reason`.
    pub fn exhausted(record: &StreamRecord, attempts: u32, reason: String) -> Self {
        let reason = format!("failed {attempts} times; last: {reason}");
        Self::new(record, DeadLetterKind::Exhausted, reason, None)
    }

    /// The letter as it was sent: from one JSON object.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The stream record the letter carries, to run again.
    pub fn record(&self) -> Result<StreamRecord, base64::DecodeError> {
        Ok(StreamRecord {
            id: self.record_id.clone(),
            partition_key: self.partition_key.clone(),
            data: base64::engine::general_purpose::STANDARD.decode(&self.data_base64)?,
        })
    }

    fn new(
        record: &StreamRecord,
        kind: DeadLetterKind,
        reason: String,
        plugin: Option<&PluginRef>,
    ) -> Self {
        Self {
            record_id: record.id.clone(),
            partition_key: record.partition_key.clone(),
            kind,
            reason,
            plugin: plugin.map(|plugin| plugin.name.to_string()),
            plugin_version: plugin.map(|plugin| plugin.version.to_string()),
            data_base64: base64::engine::general_purpose::STANDARD.encode(&record.data),
            data_location: None,
        }
    }

    /// The letter as one JSON object (the SQS message body, one line of the file).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|error| {
            format!(
                r#"{{"recordId":{:?},"error":{:?}}}"#,
                self.record_id,
                error.to_string()
            )
        })
    }
}

/// The dead-letter destination could not take a letter.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter destination {destination}: {source}")]
pub struct DeadLetterError {
    /// The queue URL or file.
    pub destination: String,
    /// Why, and what kind of failure it is.
    #[source]
    pub source: ClassifiedError,
}

impl Classify for DeadLetterError {
    fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

/// Where dead letters go. A letter that cannot be sent makes its record a retryable
/// failure, so nothing is lost.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Sends one letter.
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError>;
}

/// Dead letters written to the log only (when no queue is configured).
#[derive(Debug, Default, Clone, Copy)]
pub struct LoggedDeadLetters;

#[async_trait]
impl DeadLetterSink for LoggedDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        tracing::error!(dead_letter = %letter.to_json(), "dead letter (no dead-letter queue configured)");
        Ok(())
    }
}
