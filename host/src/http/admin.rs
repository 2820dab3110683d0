//! The admin API for plugins, behind a bearer token: list, upload a version, roll back.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use plugin_engine::{EngineError, SwapReport};

use super::models::{PluginEntry, PluginsResponse, SwapResponse};
use super::{ApiError, AppState};

/// Refuses requests without `Authorization: Bearer <ADMIN_TOKEN>`; 404 when no token
/// is configured (the admin API is off).
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin API is disabled",
        ));
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    Ok(next.run(request).await)
}

/// Every plugin with its active version and the versions available for rollback.
pub async fn list(State(state): State<AppState>) -> Json<PluginsResponse> {
    let plugins = state
        .registry
        .list()
        .into_iter()
        .map(|plugin| PluginEntry {
            name: plugin.name,
            version: plugin.active.to_string(),
            size_bytes: plugin.size_bytes,
            previous: plugin.previous.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Json(PluginsResponse { plugins })
}

/// Makes the uploaded component the active version of `name`, after it compiled and
/// passed the world and capability checks; the working version stays otherwise.
pub async fn upload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    component: Bytes,
) -> Result<Json<SwapResponse>, ApiError> {
    let registry = state.registry.clone();
    let report = tokio::task::spawn_blocking(move || registry.swap(&name, &component))
        .await
        .map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
        .map_err(engine_error)?;
    Ok(Json(SwapResponse::from(&report)))
}

/// Restores the version that was active before the last upload.
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SwapResponse>, ApiError> {
    let report = state.registry.rollback(&name).map_err(engine_error)?;
    Ok(Json(SwapResponse::from(&report)))
}

impl From<&SwapReport> for SwapResponse {
    fn from(report: &SwapReport) -> Self {
        Self {
            name: report.name.clone(),
            previous: report.previous.to_string(),
            active: report.active.to_string(),
        }
    }
}

fn engine_error(error: EngineError) -> ApiError {
    let status = match error {
        EngineError::UnknownPlugin(_) => StatusCode::NOT_FOUND,
        EngineError::NothingToRollBack(_) => StatusCode::CONFLICT,
        EngineError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, error.to_string())
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}
