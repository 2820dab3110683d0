//! The plugin side of `batch-handler` for plugins that read each event where it lies in
//! the batch ([`EventView`]) and answer with a [`Verdict`]: an event kept as it came in,
//! or with a few attributes set, crosses back as an `Edit` of those attributes
//! (contract 0.1.2) instead of as a whole new event.

use prost::encoding::message;

use crate::messages::{Attribute, Edit, Event, Events, Outcome, outcome};
use crate::wire::{self, Malformed, Value};

/// One event of a batch, read in place: its strings borrow the batch the host sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventView<'a> {
    /// Unique id of the event.
    pub id: &'a str,
    /// Partition key on the stream.
    pub key: &'a str,
    /// Milliseconds since the Unix epoch at which the host accepted the event.
    pub timestamp_ms: u64,
    /// Media type of `payload`.
    pub content_type: &'a str,
    /// The event body.
    pub payload: &'a [u8],
    /// String attributes, in order; a name may repeat.
    pub attributes: &'a [(&'a str, &'a str)],
}

impl<'a> EventView<'a> {
    /// The value of the first attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&'a str> {
        self.attributes
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    }

    /// An owned copy of the event, to emit as it is or changed.
    pub fn to_event(&self) -> Event {
        Event {
            id: self.id.to_owned(),
            key: self.key.to_owned(),
            timestamp_ms: self.timestamp_ms,
            content_type: self.content_type.to_owned(),
            payload: self.payload.to_vec(),
            attributes: self
                .attributes
                .iter()
                .map(|(name, value)| Attribute {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
        }
    }
}

/// What a plugin accepted one event as: what `transform` would have returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The event as it came in.
    Keep,
    /// The event with these attributes set, in order: each removes every attribute of
    /// its name, then is appended (what `retain` then `push` does to a WIT event).
    KeepWith(Vec<(String, String)>),
    /// No event: filtered out.
    Drop,
    /// These events instead (several: fanned out).
    Emit(Vec<Event>),
}

/// The WIT `plugin-error` a plugin stopped one event with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Refused as bad input.
    Reject(String),
    /// A transient condition: retry later.
    Retry(String),
    /// The plugin itself is broken.
    Fail(String),
}

/// Reads each event of `events` (an `EventBatch`) in place, answers it with `decide`,
/// in order, and encodes the answers as an `OutcomeBatch`; an undecodable batch is an
/// error.
pub fn handle_in_place(
    events: &[u8],
    mut decide: impl FnMut(&EventView<'_>) -> Result<Verdict, Refusal>,
) -> Result<Vec<u8>, String> {
    let undecodable = |error: Malformed| format!("undecodable EventBatch: {error}");
    let mut answer = Vec::with_capacity(events.len() / 8);
    let mut attributes = Vec::new();
    for field in wire::fields(events) {
        let event = match field.map_err(undecodable)? {
            (1, Value::Bytes(event)) => event,
            (1, _) => return Err(undecodable(wrong_wire_type("EventBatch", 1))),
            _ => continue,
        };
        attributes.clear();
        let mut event = read_event(event, &mut attributes).map_err(undecodable)?;
        event.attributes = &attributes;
        let outcome = Outcome {
            result: Some(match decide(&event) {
                Ok(verdict) => verdict.into_result(),
                Err(Refusal::Reject(reason)) => outcome::Result::Reject(reason),
                Err(Refusal::Retry(reason)) => outcome::Result::Retry(reason),
                Err(Refusal::Fail(reason)) => outcome::Result::Fail(reason),
            }),
        };
        message::encode(1, &outcome, &mut answer);
    }
    Ok(answer)
}

impl Verdict {
    fn into_result(self) -> outcome::Result {
        match self {
            Verdict::Keep => outcome::Result::Kept(Edit::default()),
            Verdict::KeepWith(set) => outcome::Result::Kept(Edit {
                set: Event::attributes_from_pairs(set),
            }),
            Verdict::Drop => outcome::Result::Accepted(Events::default()),
            Verdict::Emit(events) => outcome::Result::Accepted(Events { events }),
        }
    }
}

/// The event encoded in `bytes`, its attributes collected into `attributes` (the view's
/// own are left empty, for the caller to point at them).
fn read_event<'a>(
    bytes: &'a [u8],
    attributes: &mut Vec<(&'a str, &'a str)>,
) -> Result<EventView<'a>, Malformed> {
    let mut event = EventView::default();
    for field in wire::fields(bytes) {
        match field? {
            (1, Value::Bytes(text)) => event.id = utf8(text)?,
            (2, Value::Bytes(text)) => event.key = utf8(text)?,
            (3, Value::Varint(timestamp_ms)) => event.timestamp_ms = timestamp_ms,
            (4, Value::Bytes(text)) => event.content_type = utf8(text)?,
            (5, Value::Bytes(payload)) => event.payload = payload,
            (6, Value::Bytes(attribute)) => attributes.push(read_attribute(attribute)?),
            (tag @ 1..=6, _) => return Err(wrong_wire_type("Event", tag)),
            _ => {} // a field this contract version does not know
        }
    }
    Ok(event)
}

/// The (name, value) of the `Attribute` encoded in `bytes`.
fn read_attribute(bytes: &[u8]) -> Result<(&str, &str), Malformed> {
    let (mut name, mut value) = ("", "");
    for field in wire::fields(bytes) {
        match field? {
            (1, Value::Bytes(text)) => name = utf8(text)?,
            (2, Value::Bytes(text)) => value = utf8(text)?,
            (tag @ 1..=2, _) => return Err(wrong_wire_type("Attribute", tag)),
            _ => {}
        }
    }
    Ok((name, value))
}

/// The text of a string field.
#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(bytes).map_err(not_utf8)
}

#[cold]
fn not_utf8(error: std::str::Utf8Error) -> Malformed {
    Malformed::new(format!("a string field: {error}"))
}

fn wrong_wire_type(message: &str, tag: u32) -> Malformed {
    Malformed::new(format!("field {tag} of {message} has the wrong wire type"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBatch, OutcomeBatch};
    use prost::Message;

    fn event(id: &str, attributes: &[(&str, &str)]) -> Event {
        Event {
            id: id.into(),
            key: format!("key-{id}"),
            timestamp_ms: 1_700_000_000_123,
            content_type: "application/json".into(),
            payload: br#"{"a":1}"#.to_vec(),
            attributes: attributes
                .iter()
                .map(|(name, value)| Attribute {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
        }
    }

    fn answer(
        events: &[Event],
        decide: impl FnMut(&EventView<'_>) -> Result<Verdict, Refusal>,
    ) -> Vec<outcome::Result> {
        let batch = EventBatch {
            events: events.to_vec(),
        }
        .encode_to_vec();
        let answer = handle_in_place(&batch, decide).expect("a well-formed batch");
        OutcomeBatch::decode(answer.as_slice())
            .expect("decodes")
            .outcomes
            .into_iter()
            .map(|outcome| outcome.result.expect("a result"))
            .collect()
    }

    #[test]
    fn reads_every_field_of_each_event_in_place() {
        let events = [
            event("m1", &[("programId", "7"), ("programId", "8"), ("", "✓")]),
            Event::default(),
        ];
        let mut seen = Vec::new();
        answer(&events, |view| {
            seen.push(view.to_event());
            Ok(Verdict::Keep)
        });
        assert_eq!(seen, events);
    }

    #[test]
    fn verdicts_and_refusals_become_outcomes_in_order() {
        let events = [
            event("a", &[]),
            event("b", &[]),
            event("c", &[]),
            event("d", &[]),
            event("e", &[]),
        ];
        let outcomes = answer(&events, |view| match view.id {
            "a" => Ok(Verdict::Keep),
            "b" => Ok(Verdict::KeepWith(vec![("valid".into(), "true".into())])),
            "c" => Ok(Verdict::Drop),
            "d" => Ok(Verdict::Emit(vec![view.to_event(), view.to_event()])),
            _ => Err(Refusal::Reject(format!("no {}", view.id))),
        });
        assert_eq!(outcomes[0], outcome::Result::Kept(Edit::default()));
        assert_eq!(
            outcomes[1],
            outcome::Result::Kept(Edit {
                set: vec![Attribute {
                    name: "valid".into(),
                    value: "true".into()
                }]
            })
        );
        assert_eq!(outcomes[2], outcome::Result::Accepted(Events::default()));
        assert_eq!(
            outcomes[3],
            outcome::Result::Accepted(Events {
                events: vec![events[3].clone(), events[3].clone()]
            })
        );
        assert_eq!(outcomes[4], outcome::Result::Reject("no e".into()));
    }

    #[test]
    fn a_batch_that_is_not_an_event_batch_is_an_error() {
        let error = handle_in_place(&[0xff, 0xff, 0xff], |_| Ok(Verdict::Keep)).unwrap_err();
        assert!(error.starts_with("undecodable EventBatch"), "{error}");
        let not_utf8 = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        let error = handle_in_place(&not_utf8, |_| Ok(Verdict::Keep)).unwrap_err();
        assert!(error.contains("a string field"), "{error}");
        // An event whose id (field 1) is a varint.
        let id_as_number = [0x0a, 0x02, 0x08, 0x07];
        let error = handle_in_place(&id_as_number, |_| Ok(Verdict::Keep)).unwrap_err();
        assert!(
            error.contains("field 1 of Event has the wrong wire type"),
            "{error}"
        );
    }
}
