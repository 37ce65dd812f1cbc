//! The A2A queue (docs/api.md): a workspace's parked requests and one item's
//! status, read from the `a2a_queue` view. An item is visible to its target
//! workspace and to its caller; to anyone else it does not exist (404).

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::consistency::ReadPool;
use super::error::ApiError;
use super::extract::{parse_limit, ApiPath, ApiQuery};
use super::AppState;

/// `GET /workspaces/{id}/a2a/queue`: default and largest page.
const LIST_DEFAULT_LIMIT: i64 = 100;
const LIST_MAX_LIMIT: i64 = 1000;
const STATUSES: [&str; 5] = ["queued", "dispatched", "completed", "failed", "expired"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct QueueItemView {
    queue_id: Uuid,
    /// The busy target the request waits for.
    workspace_id: Uuid,
    /// The workspace that sent the request.
    caller_id: Uuid,
    /// 100 critical, 50 task, 10 info.
    priority: i16,
    /// `queued`, `dispatched`, `completed`, `failed` or `expired`.
    status: String,
    attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    enqueued_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dispatched_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delegation_id: Option<Uuid>,
    /// `{"text": …}` or `{"error": …}`: the outcome of the dispatched request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    response_body: Option<Value>,
}

const COLUMNS: &str = "queue_id, workspace_id, caller_id, priority, status, attempts, last_error, \
     enqueued_at, dispatched_at, completed_at, expires_at, delegation_id, response_body";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only items in this status.
    #[param(pattern = "^(queued|dispatched|completed|failed|expired)$")]
    status: Option<String>,
    /// Items to return: 100 by default, at most 1000 (larger is clamped).
    #[param(value_type = Option<i64>, minimum = 1)]
    limit: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct QueueList {
    /// Items still waiting (`queued`), whatever the filter.
    depth: i64,
    /// In drain order: priority, then FIFO.
    items: Vec<QueueItemView>,
}

#[utoipa::path(get, path = "/workspaces/{id}/a2a/queue", tag = "queue", operation_id = "list_queue", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The target workspace's id"), ListQuery),
    responses(
        (status = 200, description = "The workspace's queue in drain order, and how many wait", body = QueueList),
        (status = 400, description = "A parameter is malformed (status, limit, or an unknown one)", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
    ))]
async fn list(
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<QueueList>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
    if let Some(status) = query.status.as_deref() {
        if !STATUSES.contains(&status) {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}; got {status:?}",
                STATUSES.join(", ")
            )));
        }
    }
    let depth: i64 = sqlx::query_scalar(
        "select count(*) from a2a_queue where workspace_id = $1 and status = 'queued'",
    )
    .bind(workspace)
    .fetch_one(&reads)
    .await?;
    let items = sqlx::query_as::<_, QueueItemView>(&format!(
        "select {COLUMNS} from a2a_queue where workspace_id = $1 \
         and ($2::text is null or status = $2) \
         order by priority desc, log_position limit $3"
    ))
    .bind(workspace)
    .bind(query.status)
    .bind(limit)
    .fetch_all(&reads)
    .await?;
    Ok(Json(QueueList { depth, items }))
}

#[utoipa::path(get, path = "/workspaces/{id}/a2a/queue/{queue_id}", tag = "queue", operation_id = "get_queue_item", security(("bearer" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "The caller's or the target's workspace id"),
        ("queue_id" = String, Path, format = Uuid, description = "The queue item"),
    ),
    responses(
        (status = 200, description = "The queue item", body = QueueItemView),
        (status = 400, description = "A path parameter is malformed", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such item for this workspace (or not the caller's workspace)", body = crate::http::error::ErrorBody),
    ))]
async fn get_one(
    caller: Caller,
    ApiPath((id, queue_id)): ApiPath<(String, String)>,
    ReadPool(reads): ReadPool,
) -> Result<Json<QueueItemView>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let not_found = || ApiError::not_found(format!("queue item {queue_id} not found"));
    let queue_id = Uuid::parse_str(&queue_id).map_err(|_| not_found())?;
    sqlx::query_as::<_, QueueItemView>(&format!(
        "select {COLUMNS} from a2a_queue where queue_id = $1 \
         and (workspace_id = $2 or caller_id = $2)"
    ))
    .bind(queue_id)
    .bind(workspace)
    .fetch_optional(&reads)
    .await?
    .map(Json)
    .ok_or_else(not_found)
}
