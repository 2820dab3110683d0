//! The host side of the contract's `batch-handler` export: events encoded as an
//! `EventBatch` straight from the engine's [`Event`]s, and an `OutcomeBatch` decoded
//! into one [`Answer`] per event (see `wit/batch.proto`).

use plugin_batch::prost::Message;
use plugin_batch::prost::encoding::{
    WireType, encode_key, encode_varint, encoded_len_varint, key_len,
};
use plugin_batch::wire;
use plugin_batch::{OutcomeBatch, outcome};

use crate::bindings::WitPluginError;
use crate::error::CallFailure;
use crate::event::Event;

/// What `validate` then `transform` returned for one event.
pub(crate) type EventResult = Result<Vec<Event>, WitPluginError>;

/// What a plugin answered for one event of a `batch-handler` call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The events it became, or the error that stopped it.
    Result(EventResult),
    /// Accepted as the input event itself, with these attributes set in order.
    Kept(Vec<(String, String)>),
}

impl Answer {
    /// The result for `input`, the event this answers, which a kept answer takes.
    pub(crate) fn into_result(self, input: &mut Event) -> EventResult {
        match self {
            Answer::Result(result) => result,
            Answer::Kept(set) => {
                let mut event = std::mem::take(input);
                for (name, value) in set {
                    event.attributes.retain(|(key, _)| *key != name);
                    event.attributes.push((name, value));
                }
                Ok(vec![event])
            }
        }
    }
}

/// The size ([`Event::approximate_size`]) of `input` once `set` is applied as
/// [`Answer::into_result`] applies it, without applying it.
pub(crate) fn kept_size(input: &Event, set: &[(String, String)]) -> usize {
    let is_set = |name: &str| set.iter().any(|(key, _)| key == name);
    let removed: usize = input
        .attributes
        .iter()
        .filter(|(name, _)| is_set(name))
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let added: usize = set
        .iter()
        .enumerate()
        .filter(|(index, (name, _))| !set[index + 1..].iter().any(|(later, _)| later == name))
        .map(|(_, (name, value))| name.len() + value.len())
        .sum();
    input.approximate_size() - removed + added
}

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

/// The answers in an encoded `OutcomeBatch` answering `expected` events, each outcome
/// holding at most `max_events` events. The shape is checked before anything is decoded,
/// since an event of a few bytes becomes a host allocation many times that size: too
/// many events is output over the limits; another number of outcomes, an empty outcome,
/// or bytes that do not decode make a malformed answer.
pub(crate) fn decode_outcomes(
    answer: &[u8],
    expected: usize,
    max_events: usize,
) -> Result<Vec<Answer>, CallFailure> {
    check_shape(answer, expected, max_events)?;
    let batch = OutcomeBatch::decode(answer).map_err(undecodable)?;
    batch
        .outcomes
        .into_iter()
        .map(|outcome| match outcome.result {
            Some(outcome::Result::Accepted(accepted)) => Ok(Answer::Result(Ok(accepted
                .events
                .into_iter()
                .map(Event::from)
                .collect()))),
            Some(outcome::Result::Kept(edit)) => {
                Ok(Answer::Kept(plugin_batch::Event::attribute_pairs(edit.set)))
            }
            Some(outcome::Result::Reject(reason)) => {
                Ok(Answer::Result(Err(WitPluginError::Reject(reason))))
            }
            Some(outcome::Result::Retry(reason)) => {
                Ok(Answer::Result(Err(WitPluginError::Retry(reason))))
            }
            Some(outcome::Result::Fail(reason)) => {
                Ok(Answer::Result(Err(WitPluginError::Fail(reason))))
            }
            None => Err(malformed("answered an outcome with no result")),
        })
        .collect()
}

/// Refuses an answer without exactly `expected` outcomes or with an outcome of more
/// than `max_events` events, reading only the field keys and lengths.
fn check_shape(answer: &[u8], expected: usize, max_events: usize) -> Result<(), CallFailure> {
    let mut outcomes = 0;
    for field in wire::fields(answer) {
        let (tag, outcome) = field.map_err(undecodable)?;
        if tag != 1 {
            continue;
        }
        outcomes += 1;
        if outcomes > expected {
            return Err(malformed(format!(
                "answered more than {expected} outcomes for {expected} events"
            )));
        }
        for field in wire::fields(outcome.bytes()) {
            let (tag, accepted) = field.map_err(undecodable)?;
            if tag == 1 && fields_tagged(accepted.bytes(), 1)? > max_events {
                return Err(CallFailure::OutputTooLarge(format!(
                    "more than {max_events} events for one input event, the limit is \
                     {max_events}; refused before it was decoded"
                )));
            }
            // Otherwise a reject, retry or fail reason, a kept event's attributes, or
            // events within the limit.
        }
    }
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
    for field in wire::fields(message) {
        count += usize::from(field.map_err(undecodable)?.0 == tag);
    }
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
        let results = into_results(decode_outcomes(&answer, 4, 10).expect("decodes"));
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
        let within = into_results(decode_outcomes(&many, 1, 11).expect("within"));
        assert_eq!(within[0].as_ref().unwrap().len(), 11);
    }

    /// The results of `answers`, each for an input event of its own.
    fn into_results(answers: Vec<Answer>) -> Vec<EventResult> {
        answers
            .into_iter()
            .map(|answer| answer.into_result(&mut Event::default()))
            .collect()
    }

    #[test]
    fn a_kept_event_is_the_input_with_its_attributes_set_in_order() {
        let kept = |set: &[(&str, &str)]| Outcome {
            result: Some(outcome::Result::Kept(plugin_batch::Edit {
                set: set
                    .iter()
                    .map(|(name, value)| plugin_batch::Attribute {
                        name: (*name).into(),
                        value: (*value).into(),
                    })
                    .collect(),
            })),
        };
        let answer = OutcomeBatch {
            outcomes: vec![
                kept(&[]),
                kept(&[("valid", "true"), ("programId", "9"), ("valid", "yes")]),
            ],
        }
        .encode_to_vec();
        let mut inputs = [
            event("m1", &[("a", "1")]),
            event(
                "m2",
                &[
                    ("valid", "no"),
                    ("programId", "7"),
                    ("valid", "?"),
                    ("b", "2"),
                ],
            ),
        ];
        let answers = decode_outcomes(&answer, 2, 10).expect("decodes");
        let Answer::Kept(set) = &answers[1] else {
            panic!("expected a kept event, got {:?}", answers[1]);
        };
        let size = kept_size(&inputs[1], set);
        let results: Vec<Vec<Event>> = answers
            .into_iter()
            .zip(&mut inputs)
            .map(|(answer, input)| answer.into_result(input).expect("accepted"))
            .collect();
        assert_eq!(results[0], [event("m1", &[("a", "1")])]);
        assert_eq!(
            results[1],
            [event(
                "m2",
                &[("b", "2"), ("programId", "9"), ("valid", "yes")]
            )]
        );
        assert_eq!(size, results[1][0].approximate_size());
    }
}
