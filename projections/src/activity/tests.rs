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
