//! `GET /health/check` and `GET /metrics`.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::models::{ActivePlugin, CoreDataHealth, HealthResponse, StreamHealth};

/// Always 200 while the host can serve; `status` is `degraded` when core data is
/// served from L1 only because the backend is unreachable.
pub async fn check(State(state): State<AppState>) -> Json<HealthResponse> {
    let backend = state.cache.status();
    let plugins = state
        .registry
        .list()
        .into_iter()
        .map(|plugin| ActivePlugin {
            name: plugin.name,
            version: plugin.active.to_string(),
        })
        .collect();
    Json(HealthResponse {
        status: if backend.connected { "ok" } else { "degraded" },
        core_data: CoreDataHealth {
            backend,
            cached_programs: state.cache.l1_len(),
        },
        stream: StreamHealth {
            backend: state.producer.sink_name(),
            buffered_records: state.producer.buffered(),
        },
        plugins,
    })
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
}
