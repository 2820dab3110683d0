//! The messages of the plugin contract's optional `batch-handler` export
//! (`wit/batch.proto`, contract 0.1.1), shared by the host, which encodes the events
//! and decodes the outcomes, and by Rust plugins, which export the handler with
//! [`export_batch_handler!`].
//!
//! This crate builds for the host and for `wasm32-wasip2`; it depends on prost only.

#![deny(missing_docs)]

mod guest;
mod messages;

pub use guest::handle;
pub use messages::{Attribute, Event, EventBatch, Events, Outcome, OutcomeBatch, outcome};
#[doc(hidden)]
pub use prost;
