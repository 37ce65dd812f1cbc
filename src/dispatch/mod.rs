//! Dispatch: the process manager that delivers managed delegations
//! (DESIGN.md "Dispatch").
//!
//! # Why it looks the way it does
//!
//! * **Everything durable is an event.** The dispatcher keeps no state of
//!   its own beyond a checkpoint in the log. What it knows about a
//!   delegation — sent? acknowledged? which remote task? queued where? — is
//!   folded from the delegation's and its queue item's events, so a killed
//!   process resumes exactly where the ledger says it was.
//! * **Exactly-once intent.** A real A2A server treats the same `messageId`
//!   sent twice as two tasks. The message id is derived from the delegation
//!   ([`crate::a2a::message_id_for`]); an acknowledged send is recorded in
//!   one commit together with its remote task id ([`outcome`]); after a
//!   crash a delegation with a remote task id is *followed*, never re-sent.
//!   Only a delegation with no acknowledged send is sent again. (The one
//!   window left — the agent accepted the request but the process died
//!   before the acknowledgement was committed — cannot be closed from this
//!   side with A2A v0.3; see README "Dispatch".)
//! * **One leader, fenced.** Like the sequencer, the dispatcher leads while
//!   it holds a PostgreSQL advisory lock ([`leader`]); any number of service
//!   nodes serve HTTP, one dispatches, another takes over when it dies. A
//!   newly elected leader bumps the dispatcher's *epoch*, and every send is
//!   first recorded as `DelegationSendAttempted` in a transaction that
//!   holds that epoch under a shared lock: once a new leader is elected, a
//!   deposed one (its lock connection lost, its process still running)
//!   cannot record a send, so it makes none. The heartbeat drain runs on
//!   whichever node receives the heartbeat: it only *claims* queue items
//!   (optimistic concurrency on the item), and the leader reacts to the
//!   claim in the log.
//! * **A send that may have arrived is looked for before it is repeated.**
//!   A timeout after the request was written, a broken connection or a
//!   gateway's 502/504 may hide a task the agent did create; so may an
//!   attempt on record without its acknowledgement (a crash, a deposed
//!   leader). Before sending again the dispatcher waits until that attempt
//!   can no longer be in flight and asks the agent for the tasks of the
//!   delegation's context (v1.0 `ListTasks`); it resends (same `messageId`)
//!   only when none is found, and counts the resends it could not check
//!   (`ledger_dispatch_uncertain_total`: v0.3 agents have no such call).
//! * **The log reader never waits for an agent.** Each delegation is driven
//!   by its own task ([`drive`]); at most `max_in_flight` HTTP calls run at
//!   once; a task followed for hours holds no permit while it sleeps.
//! * **One slow target cannot starve the others.** Each target workspace
//!   may have at most `per_target_in_flight` calls in flight, and a call
//!   waits for its target's permit *before* it takes one of the global
//!   permits: a target that accepts connections and never answers holds
//!   only its own few permits, and every other target's calls go ahead.
//!
//! # Layout
//!
//! * [`reactions`] — which log entries call for what (pure).
//! * [`outcome`] — agent answers → lifecycle steps (pure).
//! * [`backoff`] — retry and polling delays (pure).
//! * [`drive`] — sending, queueing and following one delegation.
//! * [`drain`] — the heartbeat's claim of queued items, and expiry.
//! * [`leader`] — election, the resume scan and the log follower.

pub mod backoff;
pub mod drain;
pub mod drive;
pub mod leader;
pub mod outcome;
pub mod reactions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::a2a::{
    A2aClient, A2aClientConfig, CallError, Endpoint, OutboundPolicy, ProtocolVersion,
};
use crate::commands::CommandBus;
pub use backoff::Backoff;

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Whether this process campaigns to dispatch at all (a node that only
    /// serves HTTP may opt out; one dispatching node per database suffices).
    pub enabled: bool,
    /// Most A2A calls in flight at once.
    pub max_in_flight: usize,
    /// Most A2A calls in flight at once to one target workspace.
    pub per_target_in_flight: usize,
    /// Sends of a delegation before a transient failure (connection refused,
    /// 502, restarting 503, timeout) fails it.
    pub send_attempts: u32,
    /// Waits between those sends.
    pub retry: Backoff,
    /// Waits between readings of a followed remote task.
    pub poll: Backoff,
    /// Consecutive failed readings of a followed task before it is given up.
    pub max_poll_failures: u32,
    /// How long a target's resolved endpoint (agent card) is reused.
    pub endpoint_ttl: Duration,
    /// How often expired queue items are marked expired, and delegations
    /// past their deadline failed.
    pub expiry_sweep: Duration,
    /// The deadline of a managed delegation that names none.
    pub default_deadline: Duration,
    /// The longest deadline a delegate request may ask for.
    pub max_deadline: Duration,
    /// Pause before a follower tries the leader lock again.
    pub election_interval: Duration,
    pub client: A2aClientConfig,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: 64,
            per_target_in_flight: 8,
            send_attempts: 5,
            retry: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            poll: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
            },
            max_poll_failures: 30,
            endpoint_ttl: Duration::from_secs(60),
            expiry_sweep: Duration::from_secs(1),
            default_deadline: Duration::from_secs(24 * 3600),
            max_deadline: Duration::from_secs(7 * 24 * 3600),
            election_interval: Duration::from_secs(1),
            client: A2aClientConfig::default(),
        }
    }
}

/// Why a dispatcher step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database failed: the step is retried with backoff.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed: retried too.
    #[error("event store failure: {0}")]
    Store(#[source] crate::commands::StoreError),
    /// Concurrent writers kept winning the race for the record: retried.
    #[error("the record was changed concurrently")]
    Conflict,
    /// A command the aggregate refused where the dispatcher expected none:
    /// logged, not retried (the next reaction starts from the record).
    #[error("the aggregate refused the dispatcher's command: {0}")]
    Rejected(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This process no longer leads: it makes no further send.
    #[error("this dispatcher was deposed by a newer leader")]
    Deposed,
}

impl DispatchError {
    /// Worth trying again in this process (the database may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Store(_) | Self::Conflict)
    }
}

impl<E> From<crate::commands::CommandError<E>> for DispatchError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: crate::commands::CommandError<E>) -> Self {
        use crate::commands::CommandError;
        match error {
            CommandError::Rejected(refusal) => Self::Rejected(Box::new(refusal)),
            CommandError::Fenced { .. } => Self::Deposed,
            CommandError::Conflict => Self::Conflict,
            CommandError::Store(cause) => Self::Store(cause),
        }
    }
}

/// One term of leadership: the epoch it was elected with (which fences
/// every send it records) and the token that ends it (leadership lost, or
/// shutdown — it is a child of the process's shutdown token): then no new
/// send starts, sends in flight finish and are recorded, and followers and
/// retries stop.
#[derive(Debug, Clone)]
pub struct Term {
    pub epoch: u64,
    pub stop: CancellationToken,
}

/// The `leadership_epochs` role of the dispatcher.
pub const ROLE: &str = "dispatcher";

/// Resolved endpoints by (registered URL, configured version), with the
/// time they were resolved.
type EndpointCache = HashMap<(String, Option<ProtocolVersion>), (Endpoint, Instant)>;

/// What the drive tasks share.
pub struct Dispatcher {
    pub(crate) pool: PgPool,
    /// Commits without waiting for the views (the dispatcher reads only
    /// aggregates), except through [`Self::visible_bus`].
    pub(crate) bus: CommandBus,
    /// Commits and waits until every view shows them: for enqueueing, so a
    /// delegation that shows `queued` always has its item in the queue view
    /// the heartbeat drain reads.
    pub(crate) visible_bus: CommandBus,
    pub(crate) client: A2aClient,
    pub(crate) config: DispatchConfig,
    permits: Semaphore,
    /// Each target's own permits (`per_target_in_flight`), present while
    /// some call to the target holds or waits for one.
    target_permits: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    endpoints: Mutex<EndpointCache>,
    /// Delegations being driven, and whether another run was asked for
    /// while they were (a claim that arrives as a drive ends must not be
    /// lost).
    in_flight: Mutex<HashMap<Uuid, bool>>,
}

impl Dispatcher {
    /// `bus` is the service's (read-your-writes) command bus; `outbound`
    /// says where the A2A client may connect.
    pub fn new(
        pool: PgPool,
        bus: CommandBus,
        config: DispatchConfig,
        outbound: OutboundPolicy,
    ) -> anyhow::Result<Self> {
        let client = A2aClient::new(config.client.clone(), outbound)?;
        Ok(Self {
            pool,
            bus: bus.without_view_wait(),
            visible_bus: bus,
            client,
            permits: Semaphore::new(config.max_in_flight.max(1)),
            target_permits: Mutex::new(HashMap::new()),
            config,
            endpoints: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Run `call` to `target` while holding one of the target's permits
    /// and then one of the global ones (see the module docs for the order).
    pub(crate) async fn call<T>(
        &self,
        target: Uuid,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let target_permits = self.target_permits(target);
        let result = {
            let _target_permit = target_permits.acquire().await;
            let _permit = self.permits.acquire().await;
            call.await
        };
        self.release_target(target, target_permits);
        result
    }

    fn target_permits(&self, target: Uuid) -> Arc<Semaphore> {
        let cap = self.config.per_target_in_flight.max(1);
        self.lock_target_permits()
            .entry(target)
            .or_insert_with(|| Arc::new(Semaphore::new(cap)))
            .clone()
    }

    /// Forget a target's permits once no call holds or waits for them
    /// (clones are only made under the lock, so the count is exact).
    fn release_target(&self, target: Uuid, permits: Arc<Semaphore>) {
        let mut all = self.lock_target_permits();
        drop(permits);
        if all
            .get(&target)
            .is_some_and(|permits| Arc::strong_count(permits) == 1)
        {
            all.remove(&target);
        }
    }

    fn lock_target_permits(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Semaphore>>> {
        self.target_permits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Where and how to reach `target`'s agent at `base_url` (agent card,
    /// cached).
    pub(crate) async fn endpoint(
        &self,
        target: Uuid,
        base_url: &str,
        configured: Option<ProtocolVersion>,
    ) -> Result<Endpoint, CallError> {
        let key = (base_url.to_string(), configured);
        if let Some((endpoint, at)) = self.lock_endpoints().get(&key) {
            if at.elapsed() < self.config.endpoint_ttl {
                return Ok(endpoint.clone());
            }
        }
        let endpoint = self
            .call(target, self.client.resolve_endpoint(base_url, configured))
            .await?;
        self.lock_endpoints()
            .insert(key, (endpoint.clone(), Instant::now()));
        Ok(endpoint)
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, EndpointCache> {
        self.endpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, bool>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start driving `delegation_id` unless it is being driven; if it is,
    /// have that run go round once more when it ends. A run that fails on
    /// the database is tried again with backoff until it gets through or
    /// the term ends — never left for the next leader to find.
    pub(crate) fn start(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
        id: Uuid,
        term: &Term,
    ) {
        {
            let mut in_flight = self.lock_in_flight();
            if let Some(again) = in_flight.get_mut(&id) {
                *again = true;
                return;
            }
            in_flight.insert(id, false);
        }
        let dispatcher = self.clone();
        let term = term.clone();
        tasks.spawn(async move {
            loop {
                dispatcher.drive_until_done(id, &term).await;
                let mut in_flight = dispatcher.lock_in_flight();
                match in_flight.get_mut(&id) {
                    Some(again) if *again => *again = false,
                    _ => {
                        in_flight.remove(&id);
                        return;
                    }
                }
            }
        });
    }

    /// One drive of `id`, retried with backoff while it fails on the
    /// database or the event store.
    async fn drive_until_done(&self, id: Uuid, term: &Term) {
        let mut failures = 0u32;
        loop {
            match drive::drive(self, id, term).await {
                Ok(()) => return,
                Err(DispatchError::Deposed) => {
                    tracing::info!(delegation_id = %id, "deposed: leaving the delegation to the new leader");
                    return;
                }
                Err(error) if error.is_retryable() && !term.stop.is_cancelled() => {
                    let wait = self.config.retry.delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(delegation_id = %id, %error, ?wait, "dispatch step failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = term.stop.cancelled() => return,
                    }
                }
                Err(error) => {
                    tracing::warn!(delegation_id = %id, %error, "dispatch step failed; the next reaction or leader resumes it");
                    return;
                }
            }
        }
    }

    /// Forget every delegation in flight (their tasks were aborted).
    pub(crate) fn clear_in_flight(&self) {
        self.lock_in_flight().clear();
    }
}
