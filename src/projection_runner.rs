//! Keeps every projection's view up to date from the positioned log.
//!
//! One runner per process reads the log after the projections'
//! checkpoints, applies a batch to **every** view and moves every
//! checkpoint, all in one transaction — so each entry takes effect exactly
//! once whatever crashes when, and a batch costs one read of the log, a few
//! set-based statements per view (see `Projection::apply_batch`) and one
//! commit, however many views there are. The checkpoint rows are locked
//! `FOR UPDATE` (in name order) for the batch: with several service
//! processes on one database, their runners take turns instead of applying
//! an entry twice, and any of them carries on when another dies. (A row
//! lock scoped to the batch transaction does what an advisory leader lock
//! would, with no lock to lose track of between batches.) A rebuild
//! ([`crate::rebuild`]) takes one checkpoint row for its short swap, and
//! the runner waits for it.

use std::sync::Arc;

use projections::{LedgerEvent, LogEntry, Projection, ProjectionError};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::log::follow::{follow, OnError, Round, Rounds, IDLE_CHECK, RETRY_PAUSE};
use crate::log::progress::{Progress, PROJECTION_CHANNEL};
use crate::log::reader::read_after;

/// Most log entries applied in one transaction.
pub const BATCH_SIZE: i64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("projection {name} failed at position {position}: {source}")]
    Apply {
        name: &'static str,
        /// The first position of the batch that failed.
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

/// Follow the log for `projections` until cancelled. A failed batch is
/// retried after a pause (its entries are never skipped).
pub async fn run(
    pool: PgPool,
    projections: Vec<Box<dyn Projection>>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) {
    let mut rounds = Runner {
        pool: &pool,
        projections: &projections,
        progress: &progress,
    };
    let mut sequenced = progress.subscribe_sequenced();
    // Every failure is retried: this ends only once cancelled.
    let _ = follow(&mut rounds, &mut sequenced, IDLE_CHECK, &cancel).await;
}

/// The runner's rounds: each applies the next batch to every view.
struct Runner<'a> {
    pool: &'a PgPool,
    projections: &'a [Box<dyn Projection>],
    progress: &'a Progress,
}

impl Rounds for Runner<'_> {
    type Error = RunnerError;

    async fn round(&mut self) -> Result<Round, RunnerError> {
        for (name, position) in step(self.pool, self.projections).await? {
            self.progress.publish_projected(name, position);
        }
        // Caught up once every view has what the log's head holds, as far
        // as this process has heard.
        let slowest = self
            .projections
            .iter()
            .map(|p| self.progress.projected(p.name()).unwrap_or(-1))
            .min()
            .unwrap_or(-1);
        Ok(if slowest >= 0 && slowest >= self.progress.head() {
            Round::CaughtUp
        } else {
            Round::Progressed
        })
    }

    fn on_error(&mut self, error: &RunnerError, _: u32) -> OnError {
        tracing::error!(%error, "projection batch failed; retrying");
        OnError::RetryAfter(RETRY_PAUSE)
    }
}

/// Apply the next batch to every projection; returns each checkpoint after
/// it (none for a projection whose checkpoint row is missing).
#[tracing::instrument(skip_all, err)]
pub async fn step(
    pool: &PgPool,
    projections: &[Box<dyn Projection>],
) -> Result<Vec<(&'static str, i64)>, RunnerError> {
    let mut tx = pool.begin().await?;
    // Views are derived from the log: a batch lost in a crash is re-applied
    // from the checkpoints, which are lost with it. No need to wait for the
    // WAL flush (WAL order keeps a checkpoint from outliving its log rows).
    sqlx::query("set local synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let mut names: Vec<&'static str> = projections.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    let locked: Vec<(String, i64)> = sqlx::query_as(
        "select name, position from projection_checkpoints where name = any($1) \
         order by name for update",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    let checkpoint_of = |name: &str| {
        locked
            .iter()
            .find(|(locked, _)| locked == name)
            .map(|(_, position)| *position)
    };
    let Some(slowest) = projections
        .iter()
        .filter_map(|p| checkpoint_of(p.name()))
        .min()
    else {
        tx.rollback().await?;
        return Ok(Vec::new());
    };
    let entries = decoded_after(&mut tx, slowest, BATCH_SIZE).await?;
    let Some(last) = entries.last().map(|(entry, _)| entry.position) else {
        tx.rollback().await?;
        return Ok(projections
            .iter()
            .filter_map(|p| checkpoint_of(p.name()).map(|c| (p.name(), c)))
            .collect());
    };
    let mut moved = Vec::new();
    let mut reached = Vec::new();
    for projection in projections {
        let Some(checkpoint) = checkpoint_of(projection.name()) else {
            continue;
        };
        let from = entries.partition_point(|(entry, _)| entry.position <= checkpoint);
        let batch = &entries[from..];
        if let Some((first, _)) = batch.first() {
            projection
                .apply_batch(&mut tx, batch)
                .await
                .map_err(|source| RunnerError::Apply {
                    name: projection.name(),
                    position: first.position,
                    source,
                })?;
            moved.push(projection.name());
        }
        reached.push((projection.name(), checkpoint.max(last)));
    }
    save_checkpoints(&mut tx, &moved, last).await?;
    tx.commit().await?;
    Ok(reached)
}

/// Up to `limit` entries after `after`, decoded; a batch stops before the
/// first entry that does not decode (and fails if that is the first).
async fn decoded_after(
    tx: &mut Transaction<'_, Postgres>,
    after: i64,
    limit: i64,
) -> Result<Vec<(LogEntry, LedgerEvent)>, RunnerError> {
    let entries = read_after(&mut **tx, after, limit).await?;
    let mut decoded = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry.decode() {
            Ok(event) => decoded.push((entry, event)),
            Err(error) if decoded.is_empty() => {
                return Err(RunnerError::Apply {
                    name: "every projection",
                    position: entry.position,
                    source: error.into(),
                })
            }
            Err(error) => {
                tracing::error!(position = entry.position, %error, "a log entry does not decode; the views stop before it");
                break;
            }
        }
    }
    Ok(decoded)
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
    save_checkpoints(tx, &[name], position).await
}

/// Move the checkpoints of `names` to `position` and announce each, in one
/// statement (a batch touches every view; one round trip instead of two
/// per view is a measurable share of a command's cost).
pub(crate) async fn save_checkpoints(
    tx: &mut Transaction<'_, Postgres>,
    names: &[&str],
    position: i64,
) -> Result<(), sqlx::Error> {
    if names.is_empty() {
        return Ok(());
    }
    // The notifications are delivered at commit, so other processes never
    // hear of an uncommitted checkpoint.
    sqlx::query(
        "with moved as (update projection_checkpoints set position = $2, updated_at = now() \
         where name = any($1) returning name, position) \
         select count(pg_notify($3, name || ',' || position)) from moved",
    )
    .bind(names)
    .bind(position)
    .bind(PROJECTION_CHANNEL)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Apply up to [`BATCH_SIZE`] entries after `after` to one projection;
/// returns the last position applied (`after` when there was nothing to
/// apply).
pub(crate) async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    projection: &dyn Projection,
    after: i64,
) -> Result<i64, RunnerError> {
    let entries = decoded_after(tx, after, BATCH_SIZE).await?;
    let Some(last) = entries.last().map(|(entry, _)| entry.position) else {
        return Ok(after);
    };
    projection
        .apply_batch(&mut *tx, &entries)
        .await
        .map_err(|source| RunnerError::Apply {
            name: projection.name(),
            position: after + 1,
            source,
        })?;
    Ok(last)
}
