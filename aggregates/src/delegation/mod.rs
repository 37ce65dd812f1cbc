//! A delegation: one task handed from a source workspace to a target.
//!
//! Lifecycle: `pending → dispatched → received → in_progress → completed |
//! failed`; `queued` may occur between `dispatched` and `received`; `failed`
//! may occur from any non-terminal state. A *managed* delegation is
//! dispatched by the ledger and starts `pending`; a *recorded* one was
//! dispatched by the agent itself and starts `dispatched`.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{
    Delegation, DelegationError, MAX_TASK_BYTES, RESPONSE_PREVIEW_CHARS, TASK_PREVIEW_CHARS,
};
pub use commands::{DelegationCommand, StatusUpdate};
pub use events::{DelegationEvent, DelegationStatus, Origin, QueueOptions};
