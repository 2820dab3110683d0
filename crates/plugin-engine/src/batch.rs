//! The host side of the contract's `batch-handler` export: events encoded as an
//! `EventBatch` straight from the engine's [`Event`]s, and an `OutcomeBatch` decoded
//! into one result per event (see `wit/batch.proto`).

use plugin_batch::prost::Message;
use plugin_batch::prost::encoding::{
    WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};
use plugin_batch::{OutcomeBatch, outcome};

use crate::bindings::WitPluginError;
use crate::event::Event;

/// What `validate` then `transform` returned for one event.
pub(crate) type EventResult = Result<Vec<Event>, WitPluginError>;

/// Writes `events` into `buffer` (cleared first) as an encoded `EventBatch`, without
/// copying them first.
pub(crate) fn encode_events(events: &[Event], buffer: &mut Vec<u8>) {
    let size: usize = events
        .iter()
        .map(|event| delimited_len(1, event_len(event)))
        .sum();
    buffer.clear();
    buffer.reserve(size);
    for event in events {
        encode_key(1, WireType::LengthDelimited, buffer);
        encode_varint(event_len(event) as u64, buffer);
        put_bytes(1, event.id.as_bytes(), buffer);
        put_bytes(2, event.key.as_bytes(), buffer);
        encode_key(3, WireType::Varint, buffer);
        encode_varint(event.timestamp_ms, buffer);
        put_bytes(4, event.content_type.as_bytes(), buffer);
        put_bytes(5, &event.payload, buffer);
        for (name, value) in &event.attributes {
            encode_key(6, WireType::LengthDelimited, buffer);
            encode_varint(attribute_len(name, value) as u64, buffer);
            put_bytes(1, name.as_bytes(), buffer);
            put_bytes(2, value.as_bytes(), buffer);
        }
    }
}

/// The results in an encoded `OutcomeBatch` answering `expected` events; an answer
/// that does not decode, or holds another number of outcomes or an empty one, is an
/// error.
pub(crate) fn decode_outcomes(answer: &[u8], expected: usize) -> Result<Vec<EventResult>, String> {
    let batch = OutcomeBatch::decode(answer)
        .map_err(|error| format!("batch-handler answered an undecodable OutcomeBatch: {error}"))?;
    if batch.outcomes.len() != expected {
        return Err(format!(
            "batch-handler answered {} outcomes for {expected} events",
            batch.outcomes.len()
        ));
    }
    batch
        .outcomes
        .into_iter()
        .map(|outcome| match outcome.result {
            Some(outcome::Result::Accepted(accepted)) => {
                Ok(Ok(accepted.events.into_iter().map(Event::from).collect()))
            }
            Some(outcome::Result::Reject(reason)) => Ok(Err(WitPluginError::Reject(reason))),
            Some(outcome::Result::Retry(reason)) => Ok(Err(WitPluginError::Retry(reason))),
            Some(outcome::Result::Fail(reason)) => Ok(Err(WitPluginError::Fail(reason))),
            None => Err("batch-handler answered an outcome with no result".to_owned()),
        })
        .collect()
}

impl From<plugin_batch::Event> for Event {
    fn from(event: plugin_batch::Event) -> Self {
        Event {
            id: event.id,
            key: event.key,
            timestamp_ms: event.timestamp_ms,
            content_type: event.content_type,
            payload: event.payload,
            attributes: plugin_batch::Event::attribute_pairs(event.attributes),
        }
    }
}

fn event_len(event: &Event) -> usize {
    delimited_len(1, event.id.len())
        + delimited_len(2, event.key.len())
        + key_len(3)
        + encoded_len_varint(event.timestamp_ms)
        + delimited_len(4, event.content_type.len())
        + delimited_len(5, event.payload.len())
        + event
            .attributes
            .iter()
            .map(|(name, value)| delimited_len(6, attribute_len(name, value)))
            .sum::<usize>()
}

fn attribute_len(name: &str, value: &str) -> usize {
    delimited_len(1, name.len()) + delimited_len(2, value.len())
}

/// Encoded size of a length-delimited field `tag` of `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_bytes(tag: u32, bytes: &[u8], buffer: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buffer);
    encode_varint(bytes.len() as u64, buffer);
    buffer.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_batch::{EventBatch, Events, Outcome};

    fn event(id: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            id: id.into(),
            key: format!("key-{id}"),
            timestamp_ms: 1_700_000_000_123,
            content_type: "application/json".into(),
            payload: br#"{"a":1}"#.to_vec(),
            attributes: attributes
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    #[test]
    fn events_decode_as_the_event_batch_message() {
        let events = vec![
            event("m1", &[("programId", "7"), ("programId", "8"), ("", "")]),
            Event::default(),
            event("m3", &[("userAgent", "Mozilla/5.0 ✓")]),
        ];
        let mut buffer = vec![1, 2, 3];
        encode_events(&events, &mut buffer);
        let decoded = EventBatch::decode(buffer.as_slice()).expect("decodes");
        let round_trip: Vec<Event> = decoded.events.into_iter().map(Event::from).collect();
        assert_eq!(round_trip, events);
    }

    #[test]
    fn outcomes_map_to_results_in_order() {
        let answer = OutcomeBatch {
            outcomes: vec![
                Outcome {
                    result: Some(outcome::Result::Accepted(Events {
                        events: vec![plugin_batch::Event {
                            id: "m1".into(),
                            ..Default::default()
                        }],
                    })),
                },
                Outcome {
                    result: Some(outcome::Result::Accepted(Events::default())),
                },
                Outcome {
                    result: Some(outcome::Result::Reject("bad".into())),
                },
                Outcome {
                    result: Some(outcome::Result::Fail("broken".into())),
                },
            ],
        }
        .encode_to_vec();
        let results = decode_outcomes(&answer, 4).expect("decodes");
        assert_eq!(results[0].as_ref().unwrap()[0].id, "m1");
        assert!(results[1].as_ref().unwrap().is_empty());
        assert!(matches!(&results[2], Err(WitPluginError::Reject(r)) if r == "bad"));
        assert!(matches!(&results[3], Err(WitPluginError::Fail(r)) if r == "broken"));
    }

    #[test]
    fn a_malformed_answer_is_an_error_naming_what_is_wrong() {
        let one = OutcomeBatch {
            outcomes: vec![Outcome {
                result: Some(outcome::Result::Retry("later".into())),
            }],
        }
        .encode_to_vec();
        let count = decode_outcomes(&one, 2).unwrap_err();
        assert!(count.contains("1 outcomes for 2 events"), "{count}");
        let empty = OutcomeBatch {
            outcomes: vec![Outcome { result: None }],
        }
        .encode_to_vec();
        assert!(
            decode_outcomes(&empty, 1)
                .unwrap_err()
                .contains("no result")
        );
        let garbage = decode_outcomes(&[0xff, 0xff], 1).unwrap_err();
        assert!(garbage.contains("undecodable"), "{garbage}");
    }
}
