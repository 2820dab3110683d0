//! The host side of the contract's `batch-handler` export: events encoded as an
//! `EventBatch` straight from the engine's [`Event`]s, and an `OutcomeBatch` decoded
//! into one result per event (see `wit/batch.proto`).

use plugin_batch::prost::Message;
use plugin_batch::prost::encoding::{
    WireType, decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, key_len,
};
use plugin_batch::{OutcomeBatch, outcome};

use crate::bindings::WitPluginError;
use crate::error::CallFailure;
use crate::event::Event;

/// What `validate` then `transform` returned for one event.
pub(crate) type EventResult = Result<Vec<Event>, WitPluginError>;

/// Writes `events` into `buffer` (cleared first; its capacity is reused) as an encoded
/// `EventBatch`, without copying them first.
pub(crate) fn encode_events(events: &[Event], buffer: &mut Vec<u8>) {
    buffer.clear();
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

/// The results in an encoded `OutcomeBatch` answering `expected` events, each outcome
/// holding at most `max_events` events. The shape is checked before anything is decoded,
/// since an event of a few bytes becomes a host allocation many times that size: too
/// many events is output over the limits; another number of outcomes, an empty outcome,
/// or bytes that do not decode make a malformed answer.
pub(crate) fn decode_outcomes(
    answer: &[u8],
    expected: usize,
    max_events: usize,
) -> Result<Vec<EventResult>, CallFailure> {
    check_shape(answer, expected, max_events)?;
    let batch = OutcomeBatch::decode(answer).map_err(undecodable)?;
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
            None => Err(malformed("answered an outcome with no result")),
        })
        .collect()
}

/// Refuses an answer without exactly `expected` outcomes or with an outcome of more
/// than `max_events` events, reading only the field keys and lengths.
fn check_shape(answer: &[u8], expected: usize, max_events: usize) -> Result<(), CallFailure> {
    let mut outcomes = 0;
    each_field(answer, &mut |tag, outcome| {
        if tag != 1 {
            return Ok(());
        }
        outcomes += 1;
        if outcomes > expected {
            return Err(malformed(format!(
                "answered more than {expected} outcomes for {expected} events"
            )));
        }
        each_field(outcome.unwrap_or_default(), &mut |tag, accepted| {
            if tag == 1 && fields_tagged(accepted.unwrap_or_default(), 1)? > max_events {
                return Err(CallFailure::OutputTooLarge(format!(
                    "more than {max_events} events for one input event, the limit is \
                     {max_events}; refused before it was decoded"
                )));
            }
            Ok(()) // a reject, retry or fail reason, or events within the limit
        })
    })?;
    if outcomes != expected {
        return Err(malformed(format!(
            "answered {outcomes} outcomes for {expected} events"
        )));
    }
    Ok(())
}

/// How many fields of an encoded message carry `tag`.
fn fields_tagged(message: &[u8], tag: u32) -> Result<usize, CallFailure> {
    let mut count = 0;
    each_field(message, &mut |field, _| {
        count += usize::from(field == tag);
        Ok(())
    })?;
    Ok(count)
}

/// A malformed answer of `batch-handler`.
fn malformed(reason: impl std::fmt::Display) -> CallFailure {
    CallFailure::Reported(format!("batch-handler {reason}"))
}

/// An answer of `batch-handler` that does not decode as an `OutcomeBatch`.
fn undecodable(reason: impl std::fmt::Display) -> CallFailure {
    malformed(format!("answered an undecodable OutcomeBatch: {reason}"))
}

/// What [`each_field`] calls with a field's tag and, when length-delimited, its payload.
type FieldVisitor<'v> = dyn FnMut(u32, Option<&[u8]>) -> Result<(), CallFailure> + 'v;

/// Calls `visit` with the tag of each field of an encoded message, and the payload of
/// the length-delimited ones.
fn each_field(mut bytes: &[u8], visit: &mut FieldVisitor<'_>) -> Result<(), CallFailure> {
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes).map_err(undecodable)?;
        let payload = match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).map_err(undecodable)?;
                None
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut bytes).map_err(undecodable)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= bytes.len())
                    .ok_or_else(|| undecodable("a field runs past the end"))?;
                let (payload, rest) = bytes.split_at(len);
                bytes = rest;
                Some(payload)
            }
            WireType::SixtyFourBit | WireType::ThirtyTwoBit => {
                let width = if wire_type == WireType::SixtyFourBit {
                    8
                } else {
                    4
                };
                bytes = bytes
                    .get(width..)
                    .ok_or_else(|| undecodable("a field runs past the end"))?;
                None
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(undecodable("groups are not part of the schema"));
            }
        };
        visit(tag, payload)?;
    }
    Ok(())
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
        let results = decode_outcomes(&answer, 4, 10).expect("decodes");
        assert_eq!(results[0].as_ref().unwrap()[0].id, "m1");
        assert!(results[1].as_ref().unwrap().is_empty());
        assert!(matches!(&results[2], Err(WitPluginError::Reject(r)) if r == "bad"));
        assert!(matches!(&results[3], Err(WitPluginError::Fail(r)) if r == "broken"));
    }

    #[test]
    fn a_malformed_answer_is_an_error_naming_what_is_wrong() {
        let reason = |answer: &[u8], expected| match decode_outcomes(answer, expected, 10) {
            Err(CallFailure::Reported(reason)) => reason,
            other => panic!("expected a malformed answer, got {other:?}"),
        };
        let one = OutcomeBatch {
            outcomes: vec![Outcome {
                result: Some(outcome::Result::Retry("later".into())),
            }],
        }
        .encode_to_vec();
        let count = reason(&one, 2);
        assert!(count.contains("1 outcomes for 2 events"), "{count}");
        let too_many = reason(&[one.clone(), one.clone()].concat(), 1);
        assert!(too_many.contains("more than 1 outcomes"), "{too_many}");
        let empty = OutcomeBatch {
            outcomes: vec![Outcome { result: None }],
        }
        .encode_to_vec();
        assert!(reason(&empty, 1).contains("no result"));
        let garbage = reason(&[0xff, 0xff], 1);
        assert!(garbage.contains("undecodable"), "{garbage}");
        let truncated = reason(&one[..one.len() - 1], 1);
        assert!(truncated.contains("undecodable"), "{truncated}");
    }

    #[test]
    fn too_many_events_are_refused_before_they_are_decoded() {
        let many = OutcomeBatch {
            outcomes: vec![Outcome {
                result: Some(outcome::Result::Accepted(Events {
                    events: vec![plugin_batch::Event::default(); 11],
                })),
            }],
        }
        .encode_to_vec();
        match decode_outcomes(&many, 1, 10) {
            Err(CallFailure::OutputTooLarge(reason)) => {
                assert!(reason.contains("the limit is 10"), "{reason}")
            }
            other => panic!("expected output over the limits, got {other:?}"),
        }
        assert_eq!(
            decode_outcomes(&many, 1, 11).expect("within")[0]
                .as_ref()
                .unwrap()
                .len(),
            11
        );
    }
}
