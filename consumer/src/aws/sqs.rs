//! Dead letters to an SQS queue: the letter as a JSON body, with the kind, reason and
//! plugin version also as message attributes for filtering and redrive tooling.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;

use retry_policy::aws::failure;
use retry_policy::{ClassifiedError, ErrorKind};

use crate::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink};

/// Message attribute names set on every dead letter.
pub mod attribute {
    /// `undecodable` or `rejected`.
    pub const KIND: &str = "kind";
    /// The decoder's or plugin's reason.
    pub const REASON: &str = "reason";
    /// The refusing plugin's name (rejections only).
    pub const PLUGIN: &str = "plugin";
    /// The refusing plugin's version (rejections only).
    pub const PLUGIN_VERSION: &str = "pluginVersion";
    /// The record's sequence number.
    pub const RECORD_ID: &str = "recordId";
}

/// SQS allows at most this many bytes in a string message attribute value we set; longer
/// reasons are cut (the body keeps the full text).
const MAX_ATTRIBUTE_CHARS: usize = 1024;

/// Dead letters sent to one SQS queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    /// Dead letters sent to `queue_url` through `client`.
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    fn error(&self, source: ClassifiedError) -> DeadLetterError {
        DeadLetterError {
            destination: self.queue_url.clone(),
            source,
        }
    }
}

#[async_trait]
impl DeadLetterSink for SqsDeadLetters {
    async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(letter.to_json());
        let attributes = [
            (attribute::KIND, Some(letter.kind.as_str())),
            (attribute::REASON, Some(letter.reason.as_str())),
            (attribute::RECORD_ID, Some(letter.record_id.as_str())),
            (attribute::PLUGIN, letter.plugin.as_deref()),
            (attribute::PLUGIN_VERSION, letter.plugin_version.as_deref()),
        ];
        for (name, value) in attributes {
            let Some(value) = value.filter(|value| !value.is_empty()) else {
                continue;
            };
            let value: String = value.chars().take(MAX_ATTRIBUTE_CHARS).collect();
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| {
                    self.error(ClassifiedError::caused_by(
                        ErrorKind::Permanent,
                        error.to_string(),
                        error,
                    ))
                })?;
            request = request.message_attributes(name, attribute);
        }
        request
            .send()
            .await
            .map_err(|error| self.error(failure("SendMessage", error)))?;
        Ok(())
    }
}
