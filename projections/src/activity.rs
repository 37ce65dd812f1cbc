//! The `activity_logs` feed: the rows a workspace sees in its activity list
//! and its delegation list, in the shape of the seed platform's rows.
//!
//! * `DelegationSent` → a `delegate` row in the source's feed; it carries
//!   the delegation's current status and is updated in place as the
//!   delegation moves.
//! * `DelegationCompleted` / `DelegationFailed` / `DelegationCanceled` → a
//!   `delegate_result` row (the dashboard's record of the outcome) and an
//!   `a2a_receive` row (the result pushed to the caller's inbox) in the
//!   source's feed.
//! * `DelegationInputRequired` → an `a2a_receive` row in the source's feed
//!   carrying the target's question (`response_body.question`).
//!
//! Row ids are derived from the event that created the row, so a rebuild
//! produces the same ids a live run did and cursors stay valid.

use std::collections::HashMap;

use aggregates::delegation::{DelegationEvent, DelegationStatus};
use aggregates::preview;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApplyFuture, LedgerEvent, LogEntry, Projection};

/// Namespace of activity row ids (UUIDv5 over the creating event's identity).
const ROW_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d61_6374_6976_6974_7900);

/// Characters of the result shown in a `delegate_result` summary.
const SUMMARY_PREVIEW_CHARS: usize = 80;

/// One new row of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityRow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub activity_type: &'static str,
    pub method: Option<&'static str>,
    pub source_id: Option<Uuid>,
    pub target_id: Option<Uuid>,
    pub summary: String,
    pub status: Option<&'static str>,
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    pub error_detail: Option<String>,
    pub delegation_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub log_position: i64,
    pub ordinal: i32,
}

/// What one event does to the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivityChange {
    Insert(ActivityRow),
    /// Set the status (and, when given, the error or response) of the
    /// delegation's `delegate` row.
    UpdateDelegateRow {
        delegation_id: Uuid,
        status: &'static str,
        error_detail: Option<String>,
        response_body: Option<Value>,
    },
}

/// The rows one delegation event adds share its delegation, its time and
/// its place in the log; [`Rows::row`] fills those in once, and each arm of
/// [`changes`] says only what differs.
struct Rows<'a> {
    entry: &'a LogEntry,
    delegation_id: Uuid,
    source_id: Uuid,
    at: DateTime<Utc>,
}

impl Rows<'_> {
    /// A `delegate_result` row in the source's feed of a delegation that
    /// ended without a result (failed, canceled): it carries the error.
    fn error_result(
        &self,
        ordinal: i32,
        activity_type: &'static str,
        parties: (Uuid, Uuid),
        summary: String,
        status: &'static str,
        error: &str,
    ) -> ActivityChange {
        ActivityChange::Insert(ActivityRow {
            response_body: Some(json!({ "delegation_id": self.delegation_id })),
            error_detail: Some(error.to_string()),
            ..self.row(
                ordinal,
                self.source_id,
                activity_type,
                "delegate_result",
                parties,
                summary,
                status,
            )
        })
    }

    /// Row `ordinal` of the event (its id is derived from the event's place
    /// in its aggregate, so re-applying the event is a no-op), in
    /// `workspace`'s feed, about a message `from` → `to`.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        ordinal: i32,
        workspace_id: Uuid,
        activity_type: &'static str,
        method: &'static str,
        (from, to): (Uuid, Uuid),
        summary: String,
        status: &'static str,
    ) -> ActivityRow {
        let entry = self.entry;
        ActivityRow {
            id: Uuid::new_v5(
                &ROW_ID_NAMESPACE,
                format!(
                    "{}/{}/{}/{}",
                    entry.aggregate_type, entry.aggregate_id, entry.sequence, ordinal
                )
                .as_bytes(),
            ),
            workspace_id,
            activity_type,
            method: Some(method),
            source_id: Some(from),
            target_id: Some(to),
            summary,
            status: Some(status),
            request_body: None,
            response_body: None,
            error_detail: None,
            delegation_id: Some(self.delegation_id),
            created_at: self.at,
            log_position: entry.position,
            ordinal,
        }
    }
}

/// The feed changes an event causes. Pure: no IO, no clock.
pub fn changes(entry: &LogEntry, event: &LedgerEvent) -> Vec<ActivityChange> {
    let LedgerEvent::Delegation(event) = event else {
        return Vec::new();
    };
    let rows = Rows {
        entry,
        delegation_id: event.delegation_id(),
        source_id: event.parties().0,
        at: event.at(),
    };
    let (source_id, target_id) = event.parties();
    let delegation_id = event.delegation_id();
    // Every arm below but the attempt's has a status.
    let status = event
        .status()
        .map_or(DelegationStatus::Pending.as_str(), DelegationStatus::as_str);
    let update = |error_detail: Option<String>, response_body: Option<Value>| {
        ActivityChange::UpdateDelegateRow {
            delegation_id,
            status,
            error_detail,
            response_body,
        }
    };
    match event {
        DelegationEvent::DelegationSendAttempted { .. } => Vec::new(),
        DelegationEvent::DelegationInputRequired { question, .. } => {
            let body = json!({ "question": question, "delegation_id": delegation_id });
            vec![
                update(None, Some(body.clone())),
                ActivityChange::Insert(ActivityRow {
                    response_body: Some(body),
                    ..rows.row(
                        0,
                        source_id,
                        "a2a_receive",
                        "input_required",
                        (target_id, source_id),
                        format!(
                            "Question from {target_id}: {}",
                            preview(question, SUMMARY_PREVIEW_CHARS)
                        ),
                        status,
                    )
                }),
            ]
        }
        DelegationEvent::DelegationCanceled { reason, .. } => {
            let error = format!("canceled: {reason}");
            vec![
                update(Some(error.clone()), None),
                rows.error_result(
                    0,
                    "delegation",
                    (source_id, target_id),
                    "Delegation canceled".to_string(),
                    status,
                    &error,
                ),
                rows.error_result(
                    1,
                    "a2a_receive",
                    (target_id, source_id),
                    format!("Delegation to {target_id} canceled"),
                    status,
                    &error,
                ),
            ]
        }
        DelegationEvent::DelegationSent { task, .. } => vec![ActivityChange::Insert(ActivityRow {
            request_body: Some(json!({ "task": task, "delegation_id": delegation_id })),
            ..rows.row(
                0,
                source_id,
                "delegation",
                "delegate",
                (source_id, target_id),
                format!("Delegating to {target_id}"),
                status,
            )
        })],
        // The message addressed to a polling target: a row in *its* feed,
        // which it consumes with `since_id`.
        DelegationEvent::DelegationDeliveredToInbox { task, .. } => vec![
            update(None, None),
            ActivityChange::Insert(ActivityRow {
                request_body: Some(json!({ "task": task, "delegation_id": delegation_id })),
                ..rows.row(
                    0,
                    target_id,
                    "a2a_receive",
                    "message/send",
                    (source_id, target_id),
                    format!("Task from {source_id}"),
                    "ok",
                )
            }),
        ],
        DelegationEvent::DelegationDispatched { .. }
        | DelegationEvent::DelegationReceived { .. }
        | DelegationEvent::DelegationInProgress { .. }
        | DelegationEvent::DelegationQueued { .. } => vec![update(None, None)],
        DelegationEvent::DelegationCompleted {
            result,
            response_preview,
            ..
        } => {
            let outcome = |ordinal, activity_type, parties, summary, status| {
                ActivityChange::Insert(ActivityRow {
                    response_body: Some(json!({ "text": result, "delegation_id": delegation_id })),
                    ..rows.row(
                        ordinal,
                        source_id,
                        activity_type,
                        "delegate_result",
                        parties,
                        summary,
                        status,
                    )
                })
            };
            vec![
                update(
                    None,
                    Some(json!({ "text": response_preview, "delegation_id": delegation_id })),
                ),
                outcome(
                    0,
                    "delegation",
                    (source_id, target_id),
                    format!(
                        "Delegation completed ({})",
                        preview(result, SUMMARY_PREVIEW_CHARS)
                    ),
                    status,
                ),
                outcome(
                    1,
                    "a2a_receive",
                    (target_id, source_id),
                    format!("Result from {target_id}"),
                    "ok",
                ),
            ]
        }
        DelegationEvent::DelegationFailed { error, .. } => vec![
            update(Some(error.clone()), None),
            rows.error_result(
                0,
                "delegation",
                (source_id, target_id),
                "Delegation failed".to_string(),
                status,
                error,
            ),
            rows.error_result(
                1,
                "a2a_receive",
                (target_id, source_id),
                format!("Delegation to {target_id} failed"),
                "error",
                error,
            ),
        ],
    }
}

/// Apply feed changes on the runner's transaction.
pub async fn apply_changes(
    conn: &mut PgConnection,
    changes: Vec<ActivityChange>,
) -> Result<(), sqlx::Error> {
    for change in changes {
        match change {
            ActivityChange::Insert(row) => {
                sqlx::query(
                    "insert into activity_logs (id, workspace_id, activity_type, method, source_id, \
                     target_id, summary, status, request_body, response_body, error_detail, \
                     delegation_id, created_at, log_position, ordinal) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(row.id)
                .bind(row.workspace_id)
                .bind(row.activity_type)
                .bind(row.method)
                .bind(row.source_id)
                .bind(row.target_id)
                .bind(row.summary)
                .bind(row.status)
                .bind(row.request_body)
                .bind(row.response_body)
                .bind(row.error_detail)
                .bind(row.delegation_id)
                .bind(row.created_at)
                .bind(row.log_position)
                .bind(row.ordinal)
                .execute(&mut *conn)
                .await?;
            }
            ActivityChange::UpdateDelegateRow {
                delegation_id,
                status,
                error_detail,
                response_body,
            } => {
                sqlx::query(
                    "update activity_logs set status = $2, \
                     error_detail = coalesce($3, error_detail), \
                     response_body = coalesce($4, response_body) \
                     where delegation_id = $1 and method = 'delegate'",
                )
                .bind(delegation_id)
                .bind(status)
                .bind(error_detail)
                .bind(response_body)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// A batch's changes, folded: every new row in one INSERT (a `delegate`
/// row inserted by the batch takes the batch's later updates with it), and
/// one update per older `delegate` row. The same result as applying the
/// changes one by one ([`apply_changes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub inserts: Vec<ActivityRow>,
    pub updates: Vec<DelegateRowUpdate>,
}

/// The batch's changes to a `delegate` row inserted by an earlier batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegateRowUpdate {
    pub delegation_id: Uuid,
    pub status: &'static str,
    /// The latest given (`coalesce(new, old)` each time).
    pub error_detail: Option<String>,
    pub response_body: Option<Value>,
}

/// Fold a batch's changes (pure).
pub fn plan(changes: impl IntoIterator<Item = ActivityChange>) -> Plan {
    let mut plan = Plan::default();
    let mut delegate_rows: HashMap<Uuid, usize> = HashMap::new();
    let mut updated: HashMap<Uuid, usize> = HashMap::new();
    for change in changes {
        match change {
            ActivityChange::Insert(row) => {
                if row.method == Some("delegate") {
                    if let Some(id) = row.delegation_id {
                        delegate_rows.insert(id, plan.inserts.len());
                    }
                }
                plan.inserts.push(row);
            }
            ActivityChange::UpdateDelegateRow {
                delegation_id,
                status,
                error_detail,
                response_body,
            } => {
                if let Some(row) = delegate_rows
                    .get(&delegation_id)
                    .and_then(|i| plan.inserts.get_mut(*i))
                {
                    row.status = Some(status);
                    if error_detail.is_some() {
                        row.error_detail = error_detail;
                    }
                    if response_body.is_some() {
                        row.response_body = response_body;
                    }
                    continue;
                }
                let index = *updated.entry(delegation_id).or_insert_with(|| {
                    plan.updates.push(DelegateRowUpdate {
                        delegation_id,
                        status,
                        error_detail: None,
                        response_body: None,
                    });
                    plan.updates.len() - 1
                });
                if let Some(update) = plan.updates.get_mut(index) {
                    update.status = status;
                    if error_detail.is_some() {
                        update.error_detail = error_detail;
                    }
                    if response_body.is_some() {
                        update.response_body = response_body;
                    }
                }
            }
        }
    }
    plan
}

/// Write a folded batch: one INSERT, one UPDATE.
pub async fn apply_plan(conn: &mut PgConnection, plan: Plan) -> Result<(), sqlx::Error> {
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "insert into activity_logs (id, workspace_id, activity_type, method, source_id, \
             target_id, summary, status, request_body, response_body, error_detail, \
             delegation_id, created_at, log_position, ordinal) \
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], \
             $6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], \
             $12::uuid[], $13::timestamptz[], $14::bigint[], $15::int[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.workspace_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.activity_type).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.method).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.target_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.summary.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.request_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.error_detail.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.delegation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.log_position).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ordinal).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.updates.is_empty() {
        let updates = &plan.updates;
        sqlx::query(
            "update activity_logs a set status = u.status, \
             error_detail = coalesce(u.error_detail, a.error_detail), \
             response_body = coalesce(u.response_body, a.response_body) \
             from unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) \
             as u(delegation_id, status, error_detail, response_body) \
             where a.delegation_id = u.delegation_id and a.method = 'delegate'",
        )
        .bind(updates.iter().map(|u| u.delegation_id).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.status).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|u| u.error_detail.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|u| u.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The `activity_logs` projection.
pub struct ActivityProjection;

impl Projection for ActivityProjection {
    fn name(&self) -> &'static str {
        "activity_logs"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activity_logs"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entry: &'a LogEntry,
        event: &'a LedgerEvent,
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            apply_changes(conn, changes(entry, event)).await?;
            Ok(())
        })
    }

    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entries: &'a [(LogEntry, LedgerEvent)],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            let all = entries
                .iter()
                .flat_map(|(entry, event)| changes(entry, event));
            apply_plan(conn, plan(all)).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::delegation::Origin;
    use aggregates::workspace::{DeliveryMode, WorkspaceEvent};
    use aggregates::Actor;

    const DELEGATION: Uuid = Uuid::from_u128(0xd1);
    const SOURCE: Uuid = Uuid::from_u128(0x5a);
    const TARGET: Uuid = Uuid::from_u128(0x7b);

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The time the log recorded the entry: deliberately not the event's
    /// `at`, so tests can tell which one a row takes.
    fn recorded_at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:07Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(position: i64, sequence: i64) -> LogEntry {
        LogEntry {
            position,
            event_id: position + 1000,
            aggregate_type: "delegation".to_string(),
            aggregate_id: DELEGATION.to_string(),
            sequence,
            event_type: "irrelevant here".to_string(),
            event_version: "1.0".to_string(),
            payload: Value::Null,
            metadata: json!({}),
            recorded_at: recorded_at(),
        }
    }

    fn actor() -> Actor {
        Actor::Workspace(SOURCE)
    }

    fn sent(origin: Origin) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationSent {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "summarise the report".to_string(),
            task_preview: "summarise the report".to_string(),
            origin,
            idempotency_key: Some("key-1".to_string()),
            queue: Default::default(),
            deadline: None,
            actor: actor(),
            at: at(),
        })
    }

    fn completed(result: &str, response_preview: &str) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationCompleted {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            result: result.to_string(),
            response_preview: response_preview.to_string(),
            actor: Actor::Workspace(TARGET),
            at: at(),
        })
    }

    fn failed(error: &str) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationFailed {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            error: error.to_string(),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        })
    }

    fn inserted(change: &ActivityChange) -> &ActivityRow {
        match change {
            ActivityChange::Insert(row) => row,
            other => panic!("expected an insert, got {other:?}"),
        }
    }

    fn update(status: &'static str) -> ActivityChange {
        ActivityChange::UpdateDelegateRow {
            delegation_id: DELEGATION,
            status,
            error_detail: None,
            response_body: None,
        }
    }

    #[test]
    fn a_managed_delegation_sent_inserts_one_pending_delegate_row_in_the_source_feed() {
        let entry = entry(42, 1);
        let changes = changes(&entry, &sent(Origin::Managed));

        assert_eq!(
            changes,
            vec![ActivityChange::Insert(ActivityRow {
                id: Uuid::new_v5(
                    &ROW_ID_NAMESPACE,
                    format!("delegation/{DELEGATION}/1/0").as_bytes()
                ),
                workspace_id: SOURCE,
                activity_type: "delegation",
                method: Some("delegate"),
                source_id: Some(SOURCE),
                target_id: Some(TARGET),
                summary: format!("Delegating to {TARGET}"),
                status: Some("pending"),
                request_body: Some(json!({
                    "task": "summarise the report",
                    "delegation_id": DELEGATION,
                })),
                response_body: None,
                error_detail: None,
                delegation_id: Some(DELEGATION),
                created_at: at(),
                log_position: 42,
                ordinal: 0,
            })]
        );
    }

    #[test]
    fn a_recorded_delegation_sent_inserts_a_dispatched_delegate_row() {
        let changes = changes(&entry(3, 1), &sent(Origin::Recorded));

        assert_eq!(changes.len(), 1);
        let row = inserted(&changes[0]);
        assert_eq!(row.status, Some("dispatched"));
        assert_eq!(row.method, Some("delegate"));
        assert_eq!(row.workspace_id, SOURCE);
        assert_eq!(row.log_position, 3);
        assert_eq!(row.ordinal, 0);
    }

    #[test]
    fn the_delegate_row_takes_the_event_time_not_the_log_time() {
        let changes = changes(&entry(1, 1), &sent(Origin::Managed));

        assert_eq!(inserted(&changes[0]).created_at, at());
        assert_ne!(inserted(&changes[0]).created_at, recorded_at());
    }

    #[test]
    fn the_same_entry_always_gets_the_same_row_id() {
        let first = changes(&entry(7, 1), &sent(Origin::Managed));
        let second = changes(&entry(7, 1), &sent(Origin::Managed));

        assert_eq!(inserted(&first[0]).id, inserted(&second[0]).id);
        assert_eq!(first, second);
    }

    #[test]
    fn the_row_id_does_not_depend_on_the_log_position() {
        // The id is keyed on the event's identity (aggregate, sequence),
        // not on where the log put it.
        let live = changes(&entry(7, 1), &sent(Origin::Managed));
        let rebuilt = changes(&entry(8, 1), &sent(Origin::Managed));

        assert_eq!(inserted(&live[0]).id, inserted(&rebuilt[0]).id);
        assert_eq!(inserted(&rebuilt[0]).log_position, 8);
    }

    #[test]
    fn a_different_sequence_gets_a_different_row_id() {
        let first = changes(&entry(7, 1), &sent(Origin::Managed));
        let second = changes(&entry(7, 2), &sent(Origin::Managed));

        assert_ne!(inserted(&first[0]).id, inserted(&second[0]).id);
    }

    #[test]
    fn a_different_aggregate_gets_a_different_row_id() {
        let mut other = entry(7, 1);
        other.aggregate_id = Uuid::from_u128(0xd2).to_string();

        let first = changes(&entry(7, 1), &sent(Origin::Managed));
        let second = changes(&other, &sent(Origin::Managed));

        assert_ne!(inserted(&first[0]).id, inserted(&second[0]).id);
    }

    #[test]
    fn dispatched_updates_the_delegate_row_to_dispatched() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationDispatched {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            attempt: 2,
            remote_task_id: Some("remote-9".to_string()),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        });

        assert_eq!(changes(&entry(5, 2), &event), vec![update("dispatched")]);
    }

    #[test]
    fn received_updates_the_delegate_row_to_received() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationReceived {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at: at(),
        });

        assert_eq!(changes(&entry(5, 3), &event), vec![update("received")]);
    }

    #[test]
    fn in_progress_updates_the_delegate_row_to_in_progress() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationInProgress {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at: at(),
        });

        assert_eq!(changes(&entry(5, 4), &event), vec![update("in_progress")]);
    }

    #[test]
    fn queued_updates_the_delegate_row_to_queued() {
        let event = LedgerEvent::Delegation(DelegationEvent::DelegationQueued {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            queue_id: Some(Uuid::from_u128(0x99)),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        });

        assert_eq!(changes(&entry(5, 3), &event), vec![update("queued")]);
    }

    #[test]
    fn completed_updates_the_delegate_row_and_inserts_a_result_and_an_inbox_row() {
        let entry = entry(50, 5);
        let changes = changes(&entry, &completed("all done", "all done"));
        let id = |ordinal: i32| {
            Uuid::new_v5(
                &ROW_ID_NAMESPACE,
                format!("delegation/{DELEGATION}/5/{ordinal}").as_bytes(),
            )
        };

        assert_eq!(
            changes,
            vec![
                ActivityChange::UpdateDelegateRow {
                    delegation_id: DELEGATION,
                    status: "completed",
                    error_detail: None,
                    response_body: Some(json!({
                        "text": "all done",
                        "delegation_id": DELEGATION,
                    })),
                },
                ActivityChange::Insert(ActivityRow {
                    id: id(0),
                    workspace_id: SOURCE,
                    activity_type: "delegation",
                    method: Some("delegate_result"),
                    source_id: Some(SOURCE),
                    target_id: Some(TARGET),
                    summary: "Delegation completed (all done)".to_string(),
                    status: Some("completed"),
                    request_body: None,
                    response_body: Some(json!({
                        "text": "all done",
                        "delegation_id": DELEGATION,
                    })),
                    error_detail: None,
                    delegation_id: Some(DELEGATION),
                    created_at: at(),
                    log_position: 50,
                    ordinal: 0,
                }),
                ActivityChange::Insert(ActivityRow {
                    id: id(1),
                    workspace_id: SOURCE,
                    activity_type: "a2a_receive",
                    method: Some("delegate_result"),
                    source_id: Some(TARGET),
                    target_id: Some(SOURCE),
                    summary: format!("Result from {TARGET}"),
                    status: Some("ok"),
                    request_body: None,
                    response_body: Some(json!({
                        "text": "all done",
                        "delegation_id": DELEGATION,
                    })),
                    error_detail: None,
                    delegation_id: Some(DELEGATION),
                    created_at: at(),
                    log_position: 50,
                    ordinal: 1,
                }),
            ]
        );
    }

    #[test]
    fn completed_puts_the_preview_on_the_delegate_row_and_the_full_result_on_the_new_rows() {
        let result = "r".repeat(400);
        let response_preview = "r".repeat(300);
        let changes = changes(&entry(9, 5), &completed(&result, &response_preview));

        assert_eq!(changes.len(), 3);
        match &changes[0] {
            ActivityChange::UpdateDelegateRow { response_body, .. } => assert_eq!(
                response_body,
                &Some(json!({ "text": response_preview, "delegation_id": DELEGATION }))
            ),
            other => panic!("expected an update, got {other:?}"),
        }
        for change in &changes[1..] {
            assert_eq!(
                inserted(change).response_body,
                Some(json!({ "text": result, "delegation_id": DELEGATION }))
            );
        }
    }

    #[test]
    fn the_completed_summary_shows_the_first_eighty_characters_of_the_result() {
        // Multi-byte characters: the cut counts characters, not bytes.
        let first_eighty = "é".repeat(80);
        let result = format!("{first_eighty}and the rest is not shown");
        let changes = changes(&entry(9, 5), &completed(&result, &result));

        assert_eq!(
            inserted(&changes[1]).summary,
            format!("Delegation completed ({first_eighty})")
        );
    }

    #[test]
    fn a_completed_result_of_exactly_eighty_characters_is_shown_whole() {
        let result = "x".repeat(80);
        let changes = changes(&entry(9, 5), &completed(&result, &result));

        assert_eq!(
            inserted(&changes[1]).summary,
            format!("Delegation completed ({result})")
        );
    }

    #[test]
    fn the_outcome_rows_get_ids_distinct_from_each_other_and_from_the_delegate_row() {
        let sent_rows = changes(&entry(1, 1), &sent(Origin::Managed));
        let outcome = changes(&entry(9, 5), &completed("ok", "ok"));

        let ids = [
            inserted(&sent_rows[0]).id,
            inserted(&outcome[1]).id,
            inserted(&outcome[2]).id,
        ];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        assert_ne!(ids[1], ids[2]);
    }

    #[test]
    fn failed_updates_the_delegate_row_and_inserts_a_failed_result_and_an_error_inbox_row() {
        let entry = entry(60, 4);
        let changes = changes(&entry, &failed("target unreachable"));
        let id = |ordinal: i32| {
            Uuid::new_v5(
                &ROW_ID_NAMESPACE,
                format!("delegation/{DELEGATION}/4/{ordinal}").as_bytes(),
            )
        };

        assert_eq!(
            changes,
            vec![
                ActivityChange::UpdateDelegateRow {
                    delegation_id: DELEGATION,
                    status: "failed",
                    error_detail: Some("target unreachable".to_string()),
                    response_body: None,
                },
                ActivityChange::Insert(ActivityRow {
                    id: id(0),
                    workspace_id: SOURCE,
                    activity_type: "delegation",
                    method: Some("delegate_result"),
                    source_id: Some(SOURCE),
                    target_id: Some(TARGET),
                    summary: "Delegation failed".to_string(),
                    status: Some("failed"),
                    request_body: None,
                    response_body: Some(json!({ "delegation_id": DELEGATION })),
                    error_detail: Some("target unreachable".to_string()),
                    delegation_id: Some(DELEGATION),
                    created_at: at(),
                    log_position: 60,
                    ordinal: 0,
                }),
                ActivityChange::Insert(ActivityRow {
                    id: id(1),
                    workspace_id: SOURCE,
                    activity_type: "a2a_receive",
                    method: Some("delegate_result"),
                    source_id: Some(TARGET),
                    target_id: Some(SOURCE),
                    summary: format!("Delegation to {TARGET} failed"),
                    status: Some("error"),
                    request_body: None,
                    response_body: Some(json!({ "delegation_id": DELEGATION })),
                    error_detail: Some("target unreachable".to_string()),
                    delegation_id: Some(DELEGATION),
                    created_at: at(),
                    log_position: 60,
                    ordinal: 1,
                }),
            ]
        );
    }

    #[test]
    fn a_workspace_event_changes_nothing_in_the_feed() {
        let mut entry = entry(2, 1);
        entry.aggregate_type = "workspace".to_string();
        entry.aggregate_id = SOURCE.to_string();
        let event = LedgerEvent::Workspace(WorkspaceEvent::WorkspaceRegistered {
            workspace_id: SOURCE,
            name: Some("alpha".to_string()),
            url: Some("https://alpha.example".to_string()),
            delivery_mode: DeliveryMode::Push,
            token_hash: "hash".to_string(),
            at: at(),
        });

        assert_eq!(changes(&entry, &event), Vec::new());
    }

    #[test]
    fn an_idempotency_key_event_changes_nothing_in_the_feed() {
        let mut entry = entry(2, 1);
        entry.aggregate_type = "idempotency_key".to_string();
        let event = LedgerEvent::IdempotencyKey(
            aggregates::idempotency_key::IdempotencyKeyEvent::IdempotencyKeyClaimed {
                workspace_id: SOURCE,
                key: "key-1".to_string(),
                delegation_id: DELEGATION,
                replaced: None,
                at: at(),
            },
        );

        assert_eq!(changes(&entry, &event), Vec::new());
    }

    #[test]
    fn a_delegate_row_inserted_in_the_batch_takes_the_batchs_updates_with_it() {
        let mut all = changes(&entry(1, 1), &sent(Origin::Managed));
        all.push(update("dispatched"));
        all.extend(changes(
            &entry(3, 3),
            &completed("the answer", "the answer"),
        ));
        let plan = plan(all);
        assert!(plan.updates.is_empty(), "{plan:?}");
        let delegate = plan
            .inserts
            .iter()
            .find(|row| row.method == Some("delegate"))
            .expect("the delegate row");
        assert_eq!(delegate.status, Some("completed"));
        assert_eq!(
            delegate.response_body.as_ref().map(|b| &b["text"]),
            Some(&json!("the answer"))
        );
        // The result rows are inserted too, in order.
        assert_eq!(plan.inserts.len(), 3);
        assert_eq!(plan.inserts[1].method, Some("delegate_result"));
    }

    #[test]
    fn an_older_delegate_row_gets_one_update_keeping_the_latest_given_fields() {
        let plan = plan([
            update("dispatched"),
            ActivityChange::UpdateDelegateRow {
                delegation_id: DELEGATION,
                status: "failed",
                error_detail: Some("boom".to_string()),
                response_body: None,
            },
            update("failed"),
        ]);
        assert!(plan.inserts.is_empty());
        assert_eq!(
            plan.updates,
            vec![DelegateRowUpdate {
                delegation_id: DELEGATION,
                status: "failed",
                error_detail: Some("boom".to_string()),
                response_body: None,
            }]
        );
    }
}
