//! What the dispatcher does about an entry of the log (pure).
//!
//! The dispatcher is a process manager: it follows the positioned log and
//! reacts. Two kinds of reaction:
//!
//! * **drive** a delegation to its next resting point (send it, follow its
//!   remote task) — for a managed `DelegationSent` and for a queue item the
//!   heartbeat drain claimed. Driving is re-entrant and idempotent: it
//!   starts from the delegation's recorded state, so running it again after
//!   a crash resumes instead of repeating.
//! * **finish** a delegation because its queue item ended — the rule that
//!   makes "queued but never resolved" impossible: the queue item's end is
//!   an event, and this turns it into the delegation's end. It is the only
//!   writer of a queued delegation's end: a drive that learns the outcome
//!   of a queued request records it on the queue item (typed, in
//!   `QueueItemCompleted`) and leaves the delegation to this rule. The
//!   dispatcher moves its checkpoint past the entry only after the finish
//!   committed, so a crash after the item's end still ends the delegation.
//! * **withdraw** a delegation that ended without the target finishing it —
//!   cancelled by its caller, or past its deadline: its queue item, if one
//!   still waits, ends (before the checkpoint moves), and the task the
//!   agent runs for it is asked to cancel (best effort, in the background).

use aggregates::delegation::{DelegationEvent, Origin, Outcome, DEADLINE_EXCEEDED};
use aggregates::queue_item::QueueItemEvent;
use aggregates::Actor;
use projections::LedgerEvent;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    Drive(Uuid),
    /// End the delegation with the outcome its queue item ended with.
    Finish {
        delegation_id: Uuid,
        end: Outcome,
    },
    Withdraw {
        delegation_id: Uuid,
        /// Ask the agent to cancel its task too (not when the agent itself
        /// cancelled it).
        cancel_remote_task: bool,
    },
}

/// The reaction an event calls for, if any.
pub fn reaction(event: &LedgerEvent) -> Option<Reaction> {
    match event {
        LedgerEvent::Delegation(DelegationEvent::DelegationSent {
            delegation_id,
            origin: Origin::Managed,
            ..
        }) => Some(Reaction::Drive(*delegation_id)),
        LedgerEvent::Delegation(DelegationEvent::DelegationCanceled {
            delegation_id,
            actor,
            ..
        }) => Some(Reaction::Withdraw {
            delegation_id: *delegation_id,
            cancel_remote_task: !is_dispatcher(actor),
        }),
        LedgerEvent::Delegation(DelegationEvent::DelegationFailed {
            delegation_id,
            error,
            ..
        }) if error == DEADLINE_EXCEEDED => Some(Reaction::Withdraw {
            delegation_id: *delegation_id,
            cancel_remote_task: true,
        }),
        LedgerEvent::QueueItem(event) => queue_reaction(event),
        _ => None,
    }
}

/// Whether `actor` is the dispatcher (which records what the agent said).
fn is_dispatcher(actor: &Actor) -> bool {
    matches!(actor, Actor::System(name) if name == "dispatcher")
}

fn queue_reaction(event: &QueueItemEvent) -> Option<Reaction> {
    let finish = |delegation_id: &Option<Uuid>, end| {
        delegation_id.map(|delegation_id| Reaction::Finish { delegation_id, end })
    };
    match event {
        QueueItemEvent::QueueItemDispatched {
            delegation_id: Some(id),
            ..
        } => Some(Reaction::Drive(*id)),
        QueueItemEvent::QueueItemCompleted {
            delegation_id,
            outcome,
            ..
        } => finish(delegation_id, outcome.clone()),
        QueueItemEvent::QueueItemFailed {
            delegation_id,
            attempts,
            error,
            ..
        } => finish(
            delegation_id,
            Outcome::Failed {
                error: format!("the queued request failed after {attempts} attempts: {error}"),
            },
        ),
        QueueItemEvent::QueueItemExpired { delegation_id, .. } => finish(
            delegation_id,
            Outcome::Failed {
                error: EXPIRED.to_string(),
            },
        ),
        _ => None,
    }
}

/// The failure reason of a delegation whose queue item expired.
pub const EXPIRED: &str = "the queued request expired before the target had capacity";

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::Actor;
    use chrono::Utc;

    const D: Uuid = Uuid::from_u128(0xd);
    const Q: Uuid = Uuid::from_u128(0x9);

    fn sent(origin: Origin) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationSent {
            delegation_id: D,
            source_id: Uuid::from_u128(1),
            target_id: Uuid::from_u128(2),
            task: "t".into(),
            task_preview: "t".into(),
            origin,
            idempotency_key: None,
            queue: Default::default(),
            deadline: None,
            actor: Actor::Admin,
            at: Utc::now(),
        })
    }

    fn canceled_by(actor: Actor) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationCanceled {
            delegation_id: D,
            source_id: Uuid::from_u128(1),
            target_id: Uuid::from_u128(2),
            reason: "r".into(),
            actor,
            at: Utc::now(),
        })
    }

    fn failed(error: &str) -> LedgerEvent {
        LedgerEvent::Delegation(DelegationEvent::DelegationFailed {
            delegation_id: D,
            source_id: Uuid::from_u128(1),
            target_id: Uuid::from_u128(2),
            error: error.into(),
            actor: Actor::System("dispatcher".into()),
            at: Utc::now(),
        })
    }

    #[test]
    fn a_cancel_by_the_caller_withdraws_and_cancels_the_agents_task() {
        assert_eq!(
            reaction(&canceled_by(Actor::Workspace(Uuid::from_u128(1)))),
            Some(Reaction::Withdraw {
                delegation_id: D,
                cancel_remote_task: true
            })
        );
        // The agent cancelled it itself: nothing to ask it.
        assert_eq!(
            reaction(&canceled_by(Actor::System("dispatcher".into()))),
            Some(Reaction::Withdraw {
                delegation_id: D,
                cancel_remote_task: false
            })
        );
    }

    #[test]
    fn a_passed_deadline_withdraws_and_cancels_the_agents_task_but_other_failures_do_not() {
        assert_eq!(
            reaction(&failed(DEADLINE_EXCEEDED)),
            Some(Reaction::Withdraw {
                delegation_id: D,
                cancel_remote_task: true
            })
        );
        assert_eq!(reaction(&failed("the agent said no")), None);
    }

    #[test]
    fn managed_delegations_are_driven_and_recorded_ones_are_not() {
        assert_eq!(reaction(&sent(Origin::Managed)), Some(Reaction::Drive(D)));
        assert_eq!(reaction(&sent(Origin::Recorded)), None);
    }

    #[test]
    fn a_claimed_queue_item_drives_its_delegation_and_its_end_finishes_it() {
        let (t, c) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let claimed = LedgerEvent::QueueItem(QueueItemEvent::QueueItemDispatched {
            queue_id: Q,
            target_id: t,
            caller_id: c,
            delegation_id: Some(D),
            attempt: 1,
            at: Utc::now(),
        });
        assert_eq!(reaction(&claimed), Some(Reaction::Drive(D)));
        let completed = |outcome| {
            LedgerEvent::QueueItem(QueueItemEvent::QueueItemCompleted {
                queue_id: Q,
                target_id: t,
                caller_id: c,
                delegation_id: Some(D),
                outcome,
                at: Utc::now(),
            })
        };
        for end in [
            Outcome::Completed {
                result: "done".into(),
            },
            Outcome::Failed {
                error: "the agent's task t-1 ended failed".into(),
            },
            Outcome::Canceled {
                reason: "the agent canceled its task t-1".into(),
            },
        ] {
            assert_eq!(
                reaction(&completed(end.clone())),
                Some(Reaction::Finish {
                    delegation_id: D,
                    end
                }),
                "the item's outcome is the delegation's end, as it was recorded"
            );
        }
        let failed = LedgerEvent::QueueItem(QueueItemEvent::QueueItemFailed {
            queue_id: Q,
            target_id: t,
            caller_id: c,
            delegation_id: Some(D),
            attempts: 5,
            error: "busy".into(),
            at: Utc::now(),
        });
        let Some(Reaction::Finish {
            end: Outcome::Failed { error },
            ..
        }) = reaction(&failed)
        else {
            panic!("a failed item fails its delegation");
        };
        assert!(error.contains("5 attempts") && error.contains("busy"));
        let expired = LedgerEvent::QueueItem(QueueItemEvent::QueueItemExpired {
            queue_id: Q,
            target_id: t,
            caller_id: c,
            delegation_id: Some(D),
            at: Utc::now(),
        });
        assert_eq!(
            reaction(&expired),
            Some(Reaction::Finish {
                delegation_id: D,
                end: Outcome::Failed {
                    error: EXPIRED.into()
                }
            })
        );
    }

    #[test]
    fn an_item_without_a_delegation_finishes_nothing() {
        let completed = LedgerEvent::QueueItem(QueueItemEvent::QueueItemCompleted {
            queue_id: Q,
            target_id: Uuid::from_u128(2),
            caller_id: Uuid::from_u128(1),
            delegation_id: None,
            outcome: Outcome::Completed {
                result: "done".into(),
            },
            at: Utc::now(),
        });
        assert_eq!(reaction(&completed), None);
    }
}
