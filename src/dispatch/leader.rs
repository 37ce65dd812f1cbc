//! Leadership and the log follower.
//!
//! One dispatcher per database leads, elected with a session-level advisory
//! lock held on a dedicated connection (as the sequencer is). On election
//! it bumps the dispatcher's epoch in `leadership_epochs` (a new term:
//! every send it records is fenced by that epoch, so a leader deposed
//! later cannot send). While leading it:
//!
//! 1. waits until the `delegations` view has caught up with its own
//!    checkpoint, then drives every managed delegation that is not
//!    terminal — the resume after a crash or a takeover;
//! 2. follows the log from its checkpoint, reacting to each entry
//!    ([`super::reactions`]) and moving the checkpoint past a batch only
//!    once its reactions were carried out (a drive is *started*; a finish
//!    and a queue item's withdrawal are *committed*);
//! 3. sweeps expired queue items and delegations past their deadline;
//! 4. checks its lock connection every few seconds, busy or not.
//!
//! Its term ends when the lock connection fails or on shutdown. Then no new
//! send starts, but a send on the wire is finished and its answer recorded
//! (bounded by the A2A request timeout) before the remaining drive tasks
//! are stopped: a deploy's SIGTERM never turns a delivered request into an
//! unacknowledged one.

use std::sync::Arc;
use std::time::Duration;

use aggregates::delegation::{Delegation, DelegationCommand};
use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::drain::expire_due;
use super::drive::{actor, cancel_remote_task, end_delegation, metadata, withdraw_queue_item};
use super::reactions::{reaction, Reaction};
use super::{DispatchError, Dispatcher, Term, ROLE};
use crate::commands::CommandError;
use crate::leader::{Election, LivenessCheck, TermError, LIVENESS_CHECK};
use crate::log::follow::{follow, OnError, Round, Rounds};
use crate::log::progress::Progress;
use crate::log::reader::read_after;

/// The advisory lock key that elects the dispatcher ("ledgdsp1").
pub const LEADER_LOCK_KEY: i64 = 0x6c65_6467_6473_7031;
/// The dispatcher's row in `process_checkpoints`.
pub const CHECKPOINT: &str = "dispatcher";
/// Log entries read per round.
const BATCH: i64 = 500;
/// Delegations past their deadline failed per sweep.
const DEADLINE_SWEEP: i64 = 500;

/// Run until cancelled: campaign, lead while elected.
pub async fn run(dispatcher: Arc<Dispatcher>, progress: Arc<Progress>, cancel: CancellationToken) {
    let mut election = Election::new(
        &dispatcher.pool,
        ROLE,
        LEADER_LOCK_KEY,
        dispatcher.config.election_interval,
        &cancel,
    );
    while let Some(mut lock) = election.elected().await {
        let led = serve_term(&dispatcher, &progress, &mut lock, &cancel).await;
        election.step_down(lock, led).await;
    }
}

impl TermError for DispatchError {}

/// One term, from its epoch to the drain of its sends. The term's token is
/// a child of `cancel`: shutdown ends it, and so does the end of [`lead`].
async fn serve_term(
    d: &Arc<Dispatcher>,
    progress: &Progress,
    lock: &mut PgConnection,
    cancel: &CancellationToken,
) -> Result<(), DispatchError> {
    let epoch = take_epoch(lock).await?;
    tracing::info!(epoch, "dispatcher term begins");
    let term = Term {
        epoch,
        stop: cancel.child_token(),
    };
    let mut tasks = JoinSet::new();
    let led = lead(d, progress, lock, &mut tasks, &term).await;
    end_term(d, &term, tasks).await;
    led
}

/// Start a new term: the next epoch. The update waits for every fenced
/// write of an earlier term still in progress (they hold the row shared),
/// so once it returns no earlier term can record a send.
async fn take_epoch(lock: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let epoch: i64 = sqlx::query_scalar(
        "insert into leadership_epochs (role, epoch) values ($1, 1) \
         on conflict (role) do update set epoch = leadership_epochs.epoch + 1, elected_at = now() \
         returning epoch",
    )
    .bind(ROLE)
    .fetch_one(&mut *lock)
    .await?;
    Ok(u64::try_from(epoch).unwrap_or_default())
}

/// End a term: no new sends; sends on the wire finish and are recorded
/// (bounded by the request timeout); then whatever still runs (followers,
/// waits) is stopped.
async fn end_term(d: &Dispatcher, term: &Term, mut tasks: JoinSet<()>) {
    term.stop.cancel();
    let bound = d.config.client.request_timeout + Duration::from_secs(2);
    let drained =
        tokio::time::timeout(bound, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?bound,
            "dispatch tasks still running after the drain bound; stopping them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    d.clear_in_flight();
}

async fn lead(
    d: &Arc<Dispatcher>,
    progress: &Progress,
    lock: &mut PgConnection,
    tasks: &mut JoinSet<()>,
    term: &Term,
) -> Result<(), DispatchError> {
    let pool = d.pool.clone();
    sqlx::query("insert into process_checkpoints (name) values ($1) on conflict do nothing")
        .bind(CHECKPOINT)
        .execute(&pool)
        .await?;
    let checkpoint: i64 =
        sqlx::query_scalar("select position from process_checkpoints where name = $1")
            .bind(CHECKPOINT)
            .fetch_one(&pool)
            .await?;
    resume(d, &pool, checkpoint, tasks, term).await?;

    let mut rounds = Leading {
        d,
        pool: &pool,
        lock,
        tasks,
        term,
        checkpoint,
        last_sweep: tokio::time::Instant::now(),
        liveness: LivenessCheck::new(),
    };
    let idle = d.config.expiry_sweep.min(LIVENESS_CHECK);
    let mut sequenced = progress.subscribe_sequenced();
    follow(&mut rounds, &mut sequenced, idle, &term.stop)
        .await
        .map_err(|error| match error {
            RoundError::LockLost(error) => DispatchError::Database(error),
            RoundError::Follow(error) => error,
        })
}

/// The leader's rounds: reap finished drives, check the lock connection,
/// sweep when due, and react to the next batch of the log.
struct Leading<'a> {
    d: &'a Arc<Dispatcher>,
    pool: &'a PgPool,
    lock: &'a mut PgConnection,
    tasks: &'a mut JoinSet<()>,
    term: &'a Term,
    checkpoint: i64,
    last_sweep: tokio::time::Instant,
    liveness: LivenessCheck,
}

/// Why a round failed.
enum RoundError {
    /// The lock connection: the term ends.
    LockLost(sqlx::Error),
    /// Following the log: a failing database delays the follower, it does
    /// not depose it (a new term would leave answers in flight
    /// unrecorded).
    Follow(DispatchError),
}

impl Rounds for Leading<'_> {
    type Error = RoundError;

    async fn round(&mut self) -> Result<Round, RoundError> {
        let d = self.d;
        while self.tasks.try_join_next().is_some() {}
        // Only the lock connection failing ends the term.
        self.liveness
            .if_due(self.lock)
            .await
            .map_err(RoundError::LockLost)?;
        if self.last_sweep.elapsed() >= d.config.expiry_sweep {
            self.last_sweep = tokio::time::Instant::now();
            if let Err(error) = expire_due(self.pool, &d.bus, Utc::now()).await {
                tracing::warn!(%error, "queue expiry sweep failed");
            }
            if let Err(error) = expire_deadlines(d).await {
                tracing::warn!(%error, "deadline sweep failed");
            }
        }
        match follow_log(d, self.pool, &mut self.checkpoint, self.tasks, self.term).await {
            Ok(true) => Ok(Round::Progressed),
            Ok(false) => Ok(Round::CaughtUp),
            Err(error) => Err(RoundError::Follow(error)),
        }
    }

    fn on_error(&mut self, error: &RoundError, failures: u32) -> OnError {
        match error {
            RoundError::LockLost(_) => OnError::Stop,
            RoundError::Follow(error) => {
                let wait = self.d.config.retry.delay(failures);
                tracing::warn!(%error, ?wait, "dispatcher could not follow the log; retrying");
                OnError::RetryAfter(wait)
            }
        }
    }
}

/// React to the next batch of log entries and move the checkpoint past it;
/// false when there was none.
async fn follow_log(
    d: &Arc<Dispatcher>,
    pool: &PgPool,
    checkpoint: &mut i64,
    tasks: &mut JoinSet<()>,
    term: &Term,
) -> Result<bool, DispatchError> {
    let entries = read_after(pool, *checkpoint, BATCH).await?;
    let Some(last) = entries.last().map(|e| e.position) else {
        return Ok(false);
    };
    for entry in &entries {
        let event = match entry.decode() {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(position = entry.position, %error, "dispatcher cannot read a log entry; skipping it");
                continue;
            }
        };
        let reacted = match reaction(&event) {
            Some(Reaction::Drive(id)) => {
                d.start(tasks, id, term);
                Ok(())
            }
            Some(Reaction::Finish { delegation_id, end }) => {
                end_delegation(d, delegation_id, end).await.map(drop)
            }
            Some(Reaction::Withdraw {
                delegation_id,
                cancel_remote_task: cancel,
            }) => {
                let withdrawn = withdraw_queue_item(d, delegation_id).await;
                if withdrawn.is_ok() && cancel {
                    let dispatcher = d.clone();
                    tasks.spawn(async move {
                        if let Err(error) = cancel_remote_task(&dispatcher, delegation_id).await {
                            tracing::warn!(%delegation_id, %error, "could not ask the agent to cancel");
                        }
                    });
                }
                withdrawn
            }
            None => Ok(()),
        };
        match reacted {
            Ok(()) => {}
            // The database: this batch again, from the checkpoint.
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => {
                tracing::error!(position = entry.position, %error, "dispatcher reaction failed; moving on")
            }
        }
    }
    *checkpoint = last;
    sqlx::query("update process_checkpoints set position = $2, updated_at = now() where name = $1")
        .bind(CHECKPOINT)
        .bind(*checkpoint)
        .execute(pool)
        .await?;
    Ok(true)
}

/// Drive every managed delegation that is not terminal, as the
/// `delegations` view knows them once it has caught up with `checkpoint`.
async fn resume(
    d: &Arc<Dispatcher>,
    pool: &PgPool,
    checkpoint: i64,
    tasks: &mut JoinSet<()>,
    term: &Term,
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
            _ = term.stop.cancelled() => return Ok(()),
        }
    }
    let open: Vec<Uuid> = sqlx::query_scalar(
        "select delegation_id from delegations \
         where origin = 'managed' and status not in ('completed', 'failed', 'canceled') \
         order by created_at",
    )
    .fetch_all(pool)
    .await?;
    if !open.is_empty() {
        tracing::info!(count = open.len(), "resuming open delegations");
    }
    for id in open {
        d.start(tasks, id, term);
    }
    Ok(())
}

/// Fail every live delegation whose deadline has passed (its withdrawal,
/// and the agent's cancel, follow from the log).
async fn expire_deadlines(d: &Dispatcher) -> Result<u32, DispatchError> {
    let due: Vec<Uuid> = sqlx::query_scalar(
        "select delegation_id from delegations \
         where deadline <= now() and status not in ('completed', 'failed', 'canceled') \
         order by deadline limit $1",
    )
    .bind(DEADLINE_SWEEP)
    .fetch_all(&d.pool)
    .await?;
    let mut expired = 0;
    for id in due {
        let command = DelegationCommand::ExpireDeadline {
            actor: actor(),
            at: Utc::now(),
        };
        match d
            .bus
            .execute::<Delegation>(&id.to_string(), command, metadata())
            .await
        {
            Ok(executed) if executed.committed > 0 => {
                expired += 1;
                tracing::info!(delegation_id = %id, "delegation past its deadline failed");
            }
            Ok(_) | Err(CommandError::Rejected(_)) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(expired)
}
