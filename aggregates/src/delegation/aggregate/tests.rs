//! Given/when/then tests of the delegation state machine. Every time is a
//! fixed instant; nothing reads a clock.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;

type DelegationTest = TestFramework<Delegation>;

const DELEGATION: Uuid = Uuid::from_u128(0xd1);
const SOURCE: Uuid = Uuid::from_u128(0x51);
const TARGET: Uuid = Uuid::from_u128(0x71);
const QUEUE: Uuid = Uuid::from_u128(0x91);

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// `t0` plus `seconds`.
fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

fn source_actor() -> Actor {
    Actor::Workspace(SOURCE)
}

fn target_actor() -> Actor {
    Actor::Workspace(TARGET)
}

fn dispatcher() -> Actor {
    Actor::System("dispatcher".to_string())
}

fn send(origin: Origin, task: &str) -> DelegationCommand {
    DelegationCommand::Send {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        task: task.to_string(),
        origin,
        idempotency_key: Some("key-1".to_string()),
        queue: Default::default(),
        deadline: None,
        actor: source_actor(),
        at: t0(),
    }
}

fn sent(origin: Origin, task: &str) -> DelegationEvent {
    DelegationEvent::DelegationSent {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        task: task.to_string(),
        task_preview: preview(task, TASK_PREVIEW_CHARS),
        origin,
        idempotency_key: Some("key-1".to_string()),
        queue: Default::default(),
        deadline: None,
        actor: source_actor(),
        at: t0(),
    }
}

fn update(update: StatusUpdate, seconds: i64) -> DelegationCommand {
    DelegationCommand::UpdateStatus {
        update,
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn dispatched(attempt: u32, remote_task_id: Option<&str>, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationDispatched {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        attempt,
        remote_task_id: remote_task_id.map(str::to_string),
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn queued(queue_id: Option<Uuid>, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationQueued {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        queue_id,
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn received(seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationReceived {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn in_progress(seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationInProgress {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn completed(result: &str, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationCompleted {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        result: result.to_string(),
        response_preview: preview(result, RESPONSE_PREVIEW_CHARS),
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn failed(error: &str, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationFailed {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        error: error.to_string(),
        actor: dispatcher(),
        at: at(seconds),
    }
}

/// Events that bring a managed delegation to `status`. Dispatched and
/// queued are reached with no attempt yet recorded for queued, one for
/// dispatched.
fn history_to(status: DelegationStatus) -> Vec<DelegationEvent> {
    let mut events = vec![sent(Origin::Managed, "summarise the report")];
    match status {
        DelegationStatus::Pending => {}
        DelegationStatus::Dispatched => events.push(dispatched(1, Some("remote-1"), 1)),
        DelegationStatus::Queued => events.push(queued(Some(QUEUE), 1)),
        DelegationStatus::Received => events.extend([dispatched(1, None, 1), received(2)]),
        DelegationStatus::InProgress => {
            events.extend([dispatched(1, None, 1), received(2), in_progress(3)])
        }
        DelegationStatus::Completed => {
            events.extend([dispatched(1, None, 1), completed("done", 2)])
        }
        DelegationStatus::Failed => events.extend([dispatched(1, None, 1), failed("boom", 2)]),
        DelegationStatus::InputRequired => {
            events.extend([dispatched(1, None, 1), input_required("which file?", 2)])
        }
        DelegationStatus::Canceled => events.push(canceled("no longer needed", 2)),
    }
    events
}

fn input_required(question: &str, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationInputRequired {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        question: question.to_string(),
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn canceled(reason: &str, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationCanceled {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        reason: reason.to_string(),
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn attempted(attempt: u32, epoch: u64, seconds: i64) -> DelegationEvent {
    DelegationEvent::DelegationSendAttempted {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        attempt,
        epoch,
        actor: dispatcher(),
        at: at(seconds),
    }
}

fn fold(events: Vec<DelegationEvent>) -> Delegation {
    let mut delegation = Delegation::default();
    for event in events {
        delegation.apply(event);
    }
    delegation
}

// ---------------------------------------------------------------- Send

#[test]
fn a_managed_delegation_starts_pending() {
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, "summarise the report"))
        .then_expect_events(vec![sent(Origin::Managed, "summarise the report")]);
    let state = fold(vec![sent(Origin::Managed, "summarise the report")]);
    assert_eq!(state.status(), Some(DelegationStatus::Pending));
    assert_eq!(state.attempts(), 0);
}

#[test]
fn a_recorded_delegation_starts_dispatched() {
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Recorded, "summarise the report"))
        .then_expect_events(vec![sent(Origin::Recorded, "summarise the report")]);
    let state = fold(vec![sent(Origin::Recorded, "summarise the report")]);
    assert_eq!(state.status(), Some(DelegationStatus::Dispatched));
    assert_eq!(state.attempts(), 1, "the agent sent it once itself");
}

#[test]
fn the_task_preview_is_cut_to_100_characters_on_character_boundaries() {
    // 150 two-byte characters: a byte-based cut would split one.
    let task = "é".repeat(150);
    let events = DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, &task))
        .inspect_result()
        .expect("accepted");
    let [DelegationEvent::DelegationSent {
        task: full,
        task_preview,
        ..
    }] = events.as_slice()
    else {
        panic!("expected one DelegationSent, got {events:?}");
    };
    assert_eq!(full, &task);
    assert_eq!(task_preview, &"é".repeat(TASK_PREVIEW_CHARS));
}

#[test]
fn a_short_task_is_its_own_preview() {
    let events = DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, "short"))
        .inspect_result()
        .expect("accepted");
    assert!(matches!(
        events.as_slice(),
        [DelegationEvent::DelegationSent { task_preview, .. }] if task_preview == "short"
    ));
}

#[test]
fn delegating_to_oneself_is_rejected() {
    DelegationTest::with(())
        .given_no_previous_events()
        .when(DelegationCommand::Send {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: SOURCE,
            task: "talk to myself".to_string(),
            origin: Origin::Managed,
            idempotency_key: None,
            queue: Default::default(),
            deadline: None,
            actor: source_actor(),
            at: t0(),
        })
        .then_expect_error(DelegationError::SelfDelegation);
}

#[test]
fn an_empty_task_is_rejected() {
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, ""))
        .then_expect_error(DelegationError::EmptyTask);
}

#[test]
fn a_whitespace_only_task_is_rejected() {
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, " \n\t "))
        .then_expect_error(DelegationError::EmptyTask);
}

#[test]
fn a_task_over_64_kib_is_rejected() {
    let task = "a".repeat(MAX_TASK_BYTES + 1);
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, &task))
        .then_expect_error(DelegationError::TaskTooLarge {
            bytes: MAX_TASK_BYTES + 1,
            max: MAX_TASK_BYTES,
        });
}

#[test]
fn the_task_limit_counts_bytes_not_characters() {
    // Fewer characters than MAX_TASK_BYTES, but more bytes.
    let task = "é".repeat(MAX_TASK_BYTES / 2 + 1);
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, &task))
        .then_expect_error(DelegationError::TaskTooLarge {
            bytes: MAX_TASK_BYTES + 2,
            max: MAX_TASK_BYTES,
        });
}

#[test]
fn a_task_of_exactly_64_kib_is_accepted() {
    let task = "a".repeat(MAX_TASK_BYTES);
    DelegationTest::with(())
        .given_no_previous_events()
        .when(send(Origin::Managed, &task))
        .then_expect_events(vec![sent(Origin::Managed, &task)]);
}

#[test]
fn sending_the_same_delegation_again_is_a_no_op() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "summarise the report")])
        .when(send(Origin::Managed, "summarise the report"))
        .then_expect_events(vec![]);
}

#[test]
fn recording_the_same_delegation_twice_is_a_no_op() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Recorded, "summarise the report")])
        .when(send(Origin::Recorded, "summarise the report"))
        .then_expect_events(vec![]);
}

#[test]
fn resending_is_a_no_op_whatever_the_delegation_went_through_since() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Completed))
        .when(send(Origin::Managed, "summarise the report"))
        .then_expect_events(vec![]);
}

#[test]
fn sending_another_task_under_an_existing_id_is_rejected() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "summarise the report")])
        .when(send(Origin::Managed, "something else"))
        .then_expect_error(DelegationError::AlreadyExists);
}

#[test]
fn sending_with_another_origin_under_an_existing_id_is_rejected() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "summarise the report")])
        .when(send(Origin::Recorded, "summarise the report"))
        .then_expect_error(DelegationError::AlreadyExists);
}

#[test]
fn sending_between_other_workspaces_under_an_existing_id_is_rejected() {
    let other = Uuid::from_u128(0x99);
    for (source_id, target_id) in [(other, TARGET), (SOURCE, other)] {
        DelegationTest::with(())
            .given(vec![sent(Origin::Managed, "summarise the report")])
            .when(DelegationCommand::Send {
                delegation_id: DELEGATION,
                source_id,
                target_id,
                task: "summarise the report".to_string(),
                origin: Origin::Managed,
                idempotency_key: Some("key-1".to_string()),
                queue: Default::default(),
                deadline: None,
                actor: source_actor(),
                at: t0(),
            })
            .then_expect_error(DelegationError::AlreadyExists);
    }
}

// ------------------------------------------------------- UpdateStatus

#[test]
fn updating_a_delegation_that_was_never_sent_is_not_found() {
    let updates = [
        StatusUpdate::Dispatched {
            remote_task_id: None,
        },
        StatusUpdate::Received,
        StatusUpdate::InProgress,
        StatusUpdate::Queued { queue_id: None },
        StatusUpdate::Completed {
            result: "done".to_string(),
        },
        StatusUpdate::Failed {
            error: "boom".to_string(),
        },
    ];
    for status_update in updates {
        DelegationTest::with(())
            .given_no_previous_events()
            .when(update(status_update, 1))
            .then_expect_error(DelegationError::NotFound);
    }
}

#[test]
fn dispatching_a_pending_delegation_is_attempt_one() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Pending))
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-1".to_string()),
            },
            1,
        ))
        .then_expect_events(vec![dispatched(1, Some("remote-1"), 1)]);
}

#[test]
fn re_dispatching_a_queued_delegation_counts_another_attempt() {
    DelegationTest::with(())
        .given(vec![
            sent(Origin::Managed, "summarise the report"),
            dispatched(1, None, 1),
            queued(Some(QUEUE), 2),
        ])
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            3,
        ))
        .then_expect_events(vec![dispatched(2, None, 3)]);
}

#[test]
fn attempts_keep_counting_across_queue_round_trips() {
    let mut given = vec![sent(Origin::Managed, "summarise the report")];
    for attempt in 1..=4 {
        let seconds = i64::from(attempt) * 10;
        DelegationTest::with(())
            .given(given.clone())
            .when(update(
                StatusUpdate::Dispatched {
                    remote_task_id: None,
                },
                seconds,
            ))
            .then_expect_events(vec![dispatched(attempt, None, seconds)]);
        given.extend([
            dispatched(attempt, None, seconds),
            queued(None, seconds + 1),
        ]);
    }
    assert_eq!(fold(given).attempts(), 4);
}

#[test]
fn re_dispatching_a_queued_recorded_delegation_is_its_second_attempt() {
    DelegationTest::with(())
        .given(vec![
            sent(Origin::Recorded, "summarise the report"),
            queued(None, 1),
        ])
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            2,
        ))
        .then_expect_events(vec![dispatched(2, None, 2)]);
}

#[test]
fn reporting_the_remote_task_id_of_a_dispatched_delegation_keeps_the_attempt() {
    DelegationTest::with(())
        .given(vec![
            sent(Origin::Managed, "summarise the report"),
            dispatched(1, None, 1),
        ])
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-1".to_string()),
            },
            2,
        ))
        .then_expect_events(vec![dispatched(1, Some("remote-1"), 2)]);
}

#[test]
fn a_recorded_delegation_can_report_its_remote_task_id_as_attempt_one() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Recorded, "summarise the report")])
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-1".to_string()),
            },
            1,
        ))
        .then_expect_events(vec![dispatched(1, Some("remote-1"), 1)]);
}

#[test]
fn a_changed_remote_task_id_is_recorded_again() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-2".to_string()),
            },
            5,
        ))
        .then_expect_events(vec![dispatched(1, Some("remote-2"), 5)]);
}

#[test]
fn repeating_dispatched_with_the_same_remote_task_id_is_a_no_op() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-1".to_string()),
            },
            5,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn repeating_dispatched_without_a_remote_task_id_is_a_no_op() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            5,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn repeating_a_non_terminal_status_is_a_no_op() {
    let repeats = [
        (
            DelegationStatus::Queued,
            StatusUpdate::Queued {
                queue_id: Some(QUEUE),
            },
        ),
        // Even with another queue item: the first report stands.
        (
            DelegationStatus::Queued,
            StatusUpdate::Queued {
                queue_id: Some(Uuid::from_u128(0x92)),
            },
        ),
        (DelegationStatus::Received, StatusUpdate::Received),
        (DelegationStatus::InProgress, StatusUpdate::InProgress),
    ];
    for (status, status_update) in repeats {
        DelegationTest::with(())
            .given(history_to(status))
            .when(update(status_update, 9))
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_pending_delegation_can_be_queued() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Pending))
        .when(update(
            StatusUpdate::Queued {
                queue_id: Some(QUEUE),
            },
            1,
        ))
        .then_expect_events(vec![queued(Some(QUEUE), 1)]);
}

#[test]
fn a_dispatched_delegation_moves_through_received_and_in_progress_to_completed() {
    let mut given = history_to(DelegationStatus::Dispatched);
    let steps = [
        (StatusUpdate::Received, received(2)),
        (StatusUpdate::InProgress, in_progress(3)),
        (
            StatusUpdate::Completed {
                result: "done".to_string(),
            },
            completed("done", 4),
        ),
    ];
    for (seconds, (status_update, event)) in (2..).zip(steps) {
        DelegationTest::with(())
            .given(given.clone())
            .when(update(status_update, seconds))
            .then_expect_events(vec![event.clone()]);
        given.push(event);
    }
    assert_eq!(fold(given).status(), Some(DelegationStatus::Completed));
}

#[test]
fn completing_records_a_300_character_preview_cut_on_character_boundaries() {
    // 400 three-byte characters.
    let result = "€".repeat(400);
    let events = DelegationTest::with(())
        .given(history_to(DelegationStatus::InProgress))
        .when(update(
            StatusUpdate::Completed {
                result: result.clone(),
            },
            9,
        ))
        .inspect_result()
        .expect("accepted");
    let [DelegationEvent::DelegationCompleted {
        result: full,
        response_preview,
        ..
    }] = events.as_slice()
    else {
        panic!("expected one DelegationCompleted, got {events:?}");
    };
    assert_eq!(full, &result);
    assert_eq!(response_preview, &"€".repeat(RESPONSE_PREVIEW_CHARS));
}

#[test]
fn any_live_delegation_can_fail() {
    for status in [
        DelegationStatus::Pending,
        DelegationStatus::Dispatched,
        DelegationStatus::Queued,
        DelegationStatus::Received,
        DelegationStatus::InProgress,
    ] {
        DelegationTest::with(())
            .given(history_to(status))
            .when(update(
                StatusUpdate::Failed {
                    error: "target unreachable".to_string(),
                },
                9,
            ))
            .then_expect_events(vec![failed("target unreachable", 9)]);
    }
}

#[test]
fn a_received_delegation_cannot_be_dispatched_again() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Received))
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            9,
        ))
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::Received,
            to: DelegationStatus::Dispatched,
        });
}

#[test]
fn a_received_delegation_cannot_be_queued() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Received))
        .when(update(StatusUpdate::Queued { queue_id: None }, 9))
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::Received,
            to: DelegationStatus::Queued,
        });
}

#[test]
fn an_in_progress_delegation_cannot_go_back_to_received() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::InProgress))
        .when(update(StatusUpdate::Received, 9))
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::InProgress,
            to: DelegationStatus::Received,
        });
}

#[test]
fn completing_a_completed_delegation_with_the_same_result_is_a_no_op() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Completed))
        .when(update(
            StatusUpdate::Completed {
                result: "done".to_string(),
            },
            9,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn completing_a_completed_delegation_with_other_content_is_a_conflict() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Completed))
        .when(update(
            StatusUpdate::Completed {
                result: "done differently".to_string(),
            },
            9,
        ))
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Completed,
        });
}

#[test]
fn failing_a_failed_delegation_with_the_same_error_is_a_no_op() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Failed))
        .when(update(
            StatusUpdate::Failed {
                error: "boom".to_string(),
            },
            9,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn failing_a_failed_delegation_with_another_error_is_a_conflict() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Failed))
        .when(update(
            StatusUpdate::Failed {
                error: "another boom".to_string(),
            },
            9,
        ))
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Failed,
        });
}

#[test]
fn failing_a_completed_delegation_is_a_conflict() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Completed))
        .when(update(
            StatusUpdate::Failed {
                error: "done".to_string(),
            },
            9,
        ))
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Completed,
        });
}

#[test]
fn completing_a_failed_delegation_is_a_conflict() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Failed))
        .when(update(
            StatusUpdate::Completed {
                result: "boom".to_string(),
            },
            9,
        ))
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Failed,
        });
}

#[test]
fn a_finished_delegation_accepts_no_progress_report() {
    for status in [DelegationStatus::Completed, DelegationStatus::Failed] {
        for status_update in [
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-9".to_string()),
            },
            StatusUpdate::Received,
            StatusUpdate::InProgress,
            StatusUpdate::Queued { queue_id: None },
        ] {
            DelegationTest::with(())
                .given(history_to(status))
                .when(update(status_update, 9))
                .then_expect_error(DelegationError::TerminalConflict { current: status });
        }
    }
}

/// The transition table of the brief, written out independently of the
/// implementation: (from, allowed targets).
fn allowed_targets(from: DelegationStatus) -> &'static [DelegationStatus] {
    use DelegationStatus::*;
    match from {
        Pending => &[
            Dispatched, Queued, Received, InProgress, Completed, Failed, Canceled,
        ],
        Dispatched => &[
            Queued,
            Received,
            InProgress,
            InputRequired,
            Completed,
            Failed,
            Canceled,
        ],
        Queued => &[
            Dispatched,
            Received,
            InProgress,
            InputRequired,
            Completed,
            Failed,
            Canceled,
        ],
        Received => &[InProgress, InputRequired, Completed, Failed, Canceled],
        InProgress => &[InputRequired, Completed, Failed, Canceled],
        InputRequired => &[Received, InProgress, Completed, Failed, Canceled],
        Completed | Failed | Canceled => &[],
    }
}

const ALL_STATUSES: [DelegationStatus; 9] = DelegationStatus::ALL;

/// An update to `to` whose content differs from anything in `history_to`,
/// and the event it must cause when allowed (`attempts` before it).
fn update_to(to: DelegationStatus, attempts: u32) -> Option<(StatusUpdate, DelegationEvent)> {
    const AT: i64 = 100;
    Some(match to {
        DelegationStatus::Pending => return None,
        DelegationStatus::Dispatched => (
            StatusUpdate::Dispatched {
                remote_task_id: Some("remote-new".to_string()),
            },
            dispatched(attempts + 1, Some("remote-new"), AT),
        ),
        DelegationStatus::Queued => (
            StatusUpdate::Queued {
                queue_id: Some(QUEUE),
            },
            queued(Some(QUEUE), AT),
        ),
        DelegationStatus::Received => (StatusUpdate::Received, received(AT)),
        DelegationStatus::InProgress => (StatusUpdate::InProgress, in_progress(AT)),
        DelegationStatus::Completed => (
            StatusUpdate::Completed {
                result: "new result".to_string(),
            },
            completed("new result", AT),
        ),
        DelegationStatus::Failed => (
            StatusUpdate::Failed {
                error: "new error".to_string(),
            },
            failed("new error", AT),
        ),
        DelegationStatus::InputRequired => (
            StatusUpdate::InputRequired {
                question: "a new question".to_string(),
            },
            input_required("a new question", AT),
        ),
        DelegationStatus::Canceled => (
            StatusUpdate::Canceled {
                reason: "a new reason".to_string(),
            },
            canceled("a new reason", AT),
        ),
    })
}

#[test]
fn every_transition_follows_the_table() {
    let mut checked = 0;
    for from in ALL_STATUSES {
        let given = history_to(from);
        let attempts = fold(given.clone()).attempts();
        for to in ALL_STATUSES {
            let Some((status_update, event)) = update_to(to, attempts) else {
                continue; // nothing can ask for `pending`
            };
            let result = DelegationTest::with(())
                .given(given.clone())
                .when(update(status_update, 100))
                .inspect_result();
            let expected = if from.is_terminal() {
                Err(DelegationError::TerminalConflict { current: from })
            } else if from == to {
                // Only dispatched → dispatched with a new remote task id
                // writes (it keeps the attempt number), and a new question
                // of a waiting target.
                Ok(match to {
                    DelegationStatus::Dispatched => {
                        vec![dispatched(attempts, Some("remote-new"), 100)]
                    }
                    DelegationStatus::InputRequired => vec![event],
                    _ => vec![],
                })
            } else if allowed_targets(from).contains(&to) {
                Ok(vec![event])
            } else {
                Err(DelegationError::InvalidTransition { from, to })
            };
            assert_eq!(result, expected, "{from} → {to}");
            if let Ok(events) = &result {
                for event in events {
                    assert_eq!(event.status(), Some(to), "{from} → {to}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 9 * 8);
}

// ------------------------------------------------- Attempts and fencing

fn attempt(epoch: u64, seconds: i64) -> DelegationCommand {
    DelegationCommand::AttemptSend {
        epoch,
        actor: dispatcher(),
        at: at(seconds),
    }
}

#[test]
fn a_send_attempt_is_recorded_before_the_send_without_changing_the_status() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Pending))
        .when(attempt(3, 1))
        .then_expect_events(vec![attempted(1, 3, 1)]);
    let state = fold(vec![sent(Origin::Managed, "t"), attempted(1, 3, 1)]);
    assert_eq!(state.status(), Some(DelegationStatus::Pending));
    assert!(state.send_unacknowledged());
    assert_eq!(state.epoch(), Some(3));
    assert_eq!(state.history().len(), 1);
}

#[test]
fn an_acknowledgement_settles_the_latest_attempt() {
    let state = fold(vec![
        sent(Origin::Managed, "t"),
        attempted(1, 3, 1),
        attempted(2, 3, 2),
    ]);
    assert!(state.send_unacknowledged());
    DelegationTest::with(())
        .given(vec![
            sent(Origin::Managed, "t"),
            attempted(1, 3, 1),
            attempted(2, 3, 2),
        ])
        .when(update(
            StatusUpdate::Dispatched {
                remote_task_id: Some("r".to_string()),
            },
            3,
        ))
        .then_expect_events(vec![dispatched(2, Some("r"), 3)]);
    let acknowledged = fold(vec![
        sent(Origin::Managed, "t"),
        attempted(1, 3, 1),
        attempted(2, 3, 2),
        dispatched(2, Some("r"), 3),
    ]);
    assert!(!acknowledged.send_unacknowledged());
}

#[test]
fn a_deposed_leaders_attempt_is_rejected() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "t"), attempted(1, 5, 1)])
        .when(attempt(4, 2))
        .then_expect_error(DelegationError::Superseded {
            epoch: 4,
            current: 5,
        });
}

#[test]
fn nothing_is_attempted_once_acknowledged_or_finished() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::InProgress))
        .when(attempt(1, 10))
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::InProgress,
            to: DelegationStatus::Dispatched,
        });
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Canceled))
        .when(attempt(1, 10))
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Canceled,
        });
}

// ----------------------------------------------- Input, cancel, deadline

#[test]
fn a_question_is_kept_while_the_target_waits_and_dropped_when_it_goes_on() {
    let waiting = fold(history_to(DelegationStatus::InputRequired));
    assert_eq!(waiting.question(), Some("which file?"));
    let mut events = history_to(DelegationStatus::InputRequired);
    events.push(in_progress(5));
    assert_eq!(fold(events).question(), None);
}

#[test]
fn the_caller_cancels_a_live_delegation() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(DelegationCommand::Cancel {
            source: SOURCE,
            reason: "no longer needed".to_string(),
            actor: dispatcher(),
            at: at(2),
        })
        .then_expect_events(vec![canceled("no longer needed", 2)]);
    let state = fold(history_to(DelegationStatus::Canceled));
    assert_eq!(state.status(), Some(DelegationStatus::Canceled));
    assert_eq!(state.cancel_reason(), Some("no longer needed"));
    assert!(DelegationStatus::Canceled.is_terminal());
}

#[test]
fn cancelling_a_finished_delegation_is_a_conflict() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Completed))
        .when(DelegationCommand::Cancel {
            source: SOURCE,
            reason: "too late".to_string(),
            actor: source_actor(),
            at: at(9),
        })
        .then_expect_error(DelegationError::TerminalConflict {
            current: DelegationStatus::Completed,
        });
}

#[test]
fn only_the_source_can_cancel_to_anyone_else_the_delegation_does_not_exist() {
    for workspace in [TARGET, Uuid::from_u128(0x99)] {
        DelegationTest::with(())
            .given(history_to(DelegationStatus::Dispatched))
            .when(DelegationCommand::Cancel {
                source: workspace,
                reason: "not mine to cancel".to_string(),
                actor: Actor::Workspace(workspace),
                at: at(2),
            })
            .then_expect_error(DelegationError::NotFound);
    }
}

#[test]
fn either_party_reports_progress_and_a_stranger_is_told_it_does_not_exist() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(DelegationCommand::ReportStatus {
            party: TARGET,
            update: StatusUpdate::Received,
            actor: target_actor(),
            at: at(42),
        })
        .then_expect_events(vec![DelegationEvent::DelegationReceived {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: target_actor(),
            at: at(42),
        }]);
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(DelegationCommand::ReportStatus {
            party: SOURCE,
            update: StatusUpdate::Completed {
                result: "done".to_string(),
            },
            actor: dispatcher(),
            at: at(1),
        })
        .then_expect_events(vec![completed("done", 1)]);
    let stranger = Uuid::from_u128(0x99);
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(DelegationCommand::ReportStatus {
            party: stranger,
            update: StatusUpdate::Received,
            actor: Actor::Workspace(stranger),
            at: at(42),
        })
        .then_expect_error(DelegationError::NotFound);
    DelegationTest::with(())
        .given(Vec::new())
        .when(DelegationCommand::ReportStatus {
            party: SOURCE,
            update: StatusUpdate::Received,
            actor: source_actor(),
            at: at(42),
        })
        .then_expect_error(DelegationError::NotFound);
}

fn with_deadline(seconds: i64) -> DelegationEvent {
    let DelegationEvent::DelegationSent {
        delegation_id,
        source_id,
        target_id,
        task,
        task_preview,
        origin,
        idempotency_key,
        queue,
        actor,
        at: sent_at,
        ..
    } = sent(Origin::Managed, "t")
    else {
        unreachable!("sent() builds a DelegationSent")
    };
    DelegationEvent::DelegationSent {
        delegation_id,
        source_id,
        target_id,
        task,
        task_preview,
        origin,
        idempotency_key,
        queue,
        deadline: Some(at(seconds)),
        actor,
        at: sent_at,
    }
}

#[test]
fn a_delegation_past_its_deadline_fails_with_deadline_exceeded() {
    DelegationTest::with(())
        .given(vec![with_deadline(60), dispatched(1, Some("r"), 1)])
        .when(DelegationCommand::ExpireDeadline {
            actor: dispatcher(),
            at: at(60),
        })
        .then_expect_events(vec![DelegationEvent::DelegationFailed {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            error: DEADLINE_EXCEEDED.to_string(),
            actor: dispatcher(),
            at: at(60),
        }]);
}

#[test]
fn the_deadline_does_nothing_before_it_passes_or_after_the_end() {
    DelegationTest::with(())
        .given(vec![with_deadline(60)])
        .when(DelegationCommand::ExpireDeadline {
            actor: dispatcher(),
            at: at(59),
        })
        .then_expect_events(vec![]);
    DelegationTest::with(())
        .given(vec![with_deadline(60), completed("done", 5)])
        .when(DelegationCommand::ExpireDeadline {
            actor: dispatcher(),
            at: at(61),
        })
        .then_expect_events(vec![]);
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Pending))
        .when(DelegationCommand::ExpireDeadline {
            actor: dispatcher(),
            at: at(10_000),
        })
        .then_expect_events(vec![]);
}

#[test]
fn status_names_round_trip() {
    for status in DelegationStatus::ALL {
        assert_eq!(DelegationStatus::from_name(status.as_str()), Some(status));
    }
    assert_eq!(DelegationStatus::from_name("paused"), None);
}

// ---------------------------------------------------------------- State

#[test]
fn the_state_folds_every_event() {
    let state = fold(vec![
        sent(Origin::Managed, "summarise the report"),
        dispatched(1, None, 1),
        queued(Some(QUEUE), 2),
        dispatched(2, None, 3),
        dispatched(2, Some("remote-2"), 4),
        received(5),
        in_progress(6),
        completed("done", 7),
    ]);
    assert_eq!(state.status(), Some(DelegationStatus::Completed));
    assert_eq!(state.delegation_id(), DELEGATION);
    assert_eq!(state.source_id(), SOURCE);
    assert_eq!(state.target_id(), TARGET);
    assert_eq!(state.task(), "summarise the report");
    assert_eq!(state.origin(), Some(Origin::Managed));
    assert_eq!(state.idempotency_key(), Some("key-1"));
    assert_eq!(state.attempts(), 2);
    assert_eq!(state.remote_task_id(), Some("remote-2"));
    assert_eq!(state.queue_id(), Some(QUEUE));
    assert_eq!(state.result(), Some("done"));
    assert_eq!(state.error(), None);
    assert_eq!(state.created_at(), Some(t0()));
    assert_eq!(state.updated_at(), Some(at(7)));
    assert_eq!(
        state.history(),
        &[
            (DelegationStatus::Pending, t0()),
            (DelegationStatus::Dispatched, at(1)),
            (DelegationStatus::Queued, at(2)),
            (DelegationStatus::Dispatched, at(3)),
            (DelegationStatus::Received, at(5)),
            (DelegationStatus::InProgress, at(6)),
            (DelegationStatus::Completed, at(7)),
        ]
    );
}

#[test]
fn a_failed_delegation_keeps_its_error() {
    let state = fold(history_to(DelegationStatus::Failed));
    assert_eq!(state.status(), Some(DelegationStatus::Failed));
    assert_eq!(state.error(), Some("boom"));
    assert_eq!(state.result(), None);
}

#[test]
fn a_delegation_that_was_never_sent_has_no_status() {
    let state = Delegation::default();
    assert_eq!(state.status(), None);
    assert_eq!(state.created_at(), None);
    assert!(state.history().is_empty());
}

#[test]
fn the_state_survives_a_json_round_trip() {
    let state = fold(history_to(DelegationStatus::InProgress));
    let json = serde_json::to_string(&state).expect("serialize");
    let back: Delegation = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, state);
}

// ---------------------------------------------------------------- Errors

#[test]
fn transition_errors_tell_the_current_status() {
    let invalid = DelegationError::InvalidTransition {
        from: DelegationStatus::Received,
        to: DelegationStatus::Queued,
    };
    assert_eq!(invalid.current_status(), Some(DelegationStatus::Received));
    let conflict = DelegationError::TerminalConflict {
        current: DelegationStatus::Completed,
    };
    assert_eq!(conflict.current_status(), Some(DelegationStatus::Completed));
    assert_eq!(DelegationError::NotFound.current_status(), None);
    assert_eq!(DelegationError::AlreadyExists.current_status(), None);
}

#[test]
fn errors_read_as_sentences() {
    assert_eq!(
        DelegationError::InvalidTransition {
            from: DelegationStatus::InProgress,
            to: DelegationStatus::Queued,
        }
        .to_string(),
        "a delegation cannot move from in_progress to queued"
    );
    assert_eq!(
        DelegationError::TaskTooLarge {
            bytes: 70_000,
            max: MAX_TASK_BYTES
        }
        .to_string(),
        "the task is 70000 bytes long; at most 65536 bytes are allowed"
    );
}

// ---------------------------------------------------------------- Serde

#[test]
fn every_event_survives_a_json_round_trip() {
    let events = vec![
        sent(Origin::Managed, "summarise the report"),
        sent(Origin::Recorded, "summarise the report"),
        dispatched(1, Some("remote-1"), 1),
        dispatched(2, None, 2),
        queued(Some(QUEUE), 3),
        queued(None, 3),
        received(4),
        in_progress(5),
        completed("done", 6),
        failed("boom", 7),
        attempted(1, 2, 8),
        input_required("which?", 9),
        canceled("not needed", 10),
        with_deadline(60),
    ];
    for event in events {
        let json = serde_json::to_value(&event).expect("serialize");
        assert!(
            json.get(event.event_type()).is_some(),
            "externally tagged by event type: {json}"
        );
        let back: DelegationEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }
}

#[test]
fn a_sent_event_without_a_deadline_serializes_as_before_the_field_existed() {
    let json = serde_json::to_value(sent(Origin::Managed, "t")).expect("serialize");
    assert!(json["DelegationSent"].get("deadline").is_none(), "{json}");
}

#[test]
fn events_carry_type_and_version() {
    let event = completed("done", 1);
    assert_eq!(event.event_type(), "DelegationCompleted");
    assert_eq!(event.event_version(), "1.0");
    assert_eq!(event.delegation_id(), DELEGATION);
    assert_eq!(event.parties(), (SOURCE, TARGET));
}

#[test]
fn progress_events_record_who_reported_them() {
    DelegationTest::with(())
        .given(history_to(DelegationStatus::Dispatched))
        .when(DelegationCommand::UpdateStatus {
            update: StatusUpdate::Received,
            actor: target_actor(),
            at: at(42),
        })
        .then_expect_events(vec![DelegationEvent::DelegationReceived {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: target_actor(),
            at: at(42),
        }]);
}

// ------------------------------------------------------------ dispatch steps

#[test]
fn an_acknowledged_send_is_recorded_as_several_steps_in_one_decision() {
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "task")])
        .when(DelegationCommand::UpdateStatuses {
            updates: vec![
                StatusUpdate::Dispatched {
                    remote_task_id: Some("t-1".into()),
                },
                StatusUpdate::InProgress,
            ],
            actor: dispatcher(),
            at: at(1),
        })
        .then_expect_events(vec![dispatched(1, Some("t-1"), 1), in_progress(1)]);
}

#[test]
fn a_multi_step_record_is_all_or_nothing() {
    // The second step is not allowed after the first: nothing is recorded.
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "task")])
        .when(DelegationCommand::UpdateStatuses {
            updates: vec![StatusUpdate::InProgress, StatusUpdate::Received],
            actor: dispatcher(),
            at: at(1),
        })
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::InProgress,
            to: DelegationStatus::Received,
        });
}

#[test]
fn a_pending_delegation_is_delivered_to_a_polling_inbox_once() {
    let delivered = DelegationEvent::DelegationDeliveredToInbox {
        delegation_id: DELEGATION,
        source_id: SOURCE,
        target_id: TARGET,
        task: "task".into(),
        actor: dispatcher(),
        at: at(1),
    };
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "task")])
        .when(DelegationCommand::DeliverToInbox {
            actor: dispatcher(),
            at: at(1),
        })
        .then_expect_events(vec![delivered.clone()]);
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "task"), delivered])
        .when(DelegationCommand::DeliverToInbox {
            actor: dispatcher(),
            at: at(2),
        })
        .then_expect_events(vec![]);
    DelegationTest::with(())
        .given(vec![sent(Origin::Managed, "task"), queued(Some(QUEUE), 1)])
        .when(DelegationCommand::DeliverToInbox {
            actor: dispatcher(),
            at: at(2),
        })
        .then_expect_error(DelegationError::InvalidTransition {
            from: DelegationStatus::Queued,
            to: DelegationStatus::Dispatched,
        });
}

#[test]
fn queue_options_travel_on_the_sent_event_and_a_resend_with_other_options_is_rejected() {
    let options = QueueOptions {
        priority: crate::queue_item::Priority::Critical,
        expires_in_seconds: Some(30),
    };
    let mut command = send(Origin::Managed, "task");
    let mut event = sent(Origin::Managed, "task");
    if let (
        DelegationCommand::Send { queue, .. },
        DelegationEvent::DelegationSent {
            queue: sent_queue, ..
        },
    ) = (&mut command, &mut event)
    {
        *queue = options;
        *sent_queue = options;
    }
    DelegationTest::with(())
        .given_no_previous_events()
        .when(command)
        .then_expect_events(vec![event.clone()]);
    DelegationTest::with(())
        .given(vec![event])
        .when(send(Origin::Managed, "task"))
        .then_expect_error(DelegationError::AlreadyExists);
    // Default options are left out of the stored event entirely.
    let stored = serde_json::to_value(sent(Origin::Managed, "task")).expect("json");
    assert!(stored["DelegationSent"].get("queue").is_none(), "{stored}");
}
