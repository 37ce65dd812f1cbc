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
