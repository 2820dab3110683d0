//! The HTTP stage (axum): routes, limits, metrics and error responses.

mod admin;
mod cache_routes;
mod config;
mod events;
mod health;
mod limit;
mod models;
mod tracking;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use contract::TrackingEvent;
use metrics_exporter_prometheus::PrometheusHandle;
use plugin_engine::{Event, PluginRef, Side};
use releases::{ActiveRelease, ReleaseChain, ReleaseRuntime};
use settings::Secret;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use self::models::ErrorBody;
use crate::cache::CoreDataCache;
use crate::stream::{Ack, StreamEntry, StreamError, StreamProducer};

pub use self::config::HttpConfig;

/// Everything the handlers share, behind one `Arc`: axum clones the state into every
/// request's services, and one reference count costs less than cloning each field.
pub struct AppState {
    /// The current plugin release (the host chain runs on it) and the registry.
    pub releases: Arc<ReleaseRuntime>,
    /// Core data: L1 then backend.
    pub cache: CoreDataCache,
    /// The stream stage.
    pub producer: StreamProducer,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The admin bearer token; `None` disables the admin API.
    pub admin_token: Option<Arc<Secret>>,
    /// When requests are acknowledged.
    pub ack: Ack,
    /// Most events per `POST /events`.
    pub max_batch_events: usize,
}

/// The host's routes with limits, timeouts, tracing and request metrics. Admin routes
/// have their own body limit and timeout: an upload carries a component and answers only
/// once it is compiled.
pub fn router(state: Arc<AppState>, config: &HttpConfig) -> Router {
    let admin = Router::new()
        .route("/admin/plugins", get(admin::list))
        .route("/admin/plugins/{name}", put(admin::publish))
        .route("/admin/plugins/{name}/rollback", post(admin::rollback))
        .route("/admin/plugins/{name}/promote", post(admin::promote))
        .route("/admin/plugins/{name}/abort", post(admin::abort))
        .route("/admin/releases", get(admin::releases))
        .route("/admin/releases/rollback", post(admin::rollback_release))
        .route("/admin/releases/status", get(admin::status))
        .layer(DefaultBodyLimit::max(config.max_plugin_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.admin_timeout(),
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_token,
        ));
    // They change Redis: behind the admin token when one is configured.
    let cache_routes = Router::new()
        .route("/cache/fill", get(cache_routes::fill))
        .route("/cache/purge", get(cache_routes::purge))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::require_token_when_configured,
        ));
    Router::new()
        .route("/event/{program_id}", get(tracking::track))
        .route("/events", post(events::ingest))
        // The data routes only: health checks and metrics answer however busy it is.
        .route_layer(limit::shed_over(config.max_concurrent_requests))
        .merge(cache_routes)
        .route("/health/check", get(health::check))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout(),
        ))
        .merge(admin)
        .route_layer(middleware::from_fn(record_request))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Counts requests and measures their latency per route and status.
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// An error answer: a status, a JSON [`ErrorBody`] and, for conditions that pass,
/// `Retry-After`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: bool,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: message.into(),
                ..ErrorBody::default()
            },
            retry_after: false,
        }
    }

    /// Names the plugin (and its version) that refused or failed.
    pub fn by_plugin(mut self, plugin: &PluginRef) -> Self {
        self.body.plugin = Some(plugin.name.to_string());
        self.body.version = Some(plugin.version.to_string());
        self
    }

    /// Says how the plugin failed.
    pub fn with_failure(mut self, failure: &'static str) -> Self {
        self.body.failure = Some(failure);
        self
    }

    /// 503 with `Retry-After`, for conditions that pass.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: true,
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StreamError> for ApiError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Backpressure => ApiError::unavailable(error.to_string()),
            StreamError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            StreamError::InvalidRecord(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, error.to_string())
            }
            StreamError::Failed { .. } | StreamError::Closed => {
                ApiError::unavailable(error.to_string())
            }
        }
    }
}

/// The host chain of `active`: a request takes the current release when it starts and
/// keeps it when a new release is swapped in meanwhile.
pub fn host_chain(active: &ActiveRelease) -> &ReleaseChain {
    // The host always loads its own side of every release.
    active
        .chain(Side::Host)
        .expect("the host loads the host chain of every release")
}

/// The stream records of accepted events: protobuf, stamped with the plugins that
/// processed them and their release.
pub fn stream_entries(
    events: &[Event],
    processed_by: &[PluginRef],
    release: u64,
) -> impl Iterator<Item = StreamEntry> {
    events.iter().map(move |event| {
        let mut record = TrackingEvent::from_event(event, processed_by);
        record.host_release = release;
        StreamEntry {
            id: event.id.clone(),
            key: event.key.clone(),
            data: record.to_bytes(),
        }
    })
}

/// Puts `entries` on the stream in one call; returns once they are acknowledged per the
/// configured durability.
pub async fn put_on_stream(state: &AppState, entries: Vec<StreamEntry>) -> Result<(), StreamError> {
    state.producer.send(entries, state.ack == Ack::Stream).await
}
