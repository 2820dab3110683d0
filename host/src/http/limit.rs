//! The HTTP concurrency limit of the data routes: requests over it are answered at once
//! with 503 + `Retry-After` instead of queueing until they time out.

use std::future::{Ready, ready};
use std::sync::Arc;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;

use super::ApiError;

/// What a shed request is answered with.
type Overloaded = fn(BoxError) -> Ready<ApiError>;

/// The layers [`shed_over`] returns.
pub type ShedLayers = ServiceBuilder<
    Stack<
        GlobalConcurrencyLimitLayer,
        Stack<LoadShedLayer, Stack<HandleErrorLayer<Overloaded, ()>, Identity>>,
    >,
>;

/// The layers that shed requests beyond `max_in_flight` concurrent ones; every route
/// they wrap shares the one limit.
pub fn shed_over(max_in_flight: usize) -> ShedLayers {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(overloaded as Overloaded))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(in_flight))
}

/// The answer to a request shed by the limit.
fn overloaded(error: BoxError) -> Ready<ApiError> {
    metrics::counter!("http_requests_shed_total").increment(1);
    tracing::debug!(%error, "request shed: too many in flight");
    ready(ApiError::unavailable(
        "the host is at its limit of concurrent requests; retry shortly",
    ))
}
