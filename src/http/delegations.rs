//! Delegations: delegate (managed), record (agent-dispatched), update, list,
//! get. Handlers stay thin: authenticate → parse into a command → execute →
//! respond; the rules live in the aggregates.

use std::collections::HashMap;

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, QueueOptions,
    StatusUpdate, MAX_TASK_BYTES,
};
use aggregates::idempotency_key::{
    self, IdempotencyKey, IdempotencyKeyCommand, IdempotencyKeyError, MAX_KEY_CHARS,
};
use aggregates::queue_item::Priority;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::consistency::ReadPool;
use super::error::ApiError;
use super::extract::{parse_limit, parse_uuid, ApiJson, ApiPath, ApiQuery};
use super::{now, AppState};
use crate::commands::CommandError;

/// `GET /workspaces/{id}/delegations`: default and largest page.
const LIST_DEFAULT_LIMIT: i64 = 50;
const LIST_MAX_LIMIT: i64 = 500;
/// Characters of a result shown as `response_preview` in the list.
const LIST_PREVIEW_CHARS: usize = 300;
/// Attempts at claiming an idempotency key while others race for it.
const KEY_CLAIM_ATTEMPTS: usize = 5;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delegate))
        .routes(routes!(record))
        .routes(routes!(update))
        .routes(routes!(cancel))
        .routes(routes!(list))
        .routes(routes!(get_one))
}

fn validate_task(source: Uuid, target: Uuid, task: &str) -> Result<(), ApiError> {
    if source == target {
        return Err(ApiError::bad_request(
            DelegationError::SelfDelegation.to_string(),
        ));
    }
    if task.trim().is_empty() {
        return Err(ApiError::bad_request(
            DelegationError::EmptyTask.to_string(),
        ));
    }
    if task.len() > MAX_TASK_BYTES {
        let error = DelegationError::TaskTooLarge {
            bytes: task.len(),
            max: MAX_TASK_BYTES,
        };
        return Err(ApiError::bad_request(error.to_string()));
    }
    Ok(())
}

/// Checked before the key is claimed, so a bad request claims nothing.
fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(
            IdempotencyKeyError::EmptyKey.to_string(),
        ));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(ApiError::bad_request(
            IdempotencyKeyError::KeyTooLong { max: MAX_KEY_CHARS }.to_string(),
        ));
    }
    Ok(())
}

fn metadata(caller: Caller) -> HashMap<String, String> {
    let actor = match caller {
        Caller::Admin => "admin".to_string(),
        Caller::Workspace(id) => format!("workspace:{id}"),
    };
    HashMap::from([("actor".to_string(), actor)])
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    /// The workspace to delegate to (not the caller's own).
    #[schema(format = Uuid)]
    target_id: String,
    /// The task text, not blank. Either this or `message`.
    task: Option<String>,
    /// An A2A message whose text parts are the task: v0.3+ `parts`, or v0.2
    /// `content` (a string or a list), normalised at the edge.
    #[schema(value_type = Option<Object>)]
    message: Option<Value>,
    /// Repeating a key returns the earlier delegation unless it failed.
    idempotency_key: Option<String>,
    /// Queue priority should the target be busy: "critical" (100), "task"
    /// (50, the default) or "info" (10), by name or number.
    #[schema(value_type = Option<Object>)]
    priority: Option<Value>,
    /// The queued request expires this many seconds (1 … 2592000) after it
    /// was queued.
    #[schema(minimum = 1, maximum = 2592000)]
    expires_in_seconds: Option<i64>,
    /// Seconds (at least 1, at most the configured maximum) after which the
    /// delegation fails with `deadline exceeded` if it has not ended; the
    /// configured default when absent.
    #[schema(minimum = 1)]
    deadline_seconds: Option<i64>,
}

/// The deadline of a managed delegation sent `at`.
fn deadline_of(
    body: &DelegateRequest,
    deadlines: super::Deadlines,
    at: DateTime<Utc>,
) -> Result<DateTime<Utc>, ApiError> {
    let max = deadlines.max.as_secs() as i64;
    let seconds = match body.deadline_seconds {
        None => deadlines.default.as_secs() as i64,
        Some(s) if (1..=max).contains(&s) => s,
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "deadline_seconds must be between 1 and {max}; got {s}"
            )))
        }
    };
    Ok(at + chrono::Duration::seconds(seconds))
}

/// The largest `expires_in_seconds` accepted (30 days).
const MAX_EXPIRES_IN_SECONDS: i64 = 30 * 24 * 3600;

/// The task of a delegate request: `task`, or the text of `message`.
fn task_of(body: &DelegateRequest) -> Result<String, ApiError> {
    match (&body.task, &body.message) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give either `task` or `message`, not both",
        )),
        (Some(task), None) => Ok(task.clone()),
        (None, Some(message)) => {
            let message = crate::a2a::normalize_content(message)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let text = crate::a2a::wire::text_parts(&message["parts"]).join("\n");
            if text.trim().is_empty() {
                return Err(ApiError::bad_request(
                    "the message has no text part to use as the task",
                ));
            }
            Ok(text)
        }
        (None, None) => Err(ApiError::bad_request(
            "the delegation needs a `task`, or a `message` with `parts` (A2A v0.3+) or `content` (A2A v0.2)",
        )),
    }
}

/// Priority and TTL of the queue item a busy target turns this into.
fn queue_options(body: &DelegateRequest) -> Result<QueueOptions, ApiError> {
    let priority = match &body.priority {
        None | Some(Value::Null) => Priority::default(),
        Some(Value::String(name)) => Priority::from_name(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "priority must be \"critical\", \"task\" or \"info\" (or 100, 50, 10); got {name:?}"
            ))
        })?,
        Some(Value::Number(n)) => n.as_i64().and_then(Priority::from_value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "priority must be 100 (critical), 50 (task) or 10 (info); got {n}"
            ))
        })?,
        Some(_) => return Err(ApiError::bad_request(
            "priority must be a name (\"critical\", \"task\", \"info\") or a number (100, 50, 10)",
        )),
    };
    let expires_in_seconds = match body.expires_in_seconds {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN_SECONDS).contains(&s) => u32::try_from(s).ok(),
        Some(s) => {
            return Err(ApiError::bad_request(format!(
                "expires_in_seconds must be between 1 and {MAX_EXPIRES_IN_SECONDS}; got {s}"
            )))
        }
    };
    Ok(QueueOptions {
        priority,
        expires_in_seconds,
    })
}

// The answers' fields are declared in alphabetical order: that is the
// order they were always written in (as `serde_json` maps), kept byte for
// byte.

/// `POST /workspaces/{id}/delegate` → 202: a new managed delegation.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegateAccepted {
    pub delegation_id: Uuid,
    /// Always `delegated`.
    #[schema(pattern = "^delegated$")]
    pub status: &'static str,
    pub target_id: Uuid,
}

/// `POST /workspaces/{id}/delegate` → 200: the idempotency key's earlier
/// delegation, which is not failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegateIdempotentHit {
    pub delegation_id: Uuid,
    /// Always `true`.
    pub idempotent_hit: bool,
    /// The earlier delegation's current status.
    #[schema(value_type = Option<String>)]
    pub status: Option<DelegationStatus>,
    pub target_id: Uuid,
}

/// Managed delegation: recorded `pending`; the ledger dispatches it.
#[utoipa::path(post, path = "/workspaces/{id}/delegate", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id")),
    request_body = DelegateRequest,
    responses(
        (status = 202, description = "Delegation created (`pending` until dispatched)", body = DelegateAccepted),
        (status = 200, description = "Idempotent hit: the key's earlier delegation", body = DelegateIdempotentHit),
        (status = 400, description = "Malformed body, self-delegation, target_id not a UUID, empty task or bad key", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's), or unknown target", body = crate::http::error::ErrorBody),
        (status = 409, description = "The idempotency key is contended, or a concurrent write won", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %id))]
async fn delegate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DelegateRequest>,
) -> Result<Response, ApiError> {
    let source = caller.workspace_in_path(&id)?;
    let target = parse_uuid("target_id", &body.target_id)?;
    let task = task_of(&body)?;
    let queue = queue_options(&body)?;
    let deadline = deadline_of(&body, state.deadlines, now())?;
    validate_task(source, target, &task)?;
    let target_known: bool =
        sqlx::query_scalar("select exists(select 1 from workspaces where id = $1)")
            .bind(target)
            .fetch_one(&state.pool)
            .await?;
    if !target_known {
        return Err(ApiError::not_found(format!(
            "target workspace {target} not found"
        )));
    }

    if let Some(key) = &body.idempotency_key {
        validate_key(key)?;
    }
    // A key's id already taken by another workspace's delegation is no
    // hit: `delegation_for_key` then sees a foreign holder, frees it, and
    // the next generation's id is tried.
    let mut attempts = 0;
    let (delegation_id, existing) = loop {
        attempts += 1;
        let delegation_id = match &body.idempotency_key {
            Some(key) => delegation_for_key(&state, caller, source, key).await?,
            None => Uuid::new_v4(),
        };
        let command = DelegationCommand::Send {
            delegation_id,
            source_id: source,
            target_id: target,
            task: task.clone(),
            origin: Origin::Managed,
            idempotency_key: body.idempotency_key.clone(),
            queue,
            deadline: Some(deadline),
            actor: caller.actor(),
            at: now(),
        };
        let sent = state
            .bus
            .execute::<Delegation>(&delegation_id.to_string(), command, metadata(caller))
            .await;
        let existing = match sent {
            Ok(executed) if executed.committed > 0 => {
                tracing::info!(%delegation_id, %target, "delegation sent");
                let accepted = DelegateAccepted {
                    delegation_id,
                    status: "delegated",
                    target_id: target,
                };
                return Ok((StatusCode::ACCEPTED, Json(accepted)).into_response());
            }
            // The key's delegation already exists (same or other content).
            Ok(executed) => executed.state,
            Err(CommandError::Rejected(DelegationError::AlreadyExists))
                if body.idempotency_key.is_some() =>
            {
                state
                    .bus
                    .load::<Delegation>(&delegation_id.to_string())
                    .await?
            }
            Err(other) => return Err(other.into()),
        };
        // A hit is only a hit on the caller's own delegation.
        if existing.source_id() == source {
            break (delegation_id, existing);
        }
        tracing::warn!(%delegation_id, "an idempotency key's delegation id was taken by another workspace");
        if attempts >= KEY_CLAIM_ATTEMPTS {
            return Err(ApiError::Conflict {
                message: "the idempotency key is contended; try again".into(),
                current_status: None,
            });
        }
    };
    let hit = DelegateIdempotentHit {
        delegation_id,
        idempotent_hit: true,
        status: existing.status(),
        target_id: existing.target_id(),
    };
    Ok((StatusCode::OK, Json(hit)).into_response())
}

/// The delegation an idempotency key stands for. A key held by a delegation
/// that is live — or not yet created by a request still in flight — keeps
/// it; a key whose delegation failed is taken over for a new one.
///
/// Each generation of a key has a delegation id derived from (workspace,
/// key, generation), so concurrent requests with the same key agree on the
/// id, and creating that delegation is idempotent: exactly one of them
/// commits it, the others see an existing delegation.
async fn delegation_for_key(
    state: &AppState,
    caller: Caller,
    source: Uuid,
    key: &str,
) -> Result<Uuid, ApiError> {
    let key_id = idempotency_key::aggregate_id(source, key);
    for _ in 0..KEY_CLAIM_ATTEMPTS {
        let current: IdempotencyKey = state.bus.load(&key_id).await?;
        let free_holder = match current.holder() {
            None => None,
            Some(holder) => {
                let held: Delegation = state.bus.load(&holder.to_string()).await?;
                // Free: failed, or squatted by another workspace's
                // delegation (possible for keys claimed while ids were
                // derived without the installation's secret).
                let ours = held.status().is_none() || held.source_id() == source;
                if ours && held.status() != Some(DelegationStatus::Failed) {
                    return Ok(holder);
                }
                Some(holder)
            }
        };
        let delegation_id =
            key_generation_id(&state.key_secret, source, key, current.generation() + 1);
        let command = IdempotencyKeyCommand::Claim {
            workspace_id: source,
            key: key.to_string(),
            delegation_id,
            free_holder,
            at: now(),
        };
        match state
            .bus
            .execute::<IdempotencyKey>(&key_id, command, metadata(caller))
            .await
        {
            Ok(_) => return Ok(delegation_id),
            // Someone else took the key meanwhile: look at their delegation.
            Err(CommandError::Rejected(IdempotencyKeyError::Held { .. }))
            | Err(CommandError::Conflict) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::Conflict {
        message: "the idempotency key is contended; try again".into(),
        current_status: None,
    })
}

/// The delegation id of `key`'s `generation` in `workspace`: an HMAC keyed
/// with the installation's secret ([`crate::secrets::IDEMPOTENCY_KEYS`]).
/// Concurrent requests of the workspace agree on it; nobody without the
/// secret can compute it, so no other workspace can create a delegation
/// under that id first and have it answered as this key's hit.
pub fn key_generation_id(secret: &[u8], workspace: Uuid, key: &str, generation: u32) -> Uuid {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(format!("{workspace}/{generation}/{key}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RecordRequest {
    #[schema(format = Uuid)]
    target_id: String,
    task: String,
    /// The id the agent gave the delegation it dispatched itself.
    #[schema(format = Uuid)]
    delegation_id: String,
}

/// `POST /workspaces/{id}/delegations/record` → 202.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordAccepted {
    pub delegation_id: Uuid,
    /// Always `recorded`.
    #[schema(pattern = "^recorded$")]
    pub status: &'static str,
}

/// Agent-dispatched delegation: the ledger only records it (`dispatched`).
#[utoipa::path(post, path = "/workspaces/{id}/delegations/record", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id")),
    request_body = RecordRequest,
    responses(
        (status = 202, description = "Recorded (again, if the same content was recorded before)", body = RecordAccepted),
        (status = 400, description = "Malformed body, self-delegation, an id not a UUID, or empty task", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace (or not the caller's)", body = crate::http::error::ErrorBody),
        (status = 409, description = "That delegation_id exists with other content", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %id))]
async fn record(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RecordRequest>,
) -> Result<(StatusCode, Json<RecordAccepted>), ApiError> {
    let source = caller.workspace_in_path(&id)?;
    let target = parse_uuid("target_id", &body.target_id)?;
    let delegation_id = parse_uuid("delegation_id", &body.delegation_id)?;
    validate_task(source, target, &body.task)?;
    let command = DelegationCommand::Send {
        delegation_id,
        source_id: source,
        target_id: target,
        task: body.task,
        origin: Origin::Recorded,
        idempotency_key: None,
        queue: QueueOptions::default(),
        // The agent dispatches it: only a managed delegation has a deadline.
        deadline: None,
        actor: caller.actor(),
        at: now(),
    };
    state
        .bus
        .execute::<Delegation>(&delegation_id.to_string(), command, metadata(caller))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RecordAccepted {
            delegation_id,
            status: "recorded",
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    /// The new status.
    #[schema(
        pattern = "^(dispatched|received|in_progress|queued|input_required|completed|failed|canceled)$"
    )]
    status: String,
    /// Why it failed (with `failed`) or was cancelled (with `canceled`).
    error: Option<String>,
    /// The result (with `completed`).
    response_preview: Option<String>,
    /// The target's question (with `input_required`).
    question: Option<String>,
}

/// The statuses a report may name.
const REPORTABLE: &str =
    "dispatched, received, in_progress, queued, input_required, completed, failed, canceled";

/// A delegation the caller is no party to is, to the caller, one that does
/// not exist: the aggregate's `NotFound` becomes this route's own 404.
fn not_found_as(
    error: CommandError<DelegationError>,
    not_found: impl FnOnce() -> ApiError,
) -> ApiError {
    match error {
        CommandError::Rejected(DelegationError::NotFound) => not_found(),
        other => other.into(),
    }
}

fn parse_update(body: UpdateRequest) -> Result<StatusUpdate, ApiError> {
    let reason = |text: Option<String>| {
        text.filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "no reason given".into())
    };
    Ok(match body.status.as_str() {
        "dispatched" => StatusUpdate::Dispatched {
            remote_task_id: None,
        },
        "received" => StatusUpdate::Received,
        "in_progress" => StatusUpdate::InProgress,
        "queued" => StatusUpdate::Queued { queue_id: None },
        "input_required" => StatusUpdate::InputRequired {
            question: body
                .question
                .filter(|q| !q.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("question: `input_required` needs the target's question")
                })?,
        },
        "completed" => StatusUpdate::Completed {
            result: body.response_preview.unwrap_or_default(),
        },
        "failed" => StatusUpdate::Failed {
            error: reason(body.error),
        },
        "canceled" => StatusUpdate::Canceled {
            reason: reason(body.error),
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "status must be one of {REPORTABLE}; got {other:?}"
            )))
        }
    })
}

/// `POST /workspaces/{id}/delegations/{delegation_id}/update` and
/// `…/cancel` → 200.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateAccepted {
    pub delegation_id: Uuid,
    /// The delegation's status after the update.
    pub status: Option<&'static str>,
}

/// Move a delegation along its lifecycle. The source (which recorded it)
/// and the target (which works on it, e.g. in poll mode) may report.
#[utoipa::path(post, path = "/workspaces/{id}/delegations/{delegation_id}/update", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id"), ("delegation_id" = String, Path, format = Uuid, description = "The delegation's id")),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Status updated (or the same terminal status repeated)", body = UpdateAccepted),
        (status = 400, description = "Malformed body or unknown status", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace or delegation (or not the caller's)", body = crate::http::error::ErrorBody),
        (status = 409, description = "The lifecycle forbids this transition (`current_status` says where it is)", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %id, delegation_id = %delegation_id))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, delegation_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateRequest>,
) -> Result<Json<UpdateAccepted>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let not_found = || ApiError::not_found(format!("delegation {delegation_id} not found"));
    let delegation_id = Uuid::parse_str(&delegation_id).map_err(|_| not_found())?;
    let update = parse_update(body)?;
    // The aggregate checks that the workspace is a party, in the same load
    // that decides the update.
    let command = DelegationCommand::ReportStatus {
        party: workspace,
        update,
        actor: caller.actor(),
        at: now(),
    };
    let executed = state
        .bus
        .execute::<Delegation>(&delegation_id.to_string(), command, metadata(caller))
        .await
        .map_err(|e| not_found_as(e, not_found))?;
    Ok(Json(UpdateAccepted {
        delegation_id,
        status: executed.state.status().map(DelegationStatus::as_str),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    /// Why it is withdrawn (shown to both parties).
    reason: Option<String>,
}

/// Withdraw a delegation (its source, or the admin): it becomes `canceled`
/// (terminal), and a task its target runs for it is asked to cancel.
#[utoipa::path(post, path = "/workspaces/{id}/delegations/{delegation_id}/cancel", tag = "delegations", security(("bearer" = [])),
    params(("id" = String, Path, format = Uuid, description = "The workspace's id (the delegation's source)"), ("delegation_id" = String, Path, format = Uuid, description = "The delegation's id")),
    request_body(content = CancelRequest, description = "Optional (an empty body will do): why"),
    responses(
        (status = 200, description = "Canceled (or already canceled)", body = UpdateAccepted),
        (status = 400, description = "Malformed body", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, malformed or unknown bearer token", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such workspace or delegation sent by it", body = crate::http::error::ErrorBody),
        (status = 409, description = "The delegation already ended (`current_status` says how)", body = crate::http::error::ErrorBody),
        (status = 413, description = "The body is larger than the configured limit", body = crate::http::error::ErrorBody),
    ))]
#[tracing::instrument(skip_all, fields(workspace_id = %id, delegation_id = %delegation_id))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, delegation_id)): ApiPath<(String, String)>,
    body: Option<ApiJson<CancelRequest>>,
) -> Result<Json<UpdateAccepted>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let not_found = || ApiError::not_found(format!("delegation {delegation_id} not found"));
    let delegation_id = Uuid::parse_str(&delegation_id).map_err(|_| not_found())?;
    let reason = body
        .and_then(|ApiJson(body)| body.reason)
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "canceled by the caller".to_string());
    // Only its caller withdraws a delegation (the aggregate checks).
    let command = DelegationCommand::Cancel {
        source: workspace,
        reason,
        actor: caller.actor(),
        at: now(),
    };
    let executed = state
        .bus
        .execute::<Delegation>(&delegation_id.to_string(), command, metadata(caller))
        .await
        .map_err(|e| not_found_as(e, not_found))?;
    Ok(Json(UpdateAccepted {
        delegation_id,
        status: executed.state.status().map(DelegationStatus::as_str),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
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
async fn list(
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
    ReadPool(reads): ReadPool,
) -> Result<Json<Vec<DelegationListEntry>>, ApiError> {
    let workspace = caller.workspace_in_path(&id)?;
    let limit = parse_limit(query.limit.as_deref(), LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT)?;
    let rows: Vec<ListRow> = sqlx::query_as(
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
    Ok(Json(
        rows.into_iter().map(DelegationListEntry::from).collect(),
    ))
}

/// An activity row as [`list`] reads it.
#[derive(sqlx::FromRow)]
struct ListRow {
    id: Uuid,
    method: Option<String>,
    source_id: Option<Uuid>,
    target_id: Option<Uuid>,
    summary: String,
    status: Option<String>,
    delegation_id: Option<Uuid>,
    error_detail: Option<String>,
    response_text: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<ListRow> for DelegationListEntry {
    fn from(row: ListRow) -> Self {
        Self {
            created_at: row.created_at,
            delegation_id: row.delegation_id,
            error: row.error_detail,
            id: row.id,
            method: row.method,
            response_preview: row
                .response_text
                .map(|text| aggregates::preview(&text, LIST_PREVIEW_CHARS)),
            source_id: row.source_id,
            status: row.status,
            summary: row.summary,
            target_id: row.target_id,
            entry_type: "delegation",
        }
    }
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
async fn get_one(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` as sent, and as a `serde_json` map (sorted keys) writes it.
    fn as_sent_and_sorted(body: &impl Serialize) -> (String, String) {
        let sent = serde_json::to_string(body).expect("serializes");
        let sorted = serde_json::to_value(body).expect("serializes").to_string();
        (sent, sorted)
    }

    #[test]
    fn a_detail_keeps_its_sorted_field_order_and_leaves_out_what_it_lacks() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let detail = DelegationDetail {
            created_at: at,
            deadline: None,
            delegation_id: Uuid::nil(),
            error: None,
            history: vec![HistoryStep {
                at: "1970-01-01T00:00:00.000000Z".into(),
                status: "dispatched".into(),
            }],
            queue_id: None,
            question: Some("which one?".into()),
            result: None,
            source_id: Uuid::nil(),
            status: "input_required".into(),
            target_id: Uuid::nil(),
            task: "t".into(),
            updated_at: at,
        };
        let (sent, sorted) = as_sent_and_sorted(&detail);
        assert_eq!(sent, sorted);
        for absent in ["deadline", "error", "queue_id", "result"] {
            assert!(!sent.contains(&format!("\"{absent}\"")), "{sent}");
        }
        assert!(sent.contains("\"question\":\"which one?\""), "{sent}");
    }

    #[test]
    fn a_list_entry_keeps_its_sorted_field_order_with_nulls_where_unknown() {
        let entry = DelegationListEntry {
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            delegation_id: None,
            error: None,
            id: Uuid::nil(),
            method: None,
            response_preview: Some("done".into()),
            source_id: None,
            status: None,
            summary: "s".into(),
            target_id: None,
            entry_type: "delegation",
        };
        let (sent, sorted) = as_sent_and_sorted(&entry);
        assert_eq!(sent, sorted);
        assert!(sent.contains("\"method\":null"), "{sent}");
        assert!(!sent.contains("\"error\""), "{sent}");
        assert!(sent.ends_with("\"type\":\"delegation\"}"), "{sent}");
    }

    #[test]
    fn command_answers_keep_their_sorted_field_order() {
        let id = Uuid::nil();
        for (sent, sorted) in [
            as_sent_and_sorted(&DelegateAccepted {
                delegation_id: id,
                status: "delegated",
                target_id: id,
            }),
            as_sent_and_sorted(&DelegateIdempotentHit {
                delegation_id: id,
                idempotent_hit: true,
                status: None,
                target_id: id,
            }),
            as_sent_and_sorted(&RecordAccepted {
                delegation_id: id,
                status: "recorded",
            }),
            as_sent_and_sorted(&UpdateAccepted {
                delegation_id: id,
                status: None,
            }),
        ] {
            assert_eq!(sent, sorted);
        }
    }
}
