//! Reading the positioned log, joined with the events it positions.

use projections::LogEntry;
use sqlx::{PgExecutor, PgPool};

/// Reads the log for anything that follows it by position.
#[derive(Debug, Clone)]
pub struct LogReader {
    pool: PgPool,
}

/// The columns of a [`LogEntry`] (its `FromRow` reads them by these names),
/// from [`LOG_WITH_EVENTS`]. The export selects them too, with more.
pub(crate) const ENTRY_COLUMNS: &str = "l.position, l.event_id, l.aggregate_type, \
     l.aggregate_id, l.sequence, l.event_type, e.event_version, e.payload, e.metadata, \
     l.recorded_at";

/// The log (`l`) joined with the events it positions (`e`).
pub(crate) const LOG_WITH_EVENTS: &str =
    "from ledger_log l join events e on e.event_id = l.event_id";

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
            "select {ENTRY_COLUMNS} {LOG_WITH_EVENTS} where l.position in ( \
               (select position from ledger_log where source_workspace = $1 \
                  and position > $2 and position <= $3 order by position limit $4) \
               union \
               (select position from ledger_log where target_workspace = $1 \
                  and position > $2 and position <= $3 order by position limit $4)) \
             order by l.position limit $4"
        );
        sqlx::query_as(&sql)
            .bind(workspace)
            .bind(after)
            .bind(upto)
            .bind(limit)
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
    let sql = format!(
        "select {ENTRY_COLUMNS} {LOG_WITH_EVENTS} where l.position > $1 order by l.position limit $2"
    );
    sqlx::query_as(&sql)
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await
}
