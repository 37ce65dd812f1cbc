//! Appending serialized events with a statement of our own.
//!
//! `postgres-es` inserts a command's events one statement at a time inside
//! its own transaction, and that transaction has room for nothing else. A
//! fenced command needs one more statement in the same transaction (the
//! leadership check), so it appends here instead — into the same table, in
//! the same shape: `SerializedEvent` is cqrs-es's own serialization, and
//! the payload and metadata travel as `jsonb` exactly as `postgres-es` binds
//! them, so the stored text (which the hash chain covers) is identical
//! whichever path wrote an event.

use std::collections::{HashMap, HashSet};

use cqrs_es::persist::SerializedEvent;
use sqlx::PgPool;

use super::Fence;
use crate::log::Watermark;

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer took one of the sequence numbers first (the primary
    /// key `(aggregate_type, aggregate_id, sequence)` refused the row).
    #[error("a concurrent writer won the race for this aggregate")]
    Conflict,
    /// The fence's epoch is no longer the role's current one.
    #[error("the leadership epoch is no longer current")]
    Fenced,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Insert `events` in one transaction, after checking (and holding, with a
/// shared row lock until commit) that `fence` is the current epoch of its
/// role. A new leader's epoch bump (`update … set epoch = epoch + 1`) waits
/// for that lock, so no append of an older epoch can commit after it.
pub async fn append_fenced(
    pool: &PgPool,
    events: &[SerializedEvent],
    fence: Fence,
) -> Result<(), AppendError> {
    let mut tx = pool.begin().await?;
    let current: Option<i64> =
        sqlx::query_scalar("select epoch from leadership_epochs where role = $1 for share")
            .bind(fence.role)
            .fetch_optional(&mut *tx)
            .await?;
    if current != i64::try_from(fence.epoch).ok() {
        tx.rollback().await?;
        return Err(AppendError::Fenced);
    }
    insert(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}

/// What a batch append wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Where each written event is: (aggregate id, sequence) → its
    /// `(tx_id, event_id)`, for read-your-writes.
    pub rows: HashMap<(String, i64), Watermark>,
    /// Aggregates that lost a race: none of their events were written.
    pub lost: HashSet<String>,
}

/// An event [`insert_batch`] wrote: where it is, for read-your-writes.
#[derive(sqlx::FromRow)]
struct WrittenRow {
    aggregate_id: String,
    sequence: i64,
    event_id: i64,
    /// The writing transaction's `xid8`, as text (sqlx has no `xid8` type).
    tx_id: String,
}

/// Append the events of many aggregates (of one type) in one statement and
/// one commit. An aggregate another writer got ahead of writes nothing —
/// its rows that did go in are taken out again before the commit, so an
/// aggregate's events are all written or none — and is reported `lost`.
pub async fn insert_batch(
    pool: &PgPool,
    events: &[&SerializedEvent],
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let returned: Vec<WrittenRow> = sqlx::query_as(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select t, i, s, et, ev, p::json, m::json \
         from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         as e(t, i, s, et, ev, p, m) \
         on conflict (aggregate_type, aggregate_id, sequence) do nothing \
         returning aggregate_id, sequence, event_id, tx_id::text as tx_id",
    )
    .bind(events.iter().map(|e| e.aggregate_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.aggregate_id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_version.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut written = Written::default();
    for row in returned {
        let mark = Watermark {
            tx_id: row
                .tx_id
                .parse()
                .map_err(|_| sqlx::Error::Protocol(format!("bad xid8 {}", row.tx_id)))?,
            event_id: row.event_id,
        };
        written.rows.insert((row.aggregate_id, row.sequence), mark);
    }
    let mut expected: HashMap<&str, usize> = HashMap::new();
    for event in events {
        *expected.entry(event.aggregate_id.as_str()).or_default() += 1;
    }
    let mut went_in: HashMap<&str, usize> = HashMap::new();
    for (id, _) in written.rows.keys() {
        *went_in.entry(id.as_str()).or_default() += 1;
    }
    let lost: HashSet<String> = expected
        .into_iter()
        .filter(|(id, count)| went_in.get(id).copied().unwrap_or(0) < *count)
        .map(|(id, _)| id.to_string())
        .collect();
    written.lost = lost;
    if !written.lost.is_empty() {
        let partial: Vec<(String, i64)> = written
            .rows
            .keys()
            .filter(|(id, _)| written.lost.contains(id))
            .cloned()
            .collect();
        if !partial.is_empty() {
            sqlx::query(
                "delete from events where aggregate_type = $1 \
                 and (aggregate_id, sequence) in (select * from unnest($2::text[], $3::bigint[]))",
            )
            .bind(events[0].aggregate_type.as_str())
            .bind(
                partial
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(partial.iter().map(|(_, s)| *s).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let lost = &written.lost;
        written.rows.retain(|(id, _), _| !lost.contains(id));
    }
    tx.commit().await?;
    Ok(written)
}

/// One multi-row INSERT of `events` on `conn`.
pub async fn insert(
    conn: &mut sqlx::PgConnection,
    events: &[SerializedEvent],
) -> Result<(), AppendError> {
    let inserted = sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         select t, i, s, et, ev, p::json, m::json \
         from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
         as e(t, i, s, et, ev, p, m)",
    )
    .bind(events.iter().map(|e| e.aggregate_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.aggregate_id.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_version.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            Err(AppendError::Conflict)
        }
        Err(error) => Err(error.into()),
    }
}
