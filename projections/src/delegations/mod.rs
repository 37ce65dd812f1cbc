//! The `delegations` view: the current state of each delegation, with its
//! status history. Serves `GET /workspaces/{id}/delegations/{delegation_id}`,
//! and every "is this delegation still open?" question.
//!
//! Here, the mapping from an event to its change (pure); in `plan.rs`, a
//! batch's changes folded so each delegation is written once (pure); in
//! `store.rs`, the SQL that writes either.

use aggregates::delegation::DelegationEvent;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApplyFuture, LedgerEvent, LogEntry, Projection};

mod plan;
mod store;
#[cfg(test)]
mod tests;

pub use plan::{plan, NewRow, Patch, Plan};
pub use store::{apply_change, apply_plan};

/// What one event does to the view.
#[derive(Debug, Clone, PartialEq)]
pub enum DelegationChange {
    Insert {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        task: String,
        origin: &'static str,
        status: &'static str,
        idempotency_key: Option<String>,
        deadline: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Update(StatusChange),
}

/// Move to `status`; the optional fields overwrite only when present.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChange {
    pub delegation_id: Uuid,
    pub status: &'static str,
    pub at: DateTime<Utc>,
    pub attempts: Option<i32>,
    pub remote_task_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub result: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// The target's question (with `input_required`; any other status
    /// clears it).
    pub question: Option<String>,
}

/// The view change an event causes. Pure: no IO, no clock.
pub fn change(event: &LedgerEvent) -> Option<DelegationChange> {
    let LedgerEvent::Delegation(event) = event else {
        return None;
    };
    // A send attempt changes nothing the view shows.
    let status = event.status()?.as_str();
    let update = |delegation_id: Uuid, at: DateTime<Utc>| StatusChange {
        delegation_id,
        status,
        at,
        attempts: None,
        remote_task_id: None,
        queue_id: None,
        result: None,
        response_preview: None,
        error: None,
        question: None,
    };
    Some(match event {
        DelegationEvent::DelegationSent {
            delegation_id,
            source_id,
            target_id,
            task,
            origin,
            idempotency_key,
            deadline,
            at,
            ..
        } => DelegationChange::Insert {
            delegation_id: *delegation_id,
            source_id: *source_id,
            target_id: *target_id,
            task: task.clone(),
            origin: match origin {
                aggregates::delegation::Origin::Managed => "managed",
                aggregates::delegation::Origin::Recorded => "recorded",
            },
            status,
            idempotency_key: idempotency_key.clone(),
            deadline: *deadline,
            at: *at,
        },
        DelegationEvent::DelegationDispatched {
            delegation_id,
            attempt,
            remote_task_id,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            attempts: Some(i32::try_from(*attempt).unwrap_or(i32::MAX)),
            remote_task_id: remote_task_id.clone(),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationDeliveredToInbox {
            delegation_id, at, ..
        } => DelegationChange::Update(StatusChange {
            attempts: Some(1),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationQueued {
            delegation_id,
            queue_id,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            queue_id: *queue_id,
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationCompleted {
            delegation_id,
            result,
            response_preview,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            result: Some(result.clone()),
            response_preview: Some(response_preview.clone()),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationFailed {
            delegation_id,
            error,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            error: Some(error.clone()),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationInputRequired {
            delegation_id,
            question,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            question: Some(question.clone()),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationCanceled {
            delegation_id,
            reason,
            at,
            ..
        } => DelegationChange::Update(StatusChange {
            error: Some(format!("canceled: {reason}")),
            ..update(*delegation_id, *at)
        }),
        DelegationEvent::DelegationReceived {
            delegation_id, at, ..
        }
        | DelegationEvent::DelegationInProgress {
            delegation_id, at, ..
        } => DelegationChange::Update(update(*delegation_id, *at)),
        DelegationEvent::DelegationSendAttempted { .. } => return None,
    })
}

/// The `delegations` projection.
pub struct DelegationsProjection;

impl Projection for DelegationsProjection {
    fn name(&self) -> &'static str {
        "delegations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["delegations"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        _entry: &'a LogEntry,
        event: &'a LedgerEvent,
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            if let Some(change) = change(event) {
                apply_change(conn, change).await?;
            }
            Ok(())
        })
    }

    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entries: &'a [(LogEntry, LedgerEvent)],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let changes = entries.iter().filter_map(|(_, event)| change(event));
            apply_plan(conn, plan(changes)).await?;
            Ok(())
        })
    }
}
