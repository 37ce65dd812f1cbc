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
//!
//! Here, the mapping from an event to its rows (pure); in `plan.rs`, a
//! batch's changes folded into one INSERT and one UPDATE (pure); in
//! `store.rs`, the SQL that writes either.

use aggregates::delegation::{DelegationEvent, DelegationStatus};
use aggregates::preview;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{ApplyFuture, LedgerEvent, LogEntry, Projection};

mod plan;
mod store;
#[cfg(test)]
mod tests;

pub use plan::{plan, DelegateRowUpdate, Plan};
pub use store::{apply_changes, apply_plan};

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
