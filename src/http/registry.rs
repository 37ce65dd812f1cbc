//! The registry: register a workspace (token handed out once), rotate or
//! revoke its token, report capacity, discover where a workspace lives.
//!
//! Registration is the one command a stranger may send, so it is rate
//! limited per client address, and a push URL must pass the outbound
//! policy's text checks (no credentials; an IP literal only where the
//! dispatcher may connect) before anything is written.

use aggregates::workspace::{DeliveryMode, Workspace, WorkspaceCommand};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::a2a::ProtocolVersion;
use crate::dispatch::drain::drain;

use super::auth::{authenticate, hash_token, new_token, Caller};
use super::consistency::ReadPool;
use super::error::ApiError;
use super::extract::{parse_uuid, ApiJson, ApiPath};
use super::limits::ClientAddr;
use super::{now, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(rotate_token))
        .routes(routes!(revoke_token))
        .routes(routes!(heartbeat))
        .routes(routes!(discover))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    /// The workspace's id.
    #[schema(format = Uuid)]
    id: String,
    /// Where pushed deliveries go (http or https); required in push mode.
    url: Option<String>,
    /// `push` (the default) or `poll`.
    #[schema(pattern = "^(push|poll)$")]
    delivery_mode: Option<String>,
    name: Option<String>,
    /// The A2A version to speak to this workspace ("0.3" or "1.0"); absent
    /// or null: chosen from its agent card.
    protocol_version: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RegisterResponse {
    id: Uuid,
    #[schema(value_type = String, pattern = "^(push|poll)$")]
    delivery_mode: DeliveryMode,
    /// The workspace's token: on first registration only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    auth_token: Option<String>,
}

fn parse_mode(value: Option<&str>) -> Result<Option<DeliveryMode>, ApiError> {
    match value {
        None => Ok(None),
        Some("push") => Ok(Some(DeliveryMode::Push)),
        Some("poll") => Ok(Some(DeliveryMode::Poll)),
        Some(other) => Err(ApiError::bad_request(format!(
            "delivery_mode must be \"push\" or \"poll\"; got {other:?}"
        ))),
    }
}

/// First registration needs no token and returns one; re-registration
/// needs that token (or the admin's) and returns none.
#[utoipa::path(post, path = "/registry/register", tag = "registry",
    security((), ("bearer" = [])),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "Registered (with `auth_token`) or re-registered (without)", body = RegisterResponse),
        (status = 400, description = "Malformed body, id not a UUID, bad delivery_mode or url", body = crate::http::error::ErrorBody),
        (status = 401, description = "Re-registration without a token, or an unknown token", body = crate::http::error::ErrorBody),
        (status = 403, description = "The token may not re-register this workspace", body = crate::http::error::ErrorBody),
        (status = 409, description = "A concurrent registration won", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
        (status = 429, description = "Too many registrations from this address (see `Retry-After`)", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %body.id))]
async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    state.limits.registration(client)?;
    let id = parse_uuid("id", &body.id)?;
    let mode = parse_mode(body.delivery_mode.as_deref())?;
    if let Some(url) = &body.url {
        check_outbound(&state, url)?;
    }
    let protocol_version = body
        .protocol_version
        .as_deref()
        .map(|v| {
            v.parse::<ProtocolVersion>()
                .map(|v| v.as_str().to_string())
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let current: Workspace = state.bus.load(&id.to_string()).await?;
    let at = now();

    if !current.is_registered() {
        let delivery_mode = mode.unwrap_or_default();
        let token = new_token()?;
        let command = WorkspaceCommand::Register {
            workspace_id: id,
            name: body.name,
            url: body.url,
            delivery_mode,
            token_hash: hash_token(&token),
            at,
        };
        state
            .bus
            .execute::<Workspace>(&id.to_string(), command, HashMap::new())
            .await?;
        if protocol_version.is_some() {
            set_protocol_version(&state, id, protocol_version).await?;
        }
        tracing::info!(%id, mode = delivery_mode.as_str(), "workspace registered");
        return Ok(Json(RegisterResponse {
            id,
            delivery_mode,
            auth_token: Some(token),
        }));
    }

    match authenticate(&state, &headers, client).await? {
        None => {
            return Err(ApiError::Unauthorized(format!(
                "workspace {id} is already registered; re-register with its token"
            )))
        }
        Some(caller) if !caller.acts_for(id) => {
            return Err(ApiError::Forbidden(format!(
                "this token may not re-register workspace {id}"
            )))
        }
        Some(_) => {}
    }
    let delivery_mode = mode.unwrap_or(current.delivery_mode());
    let command = WorkspaceCommand::UpdateRegistration {
        name: body.name.or_else(|| current.name().map(str::to_string)),
        url: body.url.or_else(|| current.url().map(str::to_string)),
        delivery_mode,
        at,
    };
    state
        .bus
        .execute::<Workspace>(&id.to_string(), command, HashMap::new())
        .await?;
    if body.protocol_version.is_some() {
        set_protocol_version(&state, id, protocol_version).await?;
    }
    Ok(Json(RegisterResponse {
        id,
        delivery_mode,
        auth_token: None,
    }))
}

/// A push URL the dispatcher would refuse to call is refused here, before
/// anything is written (a name is checked when it is resolved, at send).
fn check_outbound(state: &AppState, url: &str) -> Result<(), ApiError> {
    // A URL that does not parse is the aggregate's to reject, with its own
    // message.
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    state
        .outbound
        .check_url(&parsed)
        .map_err(|refused| ApiError::bad_request(format!("url: {refused}")))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// Whose token to replace: a workspace token may name only its own
    /// workspace (or omit it); the admin must name one.
    #[schema(format = Uuid)]
    workspace_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RotateResponse {
    id: Uuid,
    /// The new token: shown once, never again. The old one no longer works.
    auth_token: String,
}

/// Replace a workspace's token. The old token stops working on every node
/// once this answers. The admin may reissue a revoked token this way.
#[utoipa::path(post, path = "/registry/rotate-token", tag = "registry", security(("bearer" = [])),
    request_body = RotateRequest,
    responses(
        (status = 200, description = "The new token (the old one is dead)", body = RotateResponse),
        (status = 400, description = "Malformed body, or the admin named no workspace", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
        (status = 409, description = "A concurrent update won", body = crate::http::error::ErrorBody),
        (status = 429, description = "Too many commands for this workspace", body = crate::http::error::ErrorBody),
    ))]
async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Option<ApiJson<RotateRequest>>,
) -> Result<Json<RotateResponse>, ApiError> {
    let body = body.map(|ApiJson(body)| body).unwrap_or_default();
    let id = token_owner(caller, body.workspace_id.as_deref())?;
    registered(&state, id).await?;
    let token = new_token()?;
    let command = WorkspaceCommand::RotateToken {
        token_hash: hash_token(&token),
        at: now(),
    };
    state
        .bus
        .execute::<Workspace>(&id.to_string(), command, HashMap::new())
        .await?;
    tracing::info!(%id, "workspace token rotated");
    Ok(Json(RotateResponse {
        id,
        auth_token: token,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[schema(format = Uuid)]
    workspace_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RevokeResponse {
    id: Uuid,
    /// Always true: no token works for the workspace until the admin
    /// rotates it.
    revoked: bool,
}

/// Revoke a workspace's token (admin only): nothing authenticates as the
/// workspace until the admin issues a new token with `rotate-token`.
#[utoipa::path(post, path = "/registry/revoke-token", tag = "registry", security(("bearer" = [])),
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = RevokeResponse),
        (status = 400, description = "Malformed body, or workspace_id not a UUID", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 403, description = "Not the admin token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace", body = crate::http::error::ErrorBody),
        (status = 409, description = "A concurrent update won", body = crate::http::error::ErrorBody),
    ))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    if caller != Caller::Admin {
        return Err(ApiError::Forbidden(
            "only the admin token may revoke a workspace's token".into(),
        ));
    }
    let id = parse_uuid("workspace_id", &body.workspace_id)?;
    registered(&state, id).await?;
    let command = WorkspaceCommand::RevokeToken { at: now() };
    state
        .bus
        .execute::<Workspace>(&id.to_string(), command, HashMap::new())
        .await?;
    tracing::info!(%id, "workspace token revoked");
    Ok(Json(RevokeResponse { id, revoked: true }))
}

/// The workspace whose token `caller` may replace.
fn token_owner(caller: Caller, named: Option<&str>) -> Result<Uuid, ApiError> {
    let named = named
        .map(|text| parse_uuid("workspace_id", text))
        .transpose()?;
    match (caller, named) {
        (Caller::Workspace(own), None) => Ok(own),
        (Caller::Workspace(_), Some(id)) => caller.require(id).map(|()| id),
        (Caller::Admin, Some(id)) => Ok(id),
        (Caller::Admin, None) => Err(ApiError::bad_request(
            "workspace_id: the admin must name the workspace whose token to rotate",
        )),
    }
}

/// 404 unless `id` is a registered workspace.
async fn registered(state: &AppState, id: Uuid) -> Result<(), ApiError> {
    let workspace: Workspace = state.bus.load(&id.to_string()).await?;
    if workspace.is_registered() {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("workspace {id} not found")))
    }
}

/// Record the A2A version given at registration (a no-op when unchanged).
async fn set_protocol_version(
    state: &AppState,
    id: Uuid,
    protocol_version: Option<String>,
) -> Result<(), ApiError> {
    let command = WorkspaceCommand::SetProtocolVersion {
        protocol_version,
        at: now(),
    };
    state
        .bus
        .execute::<Workspace>(&id.to_string(), command, HashMap::new())
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    #[schema(format = Uuid)]
    workspace_id: String,
    active_tasks: u32,
    max_concurrent: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct HeartbeatResponse {
    drained: u32,
}

/// Store the reported capacity, and with spare capacity
/// (`active_tasks < max_concurrent`) claim that many of the workspace's
/// queued requests for dispatch (`drained`).
#[utoipa::path(post, path = "/registry/heartbeat", tag = "registry", security(("bearer" = [])),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Capacity stored; `drained` queued requests were claimed for dispatch", body = HeartbeatResponse),
        (status = 400, description = "Malformed body, workspace_id not a UUID, or impossible capacity", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
        (status = 409, description = "A concurrent update won", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %body.workspace_id))]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let id = parse_uuid("workspace_id", &body.workspace_id)?;
    caller.require(id)?;
    let max_concurrent = body.max_concurrent.unwrap_or(1);
    let at = now();
    let command = WorkspaceCommand::ReportCapacity {
        active_tasks: body.active_tasks,
        max_concurrent,
        at,
    };
    state
        .bus
        .execute::<Workspace>(&id.to_string(), command, HashMap::new())
        .await?;
    let spare = max_concurrent.saturating_sub(body.active_tasks);
    let drained = if spare > 0 {
        drain(&state.pool, &state.bus, id, spare, at)
            .await
            .map_err(ApiError::internal)?
    } else {
        0
    };
    Ok(Json(HeartbeatResponse { drained }))
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct DiscoverResponse {
    id: Uuid,
    url: Option<String>,
    /// `push` or `poll`.
    delivery_mode: String,
}

/// Where a workspace lives.
#[utoipa::path(get, path = "/registry/discover/{id}", tag = "registry", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id")),
    responses(
        (status = 200, description = "The workspace's address", body = DiscoverResponse),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace", body = crate::http::error::ErrorBody),
    ))]
async fn discover(
    _caller: Caller,
    ApiPath(id): ApiPath<String>,
    ReadPool(reads): ReadPool,
) -> Result<Json<DiscoverResponse>, ApiError> {
    let not_found = || ApiError::not_found(format!("workspace {id} not found"));
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    sqlx::query_as::<_, DiscoverResponse>(
        "select id, url, delivery_mode from workspaces where id = $1",
    )
    .bind(id)
    .fetch_optional(&reads)
    .await?
    .map(Json)
    .ok_or_else(not_found)
}
