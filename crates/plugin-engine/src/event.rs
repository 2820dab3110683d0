//! The event type the host, the consumer and the engine share.

use crate::bindings::WitEvent;

/// One event flowing through the pipeline (mirrors the WIT `event` record).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Unique id (the message id for tracking events).
    pub id: String,
    /// Partition key on the stream.
    pub key: String,
    /// Milliseconds since the Unix epoch at which the host accepted the event.
    pub timestamp_ms: u64,
    /// Media type of `payload`.
    pub content_type: String,
    /// The event body, opaque to the host.
    pub payload: Vec<u8>,
    /// String attributes in insertion order: headers, tracking fields, enrichment.
    pub attributes: Vec<(String, String)>,
}

impl Event {
    /// The value of the first attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Sets attribute `name`, replacing an existing value.
    pub fn set_attribute(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.attributes.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
    }

    /// Bytes this event occupies on the wire, roughly: used for output limits.
    pub fn approximate_size(&self) -> usize {
        self.id.len()
            + self.key.len()
            + self.content_type.len()
            + self.payload.len()
            + self
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 8
    }
}

impl From<Event> for WitEvent {
    fn from(event: Event) -> Self {
        WitEvent {
            id: event.id,
            key: event.key,
            timestamp_ms: event.timestamp_ms,
            content_type: event.content_type,
            payload: event.payload,
            attributes: event.attributes,
        }
    }
}

impl From<WitEvent> for Event {
    fn from(event: WitEvent) -> Self {
        Event {
            id: event.id,
            key: event.key,
            timestamp_ms: event.timestamp_ms,
            content_type: event.content_type,
            payload: event.payload,
            attributes: event.attributes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_attribute_replaces_instead_of_duplicating() {
        let mut event = Event::default();
        event.set_attribute("programId", "1");
        event.set_attribute("programId", "2");
        assert_eq!(event.attributes, vec![("programId".into(), "2".into())]);
        assert_eq!(event.attribute("programId"), Some("2"));
        assert_eq!(event.attribute("missing"), None);
    }
}
