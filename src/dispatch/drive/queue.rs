//! The queue side of a drive: parking a delegation behind its busy
//! target, the one send of a claimed (drained) item, and withdrawing an
//! item whose delegation ended another way.

use aggregates::delegation::{Delegation, DelegationCommand, DelegationStatus, StatusUpdate};
use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError, QueueItemStatus};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::{
    acknowledge, actor, endpoint, execute, look_up, metadata, outcome_counter, resending_uncertain,
    send_once, target_of, Lookup, Target,
};
use crate::a2a::{message_id_for, CallError, SendOutcome};
use crate::commands::CommandError;
use crate::dispatch::{DispatchError, Dispatcher, Term};

/// Namespace of queue item ids: a delegation has at most one queue item,
/// with an id derived from it, so re-enqueuing after a crash is a no-op.
const QUEUE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d71_7565_7565_6974_656d);

/// The queue item id of a delegation.
pub fn queue_id_for(delegation_id: Uuid) -> Uuid {
    Uuid::new_v5(&QUEUE_ID_NAMESPACE, delegation_id.as_bytes())
}

/// Park the delegation behind its busy target.
pub(super) async fn enqueue(
    d: &Dispatcher,
    delegation: &Delegation,
    busy: &CallError,
    term: &Term,
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
    outcome_counter("queued");
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
        return send_drained(d, &state, queue_id, term).await;
    }
    Ok(())
}

/// A drained (claimed) queue item's one attempt; a failure is the queue
/// item's, which requeues it or, at the last attempt, fails it.
pub(super) async fn send_drained(
    d: &Dispatcher,
    delegation: &Delegation,
    queue_id: Uuid,
    term: &Term,
) -> Result<(), DispatchError> {
    if term.stop.is_cancelled() {
        return Ok(());
    }
    let reason = match target_of(d, delegation).await? {
        Ok(Target::Push(push)) => match endpoint(d, &push, delegation).await {
            Ok(endpoint) => match send_once(d, &endpoint, delegation, term).await? {
                Ok(outcome) => return acknowledge(d, delegation, &push, outcome, term).await,
                Err(error) if error.maybe_delivered => {
                    match look_up(d, &endpoint, delegation).await {
                        Lookup::Found(task) => {
                            return acknowledge(d, delegation, &push, SendOutcome::Task(task), term)
                                .await
                        }
                        Lookup::NotFound => error.reason,
                        Lookup::Unknown => {
                            resending_uncertain(delegation, &error.reason);
                            error.reason
                        }
                    }
                }
                Err(error) => error.reason,
            },
            Err(error) => error.reason,
        },
        Ok(Target::Poll) => "the target now polls; a queued request cannot be pushed".to_string(),
        Err(reason) => reason,
    };
    outcome_counter("drain_failed");
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

/// A delegation that ended another way (cancelled by its caller, past its
/// deadline): end its queue item if it still waits, so it is never sent.
/// Database work only: the log follower runs it before moving on.
pub async fn withdraw_queue_item(d: &Dispatcher, id: Uuid) -> Result<(), DispatchError> {
    let delegation: Delegation = d.bus.load(&id.to_string()).await?;
    let Some(queue_id) = delegation.queue_id() else {
        return Ok(());
    };
    let reason = match delegation.status() {
        Some(DelegationStatus::Canceled) => "the delegation was canceled",
        _ => "the delegation ended before the queued request was sent",
    };
    let command = QueueItemCommand::Withdraw {
        reason: reason.to_string(),
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        Ok(_) | Err(CommandError::Rejected(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}
