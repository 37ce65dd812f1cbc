//! `POST /workspaces/{id}/delegate`: a managed delegation, its queue
//! options and deadline, and its idempotency key.

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, QueueOptions,
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
use uuid::Uuid;

use super::{metadata, validate_task};
use crate::commands::CommandError;
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::extract::{parse_uuid, ApiJson, ApiPath};
use crate::http::{now, AppState};

/// Attempts at claiming an idempotency key while others race for it.
const KEY_CLAIM_ATTEMPTS: usize = 5;

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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DelegateRequest {
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
    deadlines: crate::http::Deadlines,
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
pub(super) async fn delegate(
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
