//! Who is calling: the admin, a workspace, or nobody.
//!
//! Workspace tokens are random 256-bit strings handed out once at
//! registration (and again at each rotation); only their SHA-256 is stored
//! (in the workspace's events and the `workspaces` view), so neither the
//! event store nor a database dump reveals a usable token.
//!
//! Every request looks its token up in the view: a rotated or revoked
//! token is dead on every node as soon as the command that replaced it has
//! answered (commands answer once the views show their events), which no
//! per-process cache of positive answers could promise.
//!
//! Failed attempts count against the client address's budget
//! ([`super::limits`]); a workspace's commands (POSTs) count against its
//! own.

use aggregates::Actor;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::net::IpAddr;

use axum::http::{header, HeaderMap, Method};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use super::limits::client_addr_of;
use super::AppState;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Holds the admin token: may do anything.
    Admin,
    /// Holds this workspace's token: acts only on its own resources.
    Workspace(Uuid),
}

impl Caller {
    /// The actor recorded on events caused by this caller.
    pub fn actor(self) -> Actor {
        match self {
            Self::Admin => Actor::Admin,
            Self::Workspace(id) => Actor::Workspace(id),
        }
    }

    /// May this caller act for `workspace_id`?
    pub fn acts_for(self, workspace_id: Uuid) -> bool {
        match self {
            Self::Admin => true,
            Self::Workspace(id) => id == workspace_id,
        }
    }

    /// The workspace named in a path, as this caller may see it: an id that
    /// is not a UUID, or another workspace's, does not exist for this
    /// caller (404, so ids do not leak).
    pub fn workspace_in_path(self, id: &str) -> Result<Uuid, ApiError> {
        let workspace = Uuid::parse_str(id)
            .map_err(|_| ApiError::not_found(format!("workspace {id} not found")))?;
        self.require(workspace)?;
        Ok(workspace)
    }

    /// 404 unless the caller may act for `workspace_id`: another
    /// workspace's resources are answered as if they did not exist.
    pub fn require(self, workspace_id: Uuid) -> Result<(), ApiError> {
        if self.acts_for(workspace_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "workspace {workspace_id} not found"
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    /// The caller of an authenticated route; a POST is a command, which
    /// counts against the workspace's command rate.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let client = client_addr_of(parts, &state.limits);
        let caller = authenticate(state, &parts.headers, client)
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing bearer token: send `Authorization: Bearer <token>`".into(),
                )
            })?;
        if let (&Method::POST, Caller::Workspace(id)) = (&parts.method, caller) {
            state.limits.command(id)?;
        }
        Ok(caller)
    }
}

/// The caller named by the `Authorization` header: None when the header is
/// absent, 401 when it is malformed or its token matches nothing (429 once
/// `client` failed too often).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Option<Caller>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "malformed Authorization header: expected `Bearer <token>`".into(),
            )
        })?;
    authenticate_token(state, token, client).await.map(Some)
}

/// The caller holding `token`; 401 when it matches nothing, 429 while
/// `client` has spent its budget of failed attempts.
pub async fn authenticate_token(
    state: &AppState,
    token: &str,
    client: IpAddr,
) -> Result<Caller, ApiError> {
    state.limits.auth_allowed(client)?;
    if let Some(admin) = &state.admin_token {
        if constant_time_eq(admin.as_bytes(), token.as_bytes()) {
            return Ok(Caller::Admin);
        }
    }
    let workspace: Option<Uuid> =
        sqlx::query_scalar("select id from workspaces where token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(&state.pool)
            .await?;
    match workspace {
        Some(id) => Ok(Caller::Workspace(id)),
        None => Err(state
            .limits
            .auth_failed(client)
            .unwrap_or_else(|| ApiError::Unauthorized("invalid token".into()))),
    }
}

/// The stored form of a token: lowercase hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (`ldg_` + 64 hex digits).
pub fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    Ok(format!("ldg_{}", hex::encode(bytes)))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
