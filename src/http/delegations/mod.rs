//! Delegations: delegate (managed), record (agent-dispatched), update,
//! cancel, list, get. Handlers stay thin: authenticate → parse into a
//! command → execute → respond; the rules live in the aggregates.
//!
//! * [`delegate`] — `POST …/delegate`: a managed delegation, with its
//!   queue options, deadline and idempotency key;
//! * [`reports`] — what a source or target says about a delegation:
//!   `record` (one it dispatched itself), `update`, `cancel`;
//! * [`reads`] — `GET …/delegations` and `GET …/delegations/{id}`;
//! * here — the router and what the commands share.

mod delegate;
mod reads;
mod reports;

use std::collections::HashMap;

use aggregates::delegation::{DelegationError, MAX_TASK_BYTES};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delegate::delegate))
        .routes(routes!(reports::record))
        .routes(routes!(reports::update))
        .routes(routes!(reports::cancel))
        .routes(routes!(reads::list))
        .routes(routes!(reads::get_one))
}

/// Checks a task before any command: the aggregate would refuse it too,
/// but here it costs no write.
fn validate_task(source: Uuid, target: Uuid, task: &str) -> Result<(), ApiError> {
    if source == target {
        return Err(ApiError::bad_request(
            DelegationError::SelfDelegation.to_string(),
        ));
    }
    if task.trim().is_empty() {
        return Err(ApiError::bad_request(
            DelegationError::EmptyTask.to_string(),
        ));
    }
    if task.len() > MAX_TASK_BYTES {
        let error = DelegationError::TaskTooLarge {
            bytes: task.len(),
            max: MAX_TASK_BYTES,
        };
        return Err(ApiError::bad_request(error.to_string()));
    }
    Ok(())
}

fn metadata(caller: Caller) -> HashMap<String, String> {
    let actor = match caller {
        Caller::Admin => "admin".to_string(),
        Caller::Workspace(id) => format!("workspace:{id}"),
    };
    HashMap::from([("actor".to_string(), actor)])
}

#[cfg(test)]
mod tests {
    //! Every body keeps the field order the service always wrote (sorted,
    //! as `serde_json` maps write them).

    use chrono::{DateTime, Utc};
    use serde::Serialize;
    use uuid::Uuid;

    use super::delegate::{DelegateAccepted, DelegateIdempotentHit};
    use super::reads::{DelegationDetail, DelegationListEntry, HistoryStep};
    use super::reports::{RecordAccepted, UpdateAccepted};

    /// `body` as sent, and as a `serde_json` map (sorted keys) writes it.
    fn as_sent_and_sorted(body: &impl Serialize) -> (String, String) {
        let sent = serde_json::to_string(body).expect("serializes");
        let sorted = serde_json::to_value(body).expect("serializes").to_string();
        (sent, sorted)
    }

    #[test]
    fn a_detail_keeps_its_sorted_field_order_and_leaves_out_what_it_lacks() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let detail = DelegationDetail {
            created_at: at,
            deadline: None,
            delegation_id: Uuid::nil(),
            error: None,
            history: vec![HistoryStep {
                at: "1970-01-01T00:00:00.000000Z".into(),
                status: "dispatched".into(),
            }],
            queue_id: None,
            question: Some("which one?".into()),
            result: None,
            source_id: Uuid::nil(),
            status: "input_required".into(),
            target_id: Uuid::nil(),
            task: "t".into(),
            updated_at: at,
        };
        let (sent, sorted) = as_sent_and_sorted(&detail);
        assert_eq!(sent, sorted);
        for absent in ["deadline", "error", "queue_id", "result"] {
            assert!(!sent.contains(&format!("\"{absent}\"")), "{sent}");
        }
        assert!(sent.contains("\"question\":\"which one?\""), "{sent}");
    }

    #[test]
    fn a_list_entry_keeps_its_sorted_field_order_with_nulls_where_unknown() {
        let entry = DelegationListEntry {
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            delegation_id: None,
            error: None,
            id: Uuid::nil(),
            method: None,
            response_preview: Some("done".into()),
            source_id: None,
            status: None,
            summary: "s".into(),
            target_id: None,
            entry_type: "delegation",
        };
        let (sent, sorted) = as_sent_and_sorted(&entry);
        assert_eq!(sent, sorted);
        assert!(sent.contains("\"method\":null"), "{sent}");
        assert!(!sent.contains("\"error\""), "{sent}");
        assert!(sent.ends_with("\"type\":\"delegation\"}"), "{sent}");
    }

    #[test]
    fn command_answers_keep_their_sorted_field_order() {
        let id = Uuid::nil();
        for (sent, sorted) in [
            as_sent_and_sorted(&DelegateAccepted {
                delegation_id: id,
                status: "delegated",
                target_id: id,
            }),
            as_sent_and_sorted(&DelegateIdempotentHit {
                delegation_id: id,
                idempotent_hit: true,
                status: None,
                target_id: id,
            }),
            as_sent_and_sorted(&RecordAccepted {
                delegation_id: id,
                status: "recorded",
            }),
            as_sent_and_sorted(&UpdateAccepted {
                delegation_id: id,
                status: None,
            }),
        ] {
            assert_eq!(sent, sorted);
        }
    }
}
