//! Validates tracking events.
//!
//! `validate` rejects an event unless its attributes carry a `programId` of ASCII digits, a
//! non-empty `checksum` of ASCII letters and digits, and a `customerId` of ASCII digits; the
//! rejection names the field and the bad value. `transform` marks the event with `valid` = `true`.
//!
//! Config keys: none.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "batch-plugin",
});

use exports::adtrack::plugin::handler::{Event, Guest, PluginError};
use plugin_batch::{EventView, Verdict};

/// The longest part of an offending value quoted back in a rejection message.
const MAX_SHOWN_CHARS: usize = 64;

struct ValidateTracking;

impl Guest for ValidateTracking {
    fn validate(event: Event) -> Result<(), PluginError> {
        check_fields(|name| attribute(&event, name))
    }

    fn transform(mut event: Event) -> Result<Vec<Event>, PluginError> {
        set_attribute(&mut event.attributes, "valid", "true");
        Ok(vec![event])
    }
}

/// `validate` then `transform` over an event read in place: only the `valid` attribute
/// crosses back.
fn validate_in_place(event: &EventView<'_>) -> Result<Verdict, PluginError> {
    check_fields(|name| event.attribute(name))?;
    Ok(Verdict::KeepWith(vec![(
        "valid".to_owned(),
        "true".to_owned(),
    )]))
}

/// Rejects the event unless the tracking fields `attribute` finds are well formed.
fn check_fields<'a>(attribute: impl Fn(&str) -> Option<&'a str>) -> Result<(), PluginError> {
    let digits = |value: &str| value.bytes().all(|b| b.is_ascii_digit());
    let alphanumeric = |value: &str| value.bytes().all(|b| b.is_ascii_alphanumeric());

    check(attribute("programId"), "programId", "digits", digits)?;
    check(
        attribute("checksum"),
        "checksum",
        "ASCII letters and digits",
        alphanumeric,
    )?;
    check(attribute("customerId"), "customerId", "digits", digits)?;
    Ok(())
}

/// Rejects `value`, of attribute `name`, unless it is present, non-empty and
/// `well_formed`.
fn check(
    value: Option<&str>,
    name: &str,
    expected: &str,
    well_formed: impl Fn(&str) -> bool,
) -> Result<(), PluginError> {
    let Some(value) = value else {
        return Err(PluginError::Reject(format!("missing {name}")));
    };
    if value.is_empty() || !well_formed(value) {
        return Err(PluginError::Reject(format!(
            "invalid {name} {}: expected {expected}",
            quoted(value)
        )));
    }
    Ok(())
}

/// The value of the attribute called `name`, if the event has one.
fn attribute<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Sets attribute `name` to `value`, replacing an attribute of the same name.
fn set_attribute(attributes: &mut Vec<(String, String)>, name: &str, value: &str) {
    attributes.retain(|(key, _)| key != name);
    attributes.push((name.to_owned(), value.to_owned()));
}

/// A client-supplied value as it appears in a message: quoted, escaped and cut to a sane length.
fn quoted(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

export!(ValidateTracking);
plugin_batch::export_batch_handler!(ValidateTracking, in_place = validate_in_place);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(attributes: &[(&str, &str)]) -> Event {
        Event {
            id: "m-1".to_owned(),
            key: "42".to_owned(),
            timestamp_ms: 0,
            content_type: "application/json".to_owned(),
            payload: Vec::new(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn rejection(attributes: &[(&str, &str)]) -> String {
        match ValidateTracking::validate(event(attributes)) {
            Err(PluginError::Reject(message)) => message,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accepts_well_formed_tracking_fields() {
        let good = [
            ("programId", "42"),
            ("checksum", "ab12CD"),
            ("customerId", "7"),
        ];
        assert!(ValidateTracking::validate(event(&good)).is_ok());
    }

    #[test]
    fn names_the_field_and_value_it_rejects() {
        assert_eq!(rejection(&[]), "missing programId");
        assert_eq!(
            rejection(&[("programId", "4x")]),
            r#"invalid programId "4x": expected digits"#
        );
        assert_eq!(rejection(&[("programId", "42")]), "missing checksum");
        assert_eq!(
            rejection(&[("programId", "42"), ("checksum", "")]),
            r#"invalid checksum "": expected ASCII letters and digits"#
        );
        assert_eq!(
            rejection(&[
                ("programId", "42"),
                ("checksum", "ab"),
                ("customerId", "abc")
            ]),
            r#"invalid customerId "abc": expected digits"#
        );
    }

    #[test]
    fn quotes_long_and_odd_values_safely() {
        let long = "9".repeat(200) + "x";
        let message = rejection(&[("programId", &long)]);
        assert!(message.ends_with("\"…: expected digits"), "{message}");
        assert!(message.len() < 120, "{message}");
        assert_eq!(quoted("a\"\n"), r#""a\"\n""#);
    }

    #[test]
    fn transform_marks_valid_once() {
        let events = ValidateTracking::transform(event(&[("valid", "false")])).expect("transform");
        assert_eq!(
            events[0].attributes,
            vec![("valid".to_owned(), "true".to_owned())]
        );
    }

    #[test]
    fn reading_in_place_rejects_and_marks_as_validate_and_transform_do() {
        let cases: [&[(&str, &str)]; 5] = [
            &[
                ("programId", "42"),
                ("checksum", "ab12"),
                ("customerId", "7"),
            ],
            &[
                ("valid", "no"),
                ("programId", "42"),
                ("checksum", "ab12"),
                ("customerId", "7"),
                ("valid", "maybe"),
            ],
            &[("programId", "4x")],
            &[("programId", "42"), ("checksum", "")],
            &[],
        ];
        for attributes in cases {
            let view = EventView {
                attributes,
                ..EventView::default()
            };
            // What validate then transform give, and the in-place verdict applied as the
            // host applies it; `PluginError` has no `PartialEq`: compared by `Debug`.
            let expected = ValidateTracking::validate(event(attributes))
                .and_then(|()| ValidateTracking::transform(event(attributes)));
            let in_place = validate_in_place(&view).map(|verdict| match verdict {
                Verdict::KeepWith(set) => {
                    let mut kept = event(attributes);
                    for (name, value) in &set {
                        set_attribute(&mut kept.attributes, name, value);
                    }
                    vec![kept]
                }
                other => panic!("expected the event kept with attributes set, got {other:?}"),
            });
            let in_place = format!("{in_place:?}");
            assert_eq!(in_place, format!("{expected:?}"));
        }
    }
}
