//! The activity feed: newest first for a dashboard, or oldest first after a
//! cursor row (`since_id`) for a poller that must not miss a row.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::consistency::ReadPool;
use super::error::ApiError;
use super::extract::{parse_limit, parse_uuid, ApiPath, ApiQuery};
use super::AppState;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// `since_secs` above this is clamped: no caller needs a longer window, and
/// an unbounded one is a full scan.
pub const MAX_SINCE_SECS: i64 = 30 * 24 * 60 * 60;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(activity))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ActivityQuery {
    /// Only rows of this `activity_type` (e.g. `delegation`, `a2a_receive`).
    #[serde(rename = "type")]
    activity_type: Option<String>,
    /// Only rows from this source workspace.
    #[param(format = Uuid)]
    source: Option<String>,
    /// Rows to return: 100 by default, at most 1000 (larger is clamped).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
    /// Only rows of the last this many seconds (clamped to 30 days).
    #[param(value_type = Option<i64>, minimum = 1)]
    since_secs: Option<String>,
    /// Rows strictly after this row, oldest first (a poller's cursor).
    #[param(format = Uuid)]
    since_id: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct ActivityRow {
    id: Uuid,
    workspace_id: Uuid,
    activity_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_id: Option<Uuid>,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_detail: Option<String>,
    created_at: DateTime<Utc>,
}

/// `since_secs`: a positive integer, clamped to [`MAX_SINCE_SECS`].
fn parse_since_secs(value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(secs) if secs > 0 => Ok(Some(secs.min(MAX_SINCE_SECS))),
            _ => Err(ApiError::bad_request(format!(
                "since_secs must be a positive integer number of seconds; got {text:?}"
            ))),
        },
    }
}

/// The workspace's activity feed.
///
/// Newest first; with `since_id`, the rows after that one, oldest first.
#[utoipa::path(get, path = "/workspaces/{id}/activity", tag = "activity", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id"), ActivityQuery),
    responses(
        (status = 200, description = "Activity rows", body = Vec<ActivityRow>),
        (status = 400, description = "A parameter is malformed (limit, since_secs, source, since_id)", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
        (status = 410, description = "since_id is not a row of this workspace's feed", body = crate::http::error::ErrorBody),
    ))]
async fn activity(
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ActivityQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<Vec<ActivityRow>>, ApiError> {
    let workspace = Uuid::parse_str(&id)
        .map_err(|_| ApiError::not_found(format!("workspace {id} not found")))?;
    caller.require(workspace)?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let since_secs = parse_since_secs(query.since_secs.as_deref())?;
    let source = query
        .source
        .as_deref()
        .map(|s| parse_uuid("source", s))
        .transpose()?;
    let cursor = match query.since_id.as_deref() {
        None => None,
        Some(text) => {
            let cursor_id = parse_uuid("since_id", text)?;
            // Scoped to the caller's workspace: another workspace's row is
            // as gone as a row that never existed (no information leak).
            let position: Option<(i64, i32)> = sqlx::query_as(
                "select log_position, ordinal from activity_logs where id = $1 and workspace_id = $2",
            )
            .bind(cursor_id)
            .bind(workspace)
            .fetch_optional(&reads)
            .await?;
            Some(position.ok_or_else(|| {
                ApiError::Gone(format!(
                    "since_id {cursor_id} is not a row of this workspace's feed"
                ))
            })?)
        }
    };

    let mut sql: QueryBuilder<Postgres> = QueryBuilder::new(
        "select id, workspace_id, activity_type, method, source_id, target_id, summary, status, \
         request_body, response_body, error_detail, created_at from activity_logs where workspace_id = ",
    );
    sql.push_bind(workspace);
    if let Some(activity_type) = query.activity_type {
        sql.push(" and activity_type = ").push_bind(activity_type);
    }
    if let Some(source) = source {
        sql.push(" and source_id = ").push_bind(source);
    }
    if let Some(secs) = since_secs {
        sql.push(" and created_at >= now() - make_interval(secs => ")
            .push_bind(secs as f64)
            .push(")");
    }
    match cursor {
        Some((position, ordinal)) => {
            sql.push(" and (log_position, ordinal) > (")
                .push_bind(position)
                .push(", ")
                .push_bind(ordinal)
                .push(") order by log_position, ordinal");
        }
        None => {
            sql.push(" order by log_position desc, ordinal desc");
        }
    }
    sql.push(" limit ").push_bind(limit);
    let rows = sql
        .build_query_as::<ActivityRow>()
        .fetch_all(&reads)
        .await?;
    Ok(Json(rows))
}
