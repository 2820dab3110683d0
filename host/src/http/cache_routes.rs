//! `GET /cache/fill` and `GET /cache/purge`, as in the original service.

use std::sync::Arc;

use super::models::{FillResponse, PurgeResponse};
use super::{ApiError, AppState};
use crate::samples;
use axum::Json;
use axum::extract::State;

/// Loads the sample programs (212312, 212313, 212314) into the backend and L1.
pub async fn fill(State(state): State<Arc<AppState>>) -> Result<Json<FillResponse>, ApiError> {
    let programs = samples::programs();
    let mut filled = Vec::with_capacity(programs.len());
    for (program_id, record) in programs {
        state
            .cache
            .put(&program_id, record)
            .await
            .map_err(|error| ApiError::unavailable(format!("core data unavailable: {error}")))?;
        filled.push(program_id);
    }
    Ok(Json(FillResponse { filled }))
}

/// Empties the L1 cache and removes the sample programs from the backend.
pub async fn purge(State(state): State<Arc<AppState>>) -> Result<Json<PurgeResponse>, ApiError> {
    state.cache.clear_l1();
    let mut purged = Vec::new();
    for (program_id, _) in samples::programs() {
        state
            .cache
            .remove(&program_id)
            .await
            .map_err(|error| ApiError::unavailable(format!("core data unavailable: {error}")))?;
        purged.push(program_id);
    }
    Ok(Json(PurgeResponse { purged }))
}
