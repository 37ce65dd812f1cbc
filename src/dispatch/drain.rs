//! The heartbeat drain and queue expiry.
//!
//! A heartbeat with spare capacity *claims* that target's queued items in
//! drain order (priority, then FIFO by log position). A claim is a
//! `QueueItem` command decided with optimistic concurrency: two drains that
//! race for one item both load it `queued`, exactly one commits the claim,
//! the other gets a conflict (or `not queued`) and moves on to the next
//! item — so no item is ever dispatched twice. The dispatcher leader
//! reacts to the claim in the log and sends.
//!
//! The claims of one drain commit without waiting for the views; the drain
//! waits once, for its last write (which the views apply after every
//! earlier one), so the heartbeat still answers read-your-writes.
//!
//! An item past its `expires_at` is never claimed: the drain marks it
//! expired instead, and so does a periodic sweep, so that an item whose
//! target never sends another heartbeat still ends (and ends its
//! delegation).

use std::collections::HashMap;

use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::commands::{CommandBus, CommandError};

/// Candidates read per query while draining.
const PAGE: i64 = 100;

fn metadata() -> HashMap<String, String> {
    HashMap::from([("actor".to_string(), "system:drain".to_string())])
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A queue-item command failed for a reason the drain does not pass
    /// over (the store failed, or the item refused in an unexpected way).
    #[error("queue item command: {0}")]
    Command(#[from] CommandError<QueueItemError>),
}

/// Claim up to `slots` of `target`'s queued items for dispatch, expiring
/// those past their time on the way; returns how many were claimed.
pub async fn drain(
    pool: &sqlx::PgPool,
    bus: &CommandBus,
    target: Uuid,
    slots: u32,
    now: DateTime<Utc>,
) -> Result<u32, DrainError> {
    let quick = bus.without_view_wait();
    let mut claimed = 0u32;
    let mut last_write: Option<crate::log::Watermark> = None;
    let mut after: Option<(i16, i64)> = None;
    while claimed < slots {
        let page: Vec<(Uuid, Option<DateTime<Utc>>, i16, i64)> = sqlx::query_as(
            "select queue_id, expires_at, priority, log_position from a2a_queue \
             where workspace_id = $1 and status = 'queued' \
             and ($2::smallint is null or (priority, -log_position) < ($2, -$3)) \
             order by priority desc, log_position limit $4",
        )
        .bind(target)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.2, last.3));
        for (queue_id, expires_at, _, _) in page {
            if claimed >= slots {
                break;
            }
            if expires_at.is_some_and(|e| e <= now) {
                if let Some(mark) = expire(&quick, queue_id, now).await? {
                    last_write = Some(mark);
                }
                continue;
            }
            let command = QueueItemCommand::Claim { at: now };
            match quick
                .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
                .await
            {
                Ok(executed) => {
                    if let Some(mark) = executed.watermark {
                        claimed += 1;
                        last_write = Some(mark);
                    }
                }
                // Another drain took it, or it expired meanwhile: next one.
                Err(CommandError::Rejected(
                    QueueItemError::NotQueued { .. } | QueueItemError::Expired,
                ))
                | Err(CommandError::Conflict) => {}
                Err(other) => return Err(other.into()),
            }
        }
    }
    if let Some(mark) = last_write {
        bus.wait_for_views(mark).await;
    }
    if claimed > 0 {
        tracing::info!(%target, claimed, "drained queued requests");
    }
    Ok(claimed)
}

/// Mark every queued item whose time is up as expired; returns how many.
pub async fn expire_due(
    pool: &sqlx::PgPool,
    bus: &CommandBus,
    now: DateTime<Utc>,
) -> Result<u32, DrainError> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "select queue_id from a2a_queue where status = 'queued' and expires_at <= $1 \
         order by expires_at limit 500",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut expired = 0;
    for queue_id in due {
        if expire(bus, queue_id, now).await?.is_some() {
            expired += 1;
        }
    }
    Ok(expired)
}

/// Expire one item; returns where its expiry event is, if this call wrote
/// one.
async fn expire(
    bus: &CommandBus,
    queue_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<crate::log::Watermark>, DrainError> {
    match bus
        .execute::<QueueItem>(
            &queue_id.to_string(),
            QueueItemCommand::Expire { at: now },
            metadata(),
        )
        .await
    {
        Ok(executed) => Ok(executed.watermark),
        Err(CommandError::Rejected(_)) | Err(CommandError::Conflict) => Ok(None),
        Err(other) => Err(other.into()),
    }
}
