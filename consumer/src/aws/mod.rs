//! The consumer's AWS side (the `aws` feature): the DynamoDB event store, SQS dead
//! letters, the Redis AUTH token from Secrets Manager, the Lambda driver, a Kinesis
//! poller for emulators and local runs, and the Lambda function's configuration and
//! cold start.

pub mod config;
pub mod dynamodb;
mod init;
pub mod kinesis_poller;
pub mod lambda;
pub mod sqs;

pub use config::ConsumerConfig;
pub use dynamodb::DynamoDbStore;
pub use init::aws_consumer;
pub use sqs::SqsDeadLetters;
