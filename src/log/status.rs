//! Where the log and the views stand, read from the tables: the head,
//! each projection's checkpoint and lag, committed events not yet
//! positioned, the busy-target queue's depth. `/readyz` and `/metrics` both
//! report it; it lives with the log because it is the log's state.

use std::time::Duration;

use sqlx::PgPool;

/// Longest a scrape or readiness check waits for the database.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the log and this process's projections stand.
#[derive(Debug, Clone, PartialEq)]
pub struct LogStatus {
    pub head: i64,
    /// `(name, checkpoint, seconds since the oldest unapplied entry was
    /// recorded — 0 when caught up)`, in the order asked.
    pub projections: Vec<(String, i64, f64)>,
    /// Requests waiting in the busy-target queue (all targets).
    pub queue_depth: i64,
    /// The dispatcher's checkpoint, once a dispatcher has led.
    pub dispatcher_checkpoint: Option<i64>,
    /// Committed events the sequencer has not positioned yet.
    pub unpositioned: i64,
    /// Seconds since the oldest of them was written (0 when none).
    pub oldest_unpositioned_seconds: f64,
}

/// A projection's checkpoint row, with how far behind the log it is.
#[derive(sqlx::FromRow)]
struct Checkpoint {
    name: String,
    position: i64,
    lag_seconds: f64,
}

/// Read the head and the checkpoints of `names` from the tables (bounded
/// by [`DATABASE_TIMEOUT`]).
pub async fn log_status(pool: &PgPool, names: &[String]) -> Result<LogStatus, String> {
    let read = async {
        let head: i64 = sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(pool)
            .await?;
        let checkpoints: Vec<Checkpoint> = sqlx::query_as(
            "select c.name, c.position, \
             coalesce((select greatest(extract(epoch from now() - l.recorded_at), 0)::float8 \
                       from ledger_log l where l.position = c.position + 1), 0) as lag_seconds \
             from projection_checkpoints c where c.name = any($1)",
        )
        .bind(names)
        .fetch_all(pool)
        .await?;
        let queue_depth: i64 =
            sqlx::query_scalar("select count(*) from a2a_queue where status = 'queued'")
                .fetch_one(pool)
                .await?;
        let dispatcher_checkpoint: Option<i64> = sqlx::query_scalar(
            "select position from process_checkpoints where name = 'dispatcher'",
        )
        .fetch_optional(pool)
        .await?;
        // Events after the sequencer's watermark (the last entry's writing
        // transaction and event id): committed, but not in the log yet —
        // normally for milliseconds; for as long as the oldest transaction
        // still running anywhere on the cluster, when one is left open.
        let (unpositioned, oldest_unpositioned_seconds): (i64, f64) = sqlx::query_as(
            "with tail as (select tx_id, event_id from ledger_log order by position desc limit 1)              select count(*),              coalesce(greatest(extract(epoch from now() - min(e.recorded_at)), 0), 0)::float8              from events e              where not exists (select 1 from tail)                 or (e.tx_id, e.event_id) > (select tx_id, event_id from tail)",
        )
        .fetch_one(pool)
        .await?;
        let mut projections = Vec::with_capacity(names.len());
        for name in names {
            let (position, seconds) = match checkpoints.iter().find(|c| c.name == *name) {
                Some(checkpoint) => (checkpoint.position, checkpoint.lag_seconds),
                // No checkpoint row: nothing applied yet.
                None => (0, 0.0),
            };
            projections.push((name.clone(), position, seconds));
        }
        Ok::<_, sqlx::Error>(LogStatus {
            head,
            projections,
            queue_depth,
            dispatcher_checkpoint,
            unpositioned,
            oldest_unpositioned_seconds,
        })
    };
    match tokio::time::timeout(DATABASE_TIMEOUT, read).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => Err(format!("database unreachable: {error}")),
        Err(_) => Err(format!(
            "database unreachable: no answer within {DATABASE_TIMEOUT:?}"
        )),
    }
}
