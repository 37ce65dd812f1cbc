//! A queue item: a request for a busy target, parked until the target's
//! heartbeat reports spare capacity.
//!
//! `queued → dispatched → completed`; a failed dispatch goes back to
//! `queued` until [`MAX_ATTEMPTS`] attempts were made, then `failed`. An
//! item past its `expires_at` is never dispatched: it becomes `expired`.

mod aggregate;
mod commands;
mod events;
mod response;

pub use aggregate::{QueueItem, QueueItemError, MAX_ATTEMPTS};
pub use commands::QueueItemCommand;
pub use events::{Priority, QueueItemEvent, QueueItemStatus};
pub use response::response_body;
