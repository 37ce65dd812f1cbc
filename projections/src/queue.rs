//! The `a2a_queue` view: requests parked for busy targets, in drain order
//! (priority, then log order), with their attempts and outcome. Serves the
//! heartbeat drain and `GET /workspaces/{id}/a2a/queue`.

use aggregates::queue_item::{response_body, QueueItemEvent, QueueItemStatus};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApplyFuture, LedgerEvent, LogEntry, Projection};

/// What one queue item event does to the view.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueChange {
    Insert {
        queue_id: Uuid,
        workspace_id: Uuid,
        caller_id: Uuid,
        priority: i16,
        method: String,
        idempotency_key: Option<String>,
        delegation_id: Option<Uuid>,
        enqueued_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        log_position: i64,
    },
    Update(ItemUpdate),
}

/// A changed queue item: its status, and every other field that is given
/// (`None` keeps the stored value).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemUpdate {
    pub queue_id: Uuid,
    pub status: QueueItemStatus,
    pub attempts: Option<u32>,
    pub last_error: Option<String>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub response_body: Option<Value>,
}

/// The view change an entry causes. Pure: no IO, no clock.
pub fn change(entry: &LogEntry, event: &LedgerEvent) -> Option<QueueChange> {
    let LedgerEvent::QueueItem(event) = event else {
        return None;
    };
    let update = |queue_id: &Uuid, status| ItemUpdate {
        queue_id: *queue_id,
        status,
        attempts: None,
        last_error: None,
        dispatched_at: None,
        completed_at: None,
        response_body: None,
    };
    Some(match event {
        QueueItemEvent::QueueItemEnqueued {
            queue_id,
            target_id,
            caller_id,
            priority,
            method,
            idempotency_key,
            expires_at,
            delegation_id,
            at,
            ..
        } => QueueChange::Insert {
            queue_id: *queue_id,
            workspace_id: *target_id,
            caller_id: *caller_id,
            priority: priority.value(),
            method: method.clone(),
            idempotency_key: idempotency_key.clone(),
            delegation_id: *delegation_id,
            enqueued_at: *at,
            expires_at: *expires_at,
            log_position: entry.position,
        },
        QueueItemEvent::QueueItemDispatched {
            queue_id,
            attempt,
            at,
            ..
        } => QueueChange::Update(ItemUpdate {
            attempts: Some(*attempt),
            dispatched_at: Some(*at),
            ..update(queue_id, QueueItemStatus::Dispatched)
        }),
        QueueItemEvent::QueueItemCompleted {
            queue_id,
            outcome,
            at,
            ..
        } => QueueChange::Update(ItemUpdate {
            queue_id: *queue_id,
            status: QueueItemStatus::Completed,
            attempts: None,
            last_error: None,
            dispatched_at: None,
            completed_at: Some(*at),
            response_body: response_body(outcome),
        }),
        QueueItemEvent::QueueItemRequeued {
            queue_id, error, ..
        } => QueueChange::Update(ItemUpdate {
            last_error: Some(error.clone()),
            ..update(queue_id, QueueItemStatus::Queued)
        }),
        QueueItemEvent::QueueItemFailed {
            queue_id,
            attempts,
            error,
            at,
            ..
        } => QueueChange::Update(ItemUpdate {
            queue_id: *queue_id,
            status: QueueItemStatus::Failed,
            attempts: Some(*attempts),
            last_error: Some(error.clone()),
            dispatched_at: None,
            completed_at: Some(*at),
            response_body: None,
        }),
        QueueItemEvent::QueueItemExpired { queue_id, at, .. } => QueueChange::Update(ItemUpdate {
            completed_at: Some(*at),
            ..update(queue_id, QueueItemStatus::Expired)
        }),
    })
}

/// Apply a view change on the runner's transaction.
pub async fn apply_change(conn: &mut PgConnection, change: QueueChange) -> Result<(), sqlx::Error> {
    match change {
        QueueChange::Insert {
            queue_id,
            workspace_id,
            caller_id,
            priority,
            method,
            idempotency_key,
            delegation_id,
            enqueued_at,
            expires_at,
            log_position,
        } => {
            sqlx::query(
                "insert into a2a_queue (queue_id, workspace_id, caller_id, priority, status, method, \
                 idempotency_key, delegation_id, enqueued_at, expires_at, log_position) \
                 values ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10)",
            )
            .bind(queue_id)
            .bind(workspace_id)
            .bind(caller_id)
            .bind(priority)
            .bind(method)
            .bind(idempotency_key)
            .bind(delegation_id)
            .bind(enqueued_at)
            .bind(expires_at)
            .bind(log_position)
            .execute(conn)
            .await?;
        }
        QueueChange::Update(ItemUpdate {
            queue_id,
            status,
            attempts,
            last_error,
            dispatched_at,
            completed_at,
            response_body,
        }) => {
            sqlx::query(
                "update a2a_queue set status = $2, attempts = coalesce($3, attempts), \
                 last_error = coalesce($4, last_error), dispatched_at = coalesce($5, dispatched_at), \
                 completed_at = coalesce($6, completed_at), response_body = coalesce($7, response_body) \
                 where queue_id = $1",
            )
            .bind(queue_id)
            .bind(status.as_str())
            .bind(attempts.map(|a| i32::try_from(a).unwrap_or(i32::MAX)))
            .bind(last_error)
            .bind(dispatched_at)
            .bind(completed_at)
            .bind(response_body)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// The `a2a_queue` projection.
pub struct QueueProjection;

impl Projection for QueueProjection {
    fn name(&self) -> &'static str {
        "a2a_queue"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["a2a_queue"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entry: &'a LogEntry,
        event: &'a LedgerEvent,
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            if let Some(change) = change(entry, event) {
                apply_change(conn, change).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::delegation::Outcome;
    use aggregates::queue_item::Priority;
    use serde_json::json;

    const QUEUE: Uuid = Uuid::from_u128(0x99);
    const TARGET: Uuid = Uuid::from_u128(0x7b);
    const CALLER: Uuid = Uuid::from_u128(0x5a);

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    fn entry(position: i64) -> LogEntry {
        LogEntry {
            position,
            event_id: position,
            aggregate_type: "queue_item".into(),
            aggregate_id: QUEUE.to_string(),
            sequence: 1,
            event_type: String::new(),
            event_version: "1.0".into(),
            payload: json!({}),
            metadata: json!({}),
            recorded_at: at(),
        }
    }

    #[test]
    fn an_enqueued_item_is_inserted_with_its_numeric_priority_and_log_position() {
        let event = LedgerEvent::QueueItem(QueueItemEvent::QueueItemEnqueued {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: CALLER,
            priority: Priority::Critical,
            method: "message/send".into(),
            body: json!({}),
            idempotency_key: None,
            expires_at: None,
            delegation_id: None,
            at: at(),
        });
        let Some(QueueChange::Insert {
            workspace_id,
            caller_id,
            priority,
            log_position,
            ..
        }) = change(&entry(42), &event)
        else {
            panic!("expected an insert");
        };
        assert_eq!((workspace_id, caller_id), (TARGET, CALLER));
        assert_eq!(priority, 100);
        assert_eq!(log_position, 42);
    }

    #[test]
    fn a_requeued_item_is_queued_again_with_its_error_and_a_failed_one_keeps_its_attempts() {
        let requeued = LedgerEvent::QueueItem(QueueItemEvent::QueueItemRequeued {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: CALLER,
            delegation_id: None,
            attempt: 2,
            error: "busy".into(),
            at: at(),
        });
        assert_eq!(
            change(&entry(1), &requeued),
            Some(QueueChange::Update(ItemUpdate {
                queue_id: QUEUE,
                status: QueueItemStatus::Queued,
                attempts: None,
                last_error: Some("busy".into()),
                dispatched_at: None,
                completed_at: None,
                response_body: None,
            }))
        );
        let failed = LedgerEvent::QueueItem(QueueItemEvent::QueueItemFailed {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: CALLER,
            delegation_id: None,
            attempts: 5,
            error: "gone".into(),
            at: at(),
        });
        let Some(QueueChange::Update(ItemUpdate {
            status, attempts, ..
        })) = change(&entry(2), &failed)
        else {
            panic!("expected an update");
        };
        assert_eq!(status, QueueItemStatus::Failed);
        assert_eq!(attempts, Some(5));
    }

    fn completed_update(response_body: Option<Value>) -> Option<QueueChange> {
        Some(QueueChange::Update(ItemUpdate {
            queue_id: QUEUE,
            status: QueueItemStatus::Completed,
            attempts: None,
            last_error: None,
            dispatched_at: None,
            completed_at: Some(at()),
            response_body,
        }))
    }

    #[test]
    fn a_completed_item_shows_its_outcome_as_the_json_stored_before_it_was_typed() {
        let completed = |outcome| {
            LedgerEvent::QueueItem(QueueItemEvent::QueueItemCompleted {
                queue_id: QUEUE,
                target_id: TARGET,
                caller_id: CALLER,
                delegation_id: None,
                outcome,
                at: at(),
            })
        };
        let shown = |outcome| change(&entry(3), &completed(outcome));
        assert_eq!(
            shown(Outcome::Completed {
                result: "worth the wait".into()
            }),
            completed_update(Some(json!({ "text": "worth the wait" })))
        );
        assert_eq!(
            shown(Outcome::Failed {
                error: "ended failed".into()
            }),
            completed_update(Some(json!({ "error": "ended failed" })))
        );
        assert_eq!(
            shown(Outcome::Canceled {
                reason: "canceled".into()
            }),
            completed_update(None)
        );
    }

    /// The decode path of the log: a `QueueItemCompleted` stored at 1.0 (its
    /// outcome as JSON) shows the very JSON it stored.
    #[test]
    fn a_v1_0_completed_item_from_the_log_shows_the_json_it_stored() {
        for stored in [
            json!({ "text": "worth the wait" }),
            json!({ "error": "the agent's task t-1 ended failed" }),
            Value::Null,
        ] {
            let entry = LogEntry {
                event_type: "QueueItemCompleted".into(),
                event_version: "1.0".into(),
                payload: json!({ "QueueItemCompleted": {
                    "queue_id": QUEUE,
                    "target_id": TARGET,
                    "caller_id": CALLER,
                    "delegation_id": null,
                    "response_body": stored,
                    "at": "2024-05-01T12:00:00Z",
                }}),
                ..entry(3)
            };
            let event = entry.decode().expect("an old payload decodes");
            assert_eq!(
                change(&entry, &event),
                completed_update(Some(stored.clone()).filter(|s| !s.is_null())),
                "{stored}"
            );
        }
    }
}
