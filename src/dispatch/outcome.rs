//! What an agent's answer means for the delegation (pure).
//!
//! The dispatcher records an acknowledged send as one atomic list of
//! lifecycle steps — `Dispatched` (with the remote task id) followed by
//! whatever the answer already says — so a crash can never leave a send
//! that the target acknowledged without its remote task id on record.
//! Readings of a followed task become steps only when they move the
//! delegation forward.

use aggregates::delegation::{DelegationStatus, Outcome, StatusUpdate};

use crate::a2a::{SendOutcome, TaskSnapshot, TaskState};

/// Text from an agent made storable: PostgreSQL text cannot hold NUL, so a
/// NUL in an answer would otherwise fail the commit (and, were it stored,
/// stop a projection). It becomes U+FFFD.
pub fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `update` with its agent-provided text made [`storable`].
pub fn sanitized(update: StatusUpdate) -> StatusUpdate {
    match update {
        StatusUpdate::Completed { result } => StatusUpdate::Completed {
            result: storable(&result),
        },
        StatusUpdate::Failed { error } => StatusUpdate::Failed {
            error: storable(&error),
        },
        StatusUpdate::Dispatched { remote_task_id } => StatusUpdate::Dispatched {
            remote_task_id: remote_task_id.map(|id| storable(&id)),
        },
        StatusUpdate::InputRequired { question } => StatusUpdate::InputRequired {
            question: storable(&question),
        },
        StatusUpdate::Canceled { reason } => StatusUpdate::Canceled {
            reason: storable(&reason),
        },
        other => other,
    }
}

/// `end` with its agent-provided text made [`storable`].
pub fn storable_end(end: Outcome) -> Outcome {
    match end {
        Outcome::Completed { result } => Outcome::Completed {
            result: storable(&result),
        },
        Outcome::Failed { error } => Outcome::Failed {
            error: storable(&error),
        },
        Outcome::Canceled { reason } => Outcome::Canceled {
            reason: storable(&reason),
        },
    }
}

/// The steps that record an acknowledged send (agent text [`sanitized`]).
pub fn acknowledged(outcome: &SendOutcome) -> Vec<StatusUpdate> {
    acknowledged_raw(outcome)
        .into_iter()
        .map(sanitized)
        .collect()
}

fn acknowledged_raw(outcome: &SendOutcome) -> Vec<StatusUpdate> {
    match outcome {
        SendOutcome::Message(message) => vec![
            StatusUpdate::Dispatched {
                remote_task_id: None,
            },
            StatusUpdate::Completed {
                result: message.text.clone(),
            },
        ],
        SendOutcome::Task(task) => {
            let mut steps = vec![StatusUpdate::Dispatched {
                remote_task_id: Some(task.id.clone()),
            }];
            steps.extend(task_step(task));
            steps
        }
    }
}

/// The step a reading of the remote task stands for, if any. Its text is
/// made storable where it is recorded ([`sanitized`]).
///
/// * `input-required` / `auth-required`: the agent asks something before it
///   goes on — `input_required`, with its status message as the question;
///   the delegation stays live (followed until it moves on or its deadline
///   passes).
/// * `rejected` / `failed`: the delegation fails, saying so.
/// * `canceled`: the agent cancelled its task — so is the delegation.
pub fn task_step(task: &TaskSnapshot) -> Option<StatusUpdate> {
    let detail = task
        .status_text
        .as_deref()
        .map(|text| format!(": {text}"))
        .unwrap_or_default();
    match task.state {
        TaskState::Submitted => Some(StatusUpdate::Received),
        TaskState::Working => Some(StatusUpdate::InProgress),
        TaskState::Completed => Some(StatusUpdate::Completed {
            result: task.result_text().unwrap_or_default().to_string(),
        }),
        TaskState::Failed | TaskState::Rejected => Some(StatusUpdate::Failed {
            error: format!(
                "the agent's task {} ended {}{detail}",
                task.id, task.raw_state
            ),
        }),
        TaskState::Canceled => Some(StatusUpdate::Canceled {
            reason: format!("the agent canceled its task {}{detail}", task.id),
        }),
        TaskState::InputRequired | TaskState::AuthRequired => Some(StatusUpdate::InputRequired {
            question: task
                .status_text
                .clone()
                .unwrap_or_else(|| format!("the agent's task {} is {}", task.id, task.raw_state)),
        }),
        TaskState::Unknown => None,
    }
}

/// Whether a task in this state will change no more by itself: the
/// dispatcher stops following it. A task waiting for input is still
/// followed: it may be answered elsewhere and go on (its deadline ends it
/// otherwise).
pub fn stops_following(state: TaskState) -> bool {
    state.is_terminal()
}

/// `step` if it moves a delegation in `current` forward (a reading that
/// repeats or trails what is on record is dropped).
pub fn forward(current: DelegationStatus, step: StatusUpdate) -> Option<StatusUpdate> {
    use DelegationStatus as S;
    let stale = matches!(
        (&step, current),
        (_, S::Completed | S::Failed | S::Canceled)
            | (
                StatusUpdate::Received,
                S::Received | S::InProgress | S::InputRequired
            )
            | (StatusUpdate::InProgress, S::InProgress)
    );
    (!stale).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::AgentMessage;

    fn task(state: TaskState, raw: &str) -> TaskSnapshot {
        TaskSnapshot {
            id: "t-1".into(),
            context_id: None,
            state,
            raw_state: raw.into(),
            artifact_text: (state == TaskState::Completed).then(|| "the answer".to_string()),
            status_text: Some("note".into()),
        }
    }

    #[test]
    fn a_message_answer_is_dispatched_and_completed_in_one_record() {
        let outcome = SendOutcome::Message(AgentMessage {
            message_id: None,
            context_id: None,
            task_id: None,
            text: "42".into(),
        });
        assert_eq!(
            acknowledged(&outcome),
            vec![
                StatusUpdate::Dispatched {
                    remote_task_id: None
                },
                StatusUpdate::Completed {
                    result: "42".into()
                }
            ]
        );
    }

    #[test]
    fn a_task_answer_records_its_id_and_its_state() {
        let outcome = SendOutcome::Task(task(TaskState::Working, "working"));
        assert_eq!(
            acknowledged(&outcome),
            vec![
                StatusUpdate::Dispatched {
                    remote_task_id: Some("t-1".into())
                },
                StatusUpdate::InProgress
            ]
        );
    }

    #[test]
    fn task_states_map_to_lifecycle_steps() {
        assert_eq!(
            task_step(&task(TaskState::Submitted, "submitted")),
            Some(StatusUpdate::Received)
        );
        assert_eq!(
            task_step(&task(TaskState::Completed, "completed")),
            Some(StatusUpdate::Completed {
                result: "the answer".into()
            })
        );
        let Some(StatusUpdate::Failed { error }) =
            task_step(&task(TaskState::Rejected, "TASK_STATE_REJECTED"))
        else {
            panic!("a rejected task fails the delegation");
        };
        assert!(
            error.contains("t-1")
                && error.contains("TASK_STATE_REJECTED")
                && error.contains("note")
        );
        assert_eq!(
            task_step(&task(TaskState::InputRequired, "input-required")),
            Some(StatusUpdate::InputRequired {
                question: "note".into()
            }),
            "the agent's status message is its question"
        );
        let Some(StatusUpdate::InputRequired { question }) = task_step(&TaskSnapshot {
            status_text: None,
            ..task(TaskState::AuthRequired, "TASK_STATE_AUTH_REQUIRED")
        }) else {
            panic!("a task waiting for authorization waits for input");
        };
        assert!(question.contains("TASK_STATE_AUTH_REQUIRED"));
        let Some(StatusUpdate::Canceled { reason }) =
            task_step(&task(TaskState::Canceled, "canceled"))
        else {
            panic!("a task the agent canceled cancels the delegation");
        };
        assert!(reason.contains("t-1"));
        assert_eq!(task_step(&task(TaskState::Unknown, "odd")), None);
        assert!(!stops_following(TaskState::AuthRequired));
        assert!(!stops_following(TaskState::InputRequired));
        assert!(stops_following(TaskState::Canceled));
        assert!(stops_following(TaskState::Rejected));
        assert!(!stops_following(TaskState::Working));
    }

    #[test]
    fn nul_characters_from_an_agent_are_replaced() {
        let outcome = SendOutcome::Message(AgentMessage {
            message_id: None,
            context_id: None,
            task_id: None,
            text: "a\0b".into(),
        });
        assert_eq!(
            acknowledged(&outcome)[1],
            StatusUpdate::Completed {
                result: "a\u{FFFD}b".into()
            }
        );
        assert_eq!(
            sanitized(StatusUpdate::Failed { error: "\0".into() }),
            StatusUpdate::Failed {
                error: "\u{FFFD}".into()
            }
        );
        assert_eq!(
            storable_end(Outcome::Completed {
                result: "\0".into()
            }),
            Outcome::Completed {
                result: "\u{FFFD}".into()
            }
        );
        assert_eq!(
            storable_end(Outcome::Failed {
                error: "a\0".into()
            }),
            Outcome::Failed {
                error: "a\u{FFFD}".into()
            }
        );
        assert_eq!(
            storable_end(Outcome::Canceled {
                reason: "\0b".into()
            }),
            Outcome::Canceled {
                reason: "\u{FFFD}b".into()
            }
        );
    }

    #[test]
    fn only_steps_that_move_forward_are_kept() {
        use DelegationStatus as S;
        assert_eq!(forward(S::InProgress, StatusUpdate::InProgress), None);
        assert_eq!(forward(S::InProgress, StatusUpdate::Received), None);
        assert_eq!(
            forward(S::Dispatched, StatusUpdate::InProgress),
            Some(StatusUpdate::InProgress)
        );
        let done = StatusUpdate::Completed { result: "r".into() };
        assert_eq!(forward(S::Received, done.clone()), Some(done.clone()));
        assert_eq!(forward(S::Completed, done), None);
    }
}
