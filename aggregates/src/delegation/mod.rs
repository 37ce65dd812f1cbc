//! A delegation: one task handed from a source workspace to a target.
//!
//! Lifecycle: `pending → dispatched → received → in_progress → completed |
//! failed`; `queued` may occur between `dispatched` and `received`;
//! `input_required` (the target asked a question) may follow `dispatched`,
//! `received` or `in_progress` and leads back to `received`/`in_progress`;
//! `failed` and `canceled` may occur from any non-terminal state.
//! `completed`, `failed` and `canceled` are terminal. A *managed*
//! delegation is dispatched by the ledger and starts `pending`; a
//! *recorded* one was dispatched by the agent itself and starts
//! `dispatched`.

mod aggregate;
mod commands;
mod events;
mod outcome;

pub use aggregate::{
    Delegation, DelegationError, DEADLINE_EXCEEDED, MAX_TASK_BYTES, RESPONSE_PREVIEW_CHARS,
    TASK_PREVIEW_CHARS,
};
pub use commands::{DelegationCommand, StatusUpdate};
pub use events::{DelegationEvent, DelegationStatus, Origin, QueueOptions};
pub use outcome::Outcome;
