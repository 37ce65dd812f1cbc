//! A positioned log entry, joined with the event row it was made from, and
//! its payload decoded into the aggregate's event type.

use aggregates::delegation::{Delegation, DelegationEvent};
use aggregates::idempotency_key::{IdempotencyKey, IdempotencyKeyEvent};
use aggregates::queue_item::{QueueItem, QueueItemEvent};
use aggregates::workspace::{Workspace, WorkspaceEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde_json::Value;

/// One entry of the positioned log with its event.
#[derive(Debug, Clone, PartialEq)]
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
    /// Decode the payload by the aggregate type that wrote it.
    pub fn decode(&self) -> Result<LedgerEvent, DecodeError> {
        let payload = self.payload.clone();
        let decoded = match self.aggregate_type.as_str() {
            Delegation::TYPE => serde_json::from_value(payload).map(LedgerEvent::Delegation),
            QueueItem::TYPE => serde_json::from_value(payload).map(LedgerEvent::QueueItem),
            IdempotencyKey::TYPE => serde_json::from_value(payload).map(LedgerEvent::IdempotencyKey),
            Workspace::TYPE => serde_json::from_value(payload).map(LedgerEvent::Workspace),
            other => return Err(DecodeError::UnknownAggregate(other.to_string())),
        };
        decoded.map_err(|source| DecodeError::Payload {
            position: self.position,
            event_type: self.event_type.clone(),
            source,
        })
    }
}
