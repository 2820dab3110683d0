//! `GET /health/check` and `GET /metrics`.

use axum::Json;
use axum::extract::State;

use plugin_engine::Side;

use super::AppState;
use super::models::{ActivePlugin, CoreDataHealth, HealthResponse, ReleaseHealth, StreamHealth};

/// Always 200 while the host can serve; `status` is `degraded` when core data is
/// served from L1 only because the backend is unreachable, or when the plugin registry
/// cannot be followed (the running release keeps serving).
pub async fn check(State(state): State<AppState>) -> Json<HealthResponse> {
    let backend = state.cache.status();
    let active = state.releases.active();
    let release = &active.release;
    let plugins = release
        .side(Side::Host)
        .chain
        .iter()
        .filter_map(|name| {
            let plugin = release.side(Side::Host).plugins.get(name)?;
            Some(ActivePlugin {
                name: name.clone(),
                version: plugin.version.to_string(),
            })
        })
        .collect();
    let registry_error = state.releases.last_error();
    let degraded = !backend.connected || registry_error.is_some();
    Json(HealthResponse {
        status: if degraded { "degraded" } else { "ok" },
        release: ReleaseHealth {
            number: release.number,
            last_error: registry_error,
        },
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
