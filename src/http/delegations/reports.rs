//! What a delegation's source or target reports about it: `record` (a
//! delegation the agent dispatched itself), `update`, `cancel`.

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, QueueOptions,
    StatusUpdate,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::CommandError;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{parse_uuid, ApiJson, ApiPath};
use crate::http::{now, AppState};

use super::{metadata, validate_task};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordRequest {
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
pub(super) async fn record(
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
pub(super) struct UpdateRequest {
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

/// Run a party's `command` (an update or a cancel) on `delegation_id` and
/// answer where the delegation stands; one the caller is no party to is
/// `not_found`.
async fn report(
    state: &AppState,
    caller: Caller,
    delegation_id: Uuid,
    command: DelegationCommand,
    not_found: impl FnOnce() -> ApiError,
) -> Result<Json<UpdateAccepted>, ApiError> {
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
pub(super) async fn update(
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
    report(&state, caller, delegation_id, command, not_found).await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelRequest {
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
pub(super) async fn cancel(
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
    report(&state, caller, delegation_id, command, not_found).await
}
