//! The `delegations` view: the current state of each delegation, with its
//! status history. Serves `GET /workspaces/{id}/delegations/{delegation_id}`,
//! and every "is this delegation still open?" question.

use aggregates::delegation::DelegationEvent;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{timestamp, ApplyFuture, LedgerEvent, LogEntry, Projection};

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

/// Apply a view change on the runner's transaction.
pub async fn apply_change(
    conn: &mut PgConnection,
    change: DelegationChange,
) -> Result<(), sqlx::Error> {
    match change {
        DelegationChange::Insert {
            delegation_id,
            source_id,
            target_id,
            task,
            origin,
            status,
            idempotency_key,
            deadline,
            at,
        } => {
            let history = json!([{ "status": status, "at": timestamp(at) }]);
            sqlx::query(
                "insert into delegations (delegation_id, source_id, target_id, task, origin, status, \
                 idempotency_key, history, created_at, updated_at, deadline) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
            )
            .bind(delegation_id)
            .bind(source_id)
            .bind(target_id)
            .bind(task)
            .bind(origin)
            .bind(status)
            .bind(idempotency_key)
            .bind(history)
            .bind(at)
            .bind(deadline)
            .execute(conn)
            .await?;
        }
        DelegationChange::Update(StatusChange {
            delegation_id,
            status,
            at,
            attempts,
            remote_task_id,
            queue_id,
            result,
            response_preview,
            error,
            question,
        }) => {
            // A same-status event (a re-dispatch recording the remote task
            // id) refreshes fields but is not a new history step.
            let step = json!([{ "status": status, "at": timestamp(at) }]);
            sqlx::query(
                "update delegations set \
                 history = case when status = $2 then history else history || $3 end, \
                 status = $2, updated_at = $4, \
                 attempts = coalesce($5, attempts), \
                 remote_task_id = coalesce($6, remote_task_id), \
                 queue_id = coalesce($7, queue_id), \
                 result = coalesce($8, result), \
                 response_preview = coalesce($9, response_preview), \
                 error = coalesce($10, error), \
                 question = case when $2 = 'input_required' then coalesce($11, question) end \
                 where delegation_id = $1",
            )
            .bind(delegation_id)
            .bind(status)
            .bind(step)
            .bind(at)
            .bind(attempts)
            .bind(remote_task_id)
            .bind(queue_id)
            .bind(result)
            .bind(response_preview)
            .bind(error)
            .bind(question)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::delegation::Origin;
    use aggregates::idempotency_key::IdempotencyKeyEvent;
    use aggregates::workspace::{DeliveryMode, WorkspaceEvent};
    use aggregates::Actor;

    const DELEGATION: Uuid = Uuid::from_u128(0xd1);
    const SOURCE: Uuid = Uuid::from_u128(0x5a);
    const TARGET: Uuid = Uuid::from_u128(0x7b);
    const QUEUE: Uuid = Uuid::from_u128(0x99);

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn system() -> Actor {
        Actor::System("dispatcher".to_string())
    }

    fn sent(origin: Origin, idempotency_key: Option<&str>) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationSent {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "summarise the report".to_string(),
            task_preview: "summarise".to_string(),
            origin,
            idempotency_key: idempotency_key.map(str::to_string),
            queue: Default::default(),
            deadline: None,
            actor: Actor::Workspace(SOURCE),
            at: at(),
        })
    }

    /// A status change to `status` that carries no optional field.
    fn bare(status: &'static str) -> StatusChange {
        StatusChange {
            delegation_id: DELEGATION,
            status,
            at: at(),
            attempts: None,
            remote_task_id: None,
            queue_id: None,
            result: None,
            response_preview: None,
            error: None,
            question: None,
        }
    }

    #[test]
    fn a_managed_delegation_sent_inserts_a_pending_managed_delegation() {
        assert_eq!(
            change(&sent(Origin::Managed, Some("key-1"))),
            Some(DelegationChange::Insert {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                task: "summarise the report".to_string(),
                origin: "managed",
                status: "pending",
                idempotency_key: Some("key-1".to_string()),
                deadline: None,
                at: at(),
            })
        );
    }

    #[test]
    fn a_recorded_delegation_sent_inserts_a_dispatched_recorded_delegation() {
        assert_eq!(
            change(&sent(Origin::Recorded, None)),
            Some(DelegationChange::Insert {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                task: "summarise the report".to_string(),
                origin: "recorded",
                status: "dispatched",
                idempotency_key: None,
                deadline: None,
                at: at(),
            })
        );
    }

    #[test]
    fn dispatched_sets_the_status_the_attempts_and_the_remote_task_id() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationDispatched {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            attempt: 3,
            remote_task_id: Some("remote-9".to_string()),
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                attempts: Some(3),
                remote_task_id: Some("remote-9".to_string()),
                ..bare("dispatched")
            }))
        );
    }

    #[test]
    fn dispatched_without_a_remote_task_id_leaves_it_unset() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationDispatched {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            attempt: 1,
            remote_task_id: None,
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                attempts: Some(1),
                ..bare("dispatched")
            }))
        );
    }

    #[test]
    fn an_attempt_count_beyond_i32_saturates_at_i32_max() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationDispatched {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            attempt: u32::MAX,
            remote_task_id: None,
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                attempts: Some(i32::MAX),
                ..bare("dispatched")
            }))
        );
    }

    #[test]
    fn received_sets_only_the_status() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationReceived {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(bare("received")))
        );
    }

    #[test]
    fn in_progress_sets_only_the_status() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationInProgress {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(bare("in_progress")))
        );
    }

    #[test]
    fn queued_sets_the_status_and_the_queue_id() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationQueued {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            queue_id: Some(QUEUE),
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                queue_id: Some(QUEUE),
                ..bare("queued")
            }))
        );
    }

    #[test]
    fn queued_without_a_queue_id_sets_only_the_status() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationQueued {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            queue_id: None,
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(bare("queued")))
        );
    }

    #[test]
    fn completed_sets_the_status_the_result_and_the_response_preview() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationCompleted {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            result: "the whole result".to_string(),
            response_preview: "the whole".to_string(),
            actor: Actor::Workspace(TARGET),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                result: Some("the whole result".to_string()),
                response_preview: Some("the whole".to_string()),
                ..bare("completed")
            }))
        );
    }

    #[test]
    fn failed_sets_the_status_and_the_error() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationFailed {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            error: "target unreachable".to_string(),
            actor: system(),
            at: at(),
        });

        assert_eq!(
            change(&event),
            Some(DelegationChange::Update(StatusChange {
                error: Some("target unreachable".to_string()),
                ..bare("failed")
            }))
        );
    }

    #[test]
    fn a_workspace_event_changes_no_delegation() {
        let event = LedgerEvent::Workspace(WorkspaceEvent::WorkspaceRegistered {
            workspace_id: SOURCE,
            name: Some("alpha".to_string()),
            url: None,
            delivery_mode: DeliveryMode::Poll,
            token_hash: "hash".to_string(),
            at: at(),
        });

        assert_eq!(change(&event), None);
    }

    #[test]
    fn an_idempotency_key_event_changes_no_delegation() {
        let event = LedgerEvent::IdempotencyKey(IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id: SOURCE,
            key: "key-1".to_string(),
            delegation_id: DELEGATION,
            replaced: None,
            at: at(),
        });

        assert_eq!(change(&event), None);
    }
}
