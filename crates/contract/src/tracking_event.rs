//! The protobuf record on the event stream and its conversion to and from the
//! engine's [`Event`]. The schema is `proto/tracking_event.proto`.

use std::collections::BTreeMap;

use plugin_engine::{Event, PluginRef};
use prost::Message;

use crate::attribute;

/// The stream record (see `proto/tracking_event.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct TrackingEvent {
    /// Field 1 (`programid`): the tracked program.
    #[prost(string, tag = "1")]
    pub program_id: String,
    /// Field 2 (`checksum`): the program's checksum.
    #[prost(string, tag = "2")]
    pub checksum: String,
    /// Field 3 (`customer_id`): the customer owning the program.
    #[prost(int32, tag = "3")]
    pub customer_id: i32,
    /// Field 4 (`user_agent`): the client's user agent.
    #[prost(string, tag = "4")]
    pub user_agent: String,
    /// Field 5 (`program_name`): the program's name.
    #[prost(string, tag = "5")]
    pub program_name: String,
    /// Field 6 (`customer_name`): the customer's name.
    #[prost(string, tag = "6")]
    pub customer_name: String,
    /// Field 7 (`is_valid`): whether validation accepted the event.
    #[prost(bool, tag = "7")]
    pub valid: bool,
    /// Field 8 (`message_id`): the message id, unique per event.
    #[prost(string, tag = "8")]
    pub message_id: String,
    /// Field 9: plugins that processed the event on the host, in order.
    #[prost(message, repeated, tag = "9")]
    pub processed_by: Vec<PluginStamp>,
    /// Field 10: when the host accepted the event (ms since the Unix epoch).
    #[prost(uint64, tag = "10")]
    pub timestamp_ms: u64,
    /// Field 11: partition key.
    #[prost(string, tag = "11")]
    pub key: String,
    /// Field 12: media type of `payload`.
    #[prost(string, tag = "12")]
    pub content_type: String,
    /// Field 13: the event body.
    #[prost(bytes = "vec", tag = "13")]
    pub payload: Vec<u8>,
    /// Field 14: every attribute of the event, in name order, so the same event always
    /// encodes to the same bytes.
    #[prost(btree_map = "string, string", tag = "14")]
    pub attributes: BTreeMap<String, String>,
    /// Field 15: the plugin release the host ran the event through (0: none).
    #[prost(uint64, tag = "15")]
    pub host_release: u64,
    /// Field 16: the plugin release the consumer ran it through (stored records only).
    #[prost(uint64, tag = "16")]
    pub consumer_release: u64,
}

/// A plugin and version that processed an event.
#[derive(Clone, PartialEq, Message)]
pub struct PluginStamp {
    /// Plugin name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Plugin version (sha256 of the component, hex).
    #[prost(string, tag = "2")]
    pub version: String,
}

/// The bytes are not a `TrackingEvent`.
#[derive(Debug, thiserror::Error)]
#[error("undecodable stream record: {0}")]
pub struct DecodeError(#[from] prost::DecodeError);

impl TrackingEvent {
    /// The record for `event`, stamped with the plugins that processed it.
    pub fn from_event(event: &Event, processed_by: &[PluginRef]) -> Self {
        let text = |name: &str| event.attribute(name).unwrap_or_default().to_owned();
        Self {
            user_agent: text(attribute::USER_AGENT),
            program_id: text(attribute::PROGRAM_ID),
            program_name: text(attribute::PROGRAM_NAME),
            checksum: text(attribute::CHECKSUM),
            customer_id: event
                .attribute(attribute::CUSTOMER_ID)
                .and_then(|id| id.parse().ok())
                .unwrap_or_default(),
            customer_name: text(attribute::CUSTOMER_NAME),
            message_id: event.id.clone(),
            valid: event.attribute(attribute::VALID) == Some("true"),
            processed_by: processed_by
                .iter()
                .map(|plugin| PluginStamp {
                    name: plugin.name.to_string(),
                    version: plugin.version.to_string(),
                })
                .collect(),
            timestamp_ms: event.timestamp_ms,
            key: event.key.clone(),
            content_type: event.content_type.clone(),
            payload: event.payload.clone(),
            attributes: event.attributes.iter().cloned().collect(),
            host_release: 0,
            consumer_release: 0,
        }
    }

    /// The event this record carries. Records from producers that only set fields
    /// 1 to 8 get their attributes from those fields.
    pub fn into_event(self) -> Event {
        let mut event = Event {
            id: self.message_id.clone(),
            key: if self.key.is_empty() {
                self.message_id.clone()
            } else {
                self.key
            },
            timestamp_ms: self.timestamp_ms,
            content_type: self.content_type,
            payload: self.payload,
            attributes: self.attributes.into_iter().collect(),
        };
        event.attributes.sort();
        let original = [
            (attribute::USER_AGENT, self.user_agent),
            (attribute::PROGRAM_ID, self.program_id),
            (attribute::PROGRAM_NAME, self.program_name),
            (attribute::CHECKSUM, self.checksum),
            (attribute::CUSTOMER_NAME, self.customer_name),
        ];
        for (name, value) in original {
            if !value.is_empty() && event.attribute(name).is_none() {
                event.set_attribute(name, value);
            }
        }
        if self.customer_id != 0 && event.attribute(attribute::CUSTOMER_ID).is_none() {
            event.set_attribute(attribute::CUSTOMER_ID, self.customer_id.to_string());
        }
        if self.valid && event.attribute(attribute::VALID).is_none() {
            event.set_attribute(attribute::VALID, "true");
        }
        event
    }

    /// The protobuf encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes a record from stream bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(Self::decode(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking_event() -> Event {
        Event {
            id: "msg-1".into(),
            key: "msg-1".into(),
            timestamp_ms: 1_700_000_000_000,
            content_type: "application/json".into(),
            payload: Vec::new(),
            attributes: vec![
                ("checksum".into(), "b84e02d7".into()),
                ("customerId".into(), "4712".into()),
                ("customerName".into(), "Globex Travel".into()),
                ("programId".into(), "212313".into()),
                ("programName".into(), "Summer Video Preroll".into()),
                ("userAgent".into(), "Mozilla/5.0".into()),
                ("valid".into(), "true".into()),
            ],
        }
    }

    #[test]
    fn round_trips_an_event_through_protobuf() {
        let event = tracking_event();
        let record = TrackingEvent::from_event(&event, &[]);
        assert_eq!(record.customer_id, 4712);
        assert!(record.valid);
        let decoded = TrackingEvent::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(decoded.into_event(), event);
    }

    /// Fields 1 to 8 as the original producer (`reference/tracking.proto`) wrote them,
    /// encoded by hand.
    #[test]
    fn decodes_records_of_the_original_producer() {
        let mut bytes = Vec::new();
        for (tag, text) in [(1u8, "212313"), (4, "Mozilla/5.0"), (8, "msg-9")] {
            bytes.push(tag << 3 | 2);
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes.extend_from_slice(&[3 << 3, 0xd8, 0x24]); // customer_id = 4696 (varint)
        bytes.extend_from_slice(&[7 << 3, 1]); // is_valid = true
        let event = TrackingEvent::from_bytes(&bytes).unwrap().into_event();
        assert_eq!(event.id, "msg-9");
        assert_eq!(event.key, "msg-9");
        assert_eq!(event.attribute("programId"), Some("212313"));
        assert_eq!(event.attribute("customerId"), Some("4696"));
        assert_eq!(event.attribute("valid"), Some("true"));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(TrackingEvent::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    }
}
