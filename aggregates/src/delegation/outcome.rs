//! How a delegation ended at its target: completed with a result, failed
//! with a reason, or cancelled by the target's agent.
//!
//! The three terminal [`StatusUpdate`]s as a type of their own, so that
//! code which may only *end* a delegation says so in its signature: the
//! dispatcher's end of a drive, and the outcome a completed queue item
//! carries for its delegation (`QueueItemCompleted`). Such a value cannot
//! ask for a transition the lifecycle forbids — every live delegation may
//! end.

use serde::{Deserialize, Serialize};

use super::commands::StatusUpdate;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Finished with this result text.
    Completed {
        result: String,
    },
    Failed {
        error: String,
    },
    /// The target's agent cancelled the task.
    Canceled {
        reason: String,
    },
}

impl From<Outcome> for StatusUpdate {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Completed { result } => Self::Completed { result },
            Outcome::Failed { error } => Self::Failed { error },
            Outcome::Canceled { reason } => Self::Canceled { reason },
        }
    }
}

/// A terminal update is an outcome; any other update is given back.
impl TryFrom<StatusUpdate> for Outcome {
    type Error = StatusUpdate;

    fn try_from(update: StatusUpdate) -> Result<Self, StatusUpdate> {
        match update {
            StatusUpdate::Completed { result } => Ok(Self::Completed { result }),
            StatusUpdate::Failed { error } => Ok(Self::Failed { error }),
            StatusUpdate::Canceled { reason } => Ok(Self::Canceled { reason }),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_terminal_updates_are_the_outcomes_and_convert_both_ways() {
        for outcome in [
            Outcome::Completed { result: "r".into() },
            Outcome::Failed { error: "e".into() },
            Outcome::Canceled { reason: "c".into() },
        ] {
            let update = StatusUpdate::from(outcome.clone());
            assert_eq!(Outcome::try_from(update), Ok(outcome));
        }
    }

    #[test]
    fn a_live_update_is_no_outcome() {
        for update in [
            StatusUpdate::Received,
            StatusUpdate::InProgress,
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            StatusUpdate::Queued { queue_id: None },
            StatusUpdate::InputRequired {
                question: "q".into(),
            },
        ] {
            assert_eq!(Outcome::try_from(update.clone()), Err(update));
        }
    }

    #[test]
    fn an_outcome_is_stored_tagged_by_its_status() {
        assert_eq!(
            serde_json::to_value(Outcome::Failed { error: "e".into() }).unwrap(),
            json!({ "status": "failed", "error": "e" })
        );
        let back: Outcome =
            serde_json::from_value(json!({ "status": "canceled", "reason": "c" })).unwrap();
        assert_eq!(back, Outcome::Canceled { reason: "c".into() });
    }
}
