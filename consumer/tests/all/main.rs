//! Integration tests of the consumer: handler outcomes, DynamoDB Local, kinesalite, redis-server, the embedded mode and the Lambda Runtime API emulator.
//!
//! One test binary per crate (one link of wasmtime and the AWS SDK); each module is
//! one behaviour.

mod aws_timeouts;
mod common;
mod core_data_updates;
mod dynamodb_store;
mod embedded_mode;
mod handler_outcomes;
mod lambda_emulator;
mod replay;
mod stream_to_dynamodb;
