//! The `delegations` view: the current state of each delegation, with its
//! status history. Serves `GET /workspaces/{id}/delegations/{delegation_id}`,
//! and every "is this delegation still open?" question.

use std::collections::HashMap;

use aggregates::delegation::{DelegationEvent, DelegationStatus};
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

/// A batch's changes, folded so that each delegation is written once: a
/// delegation first seen in the batch is inserted whole, one from an
/// earlier batch gets a single patch. The same result as applying the
/// changes one by one ([`apply_change`]), in two statements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub inserts: Vec<NewRow>,
    pub patches: Vec<Patch>,
}

/// A delegation inserted by the batch, with the batch's later changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub delegation_id: Uuid,
    pub source_id: Uuid,
    pub target_id: Uuid,
    pub task: String,
    pub origin: &'static str,
    pub status: &'static str,
    pub idempotency_key: Option<String>,
    pub deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<(&'static str, DateTime<Utc>)>,
    pub attempts: i32,
    pub remote_task_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub result: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub question: Option<String>,
}

/// The batch's changes to a delegation inserted by an earlier batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub delegation_id: Uuid,
    /// The status it ends the batch in.
    pub status: &'static str,
    /// Status steps, consecutive repeats dropped; the first is dropped
    /// too when it repeats the stored status (decided in SQL).
    pub steps: Vec<(&'static str, DateTime<Utc>)>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Option<i32>,
    pub remote_task_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub result: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// The latest question since the last other status; the stored one
    /// is kept only if the batch ends waiting for input without a new one.
    pub question: Option<String>,
}

/// Fold a batch's changes (pure).
pub fn plan(changes: impl IntoIterator<Item = DelegationChange>) -> Plan {
    let mut plan = Plan::default();
    let mut inserted: HashMap<Uuid, usize> = HashMap::new();
    let mut patched: HashMap<Uuid, usize> = HashMap::new();
    for change in changes {
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
                inserted.insert(delegation_id, plan.inserts.len());
                plan.inserts.push(NewRow {
                    delegation_id,
                    source_id,
                    target_id,
                    task,
                    origin,
                    status,
                    idempotency_key,
                    deadline,
                    created_at: at,
                    updated_at: at,
                    history: vec![(status, at)],
                    attempts: 0,
                    remote_task_id: None,
                    queue_id: None,
                    result: None,
                    response_preview: None,
                    error: None,
                    question: None,
                });
            }
            DelegationChange::Update(change) => {
                if let Some(row) = inserted
                    .get(&change.delegation_id)
                    .and_then(|i| plan.inserts.get_mut(*i))
                {
                    if row.status != change.status {
                        row.history.push((change.status, change.at));
                    }
                    row.status = change.status;
                    row.updated_at = change.at;
                    row.attempts = change.attempts.unwrap_or(row.attempts);
                    overwrite(&mut row.remote_task_id, change.remote_task_id);
                    overwrite(&mut row.queue_id, change.queue_id);
                    overwrite(&mut row.result, change.result);
                    overwrite(&mut row.response_preview, change.response_preview);
                    overwrite(&mut row.error, change.error);
                    row.question =
                        waiting_question(change.status, change.question, row.question.take());
                    continue;
                }
                let index = *patched.entry(change.delegation_id).or_insert_with(|| {
                    plan.patches.push(Patch {
                        delegation_id: change.delegation_id,
                        status: change.status,
                        steps: Vec::new(),
                        updated_at: change.at,
                        attempts: None,
                        remote_task_id: None,
                        queue_id: None,
                        result: None,
                        response_preview: None,
                        error: None,
                        question: None,
                    });
                    plan.patches.len() - 1
                });
                if let Some(patch) = plan.patches.get_mut(index) {
                    if patch
                        .steps
                        .last()
                        .is_none_or(|(last, _)| *last != change.status)
                    {
                        patch.steps.push((change.status, change.at));
                    }
                    patch.status = change.status;
                    patch.updated_at = change.at;
                    overwrite(&mut patch.attempts, change.attempts);
                    overwrite(&mut patch.remote_task_id, change.remote_task_id);
                    overwrite(&mut patch.queue_id, change.queue_id);
                    overwrite(&mut patch.result, change.result);
                    overwrite(&mut patch.response_preview, change.response_preview);
                    overwrite(&mut patch.error, change.error);
                    patch.question =
                        waiting_question(change.status, change.question, patch.question.take());
                }
            }
        }
    }
    plan
}

/// `coalesce(new, old)`.
fn overwrite<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

/// The question after a change to `status`: kept (or replaced) while the
/// delegation waits for input, gone otherwise.
fn waiting_question(status: &str, new: Option<String>, old: Option<String>) -> Option<String> {
    if status == DelegationStatus::InputRequired.as_str() {
        new.or(old)
    } else {
        None
    }
}

fn history_json(steps: &[(&'static str, DateTime<Utc>)]) -> serde_json::Value {
    serde_json::Value::Array(
        steps
            .iter()
            .map(|(status, at)| json!({ "status": status, "at": timestamp(*at) }))
            .collect(),
    )
}

/// Write a folded batch: one INSERT for the new rows, one UPDATE for the
/// patches.
pub async fn apply_plan(conn: &mut PgConnection, plan: Plan) -> Result<(), sqlx::Error> {
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "insert into delegations (delegation_id, source_id, target_id, task, origin, status, \
             idempotency_key, deadline, created_at, updated_at, history, attempts, remote_task_id, \
             queue_id, result, response_preview, error, question) \
             select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::jsonb[], \
             $12::int[], $13::text[], $14::uuid[], $15::text[], $16::text[], $17::text[], $18::text[])",
        )
        .bind(rows.iter().map(|r| r.delegation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.target_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.task.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.origin).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.idempotency_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.deadline).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| history_json(&r.history)).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.remote_task_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.queue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.result.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.response_preview.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.question.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.patches.is_empty() {
        let patches = &plan.patches;
        sqlx::query(
            "update delegations d set \
             history = d.history || case when d.status = p.steps->0->>'status' then p.steps - 0 else p.steps end, \
             status = p.status, updated_at = p.updated_at, \
             attempts = coalesce(p.attempts, d.attempts), \
             remote_task_id = coalesce(p.remote_task_id, d.remote_task_id), \
             queue_id = coalesce(p.queue_id, d.queue_id), \
             result = coalesce(p.result, d.result), \
             response_preview = coalesce(p.response_preview, d.response_preview), \
             error = coalesce(p.error, d.error), \
             question = case when p.status = 'input_required' then coalesce(p.question, d.question) end \
             from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::int[], $6::text[], \
             $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[]) \
             as p(delegation_id, status, steps, updated_at, attempts, remote_task_id, queue_id, result, \
             response_preview, error, question) \
             where d.delegation_id = p.delegation_id",
        )
        .bind(patches.iter().map(|p| p.delegation_id).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.status).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| history_json(&p.steps)).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.updated_at).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.attempts).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.remote_task_id.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.queue_id).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.result.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.response_preview.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.error.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.question.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
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

    fn insert() -> DelegationChange {
        DelegationChange::Insert {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "t".to_string(),
            origin: "managed",
            status: "pending",
            idempotency_key: None,
            deadline: None,
            at: at(),
        }
    }

    fn later(seconds: i64) -> DateTime<Utc> {
        at() + chrono::Duration::seconds(seconds)
    }

    fn step(status: &'static str, seconds: i64) -> DelegationChange {
        DelegationChange::Update(StatusChange {
            at: later(seconds),
            ..bare(status)
        })
    }

    #[test]
    fn a_delegation_sent_and_moved_in_one_batch_is_inserted_once_with_its_history() {
        let plan = plan([
            insert(),
            DelegationChange::Update(StatusChange {
                attempts: Some(1),
                remote_task_id: Some("r-1".to_string()),
                at: later(1),
                ..bare("dispatched")
            }),
            step("in_progress", 2),
            step("in_progress", 3),
            DelegationChange::Update(StatusChange {
                result: Some("done".to_string()),
                response_preview: Some("done".to_string()),
                at: later(4),
                ..bare("completed")
            }),
        ]);
        assert!(plan.patches.is_empty());
        let [row] = plan.inserts.as_slice() else {
            panic!("one insert: {plan:?}");
        };
        assert_eq!(row.status, "completed");
        assert_eq!(
            row.history,
            vec![
                ("pending", at()),
                ("dispatched", later(1)),
                ("in_progress", later(2)),
                ("completed", later(4)),
            ]
        );
        assert_eq!(
            (row.attempts, row.remote_task_id.as_deref()),
            (1, Some("r-1"))
        );
        assert_eq!(row.result.as_deref(), Some("done"));
        assert_eq!(row.updated_at, later(4));
    }

    #[test]
    fn an_older_delegation_gets_one_patch_with_its_steps_and_latest_fields() {
        let plan = plan([
            DelegationChange::Update(StatusChange {
                queue_id: Some(QUEUE),
                at: later(1),
                ..bare("queued")
            }),
            DelegationChange::Update(StatusChange {
                attempts: Some(2),
                at: later(2),
                ..bare("dispatched")
            }),
            DelegationChange::Update(StatusChange {
                attempts: Some(3),
                remote_task_id: Some("r-3".to_string()),
                at: later(3),
                ..bare("dispatched")
            }),
        ]);
        assert!(plan.inserts.is_empty());
        let [patch] = plan.patches.as_slice() else {
            panic!("one patch: {plan:?}");
        };
        assert_eq!(patch.status, "dispatched");
        // The repeat of dispatched is no step; whether the first step
        // repeats the stored status is the SQL's to decide.
        assert_eq!(
            patch.steps,
            vec![("queued", later(1)), ("dispatched", later(2))]
        );
        assert_eq!(patch.attempts, Some(3));
        assert_eq!(patch.remote_task_id.as_deref(), Some("r-3"));
        assert_eq!(patch.queue_id, Some(QUEUE));
        assert_eq!(patch.updated_at, later(3));
    }

    #[test]
    fn a_question_lasts_only_while_the_delegation_waits_for_input() {
        let asked = DelegationChange::Update(StatusChange {
            question: Some("which?".to_string()),
            at: later(1),
            ..bare("input_required")
        });
        let waiting = plan([insert(), asked.clone()]);
        assert_eq!(waiting.inserts[0].question.as_deref(), Some("which?"));
        let answered = plan([insert(), asked.clone(), step("in_progress", 2)]);
        assert_eq!(answered.inserts[0].question, None);
        let patched = plan([asked, step("in_progress", 2)]);
        assert_eq!(patched.patches[0].question, None);
        assert_eq!(patched.patches[0].status, "in_progress");
    }

    #[test]
    fn changes_of_different_delegations_stay_apart() {
        let other = Uuid::from_u128(0xd2);
        let plan = plan([
            insert(),
            DelegationChange::Update(StatusChange {
                delegation_id: other,
                ..bare("received")
            }),
            step("dispatched", 1),
        ]);
        assert_eq!(plan.inserts.len(), 1);
        assert_eq!(plan.inserts[0].status, "dispatched");
        assert_eq!(plan.patches.len(), 1);
        assert_eq!(plan.patches[0].delegation_id, other);
    }
}
