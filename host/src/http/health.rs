//! `GET /health/check` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Always 200 while the host can serve; `status` is `degraded` when core data is
/// served from L1 only because the backend is unreachable.
pub async fn check(State(state): State<AppState>) -> Json<Value> {
    let core_data = state.cache.status();
    let plugins: Vec<Value> = state
        .registry
        .list()
        .into_iter()
        .map(|plugin| json!({ "name": plugin.name, "version": plugin.active.to_string() }))
        .collect();
    Json(json!({
        "status": if core_data.connected { "ok" } else { "degraded" },
        "coreData": {
            "backend": core_data.backend,
            "connected": core_data.connected,
            "lastError": core_data.last_error,
            "cachedPrograms": state.cache.l1_len(),
        },
        "stream": {
            "backend": state.producer.sink_name(),
            "bufferedRecords": state.producer.buffered(),
        },
        "plugins": plugins,
    }))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
