//! `POST /events`: JSON-array or NDJSON batches for the generic pipeline.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use plugin_engine::{Event, Outcome};
use sha2::{Digest, Sha256};

use super::models::BatchResponse;
use super::{ApiError, AppState, host_chain, put_on_stream, stream_entries};
use crate::views::{BatchResult, EventInput, OutcomeView};

/// Runs a batch through the host chain and answers one result per input event, in
/// order. Accepted output goes on the stream; if the stream cannot take it, the
/// whole request is refused with 503 so the client can resend it as is.
pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BatchResponse>, ApiError> {
    let events = parse_batch(&headers, &body, state.max_batch_events)?;
    let active = state.releases.active();
    let (chain, release) = (host_chain(&active), active.number());
    let outcomes = chain.process(events).await;
    let mut results = Vec::with_capacity(outcomes.len());
    let mut entries = Vec::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if let Outcome::Accepted(events) = &outcome.outcome {
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

/// The events of a JSON-array or NDJSON body (`Content-Type: application/x-ndjson`).
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
    let parsed: Vec<EventInput> = if ndjson {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line)
                    .map_err(|error| bad(format!("line {}: not an event: {error}", index + 1)))
            })
            .collect::<Result<_, _>>()?
    } else {
        serde_json::from_str(text)
            .map_err(|error| bad(format!("expected a JSON array of events: {error}")))?
    };
    if parsed.is_empty() {
        return Err(bad("the batch holds no events".into()));
    }
    if parsed.len() > max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} events in one request; the limit is {max_events}",
                parsed.len()
            ),
        ));
    }
    let resend_key = resend_key(headers, body)?;
    parsed
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            event
                .into_event(format!("{resend_key}-{index}"))
                .map_err(|error| bad(format!("event {index}: {error}")))
        })
        .collect()
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// What the ids of id-less events derive from, so that resending a request as it is
/// (after a 503) gives its events the same ids: the `Idempotency-Key` header when the
/// client sends one, else the sha256 of the body.
fn resend_key(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(hex::encode(&Sha256::digest(body)[..16]));
    };
    let key = key
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
        })?;
    Ok(format!("idem-{key}"))
}
