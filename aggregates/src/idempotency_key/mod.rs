//! A per-workspace idempotency key: `(workspace, key)` maps to one live
//! delegation. Because it is an aggregate, two concurrent requests with the
//! same key race on its optimistic-concurrency check and exactly one wins;
//! no side table or unique index is needed. Once the delegation it holds
//! has failed, the key is free again.

mod aggregate;

pub use aggregate::{
    aggregate_id, IdempotencyKey, IdempotencyKeyCommand, IdempotencyKeyError, IdempotencyKeyEvent,
    MAX_KEY_CHARS,
};
