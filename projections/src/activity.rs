//! The `activity_logs` feed: the rows a workspace sees in its activity list
//! and its delegation list, in the shape of the seed platform's rows.
//!
//! * `DelegationSent` → a `delegate` row in the source's feed; it carries
//!   the delegation's current status and is updated in place as the
//!   delegation moves.
//! * `DelegationCompleted` / `DelegationFailed` → a `delegate_result` row
//!   (the dashboard's record of the outcome) and an `a2a_receive` row (the
//!   result pushed to the caller's inbox) in the source's feed.
//!
//! Row ids are derived from the event that created the row, so a rebuild
//! produces the same ids a live run did and cursors stay valid.

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

/// The feed changes an event causes. Pure: no IO, no clock.
pub fn changes(entry: &LogEntry, event: &LedgerEvent) -> Vec<ActivityChange> {
    let LedgerEvent::Delegation(event) = event else {
        return Vec::new();
    };
    let row_id = |ordinal: i32| {
        Uuid::new_v5(
            &ROW_ID_NAMESPACE,
            format!(
                "{}/{}/{}/{}",
                entry.aggregate_type, entry.aggregate_id, entry.sequence, ordinal
            )
            .as_bytes(),
        )
    };
    let status_of = |event: &DelegationEvent| event.status().as_str();
    match event {
        DelegationEvent::DelegationSent {
            delegation_id,
            source_id,
            target_id,
            task,
            at,
            ..
        } => vec![ActivityChange::Insert(ActivityRow {
            id: row_id(0),
            workspace_id: *source_id,
            activity_type: "delegation",
            method: Some("delegate"),
            source_id: Some(*source_id),
            target_id: Some(*target_id),
            summary: format!("Delegating to {target_id}"),
            status: Some(status_of(event)),
            request_body: Some(json!({ "task": task, "delegation_id": delegation_id })),
            response_body: None,
            error_detail: None,
            delegation_id: Some(*delegation_id),
            created_at: *at,
            log_position: entry.position,
            ordinal: 0,
        })],
        DelegationEvent::DelegationDispatched { delegation_id, .. }
        | DelegationEvent::DelegationReceived { delegation_id, .. }
        | DelegationEvent::DelegationInProgress { delegation_id, .. }
        | DelegationEvent::DelegationQueued { delegation_id, .. } => {
            vec![ActivityChange::UpdateDelegateRow {
                delegation_id: *delegation_id,
                status: status_of(event),
                error_detail: None,
                response_body: None,
            }]
        }
        DelegationEvent::DelegationCompleted {
            delegation_id,
            source_id,
            target_id,
            result,
            response_preview,
            at,
            ..
        } => {
            let completed = DelegationStatus::Completed.as_str();
            let outcome = |ordinal, activity_type, method, from, to, summary: String, status| {
                ActivityChange::Insert(ActivityRow {
                    id: row_id(ordinal),
                    workspace_id: *source_id,
                    activity_type,
                    method: Some(method),
                    source_id: Some(from),
                    target_id: Some(to),
                    summary,
                    status: Some(status),
                    request_body: None,
                    response_body: Some(json!({ "text": result, "delegation_id": delegation_id })),
                    error_detail: None,
                    delegation_id: Some(*delegation_id),
                    created_at: *at,
                    log_position: entry.position,
                    ordinal,
                })
            };
            vec![
                ActivityChange::UpdateDelegateRow {
                    delegation_id: *delegation_id,
                    status: completed,
                    error_detail: None,
                    response_body: Some(
                        json!({ "text": response_preview, "delegation_id": delegation_id }),
                    ),
                },
                outcome(
                    0,
                    "delegation",
                    "delegate_result",
                    *source_id,
                    *target_id,
                    format!(
                        "Delegation completed ({})",
                        preview(result, SUMMARY_PREVIEW_CHARS)
                    ),
                    completed,
                ),
                outcome(
                    1,
                    "a2a_receive",
                    "delegate_result",
                    *target_id,
                    *source_id,
                    format!("Result from {target_id}"),
                    "ok",
                ),
            ]
        }
        DelegationEvent::DelegationFailed {
            delegation_id,
            source_id,
            target_id,
            error,
            at,
            ..
        } => {
            let failed = DelegationStatus::Failed.as_str();
            let outcome = |ordinal, activity_type, from, to, summary: String, status| {
                ActivityChange::Insert(ActivityRow {
                    id: row_id(ordinal),
                    workspace_id: *source_id,
                    activity_type,
                    method: Some("delegate_result"),
                    source_id: Some(from),
                    target_id: Some(to),
                    summary,
                    status: Some(status),
                    request_body: None,
                    response_body: Some(json!({ "delegation_id": delegation_id })),
                    error_detail: Some(error.clone()),
                    delegation_id: Some(*delegation_id),
                    created_at: *at,
                    log_position: entry.position,
                    ordinal,
                })
            };
            vec![
                ActivityChange::UpdateDelegateRow {
                    delegation_id: *delegation_id,
                    status: failed,
                    error_detail: Some(error.clone()),
                    response_body: None,
                },
                outcome(
                    0,
                    "delegation",
                    *source_id,
                    *target_id,
                    "Delegation failed".to_string(),
                    failed,
                ),
                outcome(
                    1,
                    "a2a_receive",
                    *target_id,
                    *source_id,
                    format!("Delegation to {target_id} failed"),
                    "error",
                ),
            ]
        }
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
}
