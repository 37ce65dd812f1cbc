//! The live feed's messages: a pure mapping from a log entry to the
//! `DELEGATION_*` / `QUEUE_ITEM_*` message a websocket subscriber receives.
//!
//! Because every broadcast is computed from the positioned log, no write can
//! bypass it, and a reconnecting client resumes from the last position it
//! saw. Each message names the workspace it belongs to (the delegation's
//! source, the queue item's caller) and its *audience*: the two workspaces
//! allowed to see it (source and target), so a workspace's feed shows the
//! delegations it sent and those addressed to it, and nothing else.

use aggregates::delegation::DelegationEvent;
use aggregates::queue_item::QueueItemEvent;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{timestamp, LedgerEvent, LogEntry};

/// One message of the live feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub position: i64,
    /// `DELEGATION_SENT`, `DELEGATION_STATUS`, … (the wire `type`).
    pub kind: &'static str,
    /// The workspace the message belongs to.
    pub workspace_id: Uuid,
    /// The other party, who may see it too.
    pub counterpart_id: Uuid,
    pub delegation_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub payload: Value,
}

impl Broadcast {
    /// May `workspace` see this message?
    pub fn visible_to(&self, workspace: Uuid) -> bool {
        self.workspace_id == workspace || self.counterpart_id == workspace
    }

    /// The wire form: `{position, type, workspace_id, delegation_id?, at, payload}`.
    pub fn to_json(&self) -> Value {
        let mut message = json!({
            "position": self.position,
            "type": self.kind,
            "workspace_id": self.workspace_id,
            "at": timestamp(self.at),
            "payload": self.payload,
        });
        if let Some(delegation_id) = self.delegation_id {
            message["delegation_id"] = json!(delegation_id);
        }
        message
    }
}

/// The message an entry produces, if any (registry and idempotency-key
/// events are not broadcast). Pure: no IO, no clock.
pub fn broadcast(entry: &LogEntry, event: &LedgerEvent) -> Option<Broadcast> {
    match event {
        LedgerEvent::Delegation(event) => delegation(entry.position, event),
        LedgerEvent::QueueItem(event) => Some(queue_item(entry.position, event)),
        LedgerEvent::Workspace(_) | LedgerEvent::IdempotencyKey(_) => None,
    }
}

fn delegation(position: i64, event: &DelegationEvent) -> Option<Broadcast> {
    let (source_id, target_id) = event.parties();
    let (kind, payload) = match event {
        // Internal to the dispatcher: nothing a subscriber sees changes.
        DelegationEvent::DelegationSendAttempted { .. } => return None,
        DelegationEvent::DelegationInputRequired { question, .. } => (
            "DELEGATION_INPUT_REQUIRED",
            json!({ "target_id": target_id, "question": question }),
        ),
        DelegationEvent::DelegationCanceled { reason, .. } => (
            "DELEGATION_CANCELED",
            json!({ "target_id": target_id, "reason": reason }),
        ),
        // `status`: where the delegation starts (`pending` when the ledger
        // dispatches it, `dispatched` when the agent did and it is only
        // recorded), so a live view never has to guess.
        DelegationEvent::DelegationSent { task_preview, .. } => (
            "DELEGATION_SENT",
            json!({
                "target_id": target_id,
                "task_preview": task_preview,
                "status": event.status().map(|s| s.as_str()),
            }),
        ),
        DelegationEvent::DelegationCompleted {
            response_preview, ..
        } => (
            "DELEGATION_COMPLETE",
            json!({ "target_id": target_id, "response_preview": response_preview }),
        ),
        DelegationEvent::DelegationFailed { error, .. } => (
            "DELEGATION_FAILED",
            json!({ "target_id": target_id, "error": error }),
        ),
        DelegationEvent::DelegationDeliveredToInbox { .. }
        | DelegationEvent::DelegationDispatched { .. }
        | DelegationEvent::DelegationReceived { .. }
        | DelegationEvent::DelegationInProgress { .. }
        | DelegationEvent::DelegationQueued { .. } => (
            "DELEGATION_STATUS",
            json!({ "target_id": target_id, "status": event.status().map(|s| s.as_str()) }),
        ),
    };
    Some(Broadcast {
        position,
        kind,
        workspace_id: source_id,
        counterpart_id: target_id,
        delegation_id: Some(event.delegation_id()),
        at: event.at(),
        payload,
    })
}

fn queue_item(position: i64, event: &QueueItemEvent) -> Broadcast {
    let (kind, mut payload) = match event {
        QueueItemEvent::QueueItemEnqueued {
            priority,
            expires_at,
            ..
        } => (
            "QUEUE_ITEM_ENQUEUED",
            json!({ "priority": priority.value(), "expires_at": expires_at.map(timestamp) }),
        ),
        QueueItemEvent::QueueItemDispatched { attempt, .. } => {
            ("QUEUE_ITEM_DISPATCHED", json!({ "attempt": attempt }))
        }
        QueueItemEvent::QueueItemCompleted { .. } => ("QUEUE_ITEM_COMPLETED", json!({})),
        QueueItemEvent::QueueItemRequeued { attempt, error, .. } => (
            "QUEUE_ITEM_REQUEUED",
            json!({ "attempt": attempt, "error": error }),
        ),
        QueueItemEvent::QueueItemFailed {
            attempts, error, ..
        } => (
            "QUEUE_ITEM_FAILED",
            json!({ "attempts": attempts, "error": error }),
        ),
        QueueItemEvent::QueueItemExpired { .. } => ("QUEUE_ITEM_EXPIRED", json!({})),
    };
    let (caller_id, target_id) = event.parties();
    payload["queue_id"] = json!(event.queue_id());
    payload["target_id"] = json!(target_id);
    Broadcast {
        position,
        kind,
        workspace_id: caller_id,
        counterpart_id: target_id,
        delegation_id: event.delegation_id(),
        at: event.at(),
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::delegation::{Origin, Outcome};
    use aggregates::idempotency_key::IdempotencyKeyEvent;
    use aggregates::queue_item::Priority;
    use aggregates::workspace::{DeliveryMode, WorkspaceEvent};
    use aggregates::Actor;

    const DELEGATION: Uuid = Uuid::from_u128(0xd1);
    const SOURCE: Uuid = Uuid::from_u128(0x5a);
    const TARGET: Uuid = Uuid::from_u128(0x7b);
    const STRANGER: Uuid = Uuid::from_u128(0x3c);
    const QUEUE: Uuid = Uuid::from_u128(0x99);

    /// The event's time.
    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// `at()` as the wire spells it.
    const AT: &str = "2024-05-01T12:00:00.123456Z";

    /// The time the log recorded the entry: deliberately not the event's
    /// `at`, so tests can tell which one a message takes.
    fn recorded_at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:07Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(aggregate_type: &str) -> LogEntry {
        LogEntry {
            position: 42,
            event_id: 1042,
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: DELEGATION.to_string(),
            sequence: 3,
            event_type: "irrelevant here".to_string(),
            event_version: "1.0".to_string(),
            payload: Value::Null,
            metadata: json!({}),
            recorded_at: recorded_at(),
        }
    }

    /// The wire message an event produces at position 42.
    fn message(event: LedgerEvent) -> Value {
        let aggregate_type = match &event {
            LedgerEvent::Delegation(_) => "delegation",
            LedgerEvent::QueueItem(_) => "queue_item",
            LedgerEvent::IdempotencyKey(_) => "idempotency_key",
            LedgerEvent::Workspace(_) => "workspace",
        };
        broadcast(&entry(aggregate_type), &event)
            .expect("the event is broadcast")
            .to_json()
    }

    fn sent(origin: Origin) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationSent {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "summarise the quarterly report".to_string(),
            task_preview: "summarise the".to_string(),
            origin,
            idempotency_key: Some("key-1".to_string()),
            queue: Default::default(),
            deadline: None,
            actor: Actor::Workspace(SOURCE),
            at: at(),
        })
    }

    fn dispatched() -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationDispatched {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            attempt: 2,
            remote_task_id: Some("remote-9".to_string()),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        })
    }

    fn received() -> LedgerEvent {
        received_at(at())
    }

    fn received_at(at: DateTime<Utc>) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationReceived {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at,
        })
    }

    fn in_progress() -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationInProgress {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            actor: Actor::Workspace(TARGET),
            at: at(),
        })
    }

    fn queued() -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationQueued {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            queue_id: Some(QUEUE),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        })
    }

    fn completed() -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationCompleted {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            result: "the full, long result".to_string(),
            response_preview: "the full".to_string(),
            actor: Actor::Workspace(TARGET),
            at: at(),
        })
    }

    fn failed() -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationFailed {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            error: "target unreachable".to_string(),
            actor: Actor::System("dispatcher".to_string()),
            at: at(),
        })
    }

    fn delegation_events() -> Vec<LedgerEvent> {
        vec![
            sent(Origin::Managed),
            sent(Origin::Recorded),
            dispatched(),
            received(),
            in_progress(),
            queued(),
            completed(),
            failed(),
        ]
    }

    fn enqueued(delegation_id: Option<Uuid>, expires_at: Option<DateTime<Utc>>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemEnqueued {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            priority: Priority::Critical,
            method: "message/send".to_string(),
            body: json!({ "secret": "not for the feed" }),
            idempotency_key: Some("key-1".to_string()),
            expires_at,
            delegation_id,
            at: at(),
        })
    }

    fn item_dispatched(delegation_id: Option<Uuid>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemDispatched {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id,
            attempt: 2,
            at: at(),
        })
    }

    fn item_completed(delegation_id: Option<Uuid>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemCompleted {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id,
            outcome: Outcome::Completed {
                result: "not for the feed".into(),
            },
            at: at(),
        })
    }

    fn item_requeued(delegation_id: Option<Uuid>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemRequeued {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id,
            attempt: 1,
            error: "connection refused".to_string(),
            at: at(),
        })
    }

    fn item_failed(delegation_id: Option<Uuid>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemFailed {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id,
            attempts: 3,
            error: "gave up".to_string(),
            at: at(),
        })
    }

    fn item_expired(delegation_id: Option<Uuid>) -> LedgerEvent {
        LedgerEvent::QueueItem(QueueItemEvent::QueueItemExpired {
            queue_id: QUEUE,
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id,
            at: at(),
        })
    }

    fn queue_item_events(delegation_id: Option<Uuid>) -> Vec<LedgerEvent> {
        vec![
            enqueued(delegation_id, None),
            enqueued(delegation_id, Some(recorded_at())),
            item_dispatched(delegation_id),
            item_completed(delegation_id),
            item_requeued(delegation_id),
            item_failed(delegation_id),
            item_expired(delegation_id),
        ]
    }

    fn status_message(status: &str) -> Value {
        json!({
            "position": 42,
            "type": "DELEGATION_STATUS",
            "workspace_id": SOURCE.to_string(),
            "delegation_id": DELEGATION.to_string(),
            "at": AT,
            "payload": { "target_id": TARGET.to_string(), "status": status },
        })
    }

    #[test]
    fn a_delegation_sent_is_a_delegation_sent_message_of_the_source_with_the_task_preview() {
        assert_eq!(
            message(sent(Origin::Managed)),
            json!({
                "position": 42,
                "type": "DELEGATION_SENT",
                "workspace_id": "00000000-0000-0000-0000-00000000005a",
                "delegation_id": "00000000-0000-0000-0000-0000000000d1",
                "at": "2024-05-01T12:00:00.123456Z",
                "payload": {
                    "target_id": "00000000-0000-0000-0000-00000000007b",
                    "task_preview": "summarise the",
                    "status": "pending",
                },
            })
        );
    }

    #[test]
    fn a_recorded_delegation_sent_is_the_same_message_starting_dispatched() {
        let mut managed = message(sent(Origin::Managed));
        managed["payload"]["status"] = json!("dispatched");

        assert_eq!(message(sent(Origin::Recorded)), managed);
    }

    #[test]
    fn a_delegation_dispatched_is_a_dispatched_status_message() {
        assert_eq!(message(dispatched()), status_message("dispatched"));
    }

    #[test]
    fn a_delegation_received_is_a_received_status_message() {
        assert_eq!(message(received()), status_message("received"));
    }

    #[test]
    fn a_delegation_in_progress_is_an_in_progress_status_message() {
        assert_eq!(message(in_progress()), status_message("in_progress"));
    }

    #[test]
    fn a_delegation_queued_is_a_queued_status_message() {
        assert_eq!(message(queued()), status_message("queued"));
    }

    #[test]
    fn a_delegation_completed_is_a_delegation_complete_message_with_the_response_preview() {
        assert_eq!(
            message(completed()),
            json!({
                "position": 42,
                "type": "DELEGATION_COMPLETE",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": { "target_id": TARGET.to_string(), "response_preview": "the full" },
            })
        );
    }

    #[test]
    fn a_delegation_failed_is_a_delegation_failed_message_with_the_error() {
        assert_eq!(
            message(failed()),
            json!({
                "position": 42,
                "type": "DELEGATION_FAILED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": { "target_id": TARGET.to_string(), "error": "target unreachable" },
            })
        );
    }

    #[test]
    fn a_queue_item_enqueued_is_a_message_of_the_caller_with_priority_and_expiry() {
        let expires_at = DateTime::parse_from_rfc3339("2024-05-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);

        assert_eq!(
            message(enqueued(Some(DELEGATION), Some(expires_at))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_ENQUEUED",
                "workspace_id": "00000000-0000-0000-0000-00000000005a",
                "delegation_id": "00000000-0000-0000-0000-0000000000d1",
                "at": "2024-05-01T12:00:00.123456Z",
                "payload": {
                    "queue_id": "00000000-0000-0000-0000-000000000099",
                    "target_id": "00000000-0000-0000-0000-00000000007b",
                    "priority": 100,
                    "expires_at": "2024-05-02T00:00:00.000000Z",
                },
            })
        );
    }

    #[test]
    fn a_queue_item_enqueued_without_expiry_has_a_null_expires_at() {
        assert_eq!(
            message(enqueued(Some(DELEGATION), None))["payload"],
            json!({
                "queue_id": QUEUE.to_string(),
                "target_id": TARGET.to_string(),
                "priority": 100,
                "expires_at": null,
            })
        );
    }

    #[test]
    fn a_queue_item_dispatched_carries_the_attempt() {
        assert_eq!(
            message(item_dispatched(Some(DELEGATION))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_DISPATCHED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": {
                    "queue_id": QUEUE.to_string(),
                    "target_id": TARGET.to_string(),
                    "attempt": 2,
                },
            })
        );
    }

    #[test]
    fn a_queue_item_completed_carries_only_the_ids_not_the_outcome() {
        assert_eq!(
            message(item_completed(Some(DELEGATION))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_COMPLETED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": { "queue_id": QUEUE.to_string(), "target_id": TARGET.to_string() },
            })
        );
    }

    #[test]
    fn a_queue_item_requeued_carries_the_attempt_and_the_error() {
        assert_eq!(
            message(item_requeued(Some(DELEGATION))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_REQUEUED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": {
                    "queue_id": QUEUE.to_string(),
                    "target_id": TARGET.to_string(),
                    "attempt": 1,
                    "error": "connection refused",
                },
            })
        );
    }

    #[test]
    fn a_queue_item_failed_carries_the_attempts_and_the_error() {
        assert_eq!(
            message(item_failed(Some(DELEGATION))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_FAILED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": {
                    "queue_id": QUEUE.to_string(),
                    "target_id": TARGET.to_string(),
                    "attempts": 3,
                    "error": "gave up",
                },
            })
        );
    }

    #[test]
    fn a_queue_item_expired_carries_only_the_ids() {
        assert_eq!(
            message(item_expired(Some(DELEGATION))),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_EXPIRED",
                "workspace_id": SOURCE.to_string(),
                "delegation_id": DELEGATION.to_string(),
                "at": AT,
                "payload": { "queue_id": QUEUE.to_string(), "target_id": TARGET.to_string() },
            })
        );
    }

    #[test]
    fn a_queue_item_without_a_delegation_has_no_delegation_id_key() {
        assert_eq!(
            message(item_dispatched(None)),
            json!({
                "position": 42,
                "type": "QUEUE_ITEM_DISPATCHED",
                "workspace_id": SOURCE.to_string(),
                "at": AT,
                "payload": {
                    "queue_id": QUEUE.to_string(),
                    "target_id": TARGET.to_string(),
                    "attempt": 2,
                },
            })
        );
        for event in queue_item_events(None) {
            let message = message(event.clone());
            let fields = message.as_object().unwrap();
            assert!(
                !fields.contains_key("delegation_id"),
                "{event:?}: {message}"
            );
            assert!(
                !fields["payload"]
                    .as_object()
                    .unwrap()
                    .contains_key("delegation_id"),
                "{event:?}: {message}"
            );
        }
    }

    #[test]
    fn every_delegation_message_is_visible_to_its_source_and_target_and_no_one_else() {
        for event in delegation_events() {
            let message = broadcast(&entry("delegation"), &event).unwrap();
            assert!(message.visible_to(SOURCE), "{event:?}");
            assert!(message.visible_to(TARGET), "{event:?}");
            assert!(!message.visible_to(STRANGER), "{event:?}");
            assert!(!message.visible_to(Uuid::nil()), "{event:?}");
        }
    }

    #[test]
    fn every_queue_item_message_is_visible_to_its_caller_and_target_and_no_one_else() {
        for delegation_id in [Some(DELEGATION), None] {
            for event in queue_item_events(delegation_id) {
                let message = broadcast(&entry("queue_item"), &event).unwrap();
                assert!(message.visible_to(SOURCE), "{event:?}");
                assert!(message.visible_to(TARGET), "{event:?}");
                assert!(!message.visible_to(STRANGER), "{event:?}");
                assert!(!message.visible_to(DELEGATION), "{event:?}");
                assert!(!message.visible_to(QUEUE), "{event:?}");
            }
        }
    }

    #[test]
    fn every_message_belongs_to_the_source_or_caller_and_takes_the_entry_position() {
        for event in delegation_events()
            .into_iter()
            .chain(queue_item_events(Some(DELEGATION)))
        {
            let message = message(event.clone());
            assert_eq!(message["position"], json!(42), "{event:?}");
            assert_eq!(message["workspace_id"], json!(SOURCE), "{event:?}");
            assert_eq!(message["delegation_id"], json!(DELEGATION), "{event:?}");
            assert_eq!(message["payload"]["target_id"], json!(TARGET), "{event:?}");
        }
    }

    #[test]
    fn a_message_takes_the_event_time_not_the_log_time() {
        let message = broadcast(&entry("delegation"), &failed()).unwrap();

        assert_eq!(message.at, at());
        assert_ne!(message.at, recorded_at());
        assert_eq!(message.to_json()["at"], json!(AT));
    }

    #[test]
    fn the_time_is_written_in_utc_with_microseconds_whatever_the_event_offset() {
        let whole_second = DateTime::parse_from_rfc3339("2024-05-01T14:00:00+02:00")
            .unwrap()
            .with_timezone(&Utc);
        let nanoseconds = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.987654321Z")
            .unwrap()
            .with_timezone(&Utc);

        assert_eq!(
            message(received_at(whole_second))["at"],
            json!("2024-05-01T12:00:00.000000Z")
        );
        assert_eq!(
            message(received_at(nanoseconds))["at"],
            json!("2024-05-01T12:00:00.987654Z")
        );
    }

    #[test]
    fn the_broadcast_records_the_other_party_as_the_counterpart() {
        let delegation = broadcast(&entry("delegation"), &sent(Origin::Managed)).unwrap();
        let item = broadcast(&entry("queue_item"), &item_expired(None)).unwrap();

        assert_eq!(
            (
                delegation.kind,
                delegation.workspace_id,
                delegation.counterpart_id
            ),
            ("DELEGATION_SENT", SOURCE, TARGET)
        );
        assert_eq!(
            (
                item.kind,
                item.workspace_id,
                item.counterpart_id,
                item.delegation_id
            ),
            ("QUEUE_ITEM_EXPIRED", SOURCE, TARGET, None)
        );
    }

    #[test]
    fn workspace_and_idempotency_key_events_are_not_broadcast() {
        let workspace_events = [
            WorkspaceEvent::WorkspaceRegistered {
                workspace_id: SOURCE,
                name: Some("alpha".to_string()),
                url: Some("https://alpha.example".to_string()),
                delivery_mode: DeliveryMode::Push,
                token_hash: "hash".to_string(),
                at: at(),
            },
            WorkspaceEvent::WorkspaceRegistrationUpdated {
                workspace_id: SOURCE,
                name: None,
                url: None,
                delivery_mode: DeliveryMode::Poll,
                at: at(),
            },
            WorkspaceEvent::WorkspaceCapacityReported {
                workspace_id: TARGET,
                active_tasks: 1,
                max_concurrent: 2,
                at: at(),
            },
        ];
        let claimed = LedgerEvent::IdempotencyKey(IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id: SOURCE,
            key: "key-1".to_string(),
            delegation_id: DELEGATION,
            replaced: None,
            at: at(),
        });

        for event in workspace_events {
            assert_eq!(
                broadcast(&entry("workspace"), &LedgerEvent::Workspace(event.clone())),
                None,
                "{event:?}"
            );
        }
        assert_eq!(broadcast(&entry("idempotency_key"), &claimed), None);
    }
}
