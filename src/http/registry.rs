//! The registry: register a workspace (token handed out once), report
//! capacity, discover where a workspace lives.

use aggregates::workspace::{DeliveryMode, Workspace, WorkspaceCommand};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

use crate::a2a::ProtocolVersion;
use crate::dispatch::drain::drain;

use super::auth::{authenticate, hash_token, new_token, Caller};
use super::error::ApiError;
use super::extract::{parse_uuid, ApiJson, ApiPath};
use super::{now, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/registry/register", post(register))
        .route("/registry/heartbeat", post(heartbeat))
        .route("/registry/discover/{id}", get(discover))
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
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %body.id), err)]
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    let id = parse_uuid("id", &body.id)?;
    let mode = parse_mode(body.delivery_mode.as_deref())?;
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

    match authenticate(&state, &headers).await? {
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
#[tracing::instrument(skip_all, fields(workspace_id = %body.workspace_id), err)]
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
            .map_err(|e| ApiError::Internal(e.to_string()))?
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
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DiscoverResponse>, ApiError> {
    let not_found = || ApiError::not_found(format!("workspace {id} not found"));
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    sqlx::query_as::<_, DiscoverResponse>(
        "select id, url, delivery_mode from workspaces where id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .map(Json)
    .ok_or_else(not_found)
}

/// The OpenAPI description of these routes (assembled in `super::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(register, heartbeat, discover))]
pub(super) struct Api;
