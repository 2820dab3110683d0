//! The plugin side of `batch-handler` for plugins that read each event where it lies in
//! the batch ([`EventView`]) and answer with a [`Verdict`]: an event kept as it came in,
//! or with a few attributes set, crosses back as an `Edit` of those attributes
//! (contract 0.1.2) instead of as a whole new event.

use prost::encoding::message;

use crate::messages::{Attribute, Event, Events, Outcome, outcome};
use crate::wire::{self, Malformed, Value, delimited_len, put_bytes, put_len};

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
        put_outcome(decide(&event), &mut answer);
    }
    Ok(answer)
}

/// Appends the `Outcome` of one event to the `OutcomeBatch` in `answer`. An event kept,
/// the common case, is written directly; the rest go through the prost messages.
fn put_outcome(decided: Result<Verdict, Refusal>, answer: &mut Vec<u8>) {
    let result = match decided {
        Ok(Verdict::Keep) => return put_kept(&[], answer),
        Ok(Verdict::KeepWith(set)) => return put_kept(&set, answer),
        Ok(Verdict::Drop) => outcome::Result::Accepted(Events::default()),
        Ok(Verdict::Emit(events)) => outcome::Result::Accepted(Events { events }),
        Err(Refusal::Reject(reason)) => outcome::Result::Reject(reason),
        Err(Refusal::Retry(reason)) => outcome::Result::Retry(reason),
        Err(Refusal::Fail(reason)) => outcome::Result::Fail(reason),
    };
    let outcome = Outcome {
        result: Some(result),
    };
    message::encode(1, &outcome, answer);
}

/// Appends an `Outcome` whose result is `kept` with the `Edit` setting `set`: the bytes
/// prost writes for `Outcome { result: Some(Kept(Edit { set })) }`, without building it.
fn put_kept(set: &[(String, String)], answer: &mut Vec<u8>) {
    let attribute_len = |(name, value): &(String, String)| string_len(name) + string_len(value);
    let edit_len: usize = set
        .iter()
        .map(|attribute| delimited_len(attribute_len(attribute)))
        .sum();
    put_len(1, delimited_len(edit_len), answer); // OutcomeBatch.outcomes
    put_len(5, edit_len, answer); // Outcome.kept
    for attribute in set {
        put_len(1, attribute_len(attribute), answer); // Edit.set
        put_string(1, &attribute.0, answer);
        put_string(2, &attribute.1, answer);
    }
}

/// Encoded size of a string field holding `text`: none when it is empty (proto3).
fn string_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        delimited_len(text.len())
    }
}

/// Appends string field `tag` holding `text`, unless it is empty (proto3).
fn put_string(tag: u8, text: &str, answer: &mut Vec<u8>) {
    if !text.is_empty() {
        put_bytes(tag, text.as_bytes(), answer);
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

/// The text of a string field. ASCII, nearly every string of an event, is recognised a
/// word at a time; `from_utf8` checks the rest (it goes byte by byte until its input is
/// aligned, which on an event's short strings is most of them).
#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, Malformed> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        #[allow(unsafe_code)]
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
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
    use crate::{Edit, EventBatch, OutcomeBatch};
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
    fn a_kept_event_is_written_as_prost_writes_its_outcome() {
        let sets = [
            vec![],
            vec![("valid".to_owned(), "true".to_owned())],
            // Lengths of two varint bytes, and an empty attribute.
            vec![
                ("long".into(), "v".repeat(300)),
                (String::new(), String::new()),
            ],
        ];
        for set in sets {
            let mut written = Vec::new();
            put_outcome(Ok(Verdict::KeepWith(set.clone())), &mut written);
            let outcome = Outcome {
                result: Some(outcome::Result::Kept(Edit {
                    set: Event::attributes_from_pairs(set),
                })),
            };
            let mut expected = Vec::new();
            message::encode(1, &outcome, &mut expected);
            assert_eq!(written, expected);
        }
        let mut kept = Vec::new();
        put_outcome(Ok(Verdict::Keep), &mut kept);
        let mut kept_with_nothing = Vec::new();
        put_outcome(Ok(Verdict::KeepWith(Vec::new())), &mut kept_with_nothing);
        assert_eq!(kept, kept_with_nothing);
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
