//! What callers may ask of a delegation.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::events::{Origin, QueueOptions};
use crate::Actor;

#[derive(Debug, Clone, PartialEq)]
pub enum DelegationCommand {
    /// Create the delegation. Sending the same delegation again with the
    /// same content is a no-op (a recorded delegation may be recorded
    /// twice); other content is rejected.
    Send {
        delegation_id: Uuid,
        source_id: Uuid,
        target_id: Uuid,
        task: String,
        origin: Origin,
        idempotency_key: Option<String>,
        queue: QueueOptions,
        /// When a managed delegation still live fails (`None`: never).
        deadline: Option<DateTime<Utc>>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Record that the dispatcher, leading in `epoch`, sends the next
    /// attempt now. Rejected for a finished delegation, and for an epoch
    /// older than one that already attempted it (a deposed leader).
    AttemptSend {
        epoch: u64,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// The caller withdraws the delegation. `source` is the workspace the
    /// request speaks for: a delegation it did not send is, to it, one
    /// that does not exist.
    Cancel {
        source: Uuid,
        reason: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Fail the delegation if it is still live and its deadline is at or
    /// before `at` (a no-op otherwise).
    ExpireDeadline { actor: Actor, at: DateTime<Utc> },
    /// Put a pending delegation in its (polling) target's inbox instead of
    /// sending it. Repeating it is a no-op.
    DeliverToInbox { actor: Actor, at: DateTime<Utc> },
    /// Several lifecycle steps decided and committed together, each against
    /// the state the previous one left (the dispatcher records "the target
    /// acknowledged attempt n, and its task is already working" atomically,
    /// so a crash can never leave an acknowledged send unrecorded half-way).
    UpdateStatuses {
        updates: Vec<StatusUpdate>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// One of the delegation's parties (its source or its target) reports
    /// progress. To any other workspace the delegation does not exist, so
    /// a request is checked and decided in one load of the aggregate.
    ReportStatus {
        party: Uuid,
        update: StatusUpdate,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Move the delegation along its lifecycle.
    UpdateStatus {
        update: StatusUpdate,
        actor: Actor,
        at: DateTime<Utc>,
    },
}

/// The target status of [`DelegationCommand::UpdateStatus`], with what that
/// status carries.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusUpdate {
    /// Sent (again) to the target. The attempt number is derived by the
    /// aggregate; the remote task id is recorded once the target reports it.
    Dispatched {
        remote_task_id: Option<String>,
    },
    Received,
    InProgress,
    /// The target was busy; the request waits in a queue item.
    Queued {
        queue_id: Option<Uuid>,
    },
    /// Finished with this result text (the full text; previews are derived).
    Completed {
        result: String,
    },
    Failed {
        error: String,
    },
    /// The target asks a question before it can go on.
    InputRequired {
        question: String,
    },
    /// The target's agent cancelled the task.
    Canceled {
        reason: String,
    },
}
