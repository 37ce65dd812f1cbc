//! Driving one delegation to its next resting point: sent and finished,
//! sent and being followed, queued behind a busy target, or failed.
//!
//! Every run starts from the recorded state, so it is safe to run again at
//! any time (after a crash, on a second reaction, on resume):
//!
//! | recorded state | what a run does |
//! |---|---|
//! | `pending` | deliver to a polling target's inbox, or send (retrying transient failures), then follow |
//! | `queued`, item claimed by a drain | send once; a failure goes back to the queue item |
//! | `queued`, item ended | finish the delegation from the item (the log rule does the same) |
//! | `queued`, item waiting | nothing: the next heartbeat with spare capacity claims it |
//! | acknowledged with a remote task id | follow the task (never re-send) |
//! | acknowledged without one | nothing: the agent reports itself |

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, StatusUpdate,
};
use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError, QueueItemStatus};
use aggregates::workspace::DeliveryMode;
use aggregates::Actor;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::outcome::{acknowledged, forward, sanitized, stops_following, task_step};
use super::reactions::{queued_outcome, queued_response};
use super::{DispatchError, Dispatcher};
use crate::a2a::{message_id_for, CallError, Endpoint, ProtocolVersion, SendOutcome};
use crate::commands::CommandError;

/// Namespace of queue item ids: a delegation has at most one queue item,
/// with an id derived from it, so re-enqueuing after a crash is a no-op.
const QUEUE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d71_7565_7565_6974_656d);

/// The queue item id of a delegation.
pub fn queue_id_for(delegation_id: Uuid) -> Uuid {
    Uuid::new_v5(&QUEUE_ID_NAMESPACE, delegation_id.as_bytes())
}

/// The actor recorded on the dispatcher's events.
pub fn actor() -> Actor {
    Actor::System("dispatcher".to_string())
}

/// The metadata recorded with the dispatcher's events.
pub fn metadata() -> HashMap<String, String> {
    HashMap::from([("actor".to_string(), "system:dispatcher".to_string())])
}

/// Drive `delegation_id`; failures are logged (the next reaction or the
/// next start resumes from the recorded state).
pub async fn drive(dispatcher: &Arc<Dispatcher>, delegation_id: Uuid) {
    if let Err(error) = run(dispatcher, delegation_id).await {
        tracing::warn!(%delegation_id, %error, "dispatch step failed; it resumes on the next start");
    }
}

async fn run(d: &Dispatcher, id: Uuid) -> Result<(), DispatchError> {
    let delegation: Delegation = d.bus.load(&id.to_string()).await?;
    let Some(status) = delegation.status() else {
        return Ok(());
    };
    if delegation.origin() != Some(Origin::Managed) || status.is_terminal() {
        return Ok(());
    }
    match status {
        DelegationStatus::Pending => send_direct(d, &delegation).await,
        DelegationStatus::Queued => {
            let queue_id = delegation
                .queue_id()
                .unwrap_or_else(|| queue_id_for(delegation.delegation_id()));
            let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
            match item.status() {
                Some(QueueItemStatus::Dispatched) => send_drained(d, &delegation, queue_id).await,
                Some(QueueItemStatus::Completed) => {
                    finish(d, &delegation, queued_outcome(item.response_body())).await
                }
                // The log rule words these; a resumed run leaves them to it.
                Some(_) | None => Ok(()),
            }
        }
        _ => match (
            delegation.remote_task_id(),
            target_of(d, &delegation).await?,
        ) {
            (Some(task_id), Ok(Target::Push(push))) => {
                follow(d, &delegation, &push, task_id.to_string()).await
            }
            (Some(_), Err(reason)) => fail(d, &delegation, reason).await,
            _ => Ok(()),
        },
    }
}

/// How the delegation's target gets its work.
enum Target {
    Push(Push),
    Poll,
}

/// Where a push target is registered, and the version given at
/// registration (`None`: its agent card decides).
struct Push {
    url: String,
    version: Option<ProtocolVersion>,
}

/// The target as the registry view has it — resolved once per drive, not
/// per call; `Err` holds the failure reason when it cannot be reached at all
/// (a permanent failure). The view, not the aggregate: the workspace
/// aggregate grows with every heartbeat, and the delegate handler already
/// required the target to be in the view.
async fn target_of(
    d: &Dispatcher,
    delegation: &Delegation,
) -> Result<Result<Target, String>, DispatchError> {
    let target_id = delegation.target_id();
    let row: Option<(Option<String>, String, Option<String>)> =
        sqlx::query_as("select url, delivery_mode, protocol_version from workspaces where id = $1")
            .bind(target_id)
            .fetch_optional(&d.pool)
            .await?;
    let Some((url, mode, version)) = row else {
        return Ok(Err(format!(
            "target workspace {target_id} is not registered"
        )));
    };
    if mode == DeliveryMode::Poll.as_str() {
        return Ok(Ok(Target::Poll));
    }
    let Some(url) = url else {
        return Ok(Err(format!("target workspace {target_id} has no URL")));
    };
    let version = version
        .as_deref()
        .and_then(ProtocolVersion::from_version_str);
    Ok(Ok(Target::Push(Push { url, version })))
}

async fn endpoint_and_send(
    d: &Dispatcher,
    push: &Push,
    delegation: &Delegation,
) -> Result<SendOutcome, CallError> {
    let target = delegation.target_id();
    let endpoint: Endpoint = d.endpoint(target, &push.url, push.version).await?;
    d.call(
        target,
        d.client.send(
            &endpoint.url,
            endpoint.version,
            delegation.delegation_id(),
            delegation.task(),
        ),
    )
    .await
}

/// First dispatch of a pending delegation.
async fn send_direct(d: &Dispatcher, delegation: &Delegation) -> Result<(), DispatchError> {
    let push = match target_of(d, delegation).await? {
        Err(reason) => return fail(d, delegation, reason).await,
        Ok(Target::Poll) => {
            let command = DelegationCommand::DeliverToInbox {
                actor: actor(),
                at: Utc::now(),
            };
            execute(d, delegation.delegation_id(), command).await?;
            metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => "inbox").increment(1);
            return Ok(());
        }
        Ok(Target::Push(push)) => push,
    };
    let attempts = d.config.send_attempts.max(1);
    let mut tried = 0;
    loop {
        tried += 1;
        match endpoint_and_send(d, &push, delegation).await {
            Ok(outcome) => return acknowledge(d, delegation, &push, outcome).await,
            Err(error) if error.is_busy() => return enqueue(d, delegation, &error).await,
            Err(error) if error.is_transient() && tried < attempts => {
                metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => "retried")
                    .increment(1);
                let wait = d
                    .config
                    .retry
                    .delay_respecting(tried - 1, error.retry_after);
                tracing::info!(delegation_id = %delegation.delegation_id(), %error, ?wait, "transient send failure; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(error) if error.is_transient() => {
                let reason = format!("{error} (gave up after {tried} attempts)");
                return fail(d, delegation, reason).await;
            }
            Err(error) => return fail(d, delegation, error.reason).await,
        }
    }
}

/// A drained (claimed) queue item's one attempt; a failure is the queue
/// item's, which requeues it or, at the last attempt, fails it.
async fn send_drained(
    d: &Dispatcher,
    delegation: &Delegation,
    queue_id: Uuid,
) -> Result<(), DispatchError> {
    let reason = match target_of(d, delegation).await? {
        Ok(Target::Push(push)) => match endpoint_and_send(d, &push, delegation).await {
            Ok(outcome) => return acknowledge(d, delegation, &push, outcome).await,
            Err(error) => error.reason,
        },
        Ok(Target::Poll) => "the target now polls; a queued request cannot be pushed".to_string(),
        Err(reason) => reason,
    };
    metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => "drain_failed").increment(1);
    let command = QueueItemCommand::Fail {
        error: reason,
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        Ok(_) | Err(CommandError::Rejected(QueueItemError::NotDispatched { .. })) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Record an acknowledged send atomically, then follow its task.
async fn acknowledge(
    d: &Dispatcher,
    delegation: &Delegation,
    push: &Push,
    outcome: SendOutcome,
) -> Result<(), DispatchError> {
    let id = delegation.delegation_id();
    let steps = acknowledged(&outcome);
    let last = steps.last().cloned();
    let command = DelegationCommand::UpdateStatuses {
        updates: steps,
        actor: actor(),
        at: Utc::now(),
    };
    let state = match d
        .bus
        .execute::<Delegation>(&id.to_string(), command, metadata())
        .await
    {
        Ok(executed) => executed.state,
        // The agent (or the caller) moved the delegation on meanwhile with
        // the update endpoint: keep following the task it accepted, if any.
        Err(CommandError::Rejected(
            error @ (DelegationError::InvalidTransition { .. }
            | DelegationError::TerminalConflict { .. }),
        )) => {
            tracing::info!(delegation_id = %id, %error, "delegation moved on before the acknowledgement was recorded");
            let state: Delegation = d.bus.load(&id.to_string()).await?;
            return match outcome {
                SendOutcome::Task(task) if !state.status().is_some_and(|s| s.is_terminal()) => {
                    follow(d, &state, push, task.id).await
                }
                _ => Ok(()),
            };
        }
        Err(other) => return Err(other.into()),
    };
    metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => "dispatched").increment(1);
    match (outcome, last) {
        (_, Some(end @ (StatusUpdate::Completed { .. } | StatusUpdate::Failed { .. }))) => {
            finish(d, &state, end).await
        }
        (SendOutcome::Task(task), _) => follow(d, &state, push, task.id).await,
        (SendOutcome::Message(_), _) => Ok(()),
    }
}

/// Park the delegation behind its busy target.
async fn enqueue(
    d: &Dispatcher,
    delegation: &Delegation,
    busy: &CallError,
) -> Result<(), DispatchError> {
    let id = delegation.delegation_id();
    let queue_id = queue_id_for(id);
    let options = delegation.queue_options();
    let at = Utc::now();
    let command = QueueItemCommand::Enqueue {
        queue_id,
        target_id: delegation.target_id(),
        caller_id: delegation.source_id(),
        priority: options.priority,
        method: "message/send".to_string(),
        body: json!({ "delegation_id": id, "message_id": message_id_for(id) }),
        idempotency_key: delegation.idempotency_key().map(str::to_string),
        expires_at: options
            .expires_in_seconds
            .map(|s| at + chrono::Duration::seconds(i64::from(s))),
        delegation_id: Some(id),
        at,
    };
    match d
        .visible_bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        // Already enqueued by a run that died before marking the delegation.
        Ok(_) | Err(CommandError::Rejected(QueueItemError::AlreadyExists)) => {}
        Err(other) => return Err(other.into()),
    }
    tracing::info!(delegation_id = %id, %queue_id, reason = %busy, "target busy; delegation queued");
    metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => "queued").increment(1);
    let queued = DelegationCommand::UpdateStatus {
        update: StatusUpdate::Queued {
            queue_id: Some(queue_id),
        },
        actor: actor(),
        at,
    };
    let state = execute(d, id, queued).await?;
    // A heartbeat may have claimed the item before the delegation was marked
    // queued (or before a crash between the two commits); its claim
    // reaction then found nothing to send, so send it here.
    let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
    if state.status() == Some(DelegationStatus::Queued)
        && item.status() == Some(QueueItemStatus::Dispatched)
    {
        return send_drained(d, &state, queue_id).await;
    }
    Ok(())
}

/// Follow the remote task until it stops changing by itself.
async fn follow(
    d: &Dispatcher,
    delegation: &Delegation,
    push: &Push,
    task_id: String,
) -> Result<(), DispatchError> {
    let mut status = delegation.status().unwrap_or(DelegationStatus::Dispatched);
    let mut readings = 0u32;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(d.config.poll.delay(readings)).await;
        readings = readings.saturating_add(1);
        let target = delegation.target_id();
        let reading = match d.endpoint(target, &push.url, push.version).await {
            Ok(endpoint) => {
                d.call(
                    target,
                    d.client.get_task(&endpoint.url, endpoint.version, &task_id),
                )
                .await
            }
            Err(error) => Err(error),
        };
        match reading {
            Ok(task) => {
                failures = 0;
                let step = task_step(&task).and_then(|step| forward(status, step));
                let stop = stops_following(task.state);
                match step {
                    Some(end @ (StatusUpdate::Completed { .. } | StatusUpdate::Failed { .. })) => {
                        return finish(d, delegation, end).await
                    }
                    Some(step) => {
                        let state = execute(
                            d,
                            delegation.delegation_id(),
                            DelegationCommand::UpdateStatus {
                                update: step,
                                actor: actor(),
                                at: Utc::now(),
                            },
                        )
                        .await?;
                        status = state.status().unwrap_or(status);
                        if status.is_terminal() {
                            return Ok(());
                        }
                    }
                    None if stop => return Ok(()),
                    None => {}
                }
            }
            Err(error) if error.rpc_code == Some(-32001) => {
                let reason = format!(
                    "the agent no longer knows task {task_id} (it may have restarted); not re-sent, so the task never runs twice"
                );
                return fail(d, delegation, reason).await;
            }
            Err(error) => {
                failures += 1;
                if failures >= d.config.max_poll_failures.max(1) {
                    let reason =
                        format!("could not read task {task_id} after {failures} tries: {error}");
                    return fail(d, delegation, reason).await;
                }
                tracing::info!(delegation_id = %delegation.delegation_id(), %error, "reading the remote task failed; retrying");
            }
        }
    }
}

/// Record the delegation's end. When it came through the queue, the queue
/// item ends first (its end finishes the delegation through the log rule
/// too, so either commit alone suffices).
async fn finish(
    d: &Dispatcher,
    delegation: &Delegation,
    end: StatusUpdate,
) -> Result<(), DispatchError> {
    // Failure reasons may quote the agent.
    let end = sanitized(end);
    let id = delegation.delegation_id();
    if let Some(queue_id) = delegation.queue_id() {
        let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
        if item.status() == Some(QueueItemStatus::Dispatched) {
            let command = QueueItemCommand::Complete {
                response_body: queued_response(&end),
                at: Utc::now(),
            };
            match d
                .bus
                .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
                .await
            {
                Ok(_) | Err(CommandError::Rejected(QueueItemError::NotDispatched { .. })) => {}
                Err(other) => return Err(other.into()),
            }
        }
    }
    let outcome = match &end {
        StatusUpdate::Completed { .. } => "completed",
        _ => "failed",
    };
    let command = DelegationCommand::UpdateStatus {
        update: end,
        actor: actor(),
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<Delegation>(&id.to_string(), command, metadata())
        .await
    {
        Ok(_) => {}
        // Finished meanwhile (by the log rule or by the agent's report).
        Err(CommandError::Rejected(DelegationError::TerminalConflict { .. })) => return Ok(()),
        Err(other) => return Err(other.into()),
    }
    metrics::counter!("ledger_dispatch_outcomes_total", "outcome" => outcome).increment(1);
    tracing::info!(delegation_id = %id, outcome, "delegation finished");
    Ok(())
}

async fn fail(d: &Dispatcher, delegation: &Delegation, error: String) -> Result<(), DispatchError> {
    tracing::warn!(delegation_id = %delegation.delegation_id(), %error, "delegation failed");
    finish(d, delegation, StatusUpdate::Failed { error }).await
}

async fn execute(
    d: &Dispatcher,
    id: Uuid,
    command: DelegationCommand,
) -> Result<Delegation, DispatchError> {
    Ok(d.bus
        .execute::<Delegation>(&id.to_string(), command, metadata())
        .await?
        .state)
}
