//! Leadership and the log follower.
//!
//! One dispatcher per database leads, elected with a session-level advisory
//! lock held on a dedicated connection (as the sequencer is). While leading
//! it:
//!
//! 1. waits until the `delegations` view has caught up with its own
//!    checkpoint, then drives every managed delegation that is not
//!    terminal — the resume after a crash or a takeover;
//! 2. follows the log from its checkpoint, reacting to each entry
//!    ([`super::reactions`]) and moving the checkpoint past a batch only
//!    once its reactions were carried out (a drive is *started*; a finish is
//!    *committed*);
//! 3. sweeps expired queue items.
//!
//! It stops leading when its lock connection fails; its drive tasks are
//! aborted then, which is no worse than a crash: everything resumes from
//! the recorded state.

use std::sync::Arc;
use std::time::Duration;

use aggregates::delegation::{Delegation, DelegationCommand, DelegationError, StatusUpdate};
use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::drain::expire_due;
use super::drive::{actor, metadata};
use super::reactions::{reaction, Reaction};
use super::{DispatchError, Dispatcher};
use crate::commands::CommandError;
use crate::log::progress::Progress;
use crate::log::reader::read_after;
use crate::shutdown::Shutdown;

/// The advisory lock key that elects the dispatcher ("ledgdsp1").
pub const LEADER_LOCK_KEY: i64 = 0x6c65_6467_6473_7031;
/// The dispatcher's row in `process_checkpoints`.
pub const CHECKPOINT: &str = "dispatcher";
/// Log entries read per round.
const BATCH: i64 = 500;
/// How often the lock connection is checked while idle.
const LIVENESS_CHECK: Duration = Duration::from_secs(2);

/// Run for the life of the process: campaign, lead while elected.
pub async fn run(dispatcher: Arc<Dispatcher>, progress: Arc<Progress>, mut shutdown: Shutdown) {
    let pool = dispatcher.pool.clone();
    while !shutdown.is_shutdown() {
        match crate::leader::campaign(&pool, LEADER_LOCK_KEY).await {
            Ok(Some(mut lock)) => {
                tracing::info!("dispatcher elected leader");
                let mut tasks = JoinSet::new();
                let led = lead(&dispatcher, &progress, &mut lock, &mut tasks, &mut shutdown).await;
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                dispatcher.clear_in_flight();
                if let Err(error) = led {
                    tracing::error!(%error, "dispatcher stopped leading; campaigning again");
                }
                let _ = lock.close().await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "dispatcher could not campaign"),
        }
        tokio::select! {
            _ = tokio::time::sleep(dispatcher.config.election_interval) => {}
            _ = shutdown.wait() => {}
        }
    }
}

async fn lead(
    d: &Arc<Dispatcher>,
    progress: &Progress,
    lock: &mut PgConnection,
    tasks: &mut JoinSet<()>,
    shutdown: &mut Shutdown,
) -> Result<(), DispatchError> {
    let pool = d.pool.clone();
    sqlx::query("insert into process_checkpoints (name) values ($1) on conflict do nothing")
        .bind(CHECKPOINT)
        .execute(&pool)
        .await?;
    let mut checkpoint: i64 =
        sqlx::query_scalar("select position from process_checkpoints where name = $1")
            .bind(CHECKPOINT)
            .fetch_one(&pool)
            .await?;
    resume(d, &pool, checkpoint, tasks, shutdown).await?;

    let mut sequenced = progress.subscribe_sequenced();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        if shutdown.is_shutdown() {
            return Ok(());
        }
        while tasks.try_join_next().is_some() {}
        if last_sweep.elapsed() >= d.config.expiry_sweep {
            last_sweep = tokio::time::Instant::now();
            if let Err(error) = expire_due(&pool, &d.bus, Utc::now()).await {
                tracing::warn!(%error, "queue expiry sweep failed");
            }
        }
        let entries = read_after(&pool, checkpoint, BATCH).await?;
        if let Some(last) = entries.last().map(|e| e.position) {
            for entry in &entries {
                match entry.decode() {
                    Ok(event) => match reaction(&event) {
                        Some(Reaction::Drive(id)) => d.start(tasks, id),
                        Some(Reaction::Finish {
                            delegation_id,
                            update,
                        }) => finish(d, delegation_id, update).await?,
                        None => {}
                    },
                    Err(error) => {
                        tracing::error!(position = entry.position, %error, "dispatcher cannot read a log entry; skipping it")
                    }
                }
            }
            checkpoint = last;
            sqlx::query(
                "update process_checkpoints set position = $2, updated_at = now() where name = $1",
            )
            .bind(CHECKPOINT)
            .bind(checkpoint)
            .execute(&pool)
            .await?;
            continue;
        }
        let wait = d.config.expiry_sweep.min(LIVENESS_CHECK);
        tokio::select! {
            _ = sequenced.changed() => {}
            _ = tokio::time::sleep(wait) => {
                sqlx::query("select 1").execute(&mut *lock).await?;
            }
            _ = shutdown.wait() => return Ok(()),
        }
    }
}

/// Drive every managed delegation that is not terminal, as the
/// `delegations` view knows them once it has caught up with `checkpoint`.
async fn resume(
    d: &Arc<Dispatcher>,
    pool: &PgPool,
    checkpoint: i64,
    tasks: &mut JoinSet<()>,
    shutdown: &mut Shutdown,
) -> Result<(), DispatchError> {
    loop {
        let projected: i64 = sqlx::query_scalar(
            "select coalesce((select position from projection_checkpoints where name = 'delegations'), 0)",
        )
        .fetch_one(pool)
        .await?;
        if projected >= checkpoint {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
    let open: Vec<Uuid> = sqlx::query_scalar(
        "select delegation_id from delegations \
         where origin = 'managed' and status not in ('completed', 'failed') \
         order by created_at",
    )
    .fetch_all(pool)
    .await?;
    if !open.is_empty() {
        tracing::info!(count = open.len(), "resuming open delegations");
    }
    for id in open {
        d.start(tasks, id);
    }
    Ok(())
}

/// The log rule: a queue item's end is its delegation's end.
async fn finish(
    d: &Dispatcher,
    delegation_id: Uuid,
    update: StatusUpdate,
) -> Result<(), DispatchError> {
    let command = DelegationCommand::UpdateStatus {
        update,
        actor: actor(),
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<Delegation>(&delegation_id.to_string(), command, metadata())
        .await
    {
        Ok(_) => Ok(()),
        // Already finished (same or other outcome) or gone: nothing to do.
        Err(CommandError::Rejected(
            DelegationError::TerminalConflict { .. }
            | DelegationError::NotFound
            | DelegationError::InvalidTransition { .. },
        )) => Ok(()),
        Err(other) => Err(other.into()),
    }
}
