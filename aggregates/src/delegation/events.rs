//! What happened to a delegation. Event type strings never change; a changed
//! shape gets a new `event_version` and an upcaster.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::queue_item::Priority;
use crate::Actor;

/// How a managed delegation waits when its target is busy: the priority
/// and lifetime of the queue item it then becomes (docs/api.md, "The A2A queue").
/// Absent from events that use the defaults, so such events serialize
/// exactly as before the field existed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueOptions {
    #[serde(default)]
    pub priority: Priority,
    /// The queue item expires this long after it was enqueued; `None`:
    /// never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u32>,
}

impl QueueOptions {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Who dispatches the delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `POST /workspaces/{id}/delegate`: the ledger dispatches it.
    Managed,
    /// `POST /workspaces/{id}/delegations/record`: the agent dispatched it
    /// itself; the ledger only records.
    Recorded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelegationStatus {
    Pending,
    Dispatched,
    Queued,
    Received,
    InProgress,
    /// The target asked a question (A2A `input-required` or
    /// `auth-required`) and waits for an answer it does not get through the
    /// ledger; the delegation is live until it moves on, is cancelled, or
    /// its deadline passes.
    InputRequired,
    Completed,
    Failed,
    /// Withdrawn by its caller, or cancelled by the target's agent.
    Canceled,
}

impl DelegationStatus {
    /// The wire name (`"in_progress"`, …), as the HTTP API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Queued => "queued",
            Self::Received => "received",
            Self::InProgress => "in_progress",
            Self::InputRequired => "input_required",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Every status, in lifecycle order.
    pub const ALL: [Self; 9] = [
        Self::Pending,
        Self::Dispatched,
        Self::Queued,
        Self::Received,
        Self::InProgress,
        Self::InputRequired,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
    ];

    /// The status a wire name names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

impl std::fmt::Display for DelegationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every event names both workspaces so projections and broadcasts never
/// have to look them up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DelegationEvent {
    DelegationSent {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        task: String,
        /// The first [`TASK_PREVIEW_CHARS`](super::TASK_PREVIEW_CHARS) characters of `task`.
        task_preview: String,
        origin: Origin,
        idempotency_key: Option<String>,
        /// Priority and TTL should the target be busy.
        #[serde(default, skip_serializing_if = "QueueOptions::is_default")]
        queue: QueueOptions,
        /// A managed delegation still live at this time fails with
        /// `deadline exceeded`. Absent from events without one, so older
        /// events serialize as before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// The dispatcher (leader of epoch `epoch`) is about to send attempt
    /// `attempt`. Recorded before the send, so a leader that lost its
    /// leadership cannot send (its record fails to commit), and a later
    /// leader knows a send may have reached the target. No status change.
    DelegationSendAttempted {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        attempt: u32,
        epoch: u64,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// The target polls (no URL): the task was put in its activity feed
    /// instead of being sent; it reports progress with the update endpoint.
    DelegationDeliveredToInbox {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        task: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationDispatched {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        /// 1 for the first send, +1 for every re-send.
        attempt: u32,
        remote_task_id: Option<String>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationReceived {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationInProgress {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationQueued {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        queue_id: Option<Uuid>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationCompleted {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        result: String,
        /// The first [`RESPONSE_PREVIEW_CHARS`](super::RESPONSE_PREVIEW_CHARS) characters of `result`.
        response_preview: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    DelegationFailed {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        error: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// The target's agent asked a question before it can go on.
    DelegationInputRequired {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        question: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Withdrawn by the caller, or cancelled by the target's agent.
    DelegationCanceled {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        reason: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
}

impl DelegationEvent {
    pub fn delegation_id(&self) -> Uuid {
        match self {
            Self::DelegationSent { delegation_id, .. }
            | Self::DelegationDeliveredToInbox { delegation_id, .. }
            | Self::DelegationDispatched { delegation_id, .. }
            | Self::DelegationReceived { delegation_id, .. }
            | Self::DelegationInProgress { delegation_id, .. }
            | Self::DelegationQueued { delegation_id, .. }
            | Self::DelegationCompleted { delegation_id, .. }
            | Self::DelegationFailed { delegation_id, .. }
            | Self::DelegationSendAttempted { delegation_id, .. }
            | Self::DelegationInputRequired { delegation_id, .. }
            | Self::DelegationCanceled { delegation_id, .. } => *delegation_id,
        }
    }

    /// (source, target) of the delegation this event belongs to.
    pub fn parties(&self) -> (Uuid, Uuid) {
        match self {
            Self::DelegationSent {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationDeliveredToInbox {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationDispatched {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationReceived {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationInProgress {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationQueued {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationCompleted {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationFailed {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationSendAttempted {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationInputRequired {
                source_id,
                target_id,
                ..
            }
            | Self::DelegationCanceled {
                source_id,
                target_id,
                ..
            } => (*source_id, *target_id),
        }
    }

    /// The time the command that caused this event was issued.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::DelegationSent { at, .. }
            | Self::DelegationDeliveredToInbox { at, .. }
            | Self::DelegationDispatched { at, .. }
            | Self::DelegationReceived { at, .. }
            | Self::DelegationInProgress { at, .. }
            | Self::DelegationQueued { at, .. }
            | Self::DelegationCompleted { at, .. }
            | Self::DelegationFailed { at, .. }
            | Self::DelegationSendAttempted { at, .. }
            | Self::DelegationInputRequired { at, .. }
            | Self::DelegationCanceled { at, .. } => *at,
        }
    }

    /// The status the delegation enters with this event; `None` for an
    /// event that leaves the status as it was (a send attempt).
    pub fn status(&self) -> Option<DelegationStatus> {
        Some(match self {
            Self::DelegationSent {
                origin: Origin::Managed,
                ..
            } => DelegationStatus::Pending,
            Self::DelegationSent {
                origin: Origin::Recorded,
                ..
            } => DelegationStatus::Dispatched,
            Self::DelegationDeliveredToInbox { .. } | Self::DelegationDispatched { .. } => {
                DelegationStatus::Dispatched
            }
            Self::DelegationReceived { .. } => DelegationStatus::Received,
            Self::DelegationInProgress { .. } => DelegationStatus::InProgress,
            Self::DelegationQueued { .. } => DelegationStatus::Queued,
            Self::DelegationCompleted { .. } => DelegationStatus::Completed,
            Self::DelegationFailed { .. } => DelegationStatus::Failed,
            Self::DelegationInputRequired { .. } => DelegationStatus::InputRequired,
            Self::DelegationCanceled { .. } => DelegationStatus::Canceled,
            Self::DelegationSendAttempted { .. } => return None,
        })
    }
}

impl DomainEvent for DelegationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DelegationSent { .. } => "DelegationSent",
            Self::DelegationDeliveredToInbox { .. } => "DelegationDeliveredToInbox",
            Self::DelegationDispatched { .. } => "DelegationDispatched",
            Self::DelegationReceived { .. } => "DelegationReceived",
            Self::DelegationInProgress { .. } => "DelegationInProgress",
            Self::DelegationQueued { .. } => "DelegationQueued",
            Self::DelegationCompleted { .. } => "DelegationCompleted",
            Self::DelegationFailed { .. } => "DelegationFailed",
            Self::DelegationSendAttempted { .. } => "DelegationSendAttempted",
            Self::DelegationInputRequired { .. } => "DelegationInputRequired",
            Self::DelegationCanceled { .. } => "DelegationCanceled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
