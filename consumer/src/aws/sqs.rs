//! Dead letters to an SQS queue: the letter as a JSON body, with the kind, reason and
//! plugin version also as message attributes for filtering and redrive tooling. A
//! letter too large for SQS (256 KiB) is written whole to S3 and the queue gets it
//! without its data, pointing at the object (`dataLocation`).

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

/// Letters whose body is larger than this go to S3 (SQS takes 256 KiB with the
/// attributes).
pub const MAX_QUEUED_LETTER_BYTES: usize = 200 * 1024;

/// Where letters too large for the queue are written: a bucket and a key prefix.
#[derive(Clone, Debug)]
pub struct LetterOverflow {
    /// The S3 client.
    pub client: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, e.g. `dead-letters/`.
    pub prefix: String,
}

/// Dead letters sent to one SQS queue.
#[derive(Clone, Debug)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
    overflow: Option<LetterOverflow>,
}

impl SqsDeadLetters {
    /// Dead letters sent to `queue_url` through `client`; letters too large for the
    /// queue go to `overflow` (without one, they are refused as a permanent failure).
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        overflow: Option<LetterOverflow>,
    ) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            overflow,
        }
    }

    /// The body to queue for `letter`: the letter itself, or, when it is too large,
    /// the letter without its data pointing at the copy written to S3.
    async fn body(&self, letter: &DeadLetter) -> Result<String, DeadLetterError> {
        let json = letter.to_json();
        if json.len() <= MAX_QUEUED_LETTER_BYTES {
            return Ok(json);
        }
        let Some(overflow) = &self.overflow else {
            return Err(self.error(ClassifiedError::new(
                ErrorKind::Permanent,
                format!(
                    "the letter is {} bytes, more than the queue takes, and no bucket is configured for large letters",
                    json.len()
                ),
            )));
        };
        let key = format!(
            "{}{}.json",
            overflow.prefix,
            letter.record_id.replace(['/', '#'], "_")
        );
        overflow
            .client
            .put_object()
            .bucket(&overflow.bucket)
            .key(&key)
            .content_type("application/json")
            .body(json.into_bytes().into())
            .send()
            .await
            .map_err(|error| self.error(failure("PutObject", error)))?;
        let pointer = DeadLetter {
            data_base64: String::new(),
            data_location: Some(format!("s3://{}/{key}", overflow.bucket)),
            ..letter.clone()
        };
        Ok(pointer.to_json())
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
            .message_body(self.body(letter).await?);
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
