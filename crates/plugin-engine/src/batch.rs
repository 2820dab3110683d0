//! The host side of the contract's `batch-handler` export: events encoded as an
//! `EventBatch` straight from the engine's [`Event`]s, and an `OutcomeBatch` decoded
//! into one [`Answer`] per event (see `wit/batch.proto`).

use std::collections::HashMap;

use plugin_batch::prost::Message;
use plugin_batch::prost::encoding::{WireType, encode_varint, encoded_len_varint};
use plugin_batch::wire::{self, Value, delimited_len, key, put_bytes, put_len};
use plugin_batch::{Outcome, outcome};

use crate::bindings::WitPluginError;
use crate::config::PluginLimits;
use crate::error::CallFailure;
use crate::event::Event;

/// What `validate` then `transform` returned for one event.
pub(crate) type EventResult = Result<Vec<Event>, WitPluginError>;

/// What a plugin answered for one event of a `batch-handler` call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The events it became, or the error that stopped it.
    Returned(EventResult),
    /// Accepted as the input event itself, with these attributes set in order.
    Kept(Vec<(String, String)>),
}

impl Answer {
    /// The result for `input`, the event this answers. A kept answer takes the event,
    /// leaving `Event::default()` in its place.
    pub(crate) fn take_result(self, input: &mut Event) -> EventResult {
        match self {
            Answer::Returned(result) => result,
            Answer::Kept(set) => {
                let mut event = std::mem::take(input);
                set_attributes(&mut event.attributes, set);
                Ok(vec![event])
            }
        }
    }
}

/// Up to this many attributes set by one edit are applied one by one, as the contract
/// words it; more are applied through a map of their names, which stays linear.
const EDIT_APPLIED_ONE_BY_ONE: usize = 8;

/// Sets each attribute of `set`, in order, as the contract's `kept` outcome says: every
/// attribute of its name removed, then it appended. Linear in both lists, whatever the
/// plugin sent: only the last of each name in `set` is appended.
fn set_attributes(attributes: &mut Vec<(String, String)>, set: Vec<(String, String)>) {
    if set.len() <= EDIT_APPLIED_ONE_BY_ONE {
        for (name, value) in set {
            attributes.retain(|(key, _)| *key != name);
            attributes.push((name, value));
        }
        return;
    }
    let last_of_name: HashMap<&str, usize> = set
        .iter()
        .enumerate()
        .map(|(index, (name, _))| (name.as_str(), index))
        .collect();
    attributes.retain(|(name, _)| !last_of_name.contains_key(name.as_str()));
    let appended: Vec<bool> = set
        .iter()
        .enumerate()
        .map(|(index, (name, _))| last_of_name[name.as_str()] == index)
        .collect();
    attributes.extend(
        set.into_iter()
            .zip(appended)
            .filter_map(|(attribute, appended)| appended.then_some(attribute)),
    );
}

/// The size ([`Event::approximate_size`]) `input` can have once `set` is applied, at
/// most: counted as if every attribute of `set` were added, none replaced.
pub(crate) fn kept_size(input: &Event, set: &[(String, String)]) -> usize {
    let added: usize = set
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    input.approximate_size() + added
}

/// Writes `events` into `buffer` (cleared first; its capacity is reused) as an encoded
/// `EventBatch`, without copying them first. Every key is one byte (all tags are below
/// 16), and so is nearly every length: both are written in line.
pub(crate) fn encode_events(events: &[Event], buffer: &mut Vec<u8>) {
    buffer.clear();
    for event in events {
        let len = event_len(event);
        buffer.reserve(delimited_len(len));
        put_len(1, len, buffer);
        put_bytes(1, event.id.as_bytes(), buffer);
        put_bytes(2, event.key.as_bytes(), buffer);
        buffer.push(key(3, WireType::Varint));
        encode_varint(event.timestamp_ms, buffer);
        put_bytes(4, event.content_type.as_bytes(), buffer);
        put_bytes(5, &event.payload, buffer);
        for (name, value) in &event.attributes {
            put_len(6, attribute_len(name, value), buffer);
            put_bytes(1, name.as_bytes(), buffer);
            put_bytes(2, value.as_bytes(), buffer);
        }
    }
}

/// The answers in an encoded `OutcomeBatch` answering `expected` events, each outcome
/// within one output's `limits`. The shape is checked before anything is decoded, since
/// an event or attribute of a few bytes becomes a host allocation many times that size:
/// an outcome of more events, or that would take more host memory, than one `transform`
/// may hand the host is output over the limits; another number of outcomes, an empty
/// outcome, or bytes that do not decode make a malformed answer.
pub(crate) fn decode_outcomes(
    answer: &[u8],
    expected: usize,
    limits: &PluginLimits,
) -> Result<Vec<Answer>, CallFailure> {
    check_shape(answer, expected, limits)?;
    // The outcomes are decoded one by one straight into answers: decoding the whole
    // `OutcomeBatch` first grew a list of them one doubling at a time.
    let mut answers = Vec::with_capacity(expected);
    for field in wire::fields(answer) {
        match field.map_err(undecodable)? {
            (1, Value::Bytes(outcome)) => {
                answers.push(answer_of(Outcome::decode(outcome).map_err(undecodable)?)?)
            }
            (1, _) => return Err(undecodable("field 1 has the wrong wire type")),
            _ => {} // a field this contract version does not know
        }
    }
    Ok(answers)
}

/// What the decoded `outcome` answers.
fn answer_of(outcome: Outcome) -> Result<Answer, CallFailure> {
    Ok(match outcome.result {
        Some(outcome::Result::Accepted(accepted)) => {
            Answer::Returned(Ok(accepted.events.into_iter().map(Event::from).collect()))
        }
        Some(outcome::Result::Kept(edit)) => {
            Answer::Kept(plugin_batch::Event::attribute_pairs(edit.set))
        }
        Some(outcome::Result::Reject(reason)) => {
            Answer::Returned(Err(WitPluginError::Reject(reason)))
        }
        Some(outcome::Result::Retry(reason)) => {
            Answer::Returned(Err(WitPluginError::Retry(reason)))
        }
        Some(outcome::Result::Fail(reason)) => Answer::Returned(Err(WitPluginError::Fail(reason))),
        None => return Err(malformed("answered an outcome with no result")),
    })
}

/// Refuses an answer without exactly `expected` outcomes, or with an outcome beyond one
/// output's `limits` (its events, or the host memory decoding it would take), reading
/// only the field keys and lengths.
fn check_shape(answer: &[u8], expected: usize, limits: &PluginLimits) -> Result<(), CallFailure> {
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
        let host_bytes = outcome_host_bytes(outcome.bytes(), limits.max_output_events)?;
        let budget = limits.host_copy_budget();
        if host_bytes > budget {
            return Err(CallFailure::OutputTooLarge(format!(
                "one input event's outcome would take {host_bytes} bytes of host memory, \
                 more than one output's {budget}; refused before it was decoded"
            )));
        }
    }
    if outcomes != expected {
        return Err(malformed(format!(
            "answered {outcomes} outcomes for {expected} events"
        )));
    }
    Ok(())
}

/// Roughly the host memory decoding the encoded `Outcome` would take: each event's
/// record and each attribute's pair besides the bytes themselves. More than
/// `max_events` events is output over the limits.
fn outcome_host_bytes(outcome: &[u8], max_events: usize) -> Result<usize, CallFailure> {
    // Every field counts: a message field of a `oneof` that repeats is merged.
    let (mut host_bytes, mut events) = (0, 0);
    for field in wire::fields(outcome) {
        let (tag, value) = field.map_err(undecodable)?;
        host_bytes += match tag {
            1 => {
                let mut bytes = 0;
                for field in wire::fields(value.bytes()) {
                    let (tag, event) = field.map_err(undecodable)?;
                    if tag != 1 {
                        continue;
                    }
                    events += 1;
                    bytes += size_of::<Event>() + attributes_host_bytes(event.bytes(), 6)?;
                }
                bytes
            }
            5 => attributes_host_bytes(value.bytes(), 1)?,
            _ => value.bytes().len(), // a reject, retry or fail reason
        };
    }
    if events > max_events {
        return Err(CallFailure::OutputTooLarge(format!(
            "more than {max_events} events for one input event, the limit is {max_events}; \
             refused before it was decoded"
        )));
    }
    Ok(host_bytes)
}

/// Roughly the host memory the encoded `message` would take once decoded: its bytes,
/// plus a pair of strings per attribute (the fields tagged `attribute_tag`).
fn attributes_host_bytes(message: &[u8], attribute_tag: u32) -> Result<usize, CallFailure> {
    let attributes = fields_tagged(message, attribute_tag)?;
    Ok(message.len() + attributes * size_of::<(String, String)>())
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
    delimited_len(event.id.len())
        + delimited_len(event.key.len())
        + 1
        + encoded_len_varint(event.timestamp_ms)
        + delimited_len(event.content_type.len())
        + delimited_len(event.payload.len())
        + event
            .attributes
            .iter()
            .map(|(name, value)| delimited_len(attribute_len(name, value)))
            .sum::<usize>()
}

fn attribute_len(name: &str, value: &str) -> usize {
    delimited_len(name.len()) + delimited_len(value.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_batch::{EventBatch, Events, OutcomeBatch};

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
            // Lengths of two and three varint bytes: the event, payload and an attribute.
            Event {
                payload: vec![7; 20_000],
                ..event("m4", &[("long", &"v".repeat(200))])
            },
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
        let results = into_results(decode_outcomes(&answer, 4, &limits(10)).expect("decodes"));
        assert_eq!(results[0].as_ref().unwrap()[0].id, "m1");
        assert!(results[1].as_ref().unwrap().is_empty());
        assert!(matches!(&results[2], Err(WitPluginError::Reject(r)) if r == "bad"));
        assert!(matches!(&results[3], Err(WitPluginError::Fail(r)) if r == "broken"));
    }

    #[test]
    fn a_malformed_answer_is_an_error_naming_what_is_wrong() {
        let reason = |answer: &[u8], expected| match decode_outcomes(answer, expected, &limits(10))
        {
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
        // An outcome (field 1) sent as a varint.
        let wire_type = reason(&[0x08, 0x01], 1);
        assert!(wire_type.contains("wrong wire type"), "{wire_type}");
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
        match decode_outcomes(&many, 1, &limits(10)) {
            Err(CallFailure::OutputTooLarge(reason)) => {
                assert!(reason.contains("the limit is 10"), "{reason}")
            }
            other => panic!("expected output over the limits, got {other:?}"),
        }
        let within = into_results(decode_outcomes(&many, 1, &limits(11)).expect("within"));
        assert_eq!(within[0].as_ref().unwrap().len(), 11);
    }

    /// The default limits, with at most `max_output_events` events per outcome.
    fn limits(max_output_events: usize) -> PluginLimits {
        PluginLimits {
            max_output_events,
            ..PluginLimits::default()
        }
    }

    #[test]
    fn attributes_that_would_take_too_much_host_memory_are_refused_before_decoding() {
        // An empty attribute is 2 bytes on the wire and a pair of strings in the host.
        let attributes = vec![plugin_batch::Attribute::default(); 200_000];
        let kept = Outcome {
            result: Some(outcome::Result::Kept(plugin_batch::Edit {
                set: attributes.clone(),
            })),
        };
        let accepted = Outcome {
            result: Some(outcome::Result::Accepted(Events {
                events: vec![plugin_batch::Event {
                    attributes,
                    ..Default::default()
                }],
            })),
        };
        for outcome in [kept, accepted] {
            let answer = OutcomeBatch {
                outcomes: vec![outcome],
            }
            .encode_to_vec();
            assert!(answer.len() < 1 << 20, "{} bytes", answer.len());
            match decode_outcomes(&answer, 1, &limits(10)) {
                Err(CallFailure::OutputTooLarge(reason)) => {
                    assert!(reason.contains("bytes of host memory"), "{reason}")
                }
                other => panic!("expected output over the limits, got {other:?}"),
            }
        }
    }

    /// The results of `answers`, each for an input event of its own.
    fn into_results(answers: Vec<Answer>) -> Vec<EventResult> {
        answers
            .into_iter()
            .map(|answer| answer.take_result(&mut Event::default()))
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
        let answers = decode_outcomes(&answer, 2, &limits(10)).expect("decodes");
        let Answer::Kept(set) = &answers[1] else {
            panic!("expected a kept event, got {:?}", answers[1]);
        };
        let size = kept_size(&inputs[1], set);
        let results: Vec<Vec<Event>> = answers
            .into_iter()
            .zip(&mut inputs)
            .map(|(answer, input)| answer.take_result(input).expect("accepted"))
            .collect();
        assert_eq!(results[0], [event("m1", &[("a", "1")])]);
        assert_eq!(
            results[1],
            [event(
                "m2",
                &[("b", "2"), ("programId", "9"), ("valid", "yes")]
            )]
        );
        assert!(size >= results[1][0].approximate_size(), "{size}");
    }

    #[test]
    fn setting_attributes_keeps_the_last_of_each_name_in_order() {
        let mut attributes = vec![
            ("a".to_owned(), "1".to_owned()),
            ("n7".to_owned(), "old".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        let set = (0..50_000)
            .map(|index| (format!("n{}", index % 1_000), index.to_string()))
            .collect();
        set_attributes(&mut attributes, set);
        assert_eq!(attributes.len(), 2 + 1_000);
        assert_eq!(
            attributes[..2],
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(attributes[2], ("n0".to_owned(), "49000".to_owned()));
        assert_eq!(attributes[9], ("n7".to_owned(), "49007".to_owned()));
        assert_eq!(attributes[1_001], ("n999".to_owned(), "49999".to_owned()));
    }
}
