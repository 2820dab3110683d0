//! The stream consumer: reads `TrackingEvent` records from the event stream, runs the
//! consumer side of the plugin pipeline over them, stores accepted events, updates
//! per-program core data and reports which records must be redelivered.
//!
//! The crate is the consumer core (the [`Consumer`] handler, the backend traits, the
//! embedded store, the JSON-lines dead letters and the embedded driver the host runs in
//! process) plus, behind the `aws` feature, its AWS side ([`aws`]: DynamoDB, SQS,
//! Secrets Manager, the Kinesis poller and the Lambda driver). The [`Consumer`] is a
//! plain async function over typed records, so the same code runs under every driver.
//! Each backend sits behind one small trait: [`store::EventStore`],
//! [`dead_letter::DeadLetterSink`], [`core_data::CoreDataUpdates`] and
//! [`attempts::AttemptLedger`].
#![deny(missing_docs)]

pub mod attempts;
#[cfg(feature = "aws")]
pub mod aws;
pub mod dead_letter;
pub mod drivers;
pub mod handler;
pub mod init;
pub mod precompile;
pub mod releases;
pub mod store;

pub use handler::{BatchChain, BatchReport, ChainSource, Consumer, RecordFailure, StreamRecord};
pub use init::{InitReport, PluginLoad};
