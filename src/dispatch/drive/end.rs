//! Where a drive's outcome is recorded, and the one writer of a
//! delegation's end.
//!
//! A drive that learns how a delegation ended — the agent's answer, a
//! followed task that finished, a failure — records it **once**:
//!
//! * A delegation that came through the queue: on its queue item
//!   (`QueueItemCommand::Complete`, the outcome typed). The log rule
//!   ([`crate::dispatch::reactions`]) turns the item's end into the
//!   delegation's end with [`end_delegation`]; the drive does not write the
//!   delegation as well. The dispatcher's checkpoint passes the item's
//!   entry only once that end is committed, so a crash right after the
//!   item's commit still ends the delegation — "queued but never resolved"
//!   cannot happen.
//! * Any other delegation: on the delegation, with [`end_delegation`].
//!
//! So [`end_delegation`] is the only code that ends a delegation with an
//! outcome the dispatcher learnt, and its tolerated rejections are the same
//! whichever path called it. (An answer that is final the moment it
//! arrives is also on the delegation already: the acknowledgement records
//! it in the same commit as the send's, see [`crate::dispatch::outcome`],
//! so that a crash cannot keep one without the other. Its end is then
//! recorded as above as well, and ending the delegation again with the
//! same outcome is a no-op.)

use aggregates::delegation::{Delegation, DelegationCommand, DelegationError, Outcome};
use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError, QueueItemStatus};
use chrono::Utc;
use uuid::Uuid;

use super::{actor, metadata, outcome_counter};
use crate::commands::CommandError;
use crate::dispatch::outcome::storable_end;
use crate::dispatch::{DispatchError, Dispatcher};

/// How [`end_delegation`] left the delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It ends with the outcome given: recorded now, or already on record.
    WithThis,
    /// It had ended another way, or does not exist: nothing was written.
    Otherwise,
}

/// End delegation `id` with `end`.
///
/// Two rejections are expected, and mean there is nothing to do:
///
/// * `TerminalConflict` — the delegation already ended another way: the
///   agent reported it itself, its caller cancelled it, its deadline
///   passed. A finished delegation never changes; the first end stands.
///   (The end already on record, given again, is no rejection but a
///   no-op.)
/// * `NotFound` — no delegation has this id: a queue item that names a
///   delegation never recorded (the dispatcher never enqueues one; only an
///   item written by other means can).
///
/// `InvalidTransition` cannot happen — an [`Outcome`] is terminal and every
/// live status may end — so, like any other rejection, it is returned.
pub async fn end_delegation(
    d: &Dispatcher,
    id: Uuid,
    end: Outcome,
) -> Result<Ended, DispatchError> {
    let command = DelegationCommand::UpdateStatus {
        update: end.into(),
        actor: actor(),
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<Delegation>(&id.to_string(), command, metadata())
        .await
    {
        Ok(_) => Ok(Ended::WithThis),
        Err(CommandError::Rejected(
            DelegationError::TerminalConflict { .. } | DelegationError::NotFound,
        )) => Ok(Ended::Otherwise),
        Err(other) => Err(other.into()),
    }
}

/// Record `end`, the outcome a drive of `delegation` learnt, where the
/// module docs say.
pub(super) async fn finish(
    d: &Dispatcher,
    delegation: &Delegation,
    end: Outcome,
) -> Result<(), DispatchError> {
    // Failure reasons may quote the agent.
    let end = storable_end(end);
    let id = delegation.delegation_id();
    let outcome = label(&end);
    if let Some(queue_id) = delegation.queue_id() {
        match complete_queue_item(d, queue_id, end.clone()).await? {
            Item::Completed => {
                outcome_counter(outcome);
                tracing::info!(delegation_id = %id, %queue_id, outcome, "queued delegation finished; its queue item ends it");
                return Ok(());
            }
            Item::EndedBefore => return Ok(()),
            // Not dispatched and not ended (the drive never ends a
            // delegation whose item waits): nothing carries the outcome
            // but the delegation itself.
            Item::Live => {}
        }
    }
    if end_delegation(d, id, end).await? == Ended::WithThis {
        outcome_counter(outcome);
        tracing::info!(delegation_id = %id, outcome, "delegation finished");
    }
    Ok(())
}

/// What became of a queue item asked to carry an outcome.
enum Item {
    /// It was dispatched and now carries the outcome.
    Completed,
    /// It had ended already: its own end is the delegation's (the log rule
    /// records that one).
    EndedBefore,
    /// It is not dispatched and not ended (or missing).
    Live,
}

async fn complete_queue_item(
    d: &Dispatcher,
    queue_id: Uuid,
    outcome: Outcome,
) -> Result<Item, DispatchError> {
    let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
    match item.status() {
        Some(QueueItemStatus::Dispatched) => {}
        Some(status) if status.is_terminal() => return Ok(Item::EndedBefore),
        Some(_) | None => return Ok(Item::Live),
    }
    let command = QueueItemCommand::Complete {
        outcome,
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        Ok(_) => Ok(Item::Completed),
        // Moved on since it was loaded.
        Err(CommandError::Rejected(QueueItemError::NotDispatched { current }))
            if current.is_terminal() =>
        {
            Ok(Item::EndedBefore)
        }
        Err(CommandError::Rejected(QueueItemError::NotDispatched { .. })) => Ok(Item::Live),
        Err(other) => Err(other.into()),
    }
}

/// The `outcome` label of `ledger_dispatch_outcomes_total` for an end.
fn label(end: &Outcome) -> &'static str {
    match end {
        Outcome::Completed { .. } => "completed",
        Outcome::Failed { .. } => "failed",
        Outcome::Canceled { .. } => "canceled",
    }
}
