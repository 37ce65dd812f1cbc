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
//! Commands are written by group commit ([`group`]): those that arrive
//! while a batch is being written share the next batch's load, its one
//! INSERT and its one COMMIT. Read-your-writes waits on the in-process
//! watch of how far the log and the views got ([`crate::log::Progress`]),
//! with the position the batch's INSERT returned — no query per command.
//!
//! # Layout
//!
//! * [`group`] — the group committer of one aggregate type.
//! * [`append`] — events inserted in one statement, in the `postgres-es`
//!   table shape (batches, and fenced commands, which need their own
//!   transaction).

pub mod append;
pub mod group;
pub mod position;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cqrs_es::persist::{PersistedEventStore, SerializedEvent};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

use crate::log::{Progress, Visibility, Watermark};

/// How often a command is re-decided after losing an optimistic-concurrency
/// race before the caller gets a conflict.
pub(crate) const CONFLICT_RETRIES: usize = 5;

/// The result of a command that was accepted.
#[derive(Debug)]
pub struct Executed<A> {
    /// The aggregate's state after the command.
    pub state: A,
    /// How many events were committed (0: the command was a no-op).
    pub committed: usize,
    /// Whether the events became visible in every view before the timeout.
    pub visible: bool,
    /// The sequence of the last event committed (`None` for a no-op).
    pub last_sequence: Option<usize>,
    /// Where the last event committed is in the event table, for
    /// [`CommandBus::wait_for_views`] (`None` for a no-op).
    pub watermark: Option<Watermark>,
    /// A log position at or after the command's last event (for a no-op,
    /// the head known when it was decided); `None` when the events were
    /// not positioned before the visibility timeout, or not awaited.
    pub position: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command (a domain error: 4xx).
    #[error(transparent)]
    Rejected(E),
    /// Concurrent writers kept winning the race for this aggregate.
    #[error("the resource was changed concurrently; try again")]
    Conflict,
    /// The store failed (an opaque 5xx); the cause is kept.
    #[error("event store failure: {0}")]
    Store(#[source] StoreError),
    /// A fenced command's leadership epoch is no longer current: the
    /// process that issued it no longer leads.
    #[error("leadership epoch {epoch} of {role} is no longer current")]
    Fenced { role: &'static str, epoch: u64 },
}

/// Why the event store failed: the underlying error, shared (a group
/// commit answers every command of a failed batch with the same cause).
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(Arc<dyn std::error::Error + Send + Sync>);

impl StoreError {
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(cause))
    }

    /// A failure described by the ledger itself (no underlying error).
    pub fn msg(message: &'static str) -> Self {
        Self(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
            message,
        )))
    }
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
    /// One group committer per aggregate type, started on first use and
    /// shared by every clone of the bus.
    committers: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl CommandBus {
    pub fn new(pool: PgPool, progress: Arc<Progress>, visibility_timeout: Duration) -> Self {
        Self {
            pool,
            progress,
            visibility_timeout,
            wait_for_views: true,
            committers: Default::default(),
        }
    }

    /// The group committer of `A`.
    fn committer<A: group::Writable>(&self) -> Arc<group::GroupCommitter<A>> {
        let mut committers = self.committers.lock().unwrap_or_else(|p| p.into_inner());
        let entry = committers.entry(TypeId::of::<A>()).or_insert_with(|| {
            Arc::new(group::GroupCommitter::<A>::start(
                self.pool.clone(),
                aggregates::upcasters::upcasters(),
            ))
        });
        match entry.clone().downcast::<group::GroupCommitter<A>>() {
            Ok(committer) => committer,
            // The map is keyed by the type it holds.
            Err(_) => unreachable!("committer stored under another type's id"),
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
        A: group::Writable,
    {
        let decided = self
            .committer::<A>()
            .submit(aggregate_id, command, metadata)
            .await?;
        let seen = match decided.watermark {
            None => Visibility {
                position: Some(self.progress.head()),
                visible: true,
            },
            Some(mark) if self.wait_for_views => self.wait_visible(mark).await,
            Some(_) => {
                // Still position the events promptly.
                self.progress.wake_sequencer();
                Visibility {
                    position: None,
                    visible: false,
                }
            }
        };
        if let Some(reached) = seen.position {
            position::note(reached);
        }
        Ok(Executed {
            state: decided.state,
            committed: decided.committed,
            visible: seen.visible,
            last_sequence: decided.last_sequence,
            watermark: decided.watermark,
            position: seen.position,
        })
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
                    watermark: None,
                    position: None,
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
                    .map_err(|e| CommandError::Store(StoreError::new(e)))
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
                        watermark: None,
                        position: None,
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
                    return Err(CommandError::Store(StoreError::new(error)))
                }
            }
        }
        Err(CommandError::Conflict)
    }

    /// Read-your-writes after commands run on a bus
    /// [`without_view_wait`](Self::without_view_wait): wait (bounded) until
    /// the event at `watermark` — and so everything committed before it —
    /// is in every view. One wait for a batch of commands.
    pub async fn wait_for_views(&self, watermark: Watermark) -> bool {
        let seen = self.wait_visible(watermark).await;
        if let Some(reached) = seen.position {
            position::note(reached);
        }
        seen.visible
    }

    /// Read-your-writes: wait until the event is sequenced and projected.
    async fn wait_visible(&self, mark: Watermark) -> Visibility {
        self.progress.wake_sequencer();
        let visible = self
            .progress
            .wait_visible(mark, self.visibility_timeout)
            .await;
        if !visible.visible {
            tracing::warn!(
                tx_id = mark.tx_id,
                event_id = mark.event_id,
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
        AggregateError::DatabaseConnectionError(cause)
        | AggregateError::DeserializationError(cause)
        | AggregateError::UnexpectedError(cause) => {
            CommandError::Store(StoreError(Arc::from(cause)))
        }
    }
}
