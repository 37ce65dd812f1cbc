//! What the dispatcher and the drain may ask of a queue item.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::events::Priority;
use crate::delegation::Outcome;

#[derive(Debug, Clone, PartialEq)]
pub enum QueueItemCommand {
    /// Park a request. Enqueuing the same item again with the same content
    /// is a no-op; other content is rejected.
    Enqueue {
        queue_id: Uuid,
        /// The busy workspace the request is for.
        target_id: Uuid,
        /// The workspace that sent it.
        caller_id: Uuid,
        priority: Priority,
        /// The JSON-RPC method of the parked request (`message/send`, …).
        method: String,
        body: serde_json::Value,
        idempotency_key: Option<String>,
        expires_at: Option<DateTime<Utc>>,
        delegation_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    /// Take the item for one dispatch attempt (attempt + 1). Rejected when
    /// the item is not queued or has expired by `at`.
    Claim { at: DateTime<Utc> },
    /// The dispatched request ended at its target: `outcome` is how (and
    /// its delegation's end).
    Complete { outcome: Outcome, at: DateTime<Utc> },
    /// The dispatched attempt failed: back to the queue, or `failed` after
    /// the last allowed attempt.
    Fail { error: String, at: DateTime<Utc> },
    /// Mark a queued item whose `expires_at` has passed by `at`.
    Expire { at: DateTime<Utc> },
    /// End a live item (queued or dispatched) because its delegation ended
    /// another way (cancelled, past its deadline): it becomes `failed` with
    /// `reason`, and is never dispatched again. A no-op on an ended item.
    Withdraw { reason: String, at: DateTime<Utc> },
}
