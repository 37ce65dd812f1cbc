//! Read models of the Delegation Ledger.
//!
//! A projection turns entries of the positioned log into rows of a view.
//! Each projection here is split in two halves on purpose:
//!
//! * a **pure mapping** (`changes(entry, event) -> Vec<Change>`), unit-tested
//!   without a database, that decides what the event means for the view;
//! * the **SQL that applies** those changes inside the runner's transaction.
//!
//! The runner that reads the log, applies a batch and moves the checkpoint
//! in one transaction lives in the service (`src/projection_runner.rs`);
//! this crate never opens a connection or a transaction of its own.
//!
//! # Layout
//!
//! * [`entry`] — a positioned log entry and its decoded [`LedgerEvent`].
//! * [`activity`] — the `activity_logs` feed.
//! * [`broadcast`] — the live websocket feed's messages.
//! * [`delegations`] — the `delegations` status view.
//! * [`queue`] — the `a2a_queue` view of requests parked for busy targets.
//! * [`workspaces`] — the `workspaces` registry view.

pub mod activity;
pub mod broadcast;
pub mod delegations;
pub mod entry;
pub mod queue;
pub mod workspaces;

use std::future::Future;
use std::pin::Pin;

pub use entry::{DecodeError, LedgerEvent, LogEntry};
use sqlx::PgConnection;

/// Why a projection could not apply an entry. Either stops the runner at
/// that entry (it is retried, never skipped).
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The future returned by [`Projection::apply`].
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + 'a>>;

/// A view kept up to date from the positioned log.
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint row's key and the CLI's rebuild argument.
    fn name(&self) -> &'static str;

    /// The tables this projection owns; emptied before a rebuild.
    fn tables(&self) -> &'static [&'static str];

    /// Apply one entry to the view, on the runner's transaction.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entry: &'a LogEntry,
        event: &'a LedgerEvent,
    ) -> ApplyFuture<'a>;

    /// Apply a batch of entries, in order, on the runner's transaction. By
    /// default one entry at a time; a projection on the hot path folds the
    /// batch's changes in memory and writes them with a few set-based
    /// statements instead (the result must be the same).
    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        entries: &'a [(LogEntry, LedgerEvent)],
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            for (entry, event) in entries {
                self.apply(&mut *conn, entry, event).await?;
            }
            Ok(())
        })
    }
}

/// Every projection of the ledger, in the order the runner starts them.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(workspaces::WorkspacesProjection),
        Box::new(delegations::DelegationsProjection),
        Box::new(activity::ActivityProjection),
        Box::new(queue::QueueProjection),
    ]
}

/// Timestamps in view JSON (history entries, bodies) are written in one
/// fixed format so a rebuilt view is byte-for-byte equal to the live one.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
