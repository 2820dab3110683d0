//! The consumer's AWS side (the `aws` feature): the DynamoDB event store and attempt
//! counts, SQS dead letters (large ones in S3), the Redis AUTH token from Secrets Manager, the Lambda driver, a Kinesis
//! poller for emulators and local runs, and the Lambda function's configuration and
//! cold start.

pub mod attempts;
pub mod config;
pub mod deployment;
pub mod dynamodb;
mod init;
pub mod kinesis_poller;
pub mod lambda;
pub mod replay;
pub mod sqs;

pub use attempts::DynamoDbAttempts;
pub use config::ConsumerConfig;
pub use dynamodb::DynamoDbStore;
pub use init::{aws_consumer, sdk_config};
pub use sqs::SqsDeadLetters;
