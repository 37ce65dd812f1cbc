//! Keeps each projection's view up to date from the positioned log.
//!
//! A runner reads the log after its projection's checkpoint, applies a batch
//! to the view **and** moves the checkpoint in one transaction, so every
//! entry takes effect exactly once whatever crashes when. The checkpoint row
//! is locked `FOR UPDATE` for the batch: with several service processes on
//! one database, their runners of the same projection take turns instead of
//! applying an entry twice, and any of them carries on when another dies.
//! (A row lock scoped to the batch transaction does what an advisory
//! leader lock would, with no lock to lose track of between batches.)

use std::sync::Arc;
use std::time::Duration;

use projections::{Projection, ProjectionError};
use sqlx::{PgPool, Postgres, Transaction};

use crate::log::progress::{Progress, PROJECTION_CHANNEL};
use crate::log::reader::read_after;
use crate::shutdown::Shutdown;

/// Most log entries applied in one transaction.
pub const BATCH_SIZE: i64 = 500;
/// Pause after a failed batch before trying again (the entry is retried,
/// never skipped).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for news of the log before checking anyway.
const IDLE_CHECK: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("projection {name} failed at position {position}: {source}")]
    Apply {
        name: &'static str,
        position: i64,
        source: ProjectionError,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Make sure every projection has a checkpoint row.
pub async fn register(
    pool: &PgPool,
    projections: &[Box<dyn Projection>],
) -> Result<(), sqlx::Error> {
    for projection in projections {
        sqlx::query("insert into projection_checkpoints (name) values ($1) on conflict do nothing")
            .bind(projection.name())
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Follow the log for one projection until shutdown.
pub async fn run(
    pool: PgPool,
    projection: Box<dyn Projection>,
    progress: Arc<Progress>,
    mut shutdown: Shutdown,
) {
    let name = projection.name();
    let mut sequenced = progress.subscribe_sequenced();
    loop {
        if shutdown.is_shutdown() {
            return;
        }
        let known = progress.projected(name).unwrap_or(-1);
        if known >= 0 && known >= sequenced.borrow_and_update().head {
            tokio::select! {
                _ = sequenced.changed() => {}
                _ = tokio::time::sleep(IDLE_CHECK) => {}
                _ = shutdown.wait() => return,
            }
        }
        match step(&pool, projection.as_ref()).await {
            Ok(Some(position)) => progress.publish_projected(name, position),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, projection = name, "projection batch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
}

/// Apply the next batch; returns the checkpoint after it (None when the
/// checkpoint row is missing).
#[tracing::instrument(skip_all, fields(projection = projection.name()), err)]
pub async fn step(pool: &PgPool, projection: &dyn Projection) -> Result<Option<i64>, RunnerError> {
    let mut tx = pool.begin().await?;
    // Views are derived from the log: a batch lost in a crash is re-applied
    // from the checkpoint, which is lost with it. No need to wait for the
    // WAL flush (WAL order keeps a checkpoint from outliving its log rows).
    sqlx::query("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let Some(checkpoint) = lock_checkpoint(&mut tx, projection.name()).await? else {
        return Ok(None);
    };
    let position = apply_batch(&mut tx, projection, checkpoint).await?;
    if position > checkpoint {
        save_checkpoint(&mut tx, projection.name(), position).await?;
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(Some(position))
}

/// Rebuild the projection's view from the log, online (see
/// [`crate::rebuild`]); returns the checkpoint reached.
pub use crate::rebuild::rebuild;

pub(crate) async fn lock_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("select position from projection_checkpoints where name = $1 for update")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
}

pub(crate) async fn save_checkpoint(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update projection_checkpoints set position = $2, updated_at = now() where name = $1",
    )
    .bind(name)
    .bind(position)
    .execute(&mut **tx)
    .await?;
    // Delivered at commit, so other processes never hear of an uncommitted
    // checkpoint.
    sqlx::query("select pg_notify($1, $2)")
        .bind(PROJECTION_CHANNEL)
        .bind(format!("{name},{position}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Apply up to [`BATCH_SIZE`] entries after `after`; returns the last
/// position applied (`after` when there was nothing to apply).
pub(crate) async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    projection: &dyn Projection,
    after: i64,
) -> Result<i64, RunnerError> {
    let entries = read_after(&mut **tx, after, BATCH_SIZE).await?;
    let mut position = after;
    for entry in &entries {
        let applied = match entry.decode() {
            Ok(event) => projection.apply(tx, entry, &event).await,
            Err(error) => Err(error.into()),
        };
        applied.map_err(|source| RunnerError::Apply {
            name: projection.name(),
            position: entry.position,
            source,
        })?;
        position = entry.position;
    }
    Ok(position)
}
