//! The dead-letter stage: records that can never be processed (undecodable, or
//! rejected by a plugin) go here with the reason and the plugin version, so they never
//! block the shard. A JSON-lines file in the embedded mode; SQS on AWS
//! (`crate::aws::sqs`).

pub mod json_lines;

use async_trait::async_trait;
use base64::Engine as _;
use plugin_engine::PluginRef;
use retry_policy::{ClassifiedError, Classify, ErrorKind};
use serde::Serialize;

use crate::handler::StreamRecord;

pub use json_lines::JsonLinesDeadLetters;

/// Why a record was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterKind {
    /// The bytes are not a `TrackingEvent` (or carry no message id).
    Undecodable,
    /// A plugin refused the event as bad input.
    Rejected,
}

impl DeadLetterKind {
    /// The kind as it appears in messages and attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Undecodable => "undecodable",
            DeadLetterKind::Rejected => "rejected",
        }
    }
}

/// A record that will not be processed, with everything needed to look into it later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The record's id on the stream (sequence number).
    pub record_id: String,
    /// The record's partition key.
    pub partition_key: String,
    /// Undecodable or rejected.
    pub kind: DeadLetterKind,
    /// The decoder's or the plugin's reason.
    pub reason: String,
    /// The refusing plugin, for rejections.
    pub plugin: Option<String>,
    /// The refusing plugin's version (sha256 of its component), for rejections.
    pub plugin_version: Option<String>,
    /// The record bytes, base64-encoded.
    pub data_base64: String,
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
