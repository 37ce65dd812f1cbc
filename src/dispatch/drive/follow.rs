//! After a send the agent accepted as a task: following that task until
//! it settles, and asking the agent to cancel it when the delegation ended
//! first.

use std::sync::Arc;

use aggregates::delegation::{Delegation, DelegationCommand, DelegationError, Outcome};
use chrono::Utc;
use uuid::Uuid;

use super::end::finish;
use super::{actor, endpoint, fail, metadata, outcome_counter, target_of, Push, Target};
use crate::commands::CommandError;
use crate::dispatch::outcome::{forward, sanitized, stops_following, task_step};
use crate::dispatch::{DispatchError, Dispatcher, Term};

/// Follow the remote task until it stops changing by itself, the
/// delegation ends another way (cancelled, deadline), or the term ends.
pub(super) async fn follow(
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
