//! `GET /ws?workspace_id=&from=&batch=` — authenticate, pick the audience,
//! upgrade, and hand the socket to a [`crate::ws`] subscriber. The route is
//! the HTTP layer's; the feed itself (hub, subscribers) knows nothing of
//! HTTP, so dependencies run one way: `http → ws → log`.
//!
//! The token comes from `Authorization: Bearer` or, for browser clients
//! that cannot set headers on a websocket, `?token=`. A workspace token
//! subscribes to its own workspace only (another workspace's id is refused
//! with 404, as everywhere); the admin may name any workspace or omit it to
//! receive everything.
//!
//! Bounded: a token may hold `max_subscribers_per_token` subscribers and
//! the process `max_subscribers` (past either, the socket is closed at once
//! with a close reason saying so), and what a client sends is capped at
//! `max_incoming_bytes` per message ([`crate::ws::HubConfig`]).

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{authenticate, authenticate_token, Caller};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::limits::ClientAddr;
use super::AppState;
use crate::ws::hub::TokenHolder;
use crate::ws::subscriber::{self, Audience};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(subscribe))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SubscribeQuery {
    /// The workspace whose messages to receive; the admin may omit it to
    /// receive everything.
    #[param(format = Uuid)]
    workspace_id: Option<String>,
    /// Replay every message after this log position, then go on live.
    #[param(value_type = Option<i64>, minimum = 0)]
    from: Option<String>,
    /// The token, for clients that cannot send `Authorization`.
    token: Option<String>,
    /// `true`: the replay comes in frames holding a JSON array of up to
    /// 1000 messages (one per log read) instead of one frame per message,
    /// which a browser receives several times faster; live messages are
    /// one per frame either way.
    #[param(value_type = Option<bool>)]
    batch: Option<String>,
}

/// The live feed (a websocket upgrade).
///
/// Each message: `{position, type, workspace_id, delegation_id?, at, payload}`.
#[utoipa::path(get, path = "/ws", tag = "live", security((), ("bearer" = [])),
    params(SubscribeQuery),
    responses(
        (status = 101, description = "Switching to the websocket protocol"),
        (status = 400, description = "Not a websocket upgrade, from is not a non-negative integer, or batch is not true or false", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or unknown token (header or `?token=`)", body = crate::http::error::ErrorBody),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
    ))]
async fn subscribe(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
    ApiQuery(query): ApiQuery<SubscribeQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let caller = match (
        authenticate(&state, &headers, client).await?,
        query.token.as_deref(),
    ) {
        (Some(caller), _) => caller,
        (None, Some(token)) => authenticate_token(&state, token, client).await?,
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
    let batch = match query.batch.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "batch must be true or false; got {other:?}"
            )))
        }
    };
    let wanted = super::consistency::min_position_of(&uri, &headers)?;
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    if let Some(wanted) = wanted {
        super::consistency::wait_for_live(&state, wanted).await?;
    }
    let hub = state.hub.clone();
    let incoming = hub.config().max_incoming_bytes.max(256);
    let holder = match caller {
        Caller::Admin => TokenHolder::Admin,
        Caller::Workspace(id) => TokenHolder::Workspace(id),
    };
    let shutdown = state.shutdown.clone();
    Ok(upgrade
        .max_message_size(incoming)
        .max_frame_size(incoming)
        .on_upgrade(move |socket| {
            subscriber::serve(socket, hub, audience, holder, from, batch, shutdown)
        }))
}
