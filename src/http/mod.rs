//! The HTTP API (see API.md): one router per concern, merged here, sharing
//! one cloneable [`AppState`].

mod activity;
mod audit;
pub mod auth;
mod delegations;
mod domain_errors;
pub mod error;
pub mod extract;
mod health;
mod registry;

use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;
use tower_http::limit::RequestBodyLimitLayer;
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
}

/// The whole API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(registry::router())
        .merge(delegations::router())
        .merge(activity::router())
        .merge(crate::ws::route::router())
        .merge(audit::router())
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TraceLayer::new_for_http())
}

/// The current time, read once per request at the edge: aggregates never
/// read a clock, commands carry the time.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
