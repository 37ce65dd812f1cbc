//! A positioned log entry, joined with the event row it was made from, and
//! its payload decoded into the aggregate's event type.
//!
//! Decoding goes through the same upcasters as the write path
//! ([`aggregates::upcasters`]), so a projection or an audit sees an event
//! stored by older code exactly as the command bus does when it folds the
//! aggregate.
//!
//! [`workspaces_of`] names the workspaces an event concerns; the sequencer
//! stores them next to the entry so audits can select "everything that
//! touched workspace W" through an index.

use aggregates::delegation::{Delegation, DelegationEvent};
use aggregates::idempotency_key::{IdempotencyKey, IdempotencyKeyEvent};
use aggregates::queue_item::{QueueItem, QueueItemEvent};
use aggregates::upcasters;
use aggregates::workspace::{Workspace, WorkspaceEvent};
use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::Aggregate;
use serde_json::Value;
use uuid::Uuid;

/// One entry of the positioned log with its event.
///
/// `FromRow`: the ledger reads it from `ledger_log` joined with `events`,
/// one column per field under the field's name (`ledger::log::reader`).
/// Serde: the NATS export's message body carries these fields as they are.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Dense, gap-free position in the log (1, 2, 3, …).
    pub position: i64,
    pub event_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's sequence inside its aggregate (1-based).
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

/// A log entry's payload as a typed event of its aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerEvent {
    Delegation(DelegationEvent),
    QueueItem(QueueItemEvent),
    IdempotencyKey(IdempotencyKeyEvent),
    Workspace(WorkspaceEvent),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregate(String),
    #[error("event {event_type} at position {position} does not decode: {source}")]
    Payload {
        position: i64,
        event_type: String,
        source: serde_json::Error,
    },
}

impl LogEntry {
    /// Decode the payload by the aggregate type that wrote it, upcast first
    /// if it was stored at an older event version.
    pub fn decode(&self) -> Result<LedgerEvent, DecodeError> {
        let payload = self.upcast_payload();
        let decoded = match self.aggregate_type.as_str() {
            Delegation::TYPE => serde_json::from_value(payload).map(LedgerEvent::Delegation),
            QueueItem::TYPE => serde_json::from_value(payload).map(LedgerEvent::QueueItem),
            IdempotencyKey::TYPE => {
                serde_json::from_value(payload).map(LedgerEvent::IdempotencyKey)
            }
            Workspace::TYPE => serde_json::from_value(payload).map(LedgerEvent::Workspace),
            other => return Err(DecodeError::UnknownAggregate(other.to_string())),
        };
        decoded.map_err(|source| DecodeError::Payload {
            position: self.position,
            event_type: self.event_type.clone(),
            source,
        })
    }

    /// The payload in the current shape of its event type.
    fn upcast_payload(&self) -> Value {
        if !upcasters::needs_upcast(&self.event_type, &self.event_version) {
            return self.payload.clone();
        }
        let stored = SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence).unwrap_or_default(),
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            self.payload.clone(),
            // Upcasters change payloads only; no need to copy the metadata.
            Value::Null,
        );
        upcasters::upcast(stored).payload
    }
}

/// The workspaces an event concerns: `(source, target)`.
///
/// * delegation events: `(source_id, target_id)`;
/// * queue item events: `(caller_id, target_id)`;
/// * workspace events and idempotency keys: `(workspace_id, None)`.
///
/// Read from the raw JSON, not a typed decode: the sequencer calls this for
/// every event it positions and must never stall on a payload it cannot
/// decode, so anything missing or malformed is simply `None`. The field
/// names are the same in every version of every event (an upcaster that
/// renamed one would have to be mirrored here).
pub fn workspaces_of(aggregate_type: &str, payload: &Value) -> (Option<Uuid>, Option<Uuid>) {
    // Payloads are externally tagged enums: `{"EventName": {fields}}`.
    let Some(fields) = payload
        .as_object()
        .and_then(|tagged| tagged.values().next())
    else {
        return (None, None);
    };
    let uuid = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .and_then(|text| Uuid::parse_str(text).ok())
    };
    match aggregate_type {
        Delegation::TYPE => (uuid("source_id"), uuid("target_id")),
        QueueItem::TYPE => (uuid("caller_id"), uuid("target_id")),
        Workspace::TYPE | IdempotencyKey::TYPE => (uuid("workspace_id"), None),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::delegation::Origin;
    use aggregates::workspace::DeliveryMode;
    use aggregates::Actor;
    use cqrs_es::DomainEvent;
    use serde_json::json;
    use uuid::Uuid;

    const DELEGATION: Uuid = Uuid::from_u128(0xd1);
    const SOURCE: Uuid = Uuid::from_u128(0x5a);
    const TARGET: Uuid = Uuid::from_u128(0x7b);

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(aggregate_type: &str, event_type: &str, payload: Value) -> LogEntry {
        LogEntry {
            position: 17,
            event_id: 1017,
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: DELEGATION.to_string(),
            sequence: 1,
            event_type: event_type.to_string(),
            event_version: "1.0".to_string(),
            payload,
            metadata: json!({}),
            recorded_at: at(),
        }
    }

    fn delegation_sent() -> DelegationEvent {
        DelegationEvent::DelegationSent {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "summarise the report".to_string(),
            task_preview: "summarise".to_string(),
            origin: Origin::Recorded,
            idempotency_key: Some("key-1".to_string()),
            queue: Default::default(),
            deadline: None,
            actor: Actor::Workspace(SOURCE),
            at: at(),
        }
    }

    fn workspace_registered() -> WorkspaceEvent {
        WorkspaceEvent::WorkspaceRegistered {
            workspace_id: SOURCE,
            name: Some("alpha".to_string()),
            url: Some("https://alpha.example".to_string()),
            delivery_mode: DeliveryMode::Push,
            token_hash: "hash".to_string(),
            at: at(),
        }
    }

    #[test]
    fn a_delegation_payload_decodes_to_the_same_delegation_event() {
        let event = delegation_sent();
        let entry = entry(
            "delegation",
            &event.event_type(),
            serde_json::to_value(&event).unwrap(),
        );

        assert_eq!(entry.decode().unwrap(), LedgerEvent::Delegation(event));
    }

    #[test]
    fn every_delegation_event_round_trips_through_a_log_entry() {
        let events = vec![
            delegation_sent(),
            DelegationEvent::DelegationDispatched {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                attempt: 2,
                remote_task_id: Some("remote-9".to_string()),
                actor: Actor::System("dispatcher".to_string()),
                at: at(),
            },
            DelegationEvent::DelegationReceived {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                actor: Actor::Workspace(TARGET),
                at: at(),
            },
            DelegationEvent::DelegationInProgress {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                actor: Actor::Workspace(TARGET),
                at: at(),
            },
            DelegationEvent::DelegationQueued {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                queue_id: Some(Uuid::from_u128(0x99)),
                actor: Actor::System("dispatcher".to_string()),
                at: at(),
            },
            DelegationEvent::DelegationCompleted {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                result: "done".to_string(),
                response_preview: "done".to_string(),
                actor: Actor::Admin,
                at: at(),
            },
            DelegationEvent::DelegationFailed {
                delegation_id: DELEGATION,
                source_id: SOURCE,
                target_id: TARGET,
                error: "boom".to_string(),
                actor: Actor::System("dispatcher".to_string()),
                at: at(),
            },
        ];

        for event in events {
            let entry = entry(
                "delegation",
                &event.event_type(),
                serde_json::to_value(&event).unwrap(),
            );
            assert_eq!(entry.decode().unwrap(), LedgerEvent::Delegation(event));
        }
    }

    #[test]
    fn a_workspace_payload_decodes_to_the_same_workspace_event() {
        let event = workspace_registered();
        let entry = entry(
            "workspace",
            &event.event_type(),
            serde_json::to_value(&event).unwrap(),
        );

        assert_eq!(entry.decode().unwrap(), LedgerEvent::Workspace(event));
    }

    #[test]
    fn an_idempotency_key_payload_decodes_to_the_same_idempotency_key_event() {
        let event = IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id: SOURCE,
            key: "key-1".to_string(),
            delegation_id: DELEGATION,
            replaced: Some(Uuid::from_u128(0xd0)),
            at: at(),
        };
        let entry = entry(
            "idempotency_key",
            &event.event_type(),
            serde_json::to_value(&event).unwrap(),
        );

        assert_eq!(entry.decode().unwrap(), LedgerEvent::IdempotencyKey(event));
    }

    #[test]
    fn an_unknown_aggregate_type_is_an_unknown_aggregate_error() {
        let entry = entry(
            "invoice",
            "InvoiceSent",
            serde_json::to_value(delegation_sent()).unwrap(),
        );

        let error = entry.decode().unwrap_err();
        assert!(
            matches!(&error, DecodeError::UnknownAggregate(name) if name == "invoice"),
            "got {error:?}"
        );
        assert_eq!(error.to_string(), r#"unknown aggregate type "invoice""#);
    }

    #[test]
    fn the_aggregate_type_is_matched_exactly() {
        let entry = entry(
            "Delegation",
            "DelegationSent",
            serde_json::to_value(delegation_sent()).unwrap(),
        );

        assert!(matches!(
            entry.decode(),
            Err(DecodeError::UnknownAggregate(name)) if name == "Delegation"
        ));
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_a_payload_error_carrying_the_position() {
        let entry = entry(
            "delegation",
            "DelegationSent",
            json!({ "DelegationSent": { "delegation_id": "not a uuid" } }),
        );

        let error = entry.decode().unwrap_err();
        match &error {
            DecodeError::Payload {
                position,
                event_type,
                ..
            } => {
                assert_eq!(*position, 17);
                assert_eq!(event_type, "DelegationSent");
            }
            other => panic!("expected a payload error, got {other:?}"),
        }
        assert!(
            error
                .to_string()
                .starts_with("event DelegationSent at position 17 does not decode: "),
            "got {error}"
        );
    }

    #[test]
    fn a_workspace_payload_under_the_delegation_aggregate_is_a_payload_error() {
        let entry = entry(
            "delegation",
            "WorkspaceRegistered",
            serde_json::to_value(workspace_registered()).unwrap(),
        );

        assert!(matches!(
            entry.decode(),
            Err(DecodeError::Payload { position: 17, .. })
        ));
    }

    #[test]
    fn a_null_payload_is_a_payload_error() {
        let entry = entry("workspace", "WorkspaceRegistered", Value::Null);

        assert!(matches!(
            entry.decode(),
            Err(DecodeError::Payload { position: 17, .. })
        ));
    }

    #[test]
    fn a_v0_9_delegation_sent_decodes_with_the_task_preview_derived_from_the_task() {
        let mut entry = entry(
            "delegation",
            "DelegationSent",
            serde_json::to_value(delegation_sent()).unwrap(),
        );
        entry.event_version = "0.9".to_string();
        entry.payload["DelegationSent"]
            .as_object_mut()
            .unwrap()
            .remove("task_preview");

        let expected = DelegationEvent::DelegationSent {
            delegation_id: DELEGATION,
            source_id: SOURCE,
            target_id: TARGET,
            task: "summarise the report".to_string(),
            task_preview: "summarise the report".to_string(),
            origin: Origin::Recorded,
            idempotency_key: Some("key-1".to_string()),
            queue: Default::default(),
            deadline: None,
            actor: Actor::Workspace(SOURCE),
            at: at(),
        };
        assert_eq!(entry.decode().unwrap(), LedgerEvent::Delegation(expected));
    }

    #[test]
    fn a_v1_0_payload_missing_the_task_preview_is_still_a_payload_error() {
        let mut entry = entry(
            "delegation",
            "DelegationSent",
            serde_json::to_value(delegation_sent()).unwrap(),
        );
        entry.payload["DelegationSent"]
            .as_object_mut()
            .unwrap()
            .remove("task_preview");

        assert!(matches!(
            entry.decode(),
            Err(DecodeError::Payload { position: 17, .. })
        ));
    }

    #[test]
    fn a_delegation_event_concerns_its_source_and_its_target() {
        let payload = serde_json::to_value(delegation_sent()).unwrap();

        assert_eq!(
            workspaces_of("delegation", &payload),
            (Some(SOURCE), Some(TARGET))
        );
    }

    #[test]
    fn a_queue_item_event_concerns_its_caller_and_its_target() {
        let event = QueueItemEvent::QueueItemExpired {
            queue_id: Uuid::from_u128(0x99),
            target_id: TARGET,
            caller_id: SOURCE,
            delegation_id: None,
            at: at(),
        };
        let payload = serde_json::to_value(event).unwrap();

        assert_eq!(
            workspaces_of("queue_item", &payload),
            (Some(SOURCE), Some(TARGET))
        );
    }

    #[test]
    fn workspace_and_idempotency_key_events_concern_one_workspace() {
        let registered = serde_json::to_value(workspace_registered()).unwrap();
        let claimed = serde_json::to_value(IdempotencyKeyEvent::IdempotencyKeyClaimed {
            workspace_id: TARGET,
            key: "key-1".to_string(),
            delegation_id: DELEGATION,
            replaced: None,
            at: at(),
        })
        .unwrap();

        assert_eq!(
            workspaces_of("workspace", &registered),
            (Some(SOURCE), None)
        );
        assert_eq!(
            workspaces_of("idempotency_key", &claimed),
            (Some(TARGET), None)
        );
    }

    #[test]
    fn an_unknown_aggregate_or_a_malformed_payload_concerns_no_workspace() {
        let payload = serde_json::to_value(delegation_sent()).unwrap();

        assert_eq!(workspaces_of("invoice", &payload), (None, None));
        assert_eq!(workspaces_of("delegation", &Value::Null), (None, None));
        assert_eq!(workspaces_of("delegation", &json!({})), (None, None));
        assert_eq!(
            workspaces_of(
                "delegation",
                &json!({ "DelegationSent": { "source_id": "not a uuid", "target_id": 7 } })
            ),
            (None, None)
        );
    }
}
