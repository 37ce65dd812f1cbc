//! The pure domain of the Delegation Ledger.
//!
//! Every delegation, every queued request for a busy target, every
//! idempotency key and every registered workspace is a cqrs-es
//! [`Aggregate`](cqrs_es::Aggregate): a command is decided against the state
//! folded from past events, and the decision is a list of new events or a
//! typed error. Nothing here does IO or reads a clock — the time of a change
//! arrives on the command — so the same code runs on the write path, in
//! audits ("what was the state as of position N?") and in the tests.
//!
//! # Layout
//!
//! * [`delegation`] — one task handed from a source workspace to a target.
//! * [`queue_item`] — a request parked because its target was busy.
//! * [`idempotency_key`] — a per-workspace key that maps to one live
//!   delegation; strongly consistent because it is itself an aggregate.
//! * [`workspace`] — the registry entry of an agent workspace.
//! * [`common`] — values shared by all of them (actor, previews).
//! * [`upcasters`] — older event shapes turned into the current ones, for
//!   the write path and the log readers alike.

pub mod common;
pub mod delegation;
pub mod idempotency_key;
pub mod queue_item;
pub mod upcasters;
pub mod workspace;

pub use common::{preview, Actor};
