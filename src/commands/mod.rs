//! The write path: load an aggregate, let it decide, commit its events.
//!
//! This is cqrs-es's `CqrsFramework::execute` with three things the service
//! needs and the framework does not return: the aggregate's state after the
//! command (for responses such as "current status"), whether anything was
//! committed (idempotent no-ops answer differently), and read-your-writes —
//! the call returns only once the new events are in the positioned log and
//! every projection has applied them (bounded by a timeout).
//!
//! Nothing else is written in the command's transaction; views are updated
//! by the projection runners from the log — with one exception, a *fenced*
//! command ([`CommandBus::execute_fenced`]): its transaction also checks that
//! a leadership epoch is still current (the dispatcher records each send
//! this way, so a deposed leader can record — and so make — no send).
//!
//! # Layout
//!
//! * [`append`] — events inserted in one statement, in the `postgres-es`
//!   table shape (for fenced commands, which need their own transaction).

pub mod append;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::{PgPool, Row};

use crate::log::{Progress, Watermark};

/// How often a command is re-decided after losing an optimistic-concurrency
/// race before the caller gets a conflict.
const CONFLICT_RETRIES: usize = 5;

/// The result of a command that was accepted.
#[derive(Debug)]
pub struct Executed<A> {
    /// The aggregate's state after the command.
    pub state: A,
    /// How many events were committed (0: the command was a no-op).
    pub committed: usize,
    /// Whether the events became visible in every view before the timeout.
    pub visible: bool,
    /// The sequence of the last event committed (`None` for a no-op), for
    /// [`CommandBus::wait_for_views`].
    pub last_sequence: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (a domain error: 4xx).
    #[error(transparent)]
    Rejected(E),
    /// Concurrent writers kept winning the race for this aggregate.
    #[error("the resource was changed concurrently; try again")]
    Conflict,
    /// The store failed (an opaque 5xx).
    #[error("event store failure: {0}")]
    Store(String),
    /// A fenced command's leadership epoch is no longer current: the
    /// process that issued it no longer leads.
    #[error("leadership epoch {epoch} of {role} is no longer current")]
    Fenced { role: &'static str, epoch: u64 },
}

/// A leadership epoch a fenced command must still hold when it commits
/// (see `leadership_epochs` in the migrations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The role: the `leadership_epochs` row.
    pub role: &'static str,
    pub epoch: u64,
}

/// Executes commands against the PostgreSQL event store.
#[derive(Clone)]
pub struct CommandBus {
    pool: PgPool,
    progress: Arc<Progress>,
    visibility_timeout: Duration,
    /// Whether `execute` waits for read-your-writes (HTTP handlers do; the
    /// dispatcher, which reads aggregates and never views, does not).
    wait_for_views: bool,
}

impl CommandBus {
    pub fn new(pool: PgPool, progress: Arc<Progress>, visibility_timeout: Duration) -> Self {
        Self {
            pool,
            progress,
            visibility_timeout,
            wait_for_views: true,
        }
    }

    /// This bus without the read-your-writes wait: `execute` returns once
    /// the events are committed (`Executed::visible` is then `false`). For
    /// background writers that read only aggregates, where the wait is pure
    /// latency and a query per command.
    pub fn without_view_wait(&self) -> Self {
        Self {
            wait_for_views: false,
            ..self.clone()
        }
    }

    /// The event store, reading older event versions through the same
    /// upcasters as the log readers (projections, audit), so all of them
    /// fold an aggregate from the same events.
    fn store<A: Aggregate>(&self) -> PersistedEventStore<PostgresEventRepository, A> {
        PersistedEventStore::new_event_store(PostgresEventRepository::new(self.pool.clone()))
            .with_upcasters(aggregates::upcasters::upcasters())
    }

    /// The current state of an aggregate, folded from its events (a default
    /// state when it has none).
    pub async fn load<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<A, CommandError<A::Error>> {
        let mut context = self
            .store::<A>()
            .load_aggregate(aggregate_id)
            .await
            .map_err(store_error)?;
        Ok(std::mem::take(context.aggregate()))
    }

    /// Decide and commit `command`, retrying lost concurrency races, then
    /// wait until the new events are visible in every view. Runs in a
    /// `command` span (inside the request's span: method, route, request id).
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(aggregate = A::TYPE, aggregate_id = %aggregate_id)
    )]
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        let store = self.store::<A>();
        for _ in 0..CONFLICT_RETRIES {
            let mut context = store
                .load_aggregate(aggregate_id)
                .await
                .map_err(store_error)?;
            let sink = Default::default();
            context
                .aggregate()
                .handle(command.clone(), &(), &sink)
                .await
                .map_err(CommandError::Rejected)?;
            let state = context.aggregate().clone();
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    committed: 0,
                    visible: true,
                    last_sequence: None,
                });
            }
            match store.commit(events, context, metadata.clone()).await {
                Ok(committed) => {
                    let Some(last) = committed.last() else {
                        return Ok(Executed {
                            state,
                            committed: 0,
                            visible: true,
                            last_sequence: None,
                        });
                    };
                    let visible = if self.wait_for_views {
                        self.wait_visible(A::TYPE, aggregate_id, last.sequence)
                            .await
                    } else {
                        // Still position the events promptly.
                        self.progress.wake_sequencer();
                        false
                    };
                    return Ok(Executed {
                        state,
                        committed: committed.len(),
                        visible,
                        last_sequence: Some(last.sequence),
                    });
                }
                Err(AggregateError::AggregateConflict) => continue,
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(CommandError::Conflict)
    }

    /// Decide and commit `command` in a transaction that also checks
    /// `fence` is the role's current epoch (a shared row lock on it, which
    /// a newly elected leader's epoch bump waits for): once a new leader
    /// took over, this fails with [`CommandError::Fenced`] and writes
    /// nothing. Lost concurrency races are re-decided; no view wait.
    #[tracing::instrument(
        name = "fenced_command",
        skip_all,
        fields(aggregate = A::TYPE, aggregate_id = %aggregate_id, epoch = fence.epoch)
    )]
    pub async fn execute_fenced<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
        fence: Fence,
    ) -> Result<Executed<A>, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()> + Clone,
        A::Command: Clone,
    {
        let store = self.store::<A>();
        for _ in 0..CONFLICT_RETRIES {
            let mut context = store
                .load_aggregate(aggregate_id)
                .await
                .map_err(store_error)?;
            let sink = Default::default();
            context
                .aggregate()
                .handle(command.clone(), &(), &sink)
                .await
                .map_err(CommandError::Rejected)?;
            let state = context.aggregate().clone();
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    committed: 0,
                    visible: true,
                    last_sequence: None,
                });
            }
            let first = context.current_sequence + 1;
            let serialized = events
                .into_iter()
                .enumerate()
                .map(|(i, payload)| {
                    SerializedEvent::try_from(&EventEnvelope::<A> {
                        aggregate_id: aggregate_id.to_string(),
                        sequence: first + i,
                        payload,
                        metadata: metadata.clone(),
                    })
                    .map_err(|e| CommandError::Store(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let last_sequence = first + serialized.len() - 1;
            match append::append_fenced(&self.pool, &serialized, fence).await {
                Ok(()) => {
                    self.progress.wake_sequencer();
                    return Ok(Executed {
                        state,
                        committed: serialized.len(),
                        visible: false,
                        last_sequence: Some(last_sequence),
                    });
                }
                Err(append::AppendError::Conflict) => continue,
                Err(append::AppendError::Fenced) => {
                    return Err(CommandError::Fenced {
                        role: fence.role,
                        epoch: fence.epoch,
                    })
                }
                Err(append::AppendError::Database(error)) => {
                    return Err(CommandError::Store(error.to_string()))
                }
            }
        }
        Err(CommandError::Conflict)
    }

    /// Read-your-writes after commands run on a bus
    /// [`without_view_wait`](Self::without_view_wait): wait (bounded) until
    /// event `sequence` of the aggregate — and so everything committed
    /// before it — is in every view. One wait for a batch of commands.
    pub async fn wait_for_views<A: Aggregate>(&self, aggregate_id: &str, sequence: usize) -> bool {
        self.wait_visible(A::TYPE, aggregate_id, sequence).await
    }

    /// Read-your-writes: wait until the event is sequenced and projected.
    async fn wait_visible(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: usize,
    ) -> bool {
        self.progress.wake_sequencer();
        let mark = sqlx::query(
            "select tx_id::text as tx_id, event_id from events \
             where aggregate_type = $1 and aggregate_id = $2 and sequence = $3",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence as i64)
        .fetch_one(&self.pool)
        .await
        .and_then(|row| {
            let tx_id: String = row.try_get("tx_id")?;
            Ok(Watermark {
                tx_id: tx_id
                    .parse()
                    .map_err(|_| sqlx::Error::Protocol(format!("bad xid8 {tx_id}")))?,
                event_id: row.try_get("event_id")?,
            })
        });
        let visible = match mark {
            Ok(mark) => {
                self.progress
                    .wait_visible(mark, self.visibility_timeout)
                    .await
            }
            Err(error) => {
                tracing::warn!(%error, "could not locate committed event");
                false
            }
        };
        if !visible {
            tracing::warn!(
                aggregate_type,
                aggregate_id,
                "events not yet visible in every view after the timeout"
            );
        }
        visible
    }
}

fn store_error<E: std::error::Error>(error: AggregateError<E>) -> CommandError<E> {
    match error {
        AggregateError::UserError(error) => CommandError::Rejected(error),
        AggregateError::AggregateConflict => CommandError::Conflict,
        other => CommandError::Store(other.to_string()),
    }
}
