//! `POST /events`: JSON-array or NDJSON batches for the generic pipeline.

use std::sync::Arc;

use std::cell::Cell;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use contract::identity::assign_output_ids;
use plugin_engine::{Event, Outcome};
use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use super::models::BatchResponse;
use super::{ApiError, AppState, host_chain, put_on_stream, stream_entries};
use crate::stream::partition_key_problem;
use crate::views::{BatchResult, EventInput, OutcomeView};

/// Runs a batch through the host chain and answers one result per input event, in
/// order. Accepted output goes on the stream; if the stream cannot take it, the
/// whole request is refused with 503 so the client can resend it as is.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BatchResponse>, ApiError> {
    let events = parse_batch(&headers, &body, state.max_batch_events)?;
    let active = state.releases.active();
    let (chain, release) = (host_chain(&active), active.number());
    let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
    let mut outcomes = chain.process(events).await;
    let mut results = Vec::with_capacity(outcomes.len());
    let mut entries = Vec::new();
    for (index, (outcome, id)) in outcomes.iter_mut().zip(&ids).enumerate() {
        if let Outcome::Accepted(events) = &mut outcome.outcome {
            assign_output_ids(id, events);
            entries.extend(stream_entries(events, &outcome.processed_by, release));
        }
        results.push(BatchResult {
            index,
            outcome: OutcomeView::new(outcome, false),
        });
    }
    // The whole batch goes to the stream in one call, acknowledged together.
    let accepted = entries.len();
    put_on_stream(&state, entries).await?;
    Ok(Json(BatchResponse { accepted, results }))
}

/// The events of a JSON-array or NDJSON body (`Content-Type: application/x-ndjson`),
/// with their host-assigned ids. The event-count limit is enforced while parsing.
fn parse_batch(
    headers: &HeaderMap,
    body: &[u8],
    max_events: usize,
) -> Result<Vec<Event>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let text = std::str::from_utf8(body)
        .map_err(|error| bad(format!("the body is not valid UTF-8: {error}")))?;
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("ndjson") || value.contains("jsonlines"));
    let parsed = if ndjson {
        parse_ndjson(text, max_events)?
    } else {
        parse_json_array(text, max_events)?
    };
    if parsed.is_empty() {
        return Err(bad("the batch holds no events".into()));
    }
    let identity = request_identity(headers, body)?;
    parsed
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let event = input
                .into_ingested_event(message_id(&identity, index))
                .map_err(|error| bad(format!("event {index}: {error}")))?;
            if let Some(problem) = partition_key_problem(&event.key) {
                return Err(bad(format!("event {index}: {problem}")));
            }
            Ok(event)
        })
        .collect()
}

/// 413: more events than one request may carry.
fn too_many(max_events: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("more than {max_events} events in one request"),
    )
}

/// NDJSON: lines are counted before any is parsed.
fn parse_ndjson(text: &str, max_events: usize) -> Result<Vec<EventInput>, ApiError> {
    let lines = || {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
    };
    if lines().count() > max_events {
        return Err(too_many(max_events));
    }
    lines()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("line {}: not an event: {error}", index + 1),
                )
            })
        })
        .collect()
}

/// A JSON array, refused as soon as it holds one event more than the limit.
fn parse_json_array(text: &str, max_events: usize) -> Result<Vec<EventInput>, ApiError> {
    let exceeded = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = BoundedEvents {
        max_events,
        exceeded: &exceeded,
    }
    .deserialize(&mut deserializer)
    .and_then(|events| deserializer.end().map(|()| events));
    match parsed {
        Ok(events) => Ok(events),
        Err(_) if exceeded.get() => Err(too_many(max_events)),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON array of events: {error}"),
        )),
    }
}

/// Deserializes a JSON array of events and stops at the first one over the limit.
struct BoundedEvents<'a> {
    max_events: usize,
    exceeded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BoundedEvents<'_> {
    type Value = Vec<EventInput>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedEvents<'_> {
    type Value = Vec<EventInput>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(formatter, "an array of at most {} events", self.max_events)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_events));
        while let Some(event) = seq.next_element()? {
            if events.len() == self.max_events {
                self.exceeded.set(true);
                return Err(A::Error::custom("too many events"));
            }
            events.push(event);
        }
        Ok(events)
    }
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// What the ids of a request's events derive from: the sha256 of its body and of its
/// `Idempotency-Key` header, when the client sends one. Resending a request as it is
/// (after a 503) gives its events the same ids, so the store keeps them once; the same
/// body under another key is another set of events. No other request maps to these
/// ids, so no client can claim or overwrite another's events.
fn request_identity(headers: &HeaderMap, body: &[u8]) -> Result<[u8; 32], ApiError> {
    let key = match headers.get("idempotency-key") {
        None => "",
        Some(key) => key
            .to_str()
            .ok()
            .filter(|key| {
                !key.is_empty()
                    && key.len() <= MAX_IDEMPOTENCY_KEY
                    && key.bytes().all(|byte| byte.is_ascii_graphic())
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
                    ),
                )
            })?,
    };
    Ok(Sha256::new()
        .chain_update(b"adtrack-request-v1\0")
        .chain_update((key.len() as u64).to_be_bytes())
        .chain_update(key)
        .chain_update(Sha256::digest(body))
        .finalize()
        .into())
}

/// The message id of the `index`-th event of the request with `identity`: 32 hex digits.
fn message_id(identity: &[u8; 32], index: usize) -> String {
    let digest = Sha256::new()
        .chain_update(identity)
        .chain_update((index as u64).to_be_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(ndjson: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        headers
    }

    /// A JSON value of events' likely shapes, and of unlikely ones.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,300}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("key".to_owned()),
                        Just("payload".to_owned()),
                        Just("attributes".to_owned()),
                        Just("timestampMs".to_owned()),
                        "[a-z]{1,8}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_bytes_give_events_or_a_clear_error(body in prop::collection::vec(any::<u8>(), 0..512), ndjson in any::<bool>()) {
            if let Err(error) = parse_batch(&headers(ndjson), &body, 5) {
                prop_assert!(error.status.is_client_error());
                prop_assert!(!error.body.error.is_empty());
            }
        }

        #[test]
        fn any_json_gives_events_or_a_clear_error(values in prop::collection::vec(json_value(), 0..8), ndjson in any::<bool>()) {
            let body = if ndjson {
                values.iter().map(|value| format!("{value}\n")).collect::<String>()
            } else {
                serde_json::Value::from(values.clone()).to_string()
            };
            match parse_batch(&headers(ndjson), body.as_bytes(), 5) {
                Ok(events) => {
                    prop_assert!(!events.is_empty() && events.len() <= 5);
                    prop_assert!(events.iter().all(|event| event.id.len() == 32));
                }
                Err(error) => {
                    prop_assert!(error.status.is_client_error());
                    prop_assert!(!error.body.error.is_empty());
                }
            }
        }
    }

    #[test]
    fn the_same_request_gives_the_same_ids_and_another_key_others() {
        let body = br#"[{"payload":"a"},{"payload":"a"}]"#;
        let ids = |headers: &HeaderMap| -> Vec<String> {
            parse_batch(headers, body, 10)
                .unwrap()
                .into_iter()
                .map(|event| event.id)
                .collect()
        };
        let plain = ids(&headers(false));
        assert_eq!(plain, ids(&headers(false)));
        assert_ne!(plain[0], plain[1], "two events of one request");
        let mut keyed = headers(false);
        keyed.insert("idempotency-key", HeaderValue::from_static("k-1"));
        assert_ne!(plain, ids(&keyed));
    }
}
