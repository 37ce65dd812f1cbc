//! What happened to a queue item.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::delegation::Outcome;
use crate::upcasters::{CURRENT_VERSION, QUEUE_ITEM_COMPLETED_VERSION};

/// Drain order is priority first (higher first), then FIFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Critical,
    #[default]
    Task,
    Info,
}

impl Priority {
    /// The numeric priority (docs/api.md): critical 100, task 50, info 10.
    pub fn value(self) -> i16 {
        match self {
            Self::Critical => 100,
            Self::Task => 50,
            Self::Info => 10,
        }
    }

    /// The priority with that name (`"critical"`, `"task"`, `"info"`, as
    /// serialized), if it is one of the three.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "critical" => Some(Self::Critical),
            "task" => Some(Self::Task),
            "info" => Some(Self::Info),
            _ => None,
        }
    }

    /// The priority with that numeric value, if it is one of the three.
    pub fn from_value(value: i64) -> Option<Self> {
        match value {
            100 => Some(Self::Critical),
            50 => Some(Self::Task),
            10 => Some(Self::Info),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueItemStatus {
    Queued,
    Dispatched,
    Completed,
    Failed,
    Expired,
}

impl QueueItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Dispatched => "dispatched",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired)
    }
}

impl std::fmt::Display for QueueItemStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every event names the item, both workspaces and the delegation (if any),
/// so projections need no lookups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueueItemEvent {
    QueueItemEnqueued {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        priority: Priority,
        method: String,
        body: serde_json::Value,
        idempotency_key: Option<String>,
        expires_at: Option<DateTime<Utc>>,
        delegation_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    QueueItemDispatched {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        delegation_id: Option<Uuid>,
        attempt: u32,
        at: DateTime<Utc>,
    },
    /// The dispatched request ended at its target. Since version 1.1 the
    /// outcome is typed; 1.0 stored its JSON as `response_body` (see
    /// [`crate::upcasters`]).
    QueueItemCompleted {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        delegation_id: Option<Uuid>,
        outcome: Outcome,
        at: DateTime<Utc>,
    },
    /// A failed attempt with attempts left: the item is queued again.
    QueueItemRequeued {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        delegation_id: Option<Uuid>,
        attempt: u32,
        error: String,
        at: DateTime<Utc>,
    },
    /// The last allowed attempt failed.
    QueueItemFailed {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        delegation_id: Option<Uuid>,
        attempts: u32,
        error: String,
        at: DateTime<Utc>,
    },
    QueueItemExpired {
        queue_id: Uuid,
        target_id: Uuid,
        caller_id: Uuid,
        delegation_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
}

/// The fields every queue item event carries, for code that needs them
/// whatever the event (projections, the live feed).
impl QueueItemEvent {
    pub fn queue_id(&self) -> Uuid {
        self.common().0
    }

    /// `(caller, target)`: who parked the request and for whom.
    pub fn parties(&self) -> (Uuid, Uuid) {
        let (_, target_id, caller_id, _, _) = self.common();
        (caller_id, target_id)
    }

    pub fn delegation_id(&self) -> Option<Uuid> {
        self.common().3
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.common().4
    }

    /// `(queue_id, target_id, caller_id, delegation_id, at)`.
    fn common(&self) -> (Uuid, Uuid, Uuid, Option<Uuid>, DateTime<Utc>) {
        match self {
            Self::QueueItemEnqueued {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
                ..
            }
            | Self::QueueItemDispatched {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
                ..
            }
            | Self::QueueItemCompleted {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
                ..
            }
            | Self::QueueItemRequeued {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
                ..
            }
            | Self::QueueItemFailed {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
                ..
            }
            | Self::QueueItemExpired {
                queue_id,
                target_id,
                caller_id,
                delegation_id,
                at,
            } => (*queue_id, *target_id, *caller_id, *delegation_id, *at),
        }
    }
}

impl DomainEvent for QueueItemEvent {
    fn event_type(&self) -> String {
        match self {
            Self::QueueItemEnqueued { .. } => "QueueItemEnqueued",
            Self::QueueItemDispatched { .. } => "QueueItemDispatched",
            Self::QueueItemCompleted { .. } => "QueueItemCompleted",
            Self::QueueItemRequeued { .. } => "QueueItemRequeued",
            Self::QueueItemFailed { .. } => "QueueItemFailed",
            Self::QueueItemExpired { .. } => "QueueItemExpired",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            Self::QueueItemCompleted { .. } => QUEUE_ITEM_COMPLETED_VERSION,
            _ => CURRENT_VERSION,
        }
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_item_event_answers_its_item_parties_delegation_and_time() {
        let (queue, target, caller, delegation) = (
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            Some(Uuid::from_u128(4)),
        );
        let at = DateTime::UNIX_EPOCH + chrono::Duration::seconds(7);
        let events = [
            QueueItemEvent::QueueItemEnqueued {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                priority: Priority::Task,
                method: "message/send".into(),
                body: serde_json::json!({}),
                idempotency_key: None,
                expires_at: None,
                delegation_id: delegation,
                at,
            },
            QueueItemEvent::QueueItemDispatched {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                delegation_id: delegation,
                attempt: 1,
                at,
            },
            QueueItemEvent::QueueItemCompleted {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                delegation_id: delegation,
                outcome: Outcome::Completed {
                    result: "done".into(),
                },
                at,
            },
            QueueItemEvent::QueueItemRequeued {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                delegation_id: delegation,
                attempt: 1,
                error: "busy".into(),
                at,
            },
            QueueItemEvent::QueueItemFailed {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                delegation_id: delegation,
                attempts: 3,
                error: "gone".into(),
                at,
            },
            QueueItemEvent::QueueItemExpired {
                queue_id: queue,
                target_id: target,
                caller_id: caller,
                delegation_id: delegation,
                at,
            },
        ];
        for event in events {
            assert_eq!(event.queue_id(), queue, "{event:?}");
            assert_eq!(event.parties(), (caller, target), "{event:?}");
            assert_eq!(event.delegation_id(), delegation, "{event:?}");
            assert_eq!(event.at(), at, "{event:?}");
        }
    }
}
