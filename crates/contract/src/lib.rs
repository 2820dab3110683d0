//! What the host and the consumer agree on, defined once: the protobuf record on the
//! event stream ([`TrackingEvent`], schema in `proto/tracking_event.proto`), the event
//! attribute names ([`attribute`]), how events get their ids ([`identity`]) and the Redis key, field and channel names of core
//! data ([`redis_names`]).
#![deny(missing_docs)]

pub mod attribute;
pub mod identity;
pub mod redis_names;
mod tracking_event;

pub use tracking_event::{DecodeError, PluginStamp, TrackingEvent};
