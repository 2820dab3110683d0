//! The messages of the plugin contract's optional `batch-handler` export
//! (`wit/batch.proto`, contract 0.1.2), shared by the host, which encodes the events
//! and decodes the outcomes, and by Rust plugins, which export the handler with
//! [`export_batch_handler!`]: over their `handler` functions, or reading each event in
//! place ([`EventView`]) and answering a [`Verdict`].
//!
//! This crate builds for the host and for `wasm32-wasip2`; it depends on prost only.

#![deny(missing_docs)]

mod guest;
mod in_place;
mod messages;
pub mod wire;

pub use guest::handle;
pub use in_place::{EventView, Refusal, Verdict, handle_in_place};
pub use messages::{Attribute, Edit, Event, EventBatch, Events, Outcome, OutcomeBatch, outcome};
#[doc(hidden)]
pub use prost;
