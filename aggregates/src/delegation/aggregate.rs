//! The delegation state machine.
//!
//! A command is checked against the state folded from past events; the
//! answer is zero or more new events, or a [`DelegationError`]. Zero events
//! is a real answer: agents and the dispatcher retry, so repeating a command
//! that already took effect must succeed without writing anything (the
//! write path can then return the current state instead of an error).
//!
//! The deciding is done by the synchronous [`Delegation::decide`]; the
//! cqrs-es `handle` only forwards its events to the sink, which applies
//! them. Nothing here reads a clock: every time comes from a command.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{DelegationCommand, StatusUpdate};
use super::events::{DelegationEvent, DelegationStatus, Origin, QueueOptions};
use crate::{preview, Actor};

/// The largest task accepted, in bytes of UTF-8. Tasks travel in every
/// `DelegationSent` event and in the JSON-RPC request, so they are bounded.
pub const MAX_TASK_BYTES: usize = 64 * 1024;

/// The length of `task_preview` on `DelegationSent`, in characters.
pub const TASK_PREVIEW_CHARS: usize = 100;

/// The length of `response_preview` on `DelegationCompleted`, in characters.
pub const RESPONSE_PREVIEW_CHARS: usize = 300;

/// Why a delegation command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    #[error("a workspace cannot delegate to itself")]
    SelfDelegation,
    #[error("the task is empty")]
    EmptyTask,
    #[error("the task is {bytes} bytes long; at most {max} bytes are allowed")]
    TaskTooLarge { bytes: usize, max: usize },
    #[error("a delegation with this id already exists with other content")]
    AlreadyExists,
    #[error("no such delegation")]
    NotFound,
    #[error("a delegation cannot move from {from} to {to}")]
    InvalidTransition {
        from: DelegationStatus,
        to: DelegationStatus,
    },
    #[error("the delegation is already {current} with other content")]
    TerminalConflict { current: DelegationStatus },
    /// A send attempt of a dispatcher leader deposed by a later one.
    #[error("dispatcher epoch {epoch} was superseded by epoch {current}")]
    Superseded { epoch: u64, current: u64 },
}

impl DelegationError {
    /// The status the delegation had when the command was rejected, for the
    /// errors that depend on it (so callers can report it).
    pub fn current_status(&self) -> Option<DelegationStatus> {
        match self {
            Self::InvalidTransition { from, .. } => Some(*from),
            Self::TerminalConflict { current } => Some(*current),
            _ => None,
        }
    }
}

/// The state of one delegation, folded from its events.
///
/// Before `DelegationSent` the delegation does not exist: [`status`](Self::status)
/// is `None` and the other accessors return empty values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delegation {
    delegation_id: Uuid,
    source_id: Uuid,
    target_id: Uuid,
    task: String,
    origin: Option<Origin>,
    idempotency_key: Option<String>,
    status: Option<DelegationStatus>,
    attempts: u32,
    remote_task_id: Option<String>,
    #[serde(default)]
    queue: QueueOptions,
    #[serde(default)]
    delivered_to_inbox: bool,
    /// Sends the dispatcher recorded it was about to make.
    #[serde(default)]
    sends_attempted: u32,
    /// The latest dispatcher epoch that attempted a send.
    #[serde(default)]
    epoch: Option<u64>,
    /// When the latest send attempt was recorded.
    #[serde(default)]
    last_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    deadline: Option<DateTime<Utc>>,
    /// The target's latest question, while it waits for input.
    #[serde(default)]
    question: Option<String>,
    /// Why it was cancelled, once cancelled.
    #[serde(default)]
    cancel_reason: Option<String>,
    queue_id: Option<Uuid>,
    result: Option<String>,
    error: Option<String>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    history: Vec<(DelegationStatus, DateTime<Utc>)>,
}

impl Delegation {
    /// The current status; `None` if the delegation was never sent.
    pub fn status(&self) -> Option<DelegationStatus> {
        self.status
    }

    /// The delegation id (nil before it was sent).
    pub fn delegation_id(&self) -> Uuid {
        self.delegation_id
    }

    /// The delegating workspace (nil before it was sent).
    pub fn source_id(&self) -> Uuid {
        self.source_id
    }

    /// The workspace the task is handed to (nil before it was sent).
    pub fn target_id(&self) -> Uuid {
        self.target_id
    }

    /// The full task text (empty before it was sent).
    pub fn task(&self) -> &str {
        &self.task
    }

    /// Who dispatches the delegation; `None` before it was sent.
    pub fn origin(&self) -> Option<Origin> {
        self.origin
    }

    /// The idempotency key it was sent with, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// How many times it was sent to the target. A recorded delegation was
    /// sent once by the agent itself, so it starts at 1.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The target's task id for the latest attempt, once reported.
    pub fn remote_task_id(&self) -> Option<&str> {
        self.remote_task_id.as_deref()
    }

    /// Priority and TTL of the queue item it becomes if its target is busy.
    pub fn queue_options(&self) -> QueueOptions {
        self.queue
    }

    /// Whether it was put in a polling target's inbox.
    pub fn delivered_to_inbox(&self) -> bool {
        self.delivered_to_inbox
    }

    /// Sends the dispatcher recorded it was about to make.
    pub fn sends_attempted(&self) -> u32 {
        self.sends_attempted
    }

    /// Whether a send was recorded as attempted but never acknowledged: it
    /// may or may not have reached the target.
    pub fn send_unacknowledged(&self) -> bool {
        self.sends_attempted > self.attempts
    }

    /// The latest dispatcher epoch that attempted a send.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// When the latest send attempt was recorded.
    pub fn last_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.last_attempt_at
    }

    /// When a still-live managed delegation fails.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }

    /// The target's question while it waits for input.
    pub fn question(&self) -> Option<&str> {
        self.question.as_deref()
    }

    /// Why it was cancelled.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }

    /// The full result text, once completed.
    pub fn result(&self) -> Option<&str> {
        self.result.as_deref()
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The queue item of the latest `queued` report, if it named one.
    pub fn queue_id(&self) -> Option<Uuid> {
        self.queue_id
    }

    /// When it was sent.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// The time of its latest event.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    /// Every status it entered, in order, with the time it entered it. A
    /// `DelegationDispatched` that only records a remote task id does not
    /// change the status and adds no entry.
    pub fn history(&self) -> &[(DelegationStatus, DateTime<Utc>)] {
        &self.history
    }

    /// The events `command` causes in the current state, or why it is
    /// rejected. An empty list means the command already took effect.
    fn decide(&self, command: DelegationCommand) -> Result<Vec<DelegationEvent>, DelegationError> {
        match command {
            DelegationCommand::Send {
                delegation_id,
                source_id,
                target_id,
                task,
                origin,
                idempotency_key,
                queue,
                deadline,
                actor,
                at,
            } => {
                if source_id == target_id {
                    return Err(DelegationError::SelfDelegation);
                }
                if task.trim().is_empty() {
                    return Err(DelegationError::EmptyTask);
                }
                if task.len() > MAX_TASK_BYTES {
                    return Err(DelegationError::TaskTooLarge {
                        bytes: task.len(),
                        max: MAX_TASK_BYTES,
                    });
                }
                if self.status.is_some() {
                    let same = self.source_id == source_id
                        && self.target_id == target_id
                        && self.task == task
                        && self.origin == Some(origin)
                        && self.queue == queue;
                    return if same {
                        Ok(Vec::new())
                    } else {
                        Err(DelegationError::AlreadyExists)
                    };
                }
                let task_preview = preview(&task, TASK_PREVIEW_CHARS);
                Ok(vec![DelegationEvent::DelegationSent {
                    delegation_id,
                    source_id,
                    target_id,
                    task,
                    task_preview,
                    origin,
                    idempotency_key,
                    queue,
                    deadline,
                    actor,
                    at,
                }])
            }
            DelegationCommand::AttemptSend { epoch, actor, at } => {
                let current = self.status.ok_or(DelegationError::NotFound)?;
                if current.is_terminal() {
                    return Err(DelegationError::TerminalConflict { current });
                }
                if let Some(known) = self.epoch.filter(|known| *known > epoch) {
                    return Err(DelegationError::Superseded {
                        epoch,
                        current: known,
                    });
                }
                if !matches!(
                    current,
                    DelegationStatus::Pending | DelegationStatus::Queued
                ) {
                    return Err(DelegationError::InvalidTransition {
                        from: current,
                        to: DelegationStatus::Dispatched,
                    });
                }
                Ok(vec![DelegationEvent::DelegationSendAttempted {
                    delegation_id: self.delegation_id,
                    source_id: self.source_id,
                    target_id: self.target_id,
                    attempt: self.sends_attempted.saturating_add(1),
                    epoch,
                    actor,
                    at,
                }])
            }
            DelegationCommand::Cancel {
                source,
                reason,
                actor,
                at,
            } => {
                if self.status.is_none() || self.source_id != source {
                    return Err(DelegationError::NotFound);
                }
                self.update_status(StatusUpdate::Canceled { reason }, actor, at)
            }
            DelegationCommand::ExpireDeadline { actor, at } => {
                let current = self.status.ok_or(DelegationError::NotFound)?;
                match self.deadline {
                    Some(deadline) if !current.is_terminal() && deadline <= at => self
                        .update_status(
                            StatusUpdate::Failed {
                                error: DEADLINE_EXCEEDED.to_string(),
                            },
                            actor,
                            at,
                        ),
                    _ => Ok(Vec::new()),
                }
            }
            DelegationCommand::DeliverToInbox { actor, at } => {
                let current = self.status.ok_or(DelegationError::NotFound)?;
                if self.delivered_to_inbox {
                    return Ok(Vec::new());
                }
                if current != DelegationStatus::Pending {
                    return Err(DelegationError::InvalidTransition {
                        from: current,
                        to: DelegationStatus::Dispatched,
                    });
                }
                Ok(vec![DelegationEvent::DelegationDeliveredToInbox {
                    delegation_id: self.delegation_id,
                    source_id: self.source_id,
                    target_id: self.target_id,
                    task: self.task.clone(),
                    actor,
                    at,
                }])
            }
            DelegationCommand::UpdateStatuses { updates, actor, at } => {
                let mut state = self.clone();
                let mut events = Vec::new();
                for update in updates {
                    for event in state.update_status(update, actor.clone(), at)? {
                        state.apply(event.clone());
                        events.push(event);
                    }
                }
                Ok(events)
            }
            DelegationCommand::ReportStatus {
                party,
                update,
                actor,
                at,
            } => {
                if self.status.is_none() || (self.source_id != party && self.target_id != party) {
                    return Err(DelegationError::NotFound);
                }
                self.update_status(update, actor, at)
            }
            DelegationCommand::UpdateStatus { update, actor, at } => {
                self.update_status(update, actor, at)
            }
        }
    }

    fn update_status(
        &self,
        update: StatusUpdate,
        actor: Actor,
        at: DateTime<Utc>,
    ) -> Result<Vec<DelegationEvent>, DelegationError> {
        let current = self.status.ok_or(DelegationError::NotFound)?;
        let to = target_status(&update);

        // A finished delegation never changes again; only an exact repeat of
        // the report that finished it is accepted (as a no-op).
        if current.is_terminal() {
            let repeat = match &update {
                StatusUpdate::Completed { result } => {
                    current == DelegationStatus::Completed
                        && self.result.as_deref() == Some(result.as_str())
                }
                StatusUpdate::Failed { error } => {
                    current == DelegationStatus::Failed
                        && self.error.as_deref() == Some(error.as_str())
                }
                StatusUpdate::Canceled { reason } => {
                    current == DelegationStatus::Canceled
                        && self.cancel_reason.as_deref() == Some(reason.as_str())
                }
                _ => false,
            };
            return if repeat {
                Ok(Vec::new())
            } else {
                Err(DelegationError::TerminalConflict { current })
            };
        }

        // Repeating the current status is a no-op, except that the remote
        // task id of the current attempt may arrive in a later report, and
        // a waiting target may ask another question.
        if to == current {
            return Ok(match update {
                StatusUpdate::Dispatched {
                    remote_task_id: Some(remote_task_id),
                } if self.remote_task_id.as_deref() != Some(remote_task_id.as_str()) => {
                    vec![self.event_dispatched(self.attempts, Some(remote_task_id), actor, at)]
                }
                StatusUpdate::InputRequired { question }
                    if self.question.as_deref() != Some(question.as_str()) =>
                {
                    vec![DelegationEvent::DelegationInputRequired {
                        delegation_id: self.delegation_id,
                        source_id: self.source_id,
                        target_id: self.target_id,
                        question,
                        actor,
                        at,
                    }]
                }
                _ => Vec::new(),
            });
        }

        if !can_transition(current, to) {
            return Err(DelegationError::InvalidTransition { from: current, to });
        }

        let (delegation_id, source_id, target_id) =
            (self.delegation_id, self.source_id, self.target_id);
        let event = match update {
            // The acknowledgement of the latest recorded attempt (or of a
            // new one, for a delegation never attempted by the dispatcher).
            StatusUpdate::Dispatched { remote_task_id } => self.event_dispatched(
                self.attempts.saturating_add(1).max(self.sends_attempted),
                remote_task_id,
                actor,
                at,
            ),
            StatusUpdate::Received => DelegationEvent::DelegationReceived {
                delegation_id,
                source_id,
                target_id,
                actor,
                at,
            },
            StatusUpdate::InProgress => DelegationEvent::DelegationInProgress {
                delegation_id,
                source_id,
                target_id,
                actor,
                at,
            },
            StatusUpdate::Queued { queue_id } => DelegationEvent::DelegationQueued {
                delegation_id,
                source_id,
                target_id,
                queue_id,
                actor,
                at,
            },
            StatusUpdate::Completed { result } => {
                let response_preview = preview(&result, RESPONSE_PREVIEW_CHARS);
                DelegationEvent::DelegationCompleted {
                    delegation_id,
                    source_id,
                    target_id,
                    result,
                    response_preview,
                    actor,
                    at,
                }
            }
            StatusUpdate::Failed { error } => DelegationEvent::DelegationFailed {
                delegation_id,
                source_id,
                target_id,
                error,
                actor,
                at,
            },
            StatusUpdate::InputRequired { question } => DelegationEvent::DelegationInputRequired {
                delegation_id,
                source_id,
                target_id,
                question,
                actor,
                at,
            },
            StatusUpdate::Canceled { reason } => DelegationEvent::DelegationCanceled {
                delegation_id,
                source_id,
                target_id,
                reason,
                actor,
                at,
            },
        };
        Ok(vec![event])
    }

    fn event_dispatched(
        &self,
        attempt: u32,
        remote_task_id: Option<String>,
        actor: Actor,
        at: DateTime<Utc>,
    ) -> DelegationEvent {
        DelegationEvent::DelegationDispatched {
            delegation_id: self.delegation_id,
            source_id: self.source_id,
            target_id: self.target_id,
            attempt,
            remote_task_id,
            actor,
            at,
        }
    }
}

/// The status a [`StatusUpdate`] asks for.
fn target_status(update: &StatusUpdate) -> DelegationStatus {
    match update {
        StatusUpdate::Dispatched { .. } => DelegationStatus::Dispatched,
        StatusUpdate::Received => DelegationStatus::Received,
        StatusUpdate::InProgress => DelegationStatus::InProgress,
        StatusUpdate::Queued { .. } => DelegationStatus::Queued,
        StatusUpdate::Completed { .. } => DelegationStatus::Completed,
        StatusUpdate::Failed { .. } => DelegationStatus::Failed,
        StatusUpdate::InputRequired { .. } => DelegationStatus::InputRequired,
        StatusUpdate::Canceled { .. } => DelegationStatus::Canceled,
    }
}

/// The lifecycle moves forward only: a busy target may queue a sent
/// delegation and it is then dispatched again, but once the target has
/// received it, it can only progress or finish. A target at work may stop
/// to ask a question and go on once it has its answer. Any live delegation
/// may finish, or be cancelled. Repeats of the current status are handled
/// before this check.
fn can_transition(from: DelegationStatus, to: DelegationStatus) -> bool {
    use DelegationStatus::{
        Canceled, Completed, Dispatched, Failed, InProgress, InputRequired, Pending, Queued,
        Received,
    };
    match (from, to) {
        (Completed | Failed | Canceled, _) => false,
        (_, Completed | Failed | Canceled) => true,
        (Pending, Dispatched | Queued | Received | InProgress) => true,
        (Dispatched, Queued | Received | InProgress | InputRequired) => true,
        (Queued, Dispatched | Received | InProgress | InputRequired) => true,
        (Received, InProgress | InputRequired) => true,
        (InProgress, InputRequired) => true,
        (InputRequired, Received | InProgress) => true,
        _ => false,
    }
}

/// The failure reason of a delegation whose deadline passed.
pub const DEADLINE_EXCEEDED: &str = "deadline exceeded";

impl Aggregate for Delegation {
    const TYPE: &'static str = "delegation";
    type Command = DelegationCommand;
    type Event = DelegationEvent;
    type Error = DelegationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let status = event.status();
        let at = event.at();
        match event {
            DelegationEvent::DelegationSendAttempted {
                attempt, epoch, at, ..
            } => {
                self.sends_attempted = attempt;
                self.last_attempt_at = Some(at);
                self.epoch = Some(self.epoch.map_or(epoch, |known| known.max(epoch)));
            }
            DelegationEvent::DelegationInputRequired { question, .. } => {
                self.question = Some(question);
            }
            DelegationEvent::DelegationCanceled { reason, .. } => {
                self.cancel_reason = Some(reason);
            }
            DelegationEvent::DelegationSent {
                delegation_id,
                source_id,
                target_id,
                task,
                origin,
                idempotency_key,
                queue,
                deadline,
                at,
                ..
            } => {
                self.queue = queue;
                self.deadline = deadline;
                self.delegation_id = delegation_id;
                self.source_id = source_id;
                self.target_id = target_id;
                self.task = task;
                self.origin = Some(origin);
                self.idempotency_key = idempotency_key;
                // A recorded delegation was already sent once, by the agent.
                self.attempts = match origin {
                    Origin::Managed => 0,
                    Origin::Recorded => 1,
                };
                self.created_at = Some(at);
            }
            DelegationEvent::DelegationDeliveredToInbox { .. } => {
                self.attempts = 1;
                self.delivered_to_inbox = true;
            }
            DelegationEvent::DelegationDispatched {
                attempt,
                remote_task_id,
                ..
            } => {
                self.attempts = attempt;
                self.remote_task_id = remote_task_id;
            }
            DelegationEvent::DelegationQueued { queue_id, .. } => {
                self.queue_id = queue_id;
            }
            DelegationEvent::DelegationCompleted { result, .. } => {
                self.result = Some(result);
            }
            DelegationEvent::DelegationFailed { error, .. } => {
                self.error = Some(error);
            }
            DelegationEvent::DelegationReceived { .. }
            | DelegationEvent::DelegationInProgress { .. } => {}
        }
        if let Some(status) = status {
            if self.status != Some(status) {
                self.history.push((status, at));
            }
            if status != DelegationStatus::InputRequired {
                self.question = None;
            }
            self.status = Some(status);
        }
        self.updated_at = Some(at);
    }
}

#[cfg(test)]
mod tests;
