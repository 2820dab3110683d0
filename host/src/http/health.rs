//! `GET /health/check` and `GET /metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use plugin_engine::Side;

use super::AppState;
use super::models::{ActivePlugin, CoreDataHealth, HealthResponse, ReleaseHealth, StreamHealth};
use crate::stream::StreamProducer;

/// 200 while the host can take events: `status` is `ok`, or `degraded` when core data
/// is served from L1 only (the backend is unreachable, or entries could not be
/// refreshed) or the plugin registry cannot be followed (the running release keeps
/// serving). 503 with `status` `unavailable` and the reason in `stream.problem` when
/// the stream stage cannot take events, so the load balancer sends them elsewhere.
pub async fn check(State(state): State<Arc<AppState>>) -> (StatusCode, Json<HealthResponse>) {
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
    let stale_programs = state.cache.stale_len();
    let degraded = !backend.connected || stale_programs > 0 || registry_error.is_some();
    let problem = stream_problem(&state.producer);
    let (code, status) = match (problem, degraded) {
        (Some(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (None, true) => (StatusCode::OK, "degraded"),
        (None, false) => (StatusCode::OK, "ok"),
    };
    let health = HealthResponse {
        status,
        release: ReleaseHealth {
            number: release.number,
            last_error: registry_error,
        },
        core_data: CoreDataHealth {
            backend,
            cached_programs: state.cache.l1_len(),
            stale_programs,
        },
        stream: StreamHealth {
            backend: state.producer.sink_name(),
            buffered_records: state.producer.buffered(),
            problem,
        },
        plugins,
    };
    (code, Json(health))
}

/// Why the stream stage cannot take events, if it cannot.
fn stream_problem(producer: &StreamProducer) -> Option<&'static str> {
    if !producer.is_worker_alive() {
        Some("the stream delivery worker has stopped")
    } else if producer.is_full() {
        Some("the stream buffer is full")
    } else {
        None
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> String {
    state.metrics.render()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::*;
    use crate::stream::{ProducerSettings, SinkError, StreamEntry, StreamError, StreamSink};

    /// A sink whose calls never return.
    struct StalledSink;

    #[async_trait]
    impl StreamSink for StalledSink {
        async fn put(
            &self,
            _entries: &[StreamEntry],
        ) -> Result<Vec<Result<(), SinkError>>, SinkError> {
            std::future::pending().await
        }

        fn name(&self) -> &'static str {
            "stalled"
        }
    }

    fn producer() -> StreamProducer {
        let settings = ProducerSettings {
            buffer_records: 2,
            ..ProducerSettings::default()
        };
        StreamProducer::start(Arc::new(StalledSink), settings)
    }

    fn entry() -> Vec<StreamEntry> {
        vec![StreamEntry {
            id: "m".into(),
            key: "k".into(),
            data: vec![1],
        }]
    }

    #[tokio::test]
    async fn a_stopped_delivery_worker_is_a_problem() {
        let producer = producer();
        assert_eq!(stream_problem(&producer), None);
        producer.close().await;
        assert_eq!(
            stream_problem(&producer),
            Some("the stream delivery worker has stopped")
        );
    }

    #[tokio::test]
    async fn a_full_buffer_is_a_problem() {
        let producer = producer();
        let mut refused = false;
        for _ in 0..500 {
            if producer.send(entry(), false).await == Err(StreamError::Backpressure) {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "a stalled sink fills the buffer");
        assert_eq!(stream_problem(&producer), Some("the stream buffer is full"));
    }
}
