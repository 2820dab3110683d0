//! `GET /event/{programId}`: the original tracking call.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugin_engine::{Event, Outcome};
use serde_json::{Value, json};
use stream_record::attribute;

use super::{ApiError, AppState, put_on_stream};
use crate::event_json::now_ms;

/// Looks up the program, builds a tracking event, runs the host chain, puts the result
/// on the stream and answers with the enriched event: 200, 204 when a plugin filtered
/// it (e.g. a bot), 404 for an unknown program, 422 when a plugin rejects it.
pub async fn track(
    State(state): State<AppState>,
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
    let message_id = uuid::Uuid::new_v4().to_string();
    let event = Event {
        id: message_id.clone(),
        key: message_id,
        timestamp_ms: now_ms(),
        content_type: "application/json".to_owned(),
        payload: Vec::new(),
        attributes: vec![
            (attribute::PROGRAM_ID.to_owned(), program_id),
            (attribute::USER_AGENT.to_owned(), user_agent.to_owned()),
        ],
    };
    let result = state.chain.process_one(event).await;
    let events = match result.outcome {
        Outcome::Accepted(events) => events,
        Outcome::Rejected { by, reason } => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason)
                .with("plugin", &*by.name)
                .with("version", by.version.to_string()));
        }
        Outcome::Retry { by, reason } => {
            return Err(ApiError::unavailable(reason).with("plugin", &*by.name));
        }
        Outcome::Failed { by, failure } => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("plugin {} failed: {failure}", by.name),
            )
            .with("plugin", &*by.name)
            .with("failure", failure.kind()));
        }
    };
    let Some(first) = events.first() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    put_on_stream(&state, &events, &result.processed_by).await?;
    Ok(Json(tracking_json(first)).into_response())
}

/// The original service's response shape.
fn tracking_json(event: &Event) -> Value {
    let text = |name: &str| event.attribute(name).unwrap_or_default();
    let customer_id = text(attribute::CUSTOMER_ID);
    json!({
        "userAgent": text(attribute::USER_AGENT),
        "programId": text(attribute::PROGRAM_ID),
        "programName": text(attribute::PROGRAM_NAME),
        "checksum": text(attribute::CHECKSUM),
        "customerId": customer_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(customer_id)),
        "customerName": text(attribute::CUSTOMER_NAME),
        "messageId": event.id,
        "valid": event.attribute(attribute::VALID) == Some("true"),
    })
}
