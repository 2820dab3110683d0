//! `GET /event/{programId}`: the original tracking call.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use contract::attribute;
use contract::identity::assign_output_ids;
use plugin_engine::{Event, Outcome};

use super::models::{CustomerId, TrackingResponse};
use super::{ApiError, AppState, host_chain, put_on_stream, stream_entries};
use crate::views::now_ms;

/// Looks up the program, builds a tracking event, runs the host chain, puts the result
/// on the stream and answers with the enriched event: 200, 204 when a plugin filtered
/// it (e.g. a bot), 404 for an unknown program, 422 when a plugin rejects it.
pub async fn track(
    State(state): State<Arc<AppState>>,
    Path(program_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match state.cache.get(&program_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown program {program_id}"),
            ));
        }
        Err(error) => {
            return Err(ApiError::unavailable(format!(
                "core data unavailable: {error}"
            )));
        }
    }
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    // Time-ordered (UUID v7): stores keyed by message id append near the end of their
    // index instead of rewriting a random page per event (see README, Performance).
    let message_id = uuid::Uuid::now_v7().to_string();
    let event = Event {
        id: message_id.clone(),
        key: message_id.clone(),
        timestamp_ms: now_ms(),
        content_type: "application/json".to_owned(),
        payload: Vec::new(),
        attributes: vec![
            (attribute::PROGRAM_ID.to_owned(), program_id),
            (attribute::USER_AGENT.to_owned(), user_agent.to_owned()),
        ],
    };
    let active = state.releases.active();
    let (chain, release) = (host_chain(&active), active.number());
    let result = chain.process_one(event).await;
    let events = match result.outcome {
        Outcome::Accepted(mut events) => {
            assign_output_ids(&message_id, &mut events);
            events
        }
        Outcome::Rejected { by, reason } => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason).by_plugin(&by));
        }
        Outcome::Retry { by, reason } => {
            return Err(ApiError::unavailable(reason).by_plugin(&by));
        }
        Outcome::Failed { by, failure } => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("plugin {} failed: {failure}", by.name),
            )
            .by_plugin(&by)
            .with_failure(failure.kind()));
        }
    };
    let Some(first) = events.first() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let entries = stream_entries(&events, &result.processed_by, release).collect();
    put_on_stream(&state, entries).await?;
    Ok(Json(TrackingResponse::from(first)).into_response())
}

impl From<&Event> for TrackingResponse {
    fn from(event: &Event) -> Self {
        let text = |name: &str| event.attribute(name).unwrap_or_default().to_owned();
        Self {
            user_agent: text(attribute::USER_AGENT),
            program_id: text(attribute::PROGRAM_ID),
            program_name: text(attribute::PROGRAM_NAME),
            checksum: text(attribute::CHECKSUM),
            customer_id: CustomerId::from(
                event.attribute(attribute::CUSTOMER_ID).unwrap_or_default(),
            ),
            customer_name: text(attribute::CUSTOMER_NAME),
            message_id: event.id.clone(),
            valid: event.attribute(attribute::VALID) == Some("true"),
        }
    }
}
