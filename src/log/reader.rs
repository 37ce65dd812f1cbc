//! Reading the positioned log, joined with the events it positions.

use projections::LogEntry;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, PgPool, Row};

/// Reads the log for anything that follows it by position.
#[derive(Debug, Clone)]
pub struct LogReader {
    pool: PgPool,
}

const SELECT_ENTRIES: &str = "select l.position, l.event_id, l.aggregate_type, l.aggregate_id, \
     l.sequence, l.event_type, e.event_version, e.payload, e.metadata, l.recorded_at \
     from ledger_log l join events e on e.event_id = l.event_id";

impl LogReader {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Up to `limit` entries with position > `after`, in order.
    pub async fn read_after(&self, after: i64, limit: i64) -> Result<Vec<LogEntry>, sqlx::Error> {
        read_after(&self.pool, after, limit).await
    }

    /// Up to `limit` entries with `after < position <= upto` that concern
    /// `workspace` (as source or target), in order — through the
    /// `ledger_log_{source,target}_workspace` indexes, so a workspace's
    /// replay reads its own entries, not the whole log.
    pub async fn read_for_workspace(
        &self,
        workspace: uuid::Uuid,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<LogEntry>, sqlx::Error> {
        let sql = format!(
            "{SELECT_ENTRIES} where l.position in ( \
               (select position from ledger_log where source_workspace = $1 \
                  and position > $2 and position <= $3 order by position limit $4) \
               union \
               (select position from ledger_log where target_workspace = $1 \
                  and position > $2 and position <= $3 order by position limit $4)) \
             order by l.position limit $4"
        );
        sqlx::query(&sql)
            .bind(workspace)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .try_map(|row: PgRow| entry_from_row(&row))
            .fetch_all(&self.pool)
            .await
    }

    /// The last position written, 0 for an empty log.
    pub async fn head(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("select coalesce(max(position), 0) from ledger_log")
            .fetch_one(&self.pool)
            .await
    }
}

/// Up to `limit` entries with position > `after`, in order, on any executor
/// (a projection runner reads inside its own transaction).
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: i64,
    limit: i64,
) -> Result<Vec<LogEntry>, sqlx::Error> {
    let sql = format!("{SELECT_ENTRIES} where l.position > $1 order by l.position limit $2");
    sqlx::query(&sql)
        .bind(after)
        .bind(limit)
        .try_map(|row: PgRow| entry_from_row(&row))
        .fetch_all(executor)
        .await
}

fn entry_from_row(row: &PgRow) -> Result<LogEntry, sqlx::Error> {
    Ok(LogEntry {
        position: row.try_get("position")?,
        event_id: row.try_get("event_id")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}
