//! The JSON shapes of events and chain outcomes, one type per shape, shared by every
//! place that reads or prints them: `POST /events`, `plugin run` and `pipeline run`.

use std::time::{SystemTime, UNIX_EPOCH};

use contract::attribute;
use plugin_engine::{ChainOutcome, Event, Outcome, PluginRef};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An event as written in JSON input; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventInput {
    id: Option<String>,
    key: Option<String>,
    timestamp_ms: Option<u64>,
    content_type: Option<String>,
    /// UTF-8 payload text.
    payload: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
}

/// An input attribute whose value is not a string, number or boolean.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {name:?} must be a string, number or boolean, not {found}")]
pub struct InvalidAttribute {
    /// The attribute.
    pub name: String,
    /// What it held, as JSON.
    pub found: String,
}

impl EventInput {
    /// The event, with defaults: id `fallback_id`, key = id, timestamp now,
    /// content type `application/json`. Attribute values must be strings or numbers.
    pub fn into_event(self, fallback_id: String) -> Result<Event, InvalidAttribute> {
        let id = self.id.clone().unwrap_or(fallback_id);
        self.into_event_with_id(id)
    }

    /// The event under the host-assigned `message_id`: the client's own `id`, if it
    /// gave one, is kept as the `clientEventId` attribute. The key defaults to the
    /// message id.
    pub fn into_ingested_event(mut self, message_id: String) -> Result<Event, InvalidAttribute> {
        if let Some(client_id) = self.id.take() {
            self.attributes.insert(
                attribute::CLIENT_EVENT_ID.to_owned(),
                Value::String(client_id),
            );
        }
        self.into_event_with_id(message_id)
    }

    fn into_event_with_id(self, id: String) -> Result<Event, InvalidAttribute> {
        let attributes = self
            .attributes
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name, text)),
                Value::Number(number) => Ok((name, number.to_string())),
                Value::Bool(flag) => Ok((name, flag.to_string())),
                other => Err(InvalidAttribute {
                    name,
                    found: other.to_string(),
                }),
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

/// An event as printed; a payload that is not UTF-8 is shown as `payloadHex`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Event id.
    pub id: String,
    /// Partition key.
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Media type of the payload.
    pub content_type: String,
    /// Attributes by name.
    pub attributes: Map<String, Value>,
    /// The payload, when it is UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in hex, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        let (payload, payload_hex) = match std::str::from_utf8(&event.payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(hex_string(&event.payload))),
        };
        Self {
            id: event.id.clone(),
            key: event.key.clone(),
            timestamp_ms: event.timestamp_ms,
            content_type: event.content_type.clone(),
            attributes: event
                .attributes
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect(),
            payload,
            payload_hex,
        }
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A plugin and the version that handled an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginView {
    /// Plugin name.
    pub plugin: String,
    /// Its version (sha256 of the component).
    pub version: String,
}

impl From<&PluginRef> for PluginView {
    fn from(plugin: &PluginRef) -> Self {
        Self {
            plugin: plugin.name.to_string(),
            version: plugin.version.to_string(),
        }
    }
}

/// What became of one event: `accepted`, `filtered`, `rejected`, `retry` or `failed`,
/// with the plugin and version that decided it and every plugin that handled it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "outcome",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum OutcomeView {
    /// Every plugin accepted the event.
    Accepted {
        /// Ids of the output events.
        ids: Vec<String>,
        /// The output events, where the caller asked for them (the CLI).
        #[serde(skip_serializing_if = "Option::is_none")]
        events: Option<Vec<EventView>>,
        /// Plugins that handled the event, in order.
        processed_by: Vec<PluginView>,
    },
    /// A transform returned no events.
    Filtered {
        /// Plugins that handled the event, in order.
        processed_by: Vec<PluginView>,
    },
    /// A plugin refused the event as bad input.
    Rejected {
        /// The refusing plugin.
        #[serde(flatten)]
        by: PluginView,
        /// Its reason.
        reason: String,
        /// Plugins that handled the event, in order.
        processed_by: Vec<PluginView>,
    },
    /// A plugin asked for the event to be retried later.
    Retry {
        /// The plugin.
        #[serde(flatten)]
        by: PluginView,
        /// Its reason.
        reason: String,
        /// Plugins that handled the event, in order.
        processed_by: Vec<PluginView>,
    },
    /// The plugin failed (trap, timeout, limit).
    Failed {
        /// The failing plugin.
        #[serde(flatten)]
        by: PluginView,
        /// `timeout`, `memory_limit`, `trap`, ...
        failure: &'static str,
        /// What happened.
        reason: String,
        /// Plugins that handled the event, in order.
        processed_by: Vec<PluginView>,
    },
    /// The input line is not an event (CLI only).
    InvalidInput {
        /// What went wrong, for people (logs and answers).
        reason: String,
    },
}

impl OutcomeView {
    /// The view of `outcome`; with `with_events` accepted outcomes carry their output
    /// events, not only their ids.
    pub fn new(outcome: &ChainOutcome, with_events: bool) -> Self {
        let processed_by = outcome.processed_by.iter().map(PluginView::from).collect();
        match &outcome.outcome {
            Outcome::Accepted(events) if events.is_empty() => Self::Filtered { processed_by },
            Outcome::Accepted(events) => Self::Accepted {
                ids: events.iter().map(|event| event.id.clone()).collect(),
                events: with_events.then(|| events.iter().map(EventView::from).collect()),
                processed_by,
            },
            Outcome::Rejected { by, reason } => Self::Rejected {
                by: by.into(),
                reason: reason.clone(),
                processed_by,
            },
            Outcome::Retry { by, reason } => Self::Retry {
                by: by.into(),
                reason: reason.clone(),
                processed_by,
            },
            Outcome::Failed { by, failure } => Self::Failed {
                by: by.into(),
                failure: failure.kind(),
                reason: failure.to_string(),
                processed_by,
            },
        }
    }
}

/// One result of a `POST /events` batch: the event's index in the body and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchResult {
    /// Position of the event in the request body, from 0.
    pub index: usize,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: OutcomeView,
}

/// One line printed by `plugin run` / `pipeline run`: the input line number and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineResult {
    /// Line of the input, from 1.
    pub line: usize,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: OutcomeView,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_missing_fields() {
        let json: EventInput =
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
        let json: EventInput = serde_json::from_str(r#"{"attributes":{"a":{"b":1}}}"#).unwrap();
        let error = json.into_event("x".into()).unwrap_err();
        assert_eq!(error.name, "a");
    }

    #[test]
    fn non_utf8_payload_is_shown_as_hex() {
        let event = Event {
            payload: vec![0xff, 0x00],
            ..Event::default()
        };
        let view = serde_json::to_value(EventView::from(&event)).unwrap();
        assert_eq!(view["payloadHex"], "ff00");
        assert!(view.get("payload").is_none());
    }

    #[test]
    fn a_stopped_outcome_names_the_plugin_and_version_beside_its_position() {
        let view = BatchResult {
            index: 3,
            outcome: OutcomeView::Rejected {
                by: PluginView {
                    plugin: "validate".into(),
                    version: "abc".into(),
                },
                reason: "bad".into(),
                processed_by: Vec::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(view).unwrap(),
            json!({
                "index": 3,
                "outcome": "rejected",
                "plugin": "validate",
                "version": "abc",
                "reason": "bad",
                "processedBy": [],
            })
        );
    }
}
