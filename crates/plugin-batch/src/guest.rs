//! The plugin side of `batch-handler`: decode the events, handle each, encode the
//! outcomes.

use prost::Message;

use crate::messages::{Event, EventBatch, Outcome, OutcomeBatch};

/// Decodes `events` (an `EventBatch`), answers each event with `handle_one`, in order,
/// and encodes the outcomes as an `OutcomeBatch`; an undecodable batch is an error.
pub fn handle(
    events: &[u8],
    mut handle_one: impl FnMut(Event) -> Outcome,
) -> Result<Vec<u8>, String> {
    let batch =
        EventBatch::decode(events).map_err(|error| format!("undecodable EventBatch: {error}"))?;
    let outcomes = batch.events.into_iter().map(&mut handle_one).collect();
    Ok(OutcomeBatch { outcomes }.encode_to_vec())
}

/// Exports the contract's `batch-handler` for `$plugin`, which implements the crate's
/// `handler` `Guest` trait: each event of a batch runs through its `validate`, then,
/// when that accepts it, its `transform`, exactly as the host would call them one by one.
/// `validate` gets a copy of the event. A plugin whose `validate` only reads the event can
/// spare that copy by naming a function that does both in one pass, with the same result:
/// `export_batch_handler!(Filter, Filter::transform)` when `validate` accepts everything.
///
/// A plugin that reads events without holding on to them can go further with
/// `export_batch_handler!(Filter, in_place = filter_in_place)`, naming a
/// `fn(&EventView<'_>) -> Result<Verdict, PluginError>` that gives the same result as
/// `validate` then `transform`: each event is read where it lies in the batch, and one
/// kept as it came in, or with a few attributes set, crosses back as only those
/// attributes.
///
/// For a crate whose bindings `wit_bindgen::generate!` made at its root for the
/// `batch-plugin` world; `export!($plugin)` stays as it is.
#[macro_export]
#[allow(
    clippy::crate_in_macro_def,
    reason = "`crate` is the calling plugin, whose bindings the handler implements"
)]
macro_rules! export_batch_handler {
    ($plugin:ty) => {
        $crate::export_batch_handler!($plugin, |event| {
            use crate::exports::adtrack::plugin::handler::Guest;
            match <$plugin as Guest>::validate(event.clone()) {
                Ok(()) => <$plugin as Guest>::transform(event),
                Err(error) => Err(error),
            }
        });
    };
    ($plugin:ty, in_place = $in_place:expr) => {
        impl crate::exports::adtrack::plugin::batch_handler::Guest for $plugin {
            fn handle(
                events: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                use crate::exports::adtrack::plugin::handler::PluginError;
                let in_place: fn(
                    &$crate::EventView<'_>,
                ) -> ::std::result::Result<$crate::Verdict, PluginError> = $in_place;
                $crate::handle_in_place(&events, |event| {
                    in_place(event).map_err(|error| match error {
                        PluginError::Reject(reason) => $crate::Refusal::Reject(reason),
                        PluginError::Retry(reason) => $crate::Refusal::Retry(reason),
                        PluginError::Fail(reason) => $crate::Refusal::Fail(reason),
                    })
                })
            }
        }
    };
    ($plugin:ty, $validate_then_transform:expr) => {
        impl crate::exports::adtrack::plugin::batch_handler::Guest for $plugin {
            fn handle(
                events: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                use crate::exports::adtrack::plugin::handler::{Event, PluginError};
                use $crate::outcome::Result as Answer;
                let validate_then_transform: fn(
                    Event,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<Event>,
                    PluginError,
                > = $validate_then_transform;
                $crate::handle(&events, |event| {
                    let event = Event {
                        id: event.id,
                        key: event.key,
                        timestamp_ms: event.timestamp_ms,
                        content_type: event.content_type,
                        payload: event.payload,
                        attributes: $crate::Event::attribute_pairs(event.attributes),
                    };
                    let answer = match validate_then_transform(event) {
                        Ok(events) => Answer::Accepted($crate::Events {
                            events: events
                                .into_iter()
                                .map(|event| $crate::Event {
                                    id: event.id,
                                    key: event.key,
                                    timestamp_ms: event.timestamp_ms,
                                    content_type: event.content_type,
                                    payload: event.payload,
                                    attributes: $crate::Event::attributes_from_pairs(
                                        event.attributes,
                                    ),
                                })
                                .collect(),
                        }),
                        Err(PluginError::Reject(reason)) => Answer::Reject(reason),
                        Err(PluginError::Retry(reason)) => Answer::Retry(reason),
                        Err(PluginError::Fail(reason)) => Answer::Fail(reason),
                    };
                    $crate::Outcome {
                        result: Some(answer),
                    }
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Attribute, Events, outcome};

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            attributes: vec![Attribute {
                name: "programId".into(),
                value: "7".into(),
            }],
            ..Event::default()
        }
    }

    #[test]
    fn answers_every_event_in_order() {
        let input = EventBatch {
            events: vec![event("a"), event("b")],
        }
        .encode_to_vec();
        let answer = handle(&input, |event| Outcome {
            result: Some(if event.id == "a" {
                outcome::Result::Accepted(Events {
                    events: vec![event],
                })
            } else {
                outcome::Result::Reject(format!("no {}", event.id))
            }),
        })
        .expect("a well-formed batch");
        let outcomes = OutcomeBatch::decode(answer.as_slice()).unwrap().outcomes;
        assert_eq!(outcomes.len(), 2);
        assert_eq!(
            outcomes[0].result,
            Some(outcome::Result::Accepted(Events {
                events: vec![event("a")]
            }))
        );
        assert_eq!(
            outcomes[1].result,
            Some(outcome::Result::Reject("no b".into()))
        );
    }

    #[test]
    fn an_undecodable_batch_is_an_error() {
        let error = handle(&[0xff, 0xff, 0xff], |_| Outcome::default()).unwrap_err();
        assert!(error.starts_with("undecodable EventBatch"), "{error}");
    }
}
