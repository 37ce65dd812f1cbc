//! Group commit: the commands of one aggregate type that arrive while a
//! batch is being written are decided and written together in the next.
//!
//! One task per aggregate type takes whatever commands are waiting (at
//! least one; no timer, so a lone command is never held back), then:
//!
//! 1. loads every aggregate the batch touches in **one** query (upcasting
//!    older event versions exactly as the event store does),
//! 2. decides each command, in arrival order, with the aggregate's own pure
//!    `handle` against the state the previous commands of the batch left,
//! 3. appends all new events in **one** multi-row `INSERT … ON CONFLICT DO
//!    NOTHING RETURNING` and **one** `COMMIT` (one WAL flush for the lot),
//! 4. answers each command with the state after *its* decision.
//!
//! Optimistic concurrency stays per aggregate: the primary key
//! `(aggregate_type, aggregate_id, sequence)` refuses a row another writer
//! (another process, or the fenced path) took first. Such an aggregate
//! loses as a whole — any of its rows that did go in are deleted before the
//! commit — and only its commands are decided again, first in the next
//! batch, never failing their neighbours. A command that loses
//! `super::CONFLICT_RETRIES` times gets a conflict.
//!
//! Why not `postgres-es`'s own commit here: it writes one aggregate per
//! transaction, an event per statement. The rows are the same — cqrs-es's
//! own `SerializedEvent`, inserted by [`super::append`] in the table shape
//! `postgres-es` reads — so loading an aggregate through `postgres-es`
//! (as `CommandBus::load` does) sees exactly what this wrote.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::{append, CommandError, StoreError, CONFLICT_RETRIES};
use crate::log::Watermark;

/// Most commands decided and written together.
const MAX_BATCH: usize = 512;
/// Commands waiting for a batch before submitters wait to queue more.
const QUEUE: usize = 4096;

/// What a committed (or no-op) command produced.
#[derive(Debug)]
pub struct Decided<A> {
    /// The aggregate's state after this command.
    pub state: A,
    /// Events this command committed (0: a no-op).
    pub committed: usize,
    /// The sequence of its last event.
    pub last_sequence: Option<usize>,
    /// Where its events are in the event table, for read-your-writes.
    pub watermark: Option<Watermark>,
}

type Reply<A> = Result<Decided<A>, CommandError<<A as Aggregate>::Error>>;

struct Request<A: Aggregate> {
    aggregate_id: String,
    command: A::Command,
    metadata: HashMap<String, String>,
    reply: oneshot::Sender<Reply<A>>,
    /// Batches this command lost to a concurrent writer.
    lost: usize,
}

/// An aggregate the group committer can write: its commands travel to the
/// committer task and its answers back.
pub trait Writable:
    Aggregate<Services = (), Command: Clone + Send + 'static, Error: Send + 'static> + Clone + 'static
{
}

impl<A> Writable for A where
    A: Aggregate<Services = (), Command: Clone + Send + 'static, Error: Send + 'static>
        + Clone
        + 'static
{
}

/// The submitting end of one aggregate type's committer task.
pub struct GroupCommitter<A: Aggregate> {
    sender: mpsc::Sender<Request<A>>,
}

impl<A: Writable> GroupCommitter<A> {
    /// Start the committer task of `A` on `pool`.
    pub fn start(pool: PgPool, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run::<A>(pool, Arc::new(upcasters), receiver));
        Self { sender }
    }

    /// Decide and commit `command` with whatever else is waiting.
    pub async fn submit(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Reply<A> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            aggregate_id: aggregate_id.to_string(),
            command,
            metadata,
            reply,
            lost: 0,
        };
        if self.sender.send(request).await.is_err() {
            return Err(CommandError::Store(StoreError::msg(
                "the command writer has stopped",
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(CommandError::Store(StoreError::msg(
                "the command writer dropped the command",
            )))
        })
    }
}

async fn run<A: Writable>(
    pool: PgPool,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    mut receiver: mpsc::Receiver<Request<A>>,
) {
    let mut waiting: VecDeque<Request<A>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(request) => waiting.push_back(request),
                None => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => waiting.push_back(request),
                Err(_) => break,
            }
        }
        let take = waiting.len().min(MAX_BATCH);
        let batch: Vec<Request<A>> = waiting.drain(..take).collect();
        // Losers go first in the next batch, ahead of later arrivals.
        let losers = write_batch(&pool, &upcasters, batch).await;
        for loser in losers.into_iter().rev() {
            waiting.push_front(loser);
        }
    }
}

/// One aggregate's state during a batch.
struct Working<A> {
    state: A,
    /// The last committed sequence before the batch.
    loaded_sequence: usize,
    /// Events decided in this batch, in order.
    events: Vec<SerializedEvent>,
}

/// A decided command, waiting for the commit to answer.
struct Pending<A: Aggregate> {
    request: Request<A>,
    outcome: Result<(A, std::ops::Range<usize>), A::Error>,
}

/// Decide and write one batch; returns the commands to decide again.
async fn write_batch<A: Writable>(
    pool: &PgPool,
    upcasters: &[Box<dyn EventUpcaster>],
    batch: Vec<Request<A>>,
) -> Vec<Request<A>> {
    let mut ids: Vec<String> = batch.iter().map(|r| r.aggregate_id.clone()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut working: HashMap<String, Working<A>> = match load_many::<A>(pool, &ids, upcasters).await
    {
        Ok(loaded) => loaded,
        Err(error) => {
            let cause = StoreError::new(error);
            for request in batch {
                let _ = request.reply.send(Err(CommandError::Store(cause.clone())));
            }
            return Vec::new();
        }
    };

    // Decide, in arrival order, each against what came before it.
    let mut pending = Vec::with_capacity(batch.len());
    for request in batch {
        let Some(aggregate) = working.get_mut(&request.aggregate_id) else {
            continue; // every id was loaded (or defaulted) above
        };
        let sink = Default::default();
        let decided = aggregate
            .state
            .handle(request.command.clone(), &(), &sink)
            .await;
        let outcome = match decided {
            Ok(()) => {
                let first = aggregate.events.len();
                for payload in sink.collect().await {
                    let sequence = aggregate.loaded_sequence + aggregate.events.len() + 1;
                    let envelope = EventEnvelope::<A> {
                        aggregate_id: request.aggregate_id.clone(),
                        sequence,
                        payload,
                        metadata: request.metadata.clone(),
                    };
                    match SerializedEvent::try_from(&envelope) {
                        Ok(serialized) => aggregate.events.push(serialized),
                        Err(error) => {
                            tracing::error!(%error, "an event does not serialize");
                        }
                    }
                }
                Ok((aggregate.state.clone(), first..aggregate.events.len()))
            }
            Err(error) => Err(error),
        };
        pending.push(Pending { request, outcome });
    }

    // Append every new event in one statement and one commit.
    let rows: Vec<&SerializedEvent> = working.values().flat_map(|w| &w.events).collect();
    let written = if rows.is_empty() {
        Ok(append::Written::default())
    } else {
        append::insert_batch(pool, &rows).await
    };
    let written = match written {
        Ok(written) => written,
        Err(error) => {
            let cause = StoreError::new(error);
            for pending in pending {
                let wrote = working
                    .get(&pending.request.aggregate_id)
                    .is_some_and(|w| !w.events.is_empty());
                if wrote {
                    let _ = pending
                        .request
                        .reply
                        .send(Err(CommandError::Store(cause.clone())));
                } else {
                    answer(pending, &working, &append::Written::default());
                }
            }
            return Vec::new();
        }
    };

    let mut losers = Vec::new();
    for pending in pending {
        let id = &pending.request.aggregate_id;
        if written.lost.contains(id) {
            let mut request = pending.request;
            request.lost += 1;
            if request.lost >= CONFLICT_RETRIES {
                let _ = request.reply.send(Err(CommandError::Conflict));
            } else {
                losers.push(request);
            }
        } else {
            answer(pending, &working, &written);
        }
    }
    losers
}

/// Answer a decided command of an aggregate that did not lose.
fn answer<A: Aggregate>(
    pending: Pending<A>,
    working: &HashMap<String, Working<A>>,
    written: &append::Written,
) {
    let Pending { request, outcome } = pending;
    let reply = match outcome {
        Err(error) => Err(CommandError::Rejected(error)),
        Ok((state, range)) => {
            let events = working
                .get(&request.aggregate_id)
                .map(|w| &w.events[range.clone()])
                .unwrap_or_default();
            let last_sequence = events.last().map(|e| e.sequence);
            let watermark = last_sequence.and_then(|sequence| {
                written
                    .rows
                    .get(&(request.aggregate_id.clone(), sequence as i64))
                    .copied()
            });
            Ok(Decided {
                state,
                committed: events.len(),
                last_sequence,
                watermark,
            })
        }
    };
    let _ = request.reply.send(reply);
}

/// An event row of [`load_many`], before upcasting.
#[derive(sqlx::FromRow)]
struct StoredEvent {
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

/// Load the aggregates `ids` of type `A` in one query.
async fn load_many<A: Aggregate>(
    pool: &PgPool,
    ids: &[String],
    upcasters: &[Box<dyn EventUpcaster>],
) -> Result<HashMap<String, Working<A>>, sqlx::Error> {
    let rows: Vec<StoredEvent> = sqlx::query_as(
        "select aggregate_id, sequence, event_type, event_version, payload, metadata \
         from events where aggregate_type = $1 and aggregate_id = any($2) \
         order by aggregate_id, sequence",
    )
    // Planned for each batch's ids, never a cached generic plan: a generic
    // plan made while the table was small stays a sequential scan as it
    // grows (measured: 1.5 ms a batch instead of 0.07 ms).
    .persistent(false)
    .bind(A::TYPE)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut working: HashMap<String, Working<A>> = ids
        .iter()
        .map(|id| {
            (
                id.clone(),
                Working {
                    state: A::default(),
                    loaded_sequence: 0,
                    events: Vec::new(),
                },
            )
        })
        .collect();
    for row in rows {
        let aggregate_id = row.aggregate_id;
        let serialized = SerializedEvent {
            aggregate_id: aggregate_id.clone(),
            sequence: usize::try_from(row.sequence).unwrap_or_default(),
            aggregate_type: A::TYPE.to_string(),
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            metadata: row.metadata,
        };
        let upcast = upcasters.iter().fold(serialized, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        });
        let envelope =
            EventEnvelope::<A>::try_from(upcast).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        if let Some(aggregate) = working.get_mut(&aggregate_id) {
            aggregate.state.apply(envelope.payload);
            aggregate.loaded_sequence = envelope.sequence;
        }
    }
    Ok(working)
}
