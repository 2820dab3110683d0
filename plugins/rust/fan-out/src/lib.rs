//! Fans an event whose payload is a JSON array out into one event per element.
//!
//! `validate` rejects an event whose content type is `application/json` but whose non-empty
//! payload is not valid JSON (an empty payload carries nothing to split and passes). `transform` turns a payload that is a JSON array into one event per element: id
//! `<id>-<index>`, the same key, timestamp, content type and attributes, plus attribute
//! `fanOutIndex` = index (from 0), and the element as payload. An array with more elements than
//! allowed is rejected; any other payload passes through as a single, unchanged event.
//!
//! Config keys:
//! - `max-items`: the most elements one array may have (default 1000).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "batch-plugin",
});

use adtrack::plugin::config;
use exports::adtrack::plugin::handler::{Event, Guest, PluginError};
use serde_json::Value;

/// The array size limit used when the `max-items` config key is not set.
const DEFAULT_MAX_ITEMS: usize = 1000;

struct FanOut;

impl Guest for FanOut {
    fn validate(event: Event) -> Result<(), PluginError> {
        if !is_json(&event.content_type) || event.payload.is_empty() {
            return Ok(());
        }
        serde_json::from_slice::<Value>(&event.payload)
            .map(drop)
            .map_err(|error| PluginError::Reject(format!("payload is not valid JSON: {error}")))
    }

    fn transform(event: Event) -> Result<Vec<Event>, PluginError> {
        let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&event.payload) else {
            return Ok(vec![event]);
        };
        let max_items = max_items()?;
        if items.len() > max_items {
            return Err(PluginError::Reject(format!(
                "payload array has {} items, more than the {max_items} allowed",
                items.len()
            )));
        }

        items
            .iter()
            .enumerate()
            .map(|(index, item)| element_event(&event, index, item))
            .collect()
    }
}

/// The event carrying element `index` of `source`'s payload array.
fn element_event(source: &Event, index: usize, item: &Value) -> Result<Event, PluginError> {
    let payload = serde_json::to_vec(item).map_err(|error| {
        PluginError::Fail(format!("cannot serialize array element {index}: {error}"))
    })?;
    let mut attributes = source.attributes.clone();
    attributes.retain(|(name, _)| name != "fanOutIndex");
    attributes.push(("fanOutIndex".to_owned(), index.to_string()));
    Ok(Event {
        id: format!("{}-{index}", source.id),
        key: source.key.clone(),
        timestamp_ms: source.timestamp_ms,
        content_type: source.content_type.clone(),
        payload,
        attributes,
    })
}

/// Whether `content_type` is `application/json`, ignoring case and parameters such as `charset`.
fn is_json(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default();
    media_type.trim().eq_ignore_ascii_case("application/json")
}

/// The configured `max-items`; a value that is not a whole number means the plugin is misconfigured.
fn max_items() -> Result<usize, PluginError> {
    match config::get("max-items") {
        None => Ok(DEFAULT_MAX_ITEMS),
        Some(value) => value.trim().parse().map_err(|_| {
            PluginError::Fail(format!(
                "invalid config max-items {value:?}: expected a whole number"
            ))
        }),
    }
}

export!(FanOut);
plugin_batch::export_batch_handler!(FanOut);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(content_type: &str, payload: &str) -> Event {
        Event {
            id: "m-1".to_owned(),
            key: "42".to_owned(),
            timestamp_ms: 7,
            content_type: content_type.to_owned(),
            payload: payload.as_bytes().to_vec(),
            attributes: vec![("fanOutIndex".to_owned(), "old".to_owned())],
        }
    }

    #[test]
    fn rejects_invalid_json_only_when_declared_json() {
        let bad = FanOut::validate(event("Application/JSON; charset=utf-8", "{"));
        assert!(
            matches!(bad, Err(PluginError::Reject(m)) if m.starts_with("payload is not valid JSON: "))
        );
        assert!(FanOut::validate(event("text/plain", "{")).is_ok());
        assert!(FanOut::validate(event("application/json", "[1, {\"a\": 2}]")).is_ok());
    }

    #[test]
    fn non_array_payload_passes_through() {
        let events = FanOut::transform(event("application/json", "{\"a\": 1}")).expect("transform");
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].id.as_str(), events[0].payload.as_slice()),
            ("m-1", &b"{\"a\": 1}"[..])
        );
    }

    #[test]
    fn element_event_copies_the_envelope_and_replaces_the_index() {
        let source = event("application/json", "[1, {\"a\": 2}]");
        let element = element_event(&source, 1, &serde_json::json!({"a": 2})).expect("element");
        assert_eq!(element.id, "m-1-1");
        assert_eq!((element.key.as_str(), element.timestamp_ms), ("42", 7));
        assert_eq!(element.payload, b"{\"a\":2}");
        assert_eq!(
            element.attributes,
            vec![("fanOutIndex".to_owned(), "1".to_owned())]
        );
    }
}
