//! The protobuf messages of `wit/batch.proto`, one Rust type each.

/// The WIT `event` record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Unique id of the event.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Partition key on the stream.
    #[prost(string, tag = "2")]
    pub key: String,
    /// Milliseconds since the Unix epoch at which the host accepted the event.
    #[prost(uint64, tag = "3")]
    pub timestamp_ms: u64,
    /// Media type of `payload`.
    #[prost(string, tag = "4")]
    pub content_type: String,
    /// The event body.
    #[prost(bytes = "vec", tag = "5")]
    pub payload: Vec<u8>,
    /// String attributes, in order; a name may repeat.
    #[prost(message, repeated, tag = "6")]
    pub attributes: Vec<Attribute>,
}

/// One of an event's string attributes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Attribute {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The argument of `handle`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventBatch {
    /// The events, in order.
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<Event>,
}

/// What `validate` then `transform` returned for one event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outcome {
    /// The events it became, or the error that stopped it; `None` is malformed.
    #[prost(oneof = "outcome::Result", tags = "1, 2, 3, 4, 5")]
    pub result: Option<outcome::Result>,
}

/// The variants of [`Outcome`].
pub mod outcome {
    /// The events one input event became, or the WIT `plugin-error` that stopped it.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        /// Accepted: the events it became (none: filtered; several: fanned out).
        #[prost(message, tag = "1")]
        Accepted(super::Events),
        /// Refused as bad input.
        #[prost(string, tag = "2")]
        Reject(String),
        /// A transient condition: retry later.
        #[prost(string, tag = "3")]
        Retry(String),
        /// The plugin itself is broken.
        #[prost(string, tag = "4")]
        Fail(String),
        /// Accepted as the one event it came in as, with a few attributes set (since
        /// contract 0.1.2).
        #[prost(message, tag = "5")]
        Kept(super::Edit),
    }
}

/// An input event kept, with `set` applied in order: each attribute removes every
/// attribute of its name, then is appended; empty keeps the event as it came in.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Edit {
    /// The attributes to set.
    #[prost(message, repeated, tag = "1")]
    pub set: Vec<Attribute>,
}

/// The events one input event became.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Events {
    /// The events, in order.
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<Event>,
}

/// The answer of `handle`: one outcome per input event, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OutcomeBatch {
    /// The outcomes, in the order of the input events.
    #[prost(message, repeated, tag = "1")]
    pub outcomes: Vec<Outcome>,
}

impl Event {
    /// The attributes as `(name, value)` pairs, as the WIT record holds them.
    pub fn attribute_pairs(attributes: Vec<Attribute>) -> Vec<(String, String)> {
        attributes
            .into_iter()
            .map(|Attribute { name, value }| (name, value))
            .collect()
    }

    /// `(name, value)` pairs as attributes.
    pub fn attributes_from_pairs(pairs: Vec<(String, String)>) -> Vec<Attribute> {
        pairs
            .into_iter()
            .map(|(name, value)| Attribute { name, value })
            .collect()
    }
}
