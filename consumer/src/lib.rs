//! The stream consumer: reads `TrackingEvent` records from the event stream, runs the
//! consumer side of the plugin pipeline over them, stores accepted events, updates
//! per-program core data in Redis and reports which records must be redelivered.
//!
//! The [`Consumer`] is a plain async function over typed records, so the same code runs
//! under the Lambda runtime ([`drivers::lambda`]), a Kinesis poller for emulators
//! ([`drivers::kinesis_poller`]) and the host's embedded mode ([`drivers::embedded`]).
//! Each backend sits behind one small trait: [`store::EventStore`],
//! [`dead_letter::DeadLetterSink`] and [`core_data::CoreDataUpdates`].

mod aws_error;
pub mod config;
pub mod core_data;
pub mod dead_letter;
pub mod drivers;
pub mod handler;
pub mod init;
pub mod retry;
pub mod store;

pub use config::ConsumerConfig;
pub use handler::{BatchReport, Consumer, RecordFailure, StreamRecord};
pub use init::{InitReport, PluginLoad};
