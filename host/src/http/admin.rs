//! The admin API, behind a bearer token: the plugin registry's operations for the whole
//! fleet (publish a component, roll back, list releases, status). A publish is stored
//! in the registry, announced to every task and swapped in here before it answers.

use std::sync::Arc;

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use plugin_engine::Side;
use releases::{AbortPolicy, CandidateMode, Publish, RegistryError, Release, TrialSpec};
use serde::Deserialize;

use super::models::{PluginEntry, PluginsResponse, ReleasesResponse, StatusResponse, SwapResponse};
use super::{ApiError, AppState};

/// How recent a heartbeat must be for its instance to count as live.
const LIVE_HEARTBEAT: Duration = Duration::from_secs(90);

/// Refuses requests without `Authorization: Bearer <ADMIN_TOKEN>`; 404 when no token
/// is configured (the admin API is off).
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin API is disabled",
        ));
    };
    check_token(&request, expected)?;
    Ok(next.run(request).await)
}

/// Refuses requests without the bearer token when one is configured; without one (the
/// embedded default, which says so at start) the routes are open.
pub async fn require_token_when_configured(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.admin_token {
        check_token(&request, expected)?;
    }
    Ok(next.run(request).await)
}

fn check_token(request: &Request, expected: &settings::Secret) -> Result<(), ApiError> {
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
    Ok(())
}

/// Which side a plugin operation is for, whether a publish may add a plugin, and
/// whether it is tried as a canary or a shadow first.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PluginQuery {
    /// `host` (default) or `consumer`.
    #[serde(default)]
    side: Option<String>,
    /// Add the plugin at the end of the chain if the release does not have it.
    #[serde(default)]
    new: bool,
    /// Run the candidate on this share of events (percent) beside the active version.
    canary: Option<u8>,
    /// Run the candidate as a shadow on this share of events (percent).
    shadow: Option<u8>,
    /// Canary: calls before it is judged (default 100).
    min_calls: Option<u64>,
    /// Canary: tolerated excess failure rate, in points (default 5).
    max_failure_margin: Option<u8>,
}

impl PluginQuery {
    /// The trial the query asks for, if any.
    fn trial(&self) -> Result<Option<TrialSpec>, ApiError> {
        let defaults = AbortPolicy::default();
        let abort = AbortPolicy {
            min_calls: self.min_calls.unwrap_or(defaults.min_calls),
            max_failure_margin_percent: self
                .max_failure_margin
                .unwrap_or(defaults.max_failure_margin_percent),
        };
        let trial = |mode, percent: u8| {
            if (1..=100).contains(&percent) {
                Ok(Some(TrialSpec {
                    mode,
                    percent,
                    abort,
                }))
            } else {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("a share of events is 1 to 100 percent, not {percent}"),
                ))
            }
        };
        match (self.canary, self.shadow) {
            (None, None) => Ok(None),
            (Some(percent), None) => trial(CandidateMode::Canary, percent),
            (None, Some(percent)) => trial(CandidateMode::Shadow, percent),
            (Some(_), Some(_)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a candidate is a canary or a shadow, not both",
            )),
        }
    }
}

/// Which release a rollback goes to.
#[derive(Debug, Default, Deserialize)]
pub struct RollbackQuery {
    /// The release to make current (default: the one before the current one).
    to: Option<u64>,
}

/// The host plugins of the current release with their versions, sizes and the versions
/// earlier releases ran, newest first.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<PluginsResponse>, ApiError> {
    let active = state.releases.active();
    let history = state
        .releases
        .registry()
        .releases()
        .await
        .map_err(registry_error)?;
    let chain = active.chain(Side::Host);
    let side = active.release.side(Side::Host);
    let plugins = side
        .chain
        .iter()
        .filter_map(|name| {
            let plugin = side.plugins.get(name)?;
            let report = chain
                .and_then(|chain| {
                    chain
                        .active()
                        .steps()
                        .iter()
                        .find(|step| &**step.name() == name)
                })
                .map(|step| step.active().report().clone());
            let size_bytes = report.as_ref().map_or(0, |report| report.size_bytes);
            let handles_batches = report.as_ref().is_some_and(|report| report.handles_batches);
            let (loaded_from, load_time) = report
                .as_ref()
                .map_or(("unknown", Duration::ZERO), |report| report.loaded());
            let mut previous = Vec::new();
            for release in history.iter().rev() {
                if let Some(earlier) = release.side(Side::Host).plugins.get(name)
                    && earlier.version != plugin.version
                    && !previous.contains(&earlier.version.to_string())
                {
                    previous.push(earlier.version.to_string());
                }
            }
            Some(PluginEntry {
                name: name.clone(),
                version: plugin.version.to_string(),
                size_bytes,
                loaded_from,
                load_ms: load_time.as_secs_f64() * 1e3,
                handles_batches,
                previous,
            })
        })
        .collect();
    Ok(Json(PluginsResponse { plugins }))
}

/// Publishes the uploaded component as plugin `name` of the given side (default the
/// host) for the whole fleet, once it compiled and passed the world and capability
/// checks; a refused candidate changes nothing.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PluginQuery>,
    component: Bytes,
) -> Result<Json<SwapResponse>, ApiError> {
    let side = side(query.side.as_deref())?;
    let before = state.releases.active();
    let release = state
        .releases
        .publish(Publish {
            side,
            plugin: &name,
            component: &component,
            new: query.new,
            trial: query.trial()?,
        })
        .await
        .map_err(registry_error)?;
    Ok(Json(swap_response(&name, side, &before.release, &release)))
}

/// Makes the side's candidate for plugin `name` its active version, fleet-wide.
pub async fn promote(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PluginQuery>,
) -> Result<Json<SwapResponse>, ApiError> {
    end_trial(state, name, query, None).await
}

/// Drops the side's candidate for plugin `name`, fleet-wide.
pub async fn abort(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PluginQuery>,
) -> Result<Json<SwapResponse>, ApiError> {
    end_trial(state, name, query, Some("aborted by an operator")).await
}

async fn end_trial(
    state: Arc<AppState>,
    name: String,
    query: PluginQuery,
    abort_reason: Option<&str>,
) -> Result<Json<SwapResponse>, ApiError> {
    let side = side(query.side.as_deref())?;
    let before = state.releases.active();
    let tried = before.release.side(side).candidate.as_ref();
    if tried.is_none_or(|candidate| candidate.plugin != name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("plugin {name} has no candidate in the current release"),
        ));
    }
    let release = match abort_reason {
        Some(reason) => state.releases.abort(side, reason).await,
        None => state.releases.promote(side).await,
    }
    .map_err(registry_error)?;
    Ok(Json(swap_response(&name, side, &before.release, &release)))
}

/// Makes the release before the current one current again, fleet-wide; answers with
/// plugin `name`'s versions before and after.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PluginQuery>,
) -> Result<Json<SwapResponse>, ApiError> {
    let side = side(query.side.as_deref())?;
    let before = state.releases.active();
    if !before.release.side(side).plugins.contains_key(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("plugin {name} is not in the current release"),
        ));
    }
    let release = state
        .releases
        .rollback(None)
        .await
        .map_err(registry_error)?;
    Ok(Json(swap_response(&name, side, &before.release, &release)))
}

/// Makes release `to` (default: the one before the current one) current again.
pub async fn rollback_release(
    State(state): State<Arc<AppState>>,
    Query(query): Query<RollbackQuery>,
) -> Result<Json<Release>, ApiError> {
    let release = state
        .releases
        .rollback(query.to)
        .await
        .map_err(registry_error)?;
    Ok(Json(release))
}

/// Every release, oldest first.
pub async fn releases(
    State(state): State<Arc<AppState>>,
) -> Result<Json<ReleasesResponse>, ApiError> {
    let registry = state.releases.registry();
    let current = registry.current().await.map_err(registry_error)?;
    let releases = registry.releases().await.map_err(registry_error)?;
    Ok(Json(ReleasesResponse {
        current: current.map(|release| release.number),
        releases,
    }))
}

/// Which release each live task and consumer instance runs.
pub async fn status(State(state): State<Arc<AppState>>) -> Result<Json<StatusResponse>, ApiError> {
    let status = state
        .releases
        .registry()
        .status(LIVE_HEARTBEAT)
        .await
        .map_err(registry_error)?;
    Ok(Json(StatusResponse {
        current: status.current,
        summary: status.summary(),
        hosts: status.hosts,
        consumers: status.consumers,
    }))
}

fn side(name: Option<&str>) -> Result<Side, ApiError> {
    match name {
        None | Some("host") => Ok(Side::Host),
        Some("consumer") => Ok(Side::Consumer),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("side must be host or consumer, not {other:?}"),
        )),
    }
}

fn swap_response(name: &str, side: Side, before: &Release, after: &Release) -> SwapResponse {
    let version = |release: &Release| {
        release
            .side(side)
            .plugins
            .get(name)
            .map(|plugin| plugin.version.to_string())
            .unwrap_or_default()
    };
    SwapResponse {
        name: name.to_owned(),
        release: after.number,
        previous: version(before),
        active: version(after),
    }
}

fn registry_error(error: RegistryError) -> ApiError {
    let status = match &error {
        RegistryError::UnknownPlugin { .. }
        | RegistryError::UnknownRelease(_)
        | RegistryError::NoCandidate { .. } => StatusCode::NOT_FOUND,
        RegistryError::Conflict(_) => StatusCode::CONFLICT,
        RegistryError::Refused(plugin_engine::EngineError::TooLarge { .. }) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        RegistryError::Store(_)
        | RegistryError::Corrupt { .. }
        | RegistryError::Empty
        | RegistryError::Refused(plugin_engine::EngineError::CompileTimeout { .. }) => {
            return ApiError::unavailable(error.to_string());
        }
        RegistryError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RegistryError::UnknownComponent(_) => StatusCode::NOT_FOUND,
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

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;
    use plugin_engine::EngineError;

    use super::*;

    #[test]
    fn an_upload_that_cannot_compile_in_time_is_answered_503_with_retry_after() {
        let timeout = RegistryError::Refused(EngineError::CompileTimeout {
            name: "slow".into(),
            limit: Duration::from_secs(120),
        });
        let response = registry_error(timeout).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let too_large = RegistryError::Refused(EngineError::TooLarge {
            name: "big".into(),
            size: 2,
            limit: 1,
        });
        let response = registry_error(too_large).into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
