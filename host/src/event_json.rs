//! JSON forms of events and chain outcomes, as read and printed by the CLI.

use std::time::{SystemTime, UNIX_EPOCH};

use plugin_engine::{ChainOutcome, Event, Outcome, PluginRef};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// An event as written in JSON input; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventJson {
    id: Option<String>,
    key: Option<String>,
    timestamp_ms: Option<u64>,
    content_type: Option<String>,
    /// UTF-8 payload text.
    payload: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
}

impl EventJson {
    /// The event, with defaults: id `fallback_id`, key = id, timestamp now,
    /// content type `application/json`. Attribute values must be strings or numbers.
    pub fn into_event(self, fallback_id: String) -> Result<Event, String> {
        let id = self.id.unwrap_or(fallback_id);
        let attributes = self
            .attributes
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name, text)),
                Value::Number(number) => Ok((name, number.to_string())),
                Value::Bool(flag) => Ok((name, flag.to_string())),
                other => Err(format!(
                    "attribute {name:?} must be a string, number or boolean, not {other}"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Event {
            key: self.key.unwrap_or_else(|| id.clone()),
            id,
            timestamp_ms: self.timestamp_ms.unwrap_or_else(now_ms),
            content_type: self
                .content_type
                .unwrap_or_else(|| "application/json".to_owned()),
            payload: self.payload.unwrap_or_default().into_bytes(),
            attributes,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

/// The JSON form of an event; a payload that is not UTF-8 is shown as `payloadHex`.
pub fn event_to_json(event: &Event) -> Value {
    let attributes: Map<String, Value> = event
        .attributes
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    let mut object = json!({
        "id": event.id,
        "key": event.key,
        "timestampMs": event.timestamp_ms,
        "contentType": event.content_type,
        "attributes": attributes,
    });
    match std::str::from_utf8(&event.payload) {
        Ok(text) => object["payload"] = Value::String(text.to_owned()),
        Err(_) => object["payloadHex"] = Value::String(hex_string(&event.payload)),
    }
    object
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn plugin_ref_json(plugin: &PluginRef) -> Value {
    json!({ "plugin": &*plugin.name, "version": plugin.version.to_string() })
}

/// The JSON form of one outcome: `accepted`, `filtered`, `rejected`, `retry` or `failed`.
pub fn outcome_to_json(outcome: &ChainOutcome) -> Value {
    let mut object = match &outcome.outcome {
        Outcome::Accepted(events) if events.is_empty() => json!({ "outcome": "filtered" }),
        Outcome::Accepted(events) => json!({
            "outcome": "accepted",
            "events": events.iter().map(event_to_json).collect::<Vec<_>>(),
        }),
        Outcome::Rejected { by, reason } => stopped_by("rejected", by, json!({ "reason": reason })),
        Outcome::Retry { by, reason } => stopped_by("retry", by, json!({ "reason": reason })),
        Outcome::Failed { by, failure } => stopped_by(
            "failed",
            by,
            json!({ "failure": failure.kind(), "reason": failure.to_string() }),
        ),
    };
    object["processedBy"] = outcome.processed_by.iter().map(plugin_ref_json).collect();
    object
}

fn stopped_by(outcome: &str, by: &PluginRef, detail: Value) -> Value {
    let mut object = json!({
        "outcome": outcome,
        "plugin": &*by.name,
        "version": by.version.to_string(),
    });
    if let (Some(target), Value::Object(detail)) = (object.as_object_mut(), detail) {
        target.extend(detail);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_fields() {
        let json: EventJson =
            serde_json::from_str(r#"{"attributes":{"programId":212313}}"#).unwrap();
        let event = json.into_event("line-1".into()).unwrap();
        assert_eq!(event.id, "line-1");
        assert_eq!(event.key, "line-1");
        assert_eq!(event.content_type, "application/json");
        assert_eq!(event.attribute("programId"), Some("212313"));
        assert!(event.timestamp_ms > 0);
    }

    #[test]
    fn nested_attribute_values_are_refused() {
        let json: EventJson = serde_json::from_str(r#"{"attributes":{"a":{"b":1}}}"#).unwrap();
        let error = json.into_event("x".into()).unwrap_err();
        assert!(error.contains("\"a\""), "{error}");
    }

    #[test]
    fn non_utf8_payload_is_shown_as_hex() {
        let event = Event {
            payload: vec![0xff, 0x00],
            ..Event::default()
        };
        assert_eq!(event_to_json(&event)["payloadHex"], "ff00");
    }
}
