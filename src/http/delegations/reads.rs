//! Reading delegations: a workspace's list (its `delegate` and
//! `delegate_result` activity rows) and one delegation with its history.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::auth::Caller;
use crate::http::consistency::ReadPool;
use crate::http::error::ApiError;
use crate::http::extract::{parse_limit, ApiPath, ApiQuery};

/// `GET /workspaces/{id}/delegations`: default and largest page.
const LIST_DEFAULT_LIMIT: i64 = 50;
const LIST_MAX_LIMIT: i64 = 500;
/// Characters of a result shown as `response_preview` in the list.
const LIST_PREVIEW_CHARS: usize = 300;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Rows to return: 50 by default, at most 500 (larger is clamped).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
}

/// One row of `GET /workspaces/{id}/delegations`: a `delegate` row per
/// delegation (with its current status), plus a `delegate_result` row when
/// it completed or failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegationListEntry {
    pub created_at: DateTime<Utc>,
    pub delegation_id: Option<Uuid>,
    /// Why it failed (failed delegations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// The activity row's id.
    pub id: Uuid,
    /// `delegate` or `delegate_result`.
    pub method: Option<String>,
    /// The result's first 300 characters (completed delegations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub response_preview: Option<String>,
    pub source_id: Option<Uuid>,
    pub status: Option<String>,
    pub summary: String,
    pub target_id: Option<Uuid>,
    /// Always `delegation`.
    #[serde(rename = "type")]
    pub entry_type: &'static str,
}

/// The workspace's `delegate` rows (carrying current status) and
/// `delegate_result` rows, newest first.
#[utoipa::path(get, path = "/workspaces/{id}/delegations", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id"), ListQuery),
    responses(
        (status = 200, description = "Newest first", body = Vec<DelegationListEntry>),
        (status = 400, description = "limit is not a positive integer", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
    ))]
pub(super) async fn list(
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<Vec<DelegationListEntry>>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
    let rows = sqlx::query(
        "select id, method, source_id, target_id, summary, status, delegation_id, error_detail, \
         response_body->>'text' as response_text, created_at \
         from activity_logs \
         where workspace_id = $1 and activity_type = 'delegation' and method in ('delegate', 'delegate_result') \
         order by log_position desc, ordinal desc limit $2",
    )
    .bind(workspace)
    .bind(limit)
    .fetch_all(&reads)
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        entries.push(DelegationListEntry {
            created_at: row.try_get("created_at")?,
            delegation_id: row.try_get("delegation_id")?,
            error: row.try_get("error_detail")?,
            id: row.try_get("id")?,
            method: row.try_get("method")?,
            response_preview: row
                .try_get::<Option<String>, _>("response_text")?
                .map(|text| aggregates::preview(&text, LIST_PREVIEW_CHARS)),
            source_id: row.try_get("source_id")?,
            status: row.try_get("status")?,
            summary: row.try_get("summary")?,
            target_id: row.try_get("target_id")?,
            entry_type: "delegation",
        });
    }
    Ok(Json(entries))
}

/// One step of a delegation's status history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryStep {
    pub at: String,
    pub status: String,
}

/// `GET /workspaces/{id}/delegations/{delegation_id}` → 200, read as the
/// `delegations` view's row.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DelegationDetail {
    pub created_at: DateTime<Utc>,
    /// When a still-live managed delegation fails with `deadline exceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub deadline: Option<DateTime<Utc>>,
    pub delegation_id: Uuid,
    /// Why it failed or was canceled (those delegations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// Every status it went through, oldest first.
    #[sqlx(json)]
    pub history: Vec<HistoryStep>,
    /// The queue item carrying it, when it was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub queue_id: Option<Uuid>,
    /// The target's question (`input_required` delegations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub question: Option<String>,
    /// The result (completed delegations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub result: Option<String>,
    pub source_id: Uuid,
    pub status: String,
    pub target_id: Uuid,
    pub task: String,
    pub updated_at: DateTime<Utc>,
}

/// One delegation, to its source or its target.
#[utoipa::path(get, path = "/workspaces/{id}/delegations/{delegation_id}", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id"), ("delegation_id" = String, Path, format = Uuid, description = "The delegation's id")),
    responses(
        (status = 200, description = "The delegation with its status history", body = DelegationDetail),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace or delegation (or not the caller's)", body = crate::http::error::ErrorBody),
    ))]
pub(super) async fn get_one(
    caller: Caller,
    ApiPath((id, delegation_id)): ApiPath<(String, String)>,
    ReadPool(reads): ReadPool,
) -> Result<Json<DelegationDetail>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let not_found = || ApiError::not_found(format!("delegation {delegation_id} not found"));
    let delegation_id = Uuid::parse_str(&delegation_id).map_err(|_| not_found())?;
    let detail: DelegationDetail = sqlx::query_as(
        "select delegation_id, source_id, target_id, task, status, result, error, queue_id, \
         question, deadline, created_at, updated_at, history from delegations \
         where delegation_id = $1 and (source_id = $2 or target_id = $2)",
    )
    .bind(delegation_id)
    .bind(workspace)
    .fetch_optional(&reads)
    .await?
    .ok_or_else(not_found)?;
    Ok(Json(detail))
}
