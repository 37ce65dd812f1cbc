//! Driving one delegation to its next resting point: sent and finished,
//! sent and being followed, queued behind a busy target, or failed.
//!
//! Every run starts from the recorded state, so it is safe to run again at
//! any time (after a crash, on a second reaction, on resume):
//!
//! | recorded state | what a run does |
//! |---|---|
//! | `pending` | deliver to a polling target's inbox, or send (retrying transient failures), then follow |
//! | `pending` with an attempt on record but no acknowledgement | wait until that attempt cannot be in flight any more, look for its task (v1.0 `ListTasks` by context), then follow what was found or send |
//! | `queued`, item claimed by a drain | send once; a failure goes back to the queue item |
//! | `queued`, item ended | nothing: the item's end is the delegation's, and the log rule records it ([`end_delegation`]) |
//! | `queued`, item waiting | nothing: the next heartbeat with spare capacity claims it |
//! | acknowledged with a remote task id | follow the task (never re-send) |
//! | acknowledged without one | nothing: the agent reports itself |
//!
//! Every send is preceded by a fenced `AttemptSend` (see the module docs of
//! [`super`]): a deposed leader's record fails, and it sends nothing. A run
//! ends early, without error, when its [`Term`] ends; a send already on the
//! wire is finished and recorded first. Where a drive's outcome is
//! recorded, and the one writer of a delegation's end
//! ([`end_delegation`]), is `drive/end.rs`.

mod end;

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, Outcome, StatusUpdate,
};
use aggregates::queue_item::{QueueItem, QueueItemCommand, QueueItemError, QueueItemStatus};
use aggregates::workspace::DeliveryMode;
use aggregates::Actor;
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::outcome::{acknowledged, forward, sanitized, stops_following, task_step};
use super::{DispatchError, Dispatcher, Term, ROLE};
use crate::a2a::{message_id_for, CallError, Endpoint, ProtocolVersion, SendOutcome, TaskSnapshot};
use crate::commands::{CommandError, Fence};
use end::finish;
pub use end::{end_delegation, Ended};

/// Namespace of queue item ids: a delegation has at most one queue item,
/// with an id derived from it, so re-enqueuing after a crash is a no-op.
const QUEUE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6467_6572_2d71_7565_7565_6974_656d);

/// The queue item id of a delegation.
pub fn queue_id_for(delegation_id: Uuid) -> Uuid {
    Uuid::new_v5(&QUEUE_ID_NAMESPACE, delegation_id.as_bytes())
}

/// The actor recorded on the dispatcher's events.
pub fn actor() -> Actor {
    Actor::System("dispatcher".to_string())
}

/// The metadata recorded with the dispatcher's events.
pub fn metadata() -> HashMap<String, String> {
    HashMap::from([("actor".to_string(), "system:dispatcher".to_string())])
}

fn outcome_counter(outcome: &'static str) {
    metrics::counter!(crate::metrics::DISPATCH_OUTCOMES, "outcome" => outcome).increment(1);
}

/// Drive `delegation_id` from its recorded state.
pub async fn drive(d: &Dispatcher, id: Uuid, term: &Term) -> Result<(), DispatchError> {
    let delegation: Delegation = d.bus.load(&id.to_string()).await?;
    let Some(status) = delegation.status() else {
        return Ok(());
    };
    if delegation.origin() != Some(Origin::Managed) || status.is_terminal() {
        return Ok(());
    }
    match status {
        DelegationStatus::Pending => send_direct(d, &delegation, term).await,
        DelegationStatus::Queued => {
            let queue_id = delegation
                .queue_id()
                .unwrap_or_else(|| queue_id_for(delegation.delegation_id()));
            let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
            match item.status() {
                Some(QueueItemStatus::Dispatched) => {
                    send_drained(d, &delegation, queue_id, term).await
                }
                // Waiting: a heartbeat claims it. Ended: its end is the
                // delegation's, and the log rule records it.
                Some(_) | None => Ok(()),
            }
        }
        _ => match (
            delegation.remote_task_id(),
            target_of(d, &delegation).await?,
        ) {
            (Some(task_id), Ok(Target::Push(push))) => {
                follow(d, &delegation, &push, task_id.to_string(), term).await
            }
            (Some(_), Err(reason)) => fail(d, &delegation, reason).await,
            _ => Ok(()),
        },
    }
}

/// How the delegation's target gets its work.
enum Target {
    Push(Push),
    Poll,
}

/// Where a push target is registered, and the version given at
/// registration (`None`: its agent card decides).
struct Push {
    url: String,
    version: Option<ProtocolVersion>,
}

/// The target as the registry view has it — resolved once per drive, not
/// per call; `Err` holds the failure reason when it cannot be reached at all
/// (a permanent failure). The view, not the aggregate: the workspace
/// aggregate grows with every heartbeat, and the delegate handler already
/// required the target to be in the view.
async fn target_of(
    d: &Dispatcher,
    delegation: &Delegation,
) -> Result<Result<Target, String>, DispatchError> {
    let target_id = delegation.target_id();
    let row: Option<(Option<String>, String, Option<String>)> =
        sqlx::query_as("select url, delivery_mode, protocol_version from workspaces where id = $1")
            .bind(target_id)
            .fetch_optional(&d.pool)
            .await?;
    let Some((url, mode, version)) = row else {
        return Ok(Err(format!(
            "target workspace {target_id} is not registered"
        )));
    };
    if mode == DeliveryMode::Poll.as_str() {
        return Ok(Ok(Target::Poll));
    }
    let Some(url) = url else {
        return Ok(Err(format!("target workspace {target_id} has no URL")));
    };
    let version = version
        .as_deref()
        .and_then(ProtocolVersion::from_version_str);
    Ok(Ok(Target::Push(Push { url, version })))
}

async fn endpoint(
    d: &Dispatcher,
    push: &Push,
    delegation: &Delegation,
) -> Result<Endpoint, CallError> {
    d.endpoint(delegation.target_id(), &push.url, push.version)
        .await
}

/// Record the next send before making it, fenced by the term's epoch.
async fn record_attempt(
    d: &Dispatcher,
    delegation: &Delegation,
    term: &Term,
) -> Result<(), DispatchError> {
    let command = DelegationCommand::AttemptSend {
        epoch: term.epoch,
        actor: actor(),
        at: Utc::now(),
    };
    let fence = Fence {
        role: ROLE,
        epoch: term.epoch,
    };
    match d
        .bus
        .execute_fenced::<Delegation>(
            &delegation.delegation_id().to_string(),
            command,
            metadata(),
            fence,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(CommandError::Rejected(DelegationError::Superseded { .. })) => {
            Err(DispatchError::Deposed)
        }
        Err(other) => Err(other.into()),
    }
}

/// Send once, recording the attempt first.
async fn send_once(
    d: &Dispatcher,
    endpoint: &Endpoint,
    delegation: &Delegation,
    term: &Term,
) -> Result<Result<SendOutcome, CallError>, DispatchError> {
    record_attempt(d, delegation, term).await?;
    Ok(d.call(
        delegation.target_id(),
        d.client.send(
            &endpoint.url,
            endpoint.version,
            delegation.delegation_id(),
            delegation.task(),
        ),
    )
    .await)
}

/// Whether the agent holds a task for the delegation.
enum Lookup {
    Found(TaskSnapshot),
    NotFound,
    /// The agent cannot be asked (v0.3, no `ListTasks`) or did not answer.
    Unknown,
}

/// Ask the agent for the tasks of the delegation's context.
async fn look_up(d: &Dispatcher, endpoint: &Endpoint, delegation: &Delegation) -> Lookup {
    let id = delegation.delegation_id();
    let found = d
        .call(
            delegation.target_id(),
            d.client
                .find_tasks(&endpoint.url, endpoint.version, &id.to_string()),
        )
        .await;
    match found {
        Ok(Some(mut tasks)) if !tasks.is_empty() => Lookup::Found(tasks.remove(0)),
        Ok(Some(_)) => Lookup::NotFound,
        Ok(None) => Lookup::Unknown,
        Err(error) => {
            tracing::info!(delegation_id = %id, %error, "could not look for the delegation's task");
            Lookup::Unknown
        }
    }
}

/// A resend that nothing could prove safe: counted, so operators see how
/// many duplicates they may have.
fn resending_uncertain(delegation: &Delegation, why: &str) {
    metrics::counter!(crate::metrics::DISPATCH_UNCERTAIN).increment(1);
    tracing::warn!(
        delegation_id = %delegation.delegation_id(),
        why,
        "resending without being able to rule out that the earlier send arrived"
    );
}

/// First dispatch of a pending delegation.
async fn send_direct(
    d: &Dispatcher,
    delegation: &Delegation,
    term: &Term,
) -> Result<(), DispatchError> {
    let push = match target_of(d, delegation).await? {
        Err(reason) => return fail(d, delegation, reason).await,
        Ok(Target::Poll) => {
            let command = DelegationCommand::DeliverToInbox {
                actor: actor(),
                at: Utc::now(),
            };
            execute(d, delegation.delegation_id(), command).await?;
            outcome_counter("inbox");
            return Ok(());
        }
        Ok(Target::Push(push)) => push,
    };
    let mut delegation = delegation.clone();
    if delegation.send_unacknowledged() {
        // An earlier send is on record without its answer: this process
        // crashed, or a deposed leader made it. Let it finish first.
        match settle_unacknowledged(d, &delegation, &push, term).await? {
            Settled::Stop => return Ok(()),
            Settled::Found(task) => {
                return acknowledge(d, &delegation, &push, SendOutcome::Task(task), term).await
            }
            Settled::Send(current) => delegation = *current,
        }
    }
    let attempts = d.config.send_attempts.max(1);
    let mut tried = 0;
    loop {
        if term.stop.is_cancelled() {
            return Ok(());
        }
        tried += 1;
        let sent = match endpoint(d, &push, &delegation).await {
            Ok(endpoint) => match send_once(d, &endpoint, &delegation, term).await? {
                Err(error) if error.maybe_delivered && error.is_transient() => {
                    match look_up(d, &endpoint, &delegation).await {
                        Lookup::Found(task) => Ok(SendOutcome::Task(task)),
                        Lookup::NotFound => Err(error),
                        Lookup::Unknown => {
                            if tried < attempts {
                                resending_uncertain(&delegation, &error.reason);
                            }
                            Err(error)
                        }
                    }
                }
                other => other,
            },
            Err(error) => Err(error),
        };
        match sent {
            Ok(outcome) => return acknowledge(d, &delegation, &push, outcome, term).await,
            Err(error) if error.is_busy() => return enqueue(d, &delegation, &error, term).await,
            Err(error) if error.is_transient() && tried < attempts => {
                outcome_counter("retried");
                let wait = d
                    .config
                    .retry
                    .delay_respecting(tried - 1, error.retry_after);
                tracing::info!(delegation_id = %delegation.delegation_id(), %error, ?wait, "transient send failure; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = term.stop.cancelled() => return Ok(()),
                }
            }
            Err(error) if error.is_transient() => {
                let reason = format!("{error} (gave up after {tried} attempts)");
                return fail(d, &delegation, reason).await;
            }
            Err(error) => return fail(d, &delegation, error.reason).await,
        }
    }
}

/// What to do about a send on record without its answer.
enum Settled {
    /// The term ended while waiting, or the record moved on (a later run
    /// takes it from there).
    Stop,
    /// The agent has the task: follow it, never send again.
    Found(TaskSnapshot),
    /// Nothing arrived (or nothing can tell): send, from this state.
    Send(Box<Delegation>),
}

/// Wait until the unanswered attempt cannot be in flight any more (its
/// time plus the request timeout), read the record again (its sender may
/// have recorded the answer meanwhile), then ask the agent.
async fn settle_unacknowledged(
    d: &Dispatcher,
    delegation: &Delegation,
    push: &Push,
    term: &Term,
) -> Result<Settled, DispatchError> {
    if let Some(at) = delegation.last_attempt_at() {
        let settled_at = at
            + chrono::Duration::from_std(d.config.client.request_timeout)
                .unwrap_or(chrono::Duration::MAX)
            + chrono::Duration::seconds(1);
        if let Ok(wait) = (settled_at - Utc::now()).to_std() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = term.stop.cancelled() => return Ok(Settled::Stop),
            }
        }
    }
    let current: Delegation = d.bus.load(&delegation.delegation_id().to_string()).await?;
    if current.status() != Some(DelegationStatus::Pending) || !current.send_unacknowledged() {
        return Ok(Settled::Stop);
    }
    let endpoint = match endpoint(d, push, &current).await {
        Ok(endpoint) => endpoint,
        // The send loop retries the card and fails the delegation in time.
        Err(_) => return Ok(Settled::Send(Box::new(current))),
    };
    Ok(match look_up(d, &endpoint, &current).await {
        Lookup::Found(task) => {
            tracing::info!(delegation_id = %current.delegation_id(), task_id = %task.id, "found the task of an unacknowledged send; following it");
            Settled::Found(task)
        }
        Lookup::NotFound => Settled::Send(Box::new(current)),
        Lookup::Unknown => {
            resending_uncertain(&current, "an earlier send was never acknowledged");
            Settled::Send(Box::new(current))
        }
    })
}

/// A drained (claimed) queue item's one attempt; a failure is the queue
/// item's, which requeues it or, at the last attempt, fails it.
async fn send_drained(
    d: &Dispatcher,
    delegation: &Delegation,
    queue_id: Uuid,
    term: &Term,
) -> Result<(), DispatchError> {
    if term.stop.is_cancelled() {
        return Ok(());
    }
    let reason = match target_of(d, delegation).await? {
        Ok(Target::Push(push)) => match endpoint(d, &push, delegation).await {
            Ok(endpoint) => match send_once(d, &endpoint, delegation, term).await? {
                Ok(outcome) => return acknowledge(d, delegation, &push, outcome, term).await,
                Err(error) if error.maybe_delivered => {
                    match look_up(d, &endpoint, delegation).await {
                        Lookup::Found(task) => {
                            return acknowledge(d, delegation, &push, SendOutcome::Task(task), term)
                                .await
                        }
                        Lookup::NotFound => error.reason,
                        Lookup::Unknown => {
                            resending_uncertain(delegation, &error.reason);
                            error.reason
                        }
                    }
                }
                Err(error) => error.reason,
            },
            Err(error) => error.reason,
        },
        Ok(Target::Poll) => "the target now polls; a queued request cannot be pushed".to_string(),
        Err(reason) => reason,
    };
    outcome_counter("drain_failed");
    let command = QueueItemCommand::Fail {
        error: reason,
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        Ok(_) | Err(CommandError::Rejected(QueueItemError::NotDispatched { .. })) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Record an acknowledged send atomically, then follow its task.
async fn acknowledge(
    d: &Dispatcher,
    delegation: &Delegation,
    push: &Push,
    outcome: SendOutcome,
    term: &Term,
) -> Result<(), DispatchError> {
    let id = delegation.delegation_id();
    let steps = acknowledged(&outcome);
    let last = steps.last().cloned();
    let command = DelegationCommand::UpdateStatuses {
        updates: steps,
        actor: actor(),
        at: Utc::now(),
    };
    // The answer exists only here until it is recorded: a database that
    // fails now must not lose it (a later run could only send again), so
    // recording it is retried with backoff for as long as the term lasts.
    let mut failures = 0u32;
    let recorded = loop {
        let attempt = d
            .bus
            .execute::<Delegation>(&id.to_string(), command.clone(), metadata())
            .await;
        match attempt {
            Err(error @ (CommandError::Store(_) | CommandError::Conflict))
                if !term.stop.is_cancelled() =>
            {
                let wait = d.config.retry.delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(delegation_id = %id, %error, ?wait, "could not record the agent's answer; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = term.stop.cancelled() => {}
                }
            }
            other => break other,
        }
    };
    let state = match recorded {
        Ok(executed) => executed.state,
        // The agent (or the caller) moved the delegation on meanwhile with
        // the update endpoint: keep following the task it accepted, if any.
        Err(CommandError::Rejected(
            error @ (DelegationError::InvalidTransition { .. }
            | DelegationError::TerminalConflict { .. }),
        )) => {
            tracing::info!(delegation_id = %id, %error, "delegation moved on before the acknowledgement was recorded");
            let state: Delegation = d.bus.load(&id.to_string()).await?;
            return match outcome {
                SendOutcome::Task(task) if !state.status().is_some_and(|s| s.is_terminal()) => {
                    follow(d, &state, push, task.id, term).await
                }
                _ => Ok(()),
            };
        }
        Err(other) => return Err(other.into()),
    };
    outcome_counter("dispatched");
    match (outcome, last.map(Outcome::try_from)) {
        (_, Some(Ok(end))) => finish(d, &state, end).await,
        (SendOutcome::Task(task), _) => follow(d, &state, push, task.id, term).await,
        (SendOutcome::Message(_), _) => Ok(()),
    }
}

/// Park the delegation behind its busy target.
async fn enqueue(
    d: &Dispatcher,
    delegation: &Delegation,
    busy: &CallError,
    term: &Term,
) -> Result<(), DispatchError> {
    let id = delegation.delegation_id();
    let queue_id = queue_id_for(id);
    let options = delegation.queue_options();
    let at = Utc::now();
    let command = QueueItemCommand::Enqueue {
        queue_id,
        target_id: delegation.target_id(),
        caller_id: delegation.source_id(),
        priority: options.priority,
        method: "message/send".to_string(),
        body: json!({ "delegation_id": id, "message_id": message_id_for(id) }),
        idempotency_key: delegation.idempotency_key().map(str::to_string),
        expires_at: options
            .expires_in_seconds
            .map(|s| at + chrono::Duration::seconds(i64::from(s))),
        delegation_id: Some(id),
        at,
    };
    match d
        .visible_bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        // Already enqueued by a run that died before marking the delegation.
        Ok(_) | Err(CommandError::Rejected(QueueItemError::AlreadyExists)) => {}
        Err(other) => return Err(other.into()),
    }
    tracing::info!(delegation_id = %id, %queue_id, reason = %busy, "target busy; delegation queued");
    outcome_counter("queued");
    let queued = DelegationCommand::UpdateStatus {
        update: StatusUpdate::Queued {
            queue_id: Some(queue_id),
        },
        actor: actor(),
        at,
    };
    let state = execute(d, id, queued).await?;
    // A heartbeat may have claimed the item before the delegation was marked
    // queued (or before a crash between the two commits); its claim
    // reaction then found nothing to send, so send it here.
    let item: QueueItem = d.bus.load(&queue_id.to_string()).await?;
    if state.status() == Some(DelegationStatus::Queued)
        && item.status() == Some(QueueItemStatus::Dispatched)
    {
        return send_drained(d, &state, queue_id, term).await;
    }
    Ok(())
}

/// Follow the remote task until it stops changing by itself, the
/// delegation ends another way (cancelled, deadline), or the term ends.
async fn follow(
    d: &Dispatcher,
    delegation: &Delegation,
    push: &Push,
    task_id: String,
    term: &Term,
) -> Result<(), DispatchError> {
    let id = delegation.delegation_id();
    let mut readings = 0u32;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(d.config.poll.delay(readings)) => {}
            _ = term.stop.cancelled() => return Ok(()),
        }
        readings = readings.saturating_add(1);
        // The record, not a local copy: the caller may have cancelled, the
        // deadline may have passed, the agent may have reported itself.
        let current: Delegation = d.bus.load(&id.to_string()).await?;
        let Some(status) = current.status().filter(|s| !s.is_terminal()) else {
            return Ok(());
        };
        let reading = match endpoint(d, push, &current).await {
            Ok(endpoint) => {
                d.call(
                    current.target_id(),
                    d.client.get_task(&endpoint.url, endpoint.version, &task_id),
                )
                .await
            }
            Err(error) => Err(error),
        };
        match reading {
            Ok(task) => {
                failures = 0;
                let step = task_step(&task).and_then(|step| forward(status, step));
                let stop = stops_following(task.state);
                match step.map(Outcome::try_from) {
                    Some(Ok(end)) => return finish(d, &current, end).await,
                    Some(Err(step)) => {
                        let command = DelegationCommand::UpdateStatus {
                            update: sanitized(step),
                            actor: actor(),
                            at: Utc::now(),
                        };
                        match d
                            .bus
                            .execute::<Delegation>(&id.to_string(), command, metadata())
                            .await
                        {
                            Ok(_) => {}
                            // Moved on elsewhere meanwhile: read it again.
                            Err(CommandError::Rejected(
                                DelegationError::InvalidTransition { .. }
                                | DelegationError::TerminalConflict { .. },
                            )) => {}
                            Err(other) => return Err(other.into()),
                        }
                    }
                    None if stop => return Ok(()),
                    None => {}
                }
            }
            Err(error) if error.rpc_code == Some(-32001) => {
                let reason = format!(
                    "the agent no longer knows task {task_id} (it may have restarted); not re-sent, so the task never runs twice"
                );
                return fail(d, &current, reason).await;
            }
            Err(error) => {
                failures += 1;
                if failures >= d.config.max_poll_failures.max(1) {
                    let reason =
                        format!("could not read task {task_id} after {failures} tries: {error}");
                    return fail(d, &current, reason).await;
                }
                tracing::info!(delegation_id = %id, %error, "reading the remote task failed; retrying");
            }
        }
    }
}

async fn fail(d: &Dispatcher, delegation: &Delegation, error: String) -> Result<(), DispatchError> {
    tracing::warn!(delegation_id = %delegation.delegation_id(), %error, "delegation failed");
    finish(d, delegation, Outcome::Failed { error }).await
}

async fn execute(
    d: &Dispatcher,
    id: Uuid,
    command: DelegationCommand,
) -> Result<Delegation, DispatchError> {
    Ok(d.bus
        .execute::<Delegation>(&id.to_string(), command, metadata())
        .await?
        .state)
}

/// A delegation that ended another way (cancelled by its caller, past its
/// deadline): end its queue item if it still waits, so it is never sent.
/// Database work only: the log follower runs it before moving on.
pub async fn withdraw_queue_item(d: &Dispatcher, id: Uuid) -> Result<(), DispatchError> {
    let delegation: Delegation = d.bus.load(&id.to_string()).await?;
    let Some(queue_id) = delegation.queue_id() else {
        return Ok(());
    };
    let reason = match delegation.status() {
        Some(DelegationStatus::Canceled) => "the delegation was canceled",
        _ => "the delegation ended before the queued request was sent",
    };
    let command = QueueItemCommand::Withdraw {
        reason: reason.to_string(),
        at: Utc::now(),
    };
    match d
        .bus
        .execute::<QueueItem>(&queue_id.to_string(), command, metadata())
        .await
    {
        Ok(_) | Err(CommandError::Rejected(_)) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Ask the target's agent to cancel the task it runs for `id`, if any (best
/// effort: logged, never retried — the delegation already ended).
pub async fn cancel_remote_task(d: &Arc<Dispatcher>, id: Uuid) -> Result<(), DispatchError> {
    let delegation: Delegation = d.bus.load(&id.to_string()).await?;
    let Some(task_id) = delegation.remote_task_id() else {
        return Ok(());
    };
    let Ok(Target::Push(push)) = target_of(d, &delegation).await? else {
        return Ok(());
    };
    let cancelled = match endpoint(d, &push, &delegation).await {
        Ok(endpoint) => {
            d.call(
                delegation.target_id(),
                d.client
                    .cancel_task(&endpoint.url, endpoint.version, task_id),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match cancelled {
        Ok(()) => {
            outcome_counter("remote_canceled");
            tracing::info!(delegation_id = %id, %task_id, "asked the agent to cancel its task");
        }
        Err(error) => {
            tracing::warn!(delegation_id = %id, %task_id, %error, "the agent did not cancel its task")
        }
    }
    Ok(())
}
