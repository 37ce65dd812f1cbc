//! Given/when/then tests of the queue item state machine. Every time is a
//! fixed instant; nothing reads a clock.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::delegation::Outcome;

type QueueItemTest = TestFramework<QueueItem>;

const QUEUE: Uuid = Uuid::from_u128(0x91);
const TARGET: Uuid = Uuid::from_u128(0x71);
const CALLER: Uuid = Uuid::from_u128(0x51);
const DELEGATION: Uuid = Uuid::from_u128(0xd1);

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// `t0` plus `seconds`.
fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// Items in these tests expire an hour after `t0`.
const EXPIRES_IN: i64 = 3600;

fn enqueue(expires_at: Option<DateTime<Utc>>) -> QueueItemCommand {
    QueueItemCommand::Enqueue {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        priority: Priority::Critical,
        method: "message/send".to_string(),
        body: json!({"jsonrpc": "2.0", "method": "message/send", "params": {"text": "hi"}}),
        idempotency_key: Some("key-1".to_string()),
        expires_at,
        delegation_id: Some(DELEGATION),
        at: t0(),
    }
}

fn enqueued(expires_at: Option<DateTime<Utc>>) -> QueueItemEvent {
    QueueItemEvent::QueueItemEnqueued {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        priority: Priority::Critical,
        method: "message/send".to_string(),
        body: json!({"jsonrpc": "2.0", "method": "message/send", "params": {"text": "hi"}}),
        idempotency_key: Some("key-1".to_string()),
        expires_at,
        delegation_id: Some(DELEGATION),
        at: t0(),
    }
}

fn expiring() -> Option<DateTime<Utc>> {
    Some(at(EXPIRES_IN))
}

fn dispatched(attempt: u32, seconds: i64) -> QueueItemEvent {
    QueueItemEvent::QueueItemDispatched {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        delegation_id: Some(DELEGATION),
        attempt,
        at: at(seconds),
    }
}

fn requeued(attempt: u32, error: &str, seconds: i64) -> QueueItemEvent {
    QueueItemEvent::QueueItemRequeued {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        delegation_id: Some(DELEGATION),
        attempt,
        error: error.to_string(),
        at: at(seconds),
    }
}

fn failed(attempts: u32, error: &str, seconds: i64) -> QueueItemEvent {
    QueueItemEvent::QueueItemFailed {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        delegation_id: Some(DELEGATION),
        attempts,
        error: error.to_string(),
        at: at(seconds),
    }
}

fn completed(outcome: Outcome, seconds: i64) -> QueueItemEvent {
    QueueItemEvent::QueueItemCompleted {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        delegation_id: Some(DELEGATION),
        outcome,
        at: at(seconds),
    }
}

/// The agent's answer "ok".
fn answered() -> Outcome {
    Outcome::Completed {
        result: "ok".to_string(),
    }
}

fn expired(seconds: i64) -> QueueItemEvent {
    QueueItemEvent::QueueItemExpired {
        queue_id: QUEUE,
        target_id: TARGET,
        caller_id: CALLER,
        delegation_id: Some(DELEGATION),
        at: at(seconds),
    }
}

/// Events that bring an expiring item to `status`, after one attempt where
/// an attempt is needed.
fn history_to(status: QueueItemStatus) -> Vec<QueueItemEvent> {
    let mut events = vec![enqueued(expiring())];
    match status {
        QueueItemStatus::Queued => {}
        QueueItemStatus::Dispatched => events.push(dispatched(1, 10)),
        QueueItemStatus::Completed => events.extend([dispatched(1, 10), completed(answered(), 11)]),
        QueueItemStatus::Failed => {
            for attempt in 1..MAX_ATTEMPTS {
                let seconds = i64::from(attempt) * 10;
                events.extend([
                    dispatched(attempt, seconds),
                    requeued(attempt, "busy", seconds + 1),
                ]);
            }
            events.extend([
                dispatched(MAX_ATTEMPTS, 100),
                failed(MAX_ATTEMPTS, "busy", 101),
            ]);
        }
        QueueItemStatus::Expired => events.push(expired(EXPIRES_IN)),
    }
    events
}

fn fold(events: Vec<QueueItemEvent>) -> QueueItem {
    let mut item = QueueItem::default();
    for event in events {
        item.apply(event);
    }
    item
}

const ALL_STATUSES: [QueueItemStatus; 5] = [
    QueueItemStatus::Queued,
    QueueItemStatus::Dispatched,
    QueueItemStatus::Completed,
    QueueItemStatus::Failed,
    QueueItemStatus::Expired,
];

// ------------------------------------------------------------- Enqueue

#[test]
fn enqueuing_a_new_item_queues_it() {
    QueueItemTest::with(())
        .given_no_previous_events()
        .when(enqueue(expiring()))
        .then_expect_events(vec![enqueued(expiring())]);
    assert_eq!(
        fold(vec![enqueued(expiring())]).status(),
        Some(QueueItemStatus::Queued)
    );
}

#[test]
fn enqueuing_the_same_item_again_is_a_no_op() {
    for status in ALL_STATUSES {
        QueueItemTest::with(())
            .given(history_to(status))
            .when(enqueue(expiring()))
            .then_expect_events(vec![]);
    }
}

/// `enqueue(expiring())` with its fields changed by `change`.
fn enqueue_with(change: impl FnOnce(&mut QueueItemCommand)) -> QueueItemCommand {
    let mut command = enqueue(expiring());
    change(&mut command);
    command
}

#[test]
fn enqueuing_other_content_under_an_existing_id_is_rejected() {
    use QueueItemCommand::Enqueue;
    let other = Uuid::from_u128(0x99);
    let commands = [
        enqueue_with(|c| {
            if let Enqueue { queue_id, .. } = c {
                *queue_id = other
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { target_id, .. } = c {
                *target_id = other
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { caller_id, .. } = c {
                *caller_id = other
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { priority, .. } = c {
                *priority = Priority::Info
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { method, .. } = c {
                *method = "tasks/get".into()
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { body, .. } = c {
                *body = json!({})
            }
        }),
        enqueue_with(|c| {
            if let Enqueue {
                idempotency_key, ..
            } = c
            {
                *idempotency_key = None
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { expires_at, .. } = c {
                *expires_at = None
            }
        }),
        enqueue_with(|c| {
            if let Enqueue { delegation_id, .. } = c {
                *delegation_id = None
            }
        }),
    ];
    for command in commands {
        assert_ne!(command, enqueue(expiring()));
        QueueItemTest::with(())
            .given(vec![enqueued(expiring())])
            .when(command)
            .then_expect_error(QueueItemError::AlreadyExists);
    }
}

#[test]
fn enqueuing_again_at_another_time_is_still_the_same_item() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(enqueue_with(|c| {
            if let QueueItemCommand::Enqueue {
                at: enqueued_at, ..
            } = c
            {
                *enqueued_at = at(5);
            }
        }))
        .then_expect_events(vec![]);
}

#[test]
fn enqueuing_without_a_method_is_rejected() {
    for empty in ["", "   "] {
        QueueItemTest::with(())
            .given_no_previous_events()
            .when(enqueue_with(|c| {
                if let QueueItemCommand::Enqueue { method, .. } = c {
                    *method = empty.to_string();
                }
            }))
            .then_expect_error(QueueItemError::EmptyMethod);
    }
}

// ------------------------------------------------------------ NotFound

#[test]
fn acting_on_an_item_that_was_never_enqueued_is_not_found() {
    let commands = [
        QueueItemCommand::Claim { at: at(1) },
        QueueItemCommand::Complete {
            outcome: answered(),
            at: at(1),
        },
        QueueItemCommand::Fail {
            error: "busy".to_string(),
            at: at(1),
        },
        QueueItemCommand::Expire { at: at(1) },
        QueueItemCommand::Withdraw {
            reason: "gone".to_string(),
            at: at(1),
        },
    ];
    for command in commands {
        QueueItemTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(QueueItemError::NotFound);
    }
}

// ------------------------------------------------------------ Withdraw

#[test]
fn withdrawing_a_live_item_fails_it_with_the_reason() {
    for (status, attempts) in [
        (QueueItemStatus::Queued, 0),
        (QueueItemStatus::Dispatched, 1),
    ] {
        QueueItemTest::with(())
            .given(history_to(status))
            .when(QueueItemCommand::Withdraw {
                reason: "the delegation was canceled".to_string(),
                at: at(50),
            })
            .then_expect_events(vec![failed(attempts, "the delegation was canceled", 50)]);
    }
}

#[test]
fn withdrawing_an_ended_item_is_a_no_op() {
    for status in [
        QueueItemStatus::Completed,
        QueueItemStatus::Failed,
        QueueItemStatus::Expired,
    ] {
        QueueItemTest::with(())
            .given(history_to(status))
            .when(QueueItemCommand::Withdraw {
                reason: "late".to_string(),
                at: at(200),
            })
            .then_expect_events(vec![]);
    }
}

// --------------------------------------------------------------- Claim

#[test]
fn claiming_a_queued_item_dispatches_attempt_one() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Claim { at: at(10) })
        .then_expect_events(vec![dispatched(1, 10)]);
}

#[test]
fn claiming_a_requeued_item_counts_the_next_attempt() {
    QueueItemTest::with(())
        .given(vec![
            enqueued(expiring()),
            dispatched(1, 10),
            requeued(1, "busy", 11),
        ])
        .when(QueueItemCommand::Claim { at: at(20) })
        .then_expect_events(vec![dispatched(2, 20)]);
}

#[test]
fn claiming_an_item_that_is_not_queued_is_rejected() {
    for current in ALL_STATUSES {
        if current == QueueItemStatus::Queued {
            continue;
        }
        QueueItemTest::with(())
            .given(history_to(current))
            .when(QueueItemCommand::Claim { at: at(200) })
            .then_expect_error(QueueItemError::NotQueued { current });
    }
}

#[test]
fn claiming_just_before_expiry_dispatches() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Claim {
            at: at(EXPIRES_IN) - Duration::milliseconds(1),
        })
        .then_expect_events(vec![QueueItemEvent::QueueItemDispatched {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: CALLER,
            delegation_id: Some(DELEGATION),
            attempt: 1,
            at: at(EXPIRES_IN) - Duration::milliseconds(1),
        }]);
}

#[test]
fn claiming_at_the_expiry_time_is_rejected_as_expired() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Claim { at: at(EXPIRES_IN) })
        .then_expect_error(QueueItemError::Expired);
}

#[test]
fn claiming_after_the_expiry_time_is_rejected_as_expired() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Claim {
            at: at(EXPIRES_IN + 1),
        })
        .then_expect_error(QueueItemError::Expired);
}

#[test]
fn an_item_without_expiry_can_always_be_claimed() {
    QueueItemTest::with(())
        .given(vec![enqueued(None)])
        .when(QueueItemCommand::Claim {
            at: at(10 * 365 * 24 * 3600),
        })
        .then_expect_events(vec![dispatched(1, 10 * 365 * 24 * 3600)]);
}

// ------------------------------------------------------------ Complete

#[test]
fn completing_a_dispatched_item_records_its_outcome() {
    let outcomes = [
        answered(),
        Outcome::Failed {
            error: "the agent's task ended failed".to_string(),
        },
        Outcome::Canceled {
            reason: "the agent canceled its task".to_string(),
        },
    ];
    for outcome in outcomes {
        QueueItemTest::with(())
            .given(history_to(QueueItemStatus::Dispatched))
            .when(QueueItemCommand::Complete {
                outcome: outcome.clone(),
                at: at(11),
            })
            .then_expect_events(vec![completed(outcome, 11)]);
    }
}

#[test]
fn completing_an_item_that_is_not_dispatched_is_rejected() {
    for current in ALL_STATUSES {
        if current == QueueItemStatus::Dispatched {
            continue;
        }
        QueueItemTest::with(())
            .given(history_to(current))
            .when(QueueItemCommand::Complete {
                outcome: answered(),
                at: at(200),
            })
            .then_expect_error(QueueItemError::NotDispatched { current });
    }
}

// ---------------------------------------------------------------- Fail

#[test]
fn a_failed_attempt_with_attempts_left_requeues_the_item() {
    QueueItemTest::with(())
        .given(history_to(QueueItemStatus::Dispatched))
        .when(QueueItemCommand::Fail {
            error: "busy".to_string(),
            at: at(11),
        })
        .then_expect_events(vec![requeued(1, "busy", 11)]);
}

#[test]
fn the_fifth_failed_attempt_fails_the_item() {
    let mut given = vec![enqueued(expiring())];
    for attempt in 1..MAX_ATTEMPTS {
        let seconds = i64::from(attempt) * 10;
        given.extend([
            dispatched(attempt, seconds),
            requeued(attempt, "busy", seconds + 1),
        ]);
    }
    given.push(dispatched(MAX_ATTEMPTS, 100));
    QueueItemTest::with(())
        .given(given)
        .when(QueueItemCommand::Fail {
            error: "still busy".to_string(),
            at: at(101),
        })
        .then_expect_events(vec![failed(MAX_ATTEMPTS, "still busy", 101)]);
}

#[test]
fn an_item_gets_exactly_five_attempts() {
    let mut given = vec![enqueued(None)];
    for attempt in 1..=MAX_ATTEMPTS {
        let seconds = i64::from(attempt) * 10;
        let claim = QueueItemTest::with(())
            .given(given.clone())
            .when(QueueItemCommand::Claim { at: at(seconds) })
            .inspect_result()
            .expect("claimable");
        assert!(
            matches!(claim.as_slice(), [QueueItemEvent::QueueItemDispatched { attempt: a, .. }] if *a == attempt),
            "attempt {attempt}: {claim:?}"
        );
        given.extend(claim);
        let fail = QueueItemTest::with(())
            .given(given.clone())
            .when(QueueItemCommand::Fail {
                error: format!("failure {attempt}"),
                at: at(seconds + 1),
            })
            .inspect_result()
            .expect("failable");
        let requeued = matches!(fail.as_slice(), [QueueItemEvent::QueueItemRequeued { attempt: a, .. }] if *a == attempt);
        let failed = matches!(fail.as_slice(), [QueueItemEvent::QueueItemFailed { attempts, .. }] if *attempts == MAX_ATTEMPTS);
        if attempt < MAX_ATTEMPTS {
            assert!(requeued, "attempt {attempt}: {fail:?}");
        } else {
            assert!(failed, "attempt {attempt}: {fail:?}");
        }
        given.extend(fail);
    }
    let item = fold(given.clone());
    assert_eq!(item.status(), Some(QueueItemStatus::Failed));
    assert_eq!(item.attempts(), MAX_ATTEMPTS);
    assert_eq!(item.last_error(), Some("failure 5"));
    QueueItemTest::with(())
        .given(given)
        .when(QueueItemCommand::Claim { at: at(1000) })
        .then_expect_error(QueueItemError::NotQueued {
            current: QueueItemStatus::Failed,
        });
}

#[test]
fn failing_an_item_that_is_not_dispatched_is_rejected() {
    for current in ALL_STATUSES {
        if current == QueueItemStatus::Dispatched {
            continue;
        }
        QueueItemTest::with(())
            .given(history_to(current))
            .when(QueueItemCommand::Fail {
                error: "busy".to_string(),
                at: at(200),
            })
            .then_expect_error(QueueItemError::NotDispatched { current });
    }
}

// -------------------------------------------------------------- Expire

#[test]
fn expiring_a_queued_item_at_its_expiry_time() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Expire { at: at(EXPIRES_IN) })
        .then_expect_events(vec![expired(EXPIRES_IN)]);
}

#[test]
fn expiring_a_requeued_item_past_its_expiry_time() {
    QueueItemTest::with(())
        .given(vec![
            enqueued(expiring()),
            dispatched(1, 10),
            requeued(1, "busy", 11),
        ])
        .when(QueueItemCommand::Expire {
            at: at(EXPIRES_IN + 60),
        })
        .then_expect_events(vec![expired(EXPIRES_IN + 60)]);
}

#[test]
fn expiring_before_the_expiry_time_is_rejected() {
    QueueItemTest::with(())
        .given(vec![enqueued(expiring())])
        .when(QueueItemCommand::Expire {
            at: at(EXPIRES_IN) - Duration::milliseconds(1),
        })
        .then_expect_error(QueueItemError::NotYetExpired);
}

#[test]
fn an_item_without_expiry_never_expires() {
    QueueItemTest::with(())
        .given(vec![enqueued(None)])
        .when(QueueItemCommand::Expire {
            at: at(10 * 365 * 24 * 3600),
        })
        .then_expect_error(QueueItemError::NotYetExpired);
}

#[test]
fn expiring_an_item_that_is_not_queued_is_rejected() {
    for current in ALL_STATUSES {
        if current == QueueItemStatus::Queued {
            continue;
        }
        QueueItemTest::with(())
            .given(history_to(current))
            .when(QueueItemCommand::Expire {
                at: at(EXPIRES_IN + 1),
            })
            .then_expect_error(QueueItemError::NotQueued { current });
    }
}

// --------------------------------------------------------------- State

#[test]
fn the_state_folds_every_event() {
    let item = fold(vec![
        enqueued(expiring()),
        dispatched(1, 10),
        requeued(1, "busy", 11),
        dispatched(2, 20),
        completed(answered(), 21),
    ]);
    assert_eq!(item.status(), Some(QueueItemStatus::Completed));
    assert_eq!(item.queue_id(), QUEUE);
    assert_eq!(item.attempts(), 2);
    assert_eq!(item.priority(), Priority::Critical);
    assert_eq!(item.target_id(), TARGET);
    assert_eq!(item.caller_id(), CALLER);
    assert_eq!(item.delegation_id(), Some(DELEGATION));
    assert_eq!(item.method(), "message/send");
    assert_eq!(item.body()["params"]["text"], "hi");
    assert_eq!(item.idempotency_key(), Some("key-1"));
    assert_eq!(item.expires_at(), expiring());
    assert_eq!(item.enqueued_at(), Some(t0()));
    assert_eq!(item.dispatched_at(), Some(at(20)));
    assert_eq!(item.completed_at(), Some(at(21)));
    assert_eq!(item.last_error(), Some("busy"));
    assert_eq!(item.response_body(), Some(&json!({"text": "ok"})));
}

#[test]
fn the_state_shows_each_outcome_as_the_views_json() {
    let shown = |outcome| {
        let mut events = history_to(QueueItemStatus::Dispatched);
        events.push(completed(outcome, 11));
        fold(events).response_body().cloned()
    };
    assert_eq!(shown(answered()), Some(json!({"text": "ok"})));
    assert_eq!(
        shown(Outcome::Failed {
            error: "no".to_string()
        }),
        Some(json!({"error": "no"}))
    );
    assert_eq!(
        shown(Outcome::Canceled {
            reason: "stopped".to_string()
        }),
        None
    );
}

#[test]
fn an_expired_item_records_when_it_expired() {
    let item = fold(history_to(QueueItemStatus::Expired));
    assert_eq!(item.status(), Some(QueueItemStatus::Expired));
    assert_eq!(item.completed_at(), Some(at(EXPIRES_IN)));
    assert_eq!(item.attempts(), 0);
}

#[test]
fn an_item_that_was_never_enqueued_has_no_status() {
    let item = QueueItem::default();
    assert_eq!(item.status(), None);
    assert_eq!(item.enqueued_at(), None);
}

#[test]
fn the_state_survives_a_json_round_trip() {
    let item = fold(history_to(QueueItemStatus::Failed));
    let json = serde_json::to_string(&item).expect("serialize");
    let back: QueueItem = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, item);
}

// --------------------------------------------------------------- Serde

#[test]
fn every_event_survives_a_json_round_trip() {
    let events = vec![
        enqueued(expiring()),
        enqueued(None),
        dispatched(1, 10),
        completed(answered(), 11),
        completed(
            Outcome::Canceled {
                reason: "stopped".to_string(),
            },
            11,
        ),
        requeued(1, "busy", 11),
        failed(MAX_ATTEMPTS, "busy", 101),
        expired(EXPIRES_IN),
    ];
    for event in events {
        let json = serde_json::to_value(&event).expect("serialize");
        assert!(
            json.get(event.event_type()).is_some(),
            "externally tagged by event type: {json}"
        );
        let back: QueueItemEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
        let version = match event {
            QueueItemEvent::QueueItemCompleted { .. } => "1.1",
            _ => "1.0",
        };
        assert_eq!(event.event_version(), version);
    }
}

#[test]
fn errors_read_as_sentences() {
    assert_eq!(
        QueueItemError::NotQueued {
            current: QueueItemStatus::Dispatched
        }
        .to_string(),
        "the queue item is dispatched, not queued"
    );
}

#[test]
fn priority_names_are_the_serialized_names() {
    for priority in [Priority::Critical, Priority::Task, Priority::Info] {
        let name = serde_json::to_value(priority).expect("json");
        assert_eq!(name.as_str().and_then(Priority::from_name), Some(priority));
    }
    assert_eq!(Priority::from_name("urgent"), None);
}
