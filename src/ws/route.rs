//! `GET /ws?workspace_id=&from=` — authenticate, pick the audience, upgrade.
//!
//! The token comes from `Authorization: Bearer` or, for browser clients
//! that cannot set headers on a websocket, `?token=`. A workspace token
//! subscribes to its own workspace only (another workspace's id is refused
//! with 404, as everywhere); the admin may name any workspace or omit it to
//! receive everything.

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::subscriber::{self, Audience};
use crate::http::auth::{authenticate, authenticate_token, Caller};
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;
use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(subscribe))
}

#[derive(Debug, Deserialize)]
struct SubscribeQuery {
    workspace_id: Option<String>,
    from: Option<String>,
    token: Option<String>,
}

async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<SubscribeQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let caller = match (
        authenticate(&state, &headers).await?,
        query.token.as_deref(),
    ) {
        (Some(caller), _) => caller,
        (None, Some(token)) => authenticate_token(&state, token).await?,
        (None, None) => {
            return Err(ApiError::Unauthorized(
                "missing token: send `Authorization: Bearer <token>` or `?token=`".into(),
            ))
        }
    };
    let requested = match query.workspace_id.as_deref() {
        None => None,
        Some(text) => Some(
            Uuid::parse_str(text)
                .map_err(|_| ApiError::not_found(format!("workspace {text} not found")))?,
        ),
    };
    let audience = match (caller, requested) {
        (Caller::Admin, None) => Audience::Everything,
        (Caller::Admin, Some(id)) => Audience::Workspace(id),
        (Caller::Workspace(own), None) => Audience::Workspace(own),
        (Caller::Workspace(own), Some(id)) => {
            caller.require(id)?;
            Audience::Workspace(own)
        }
    };
    let from = match query.from.as_deref() {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(from) if from >= 0 => Some(from),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "from must be a log position (a non-negative integer); got {text:?}"
                )))
            }
        },
    };
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    Ok(upgrade.on_upgrade(move |socket| subscriber::serve(socket, hub, audience, from, shutdown)))
}
