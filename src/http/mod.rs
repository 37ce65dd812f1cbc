//! The HTTP API (see API.md): one router per concern, merged here, sharing
//! one cloneable [`AppState`].

mod activity;
mod audit;
pub mod auth;
mod console;
mod delegations;
mod domain_errors;
pub mod error;
pub mod extract;
mod health;
pub mod metrics;
mod openapi;
mod queue;
mod registry;

use std::sync::Arc;

use axum::extract::MatchedPath;
use axum::Router;
use sqlx::PgPool;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::commands::CommandBus;
use crate::shutdown::Shutdown;
use crate::ws::Hub;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub bus: CommandBus,
    /// The operator's token; None disables admin access.
    pub admin_token: Option<Arc<str>>,
    /// Workspace tokens already authenticated (saves a query per request).
    pub known_tokens: Arc<auth::KnownTokens>,
    /// The live feed's fan-out.
    pub hub: Arc<Hub>,
    /// Fires when the server starts shutting down: websocket subscribers
    /// close with "going away" and their last position.
    pub shutdown: Shutdown,
    /// How far the log and this process's projections got.
    pub progress: Arc<crate::log::progress::Progress>,
    /// `/readyz` fails when a projection lags the head by more entries.
    pub readiness_max_lag: i64,
}

/// The request id header: kept when the client sent one, else a fresh
/// UUID; echoed on the response and recorded on the request's span.
pub const REQUEST_ID: &str = "x-request-id";

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(registry::router())
        .merge(delegations::router())
        .merge(activity::router())
        .merge(queue::router())
        .merge(crate::ws::route::router())
        .merge(audit::router())
        .merge(openapi::router())
        .merge(console::router())
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
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
