//! The HTTP API (see docs/api.md): one router per concern, merged here, sharing
//! one cloneable [`AppState`].
//!
//! Each concern declares its routes once, as an `OpenApiRouter` of
//! handlers (`routes!`) whose `#[utoipa::path]` gives both the route axum
//! serves and its OpenAPI description: [`router`] serves them and
//! `openapi::document` describes them, both from `bounded_in_time` and
//! `live::router`, so a route cannot be served undescribed or described
//! unserved.

mod activity;
mod audit;
pub mod auth;
pub mod consistency;
mod console;
mod delegations;
mod domain_errors;
pub mod error;
pub mod extract;
mod health;
pub mod limits;
mod live;
pub mod metrics;
mod openapi;
mod queue;
mod registry;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::MatchedPath;
use axum::response::IntoResponse;
use axum::Router;
use sqlx::PgPool;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::a2a::OutboundPolicy;
use crate::commands::CommandBus;
use crate::ws::Hub;
use error::ApiError;
use limits::{Limits, RateLimits};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The primary: commands, authentication, health.
    pub pool: PgPool,
    /// Where GET routes read (replicas or the primary), at a position.
    pub reads: Arc<crate::replicas::ReadPools>,
    pub bus: CommandBus,
    /// The operator's token; None disables admin access.
    pub admin_token: Option<Arc<str>>,
    /// Rate limits by client address and by workspace.
    pub limits: Arc<RateLimits>,
    /// Where the dispatcher may connect (registration refuses URLs it
    /// would refuse).
    pub outbound: Arc<OutboundPolicy>,
    /// Keys idempotency-key delegation ids ([`crate::secrets`]).
    pub key_secret: Arc<[u8]>,
    /// The deadline of a managed delegation that names none, and the
    /// longest one a request may name.
    pub deadlines: Deadlines,
    /// The live feed's fan-out.
    pub hub: Arc<Hub>,
    /// Cancelled when the server starts shutting down: websocket
    /// subscribers close with "going away" and their last position.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// How far the log and this process's projections got.
    pub progress: Arc<crate::log::progress::Progress>,
    /// `/readyz` fails when a projection lags the head by more entries.
    pub readiness_max_lag: i64,
    /// `/readyz` fails while an event waited longer for its position.
    pub readiness_max_unpositioned_age: Duration,
}

/// Deadlines of managed delegations.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub default: Duration,
    pub max: Duration,
}

/// The request id header: kept when the client sent one, else a fresh
/// UUID; echoed on the response and recorded on the request's span.
pub const REQUEST_ID: &str = "x-request-id";

/// The whole API, with its bounds: the body limit, the request timeout
/// (every route but the websocket, whose connection lives on after the
/// upgrade) and the limit on requests in flight.
pub fn router(state: AppState, max_body_bytes: usize, limits: &Limits) -> Router {
    let timeout = limits.request_timeout;
    let in_flight = limits.max_in_flight_requests.max(1);
    let (bounded, _) = bounded_in_time().split_for_parts();
    let (live, _) = live::router().split_for_parts();
    let bounded_in_time = bounded
        .layer(axum::middleware::from_fn(consistency::stamp_position))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |error: tower::BoxError| async move { refused(error, timeout, in_flight) },
                ))
                .timeout(timeout),
        );
    bounded_in_time
        .merge(live)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |error: tower::BoxError| async move { refused(error, timeout, in_flight) },
                ))
                .load_shed()
                // Global: `Router::layer` gives every route its own copy of
                // a layer, and a per-route limit would bound nothing.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(in_flight)),
        )
        .layer(axum::middleware::map_response(move |response| {
            error::json_error_bodies(response, max_body_bytes)
        }))
        .layer(axum::middleware::from_fn(metrics::track))
        // Outermost last: the id is set, then the span opened with it, and
        // the response carries it back.
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(
            REQUEST_ID.parse().expect("valid header name"),
        ))
        .layer(SetRequestIdLayer::new(
            REQUEST_ID.parse().expect("valid header name"),
            MakeRequestUuid,
        ))
}

/// Every route but the websocket: each request is bounded in time and a
/// command's answer is stamped with its position.
fn bounded_in_time() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(registry::router())
        .merge(delegations::router())
        .merge(activity::router())
        .merge(queue::router())
        .merge(audit::router())
        .merge(openapi::router())
        .merge(console::router())
}

/// The description of every route [`router`] serves, from the same
/// declarations (the document-wide parts are added by [`openapi::document`]).
fn described_routes() -> utoipa::openapi::OpenApi {
    bounded_in_time().merge(live::router()).into_openapi()
}

/// The answer to a request the bounds turned away.
fn refused(
    error: tower::BoxError,
    timeout: Duration,
    in_flight: usize,
) -> axum::response::Response {
    let error = if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Unavailable {
            message: format!(
                "the request took longer than {} s and was abandoned",
                timeout.as_secs_f64()
            ),
            retry_after: Duration::from_secs(1),
        }
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable {
            message: format!("the service is serving its limit of {in_flight} requests; try again"),
            retry_after: Duration::from_secs(1),
        }
    } else {
        ApiError::internal(error)
    };
    error.into_response()
}

/// One span per request: method, matched route template and request id
/// (every log line of the request, commands included, carries them).
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or(metrics::UNMATCHED_ROUTE);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
    )
}

/// The current time, read once per request at the edge: aggregates never
/// read a clock, commands carry the time.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
