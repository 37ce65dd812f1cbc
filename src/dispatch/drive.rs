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
//! wire is finished and recorded first.
//!
//! Here: the send to a pending delegation's target and its
//! acknowledgement. Beside it: `drive/queue.rs` (parking behind a busy
//! target, the send of a drained item, withdrawing an item),
//! `drive/follow.rs` (following an accepted task, cancelling it) and
//! `drive/end.rs` (where a drive's outcome is recorded: the one writer of
//! a delegation's end, [`end_delegation`]).

mod end;
mod follow;
mod queue;

use std::collections::HashMap;

use aggregates::delegation::{
    Delegation, DelegationCommand, DelegationError, DelegationStatus, Origin, Outcome,
};
use aggregates::queue_item::{QueueItem, QueueItemStatus};
use aggregates::workspace::DeliveryMode;
use aggregates::Actor;
use chrono::Utc;
use uuid::Uuid;

use super::outcome::acknowledged;
use super::{DispatchError, Dispatcher, Term, ROLE};
use crate::a2a::{CallError, Endpoint, ProtocolVersion, SendOutcome, TaskSnapshot};
use crate::commands::{CommandError, Fence};
use end::finish;
pub use end::{end_delegation, Ended};
pub use follow::cancel_remote_task;
use follow::follow;
use queue::{enqueue, send_drained};
pub use queue::{queue_id_for, withdraw_queue_item};

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
