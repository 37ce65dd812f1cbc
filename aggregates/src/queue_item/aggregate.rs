//! The queue item state machine.
//!
//! A request for a busy target waits here until the drain claims it. The
//! item counts its dispatch attempts itself so that a flapping target cannot
//! keep a request alive forever: after [`MAX_ATTEMPTS`] failed attempts it is
//! `failed`. Expiry is decided against the time on the command, never a
//! clock, so replays and tests decide exactly as the live path did.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::QueueItemCommand;
use super::events::{Priority, QueueItemEvent, QueueItemStatus};
use super::response::response_body;

/// How many dispatch attempts an item gets before it is `failed`.
pub const MAX_ATTEMPTS: u32 = 5;

/// Why a queue item command was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueItemError {
    #[error("a queue item with this id already exists with other content")]
    AlreadyExists,
    #[error("no such queue item")]
    NotFound,
    #[error("the queue item has expired")]
    Expired,
    #[error("the queue item is {current}, not queued")]
    NotQueued { current: QueueItemStatus },
    #[error("the queue item is {current}, not dispatched")]
    NotDispatched { current: QueueItemStatus },
    #[error("the queue item has not expired yet")]
    NotYetExpired,
    #[error("the queued request has no method")]
    EmptyMethod,
}

/// The state of one queue item, folded from its events.
///
/// Before `QueueItemEnqueued` the item does not exist: [`status`](Self::status)
/// is `None` and the other accessors return empty values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    queue_id: Uuid,
    status: Option<QueueItemStatus>,
    attempts: u32,
    priority: Priority,
    target_id: Uuid,
    caller_id: Uuid,
    delegation_id: Option<Uuid>,
    method: String,
    body: serde_json::Value,
    idempotency_key: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    enqueued_at: Option<DateTime<Utc>>,
    dispatched_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    /// The outcome's JSON ([`response_body`]): the state is audited as JSON,
    /// and auditors have always seen this field.
    response_body: Option<serde_json::Value>,
}

impl QueueItem {
    /// The current status; `None` if the item was never enqueued.
    pub fn status(&self) -> Option<QueueItemStatus> {
        self.status
    }

    /// The queue item id (nil before it was enqueued).
    pub fn queue_id(&self) -> Uuid {
        self.queue_id
    }

    /// How many dispatch attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The busy workspace the request is for (nil before it was enqueued).
    pub fn target_id(&self) -> Uuid {
        self.target_id
    }

    /// The workspace that sent the request (nil before it was enqueued).
    pub fn caller_id(&self) -> Uuid {
        self.caller_id
    }

    /// The delegation the request belongs to, if any.
    pub fn delegation_id(&self) -> Option<Uuid> {
        self.delegation_id
    }

    /// The JSON-RPC method of the parked request.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The parked request body (`null` before it was enqueued).
    pub fn body(&self) -> &serde_json::Value {
        &self.body
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// After this time the item is never dispatched; `None`: never expires.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    pub fn enqueued_at(&self) -> Option<DateTime<Utc>> {
        self.enqueued_at
    }

    /// The time of the latest dispatch attempt.
    pub fn dispatched_at(&self) -> Option<DateTime<Utc>> {
        self.dispatched_at
    }

    /// When the item reached a terminal status (completed, failed or
    /// expired).
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.completed_at
    }

    /// The error of the latest failed attempt.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The target's response as the views show it, once completed
    /// ([`response_body`]; none for a task the agent cancelled).
    pub fn response_body(&self) -> Option<&serde_json::Value> {
        self.response_body.as_ref()
    }

    /// The events `command` causes in the current state, or why it is
    /// rejected. An empty list means the command already took effect.
    fn decide(&self, command: QueueItemCommand) -> Result<Vec<QueueItemEvent>, QueueItemError> {
        let event = match command {
            QueueItemCommand::Enqueue {
                queue_id,
                target_id,
                caller_id,
                priority,
                method,
                body,
                idempotency_key,
                expires_at,
                delegation_id,
                at,
            } => {
                if method.trim().is_empty() {
                    return Err(QueueItemError::EmptyMethod);
                }
                if self.status.is_some() {
                    let same = self.queue_id == queue_id
                        && self.target_id == target_id
                        && self.caller_id == caller_id
                        && self.priority == priority
                        && self.method == method
                        && self.body == body
                        && self.idempotency_key == idempotency_key
                        && self.expires_at == expires_at
                        && self.delegation_id == delegation_id;
                    return if same {
                        Ok(Vec::new())
                    } else {
                        Err(QueueItemError::AlreadyExists)
                    };
                }
                return Ok(vec![QueueItemEvent::QueueItemEnqueued {
                    queue_id,
                    target_id,
                    caller_id,
                    priority,
                    method,
                    body,
                    idempotency_key,
                    expires_at,
                    delegation_id,
                    at,
                }]);
            }
            QueueItemCommand::Claim { at } => {
                let current = self.status.ok_or(QueueItemError::NotFound)?;
                if current != QueueItemStatus::Queued {
                    return Err(QueueItemError::NotQueued { current });
                }
                if self.has_expired_by(at) {
                    return Err(QueueItemError::Expired);
                }
                QueueItemEvent::QueueItemDispatched {
                    queue_id: self.queue_id,
                    target_id: self.target_id,
                    caller_id: self.caller_id,
                    delegation_id: self.delegation_id,
                    attempt: self.attempts.saturating_add(1),
                    at,
                }
            }
            QueueItemCommand::Complete { outcome, at } => {
                let current = self.status.ok_or(QueueItemError::NotFound)?;
                if current != QueueItemStatus::Dispatched {
                    return Err(QueueItemError::NotDispatched { current });
                }
                QueueItemEvent::QueueItemCompleted {
                    queue_id: self.queue_id,
                    target_id: self.target_id,
                    caller_id: self.caller_id,
                    delegation_id: self.delegation_id,
                    outcome,
                    at,
                }
            }
            QueueItemCommand::Fail { error, at } => {
                let current = self.status.ok_or(QueueItemError::NotFound)?;
                if current != QueueItemStatus::Dispatched {
                    return Err(QueueItemError::NotDispatched { current });
                }
                if self.attempts < MAX_ATTEMPTS {
                    QueueItemEvent::QueueItemRequeued {
                        queue_id: self.queue_id,
                        target_id: self.target_id,
                        caller_id: self.caller_id,
                        delegation_id: self.delegation_id,
                        attempt: self.attempts,
                        error,
                        at,
                    }
                } else {
                    QueueItemEvent::QueueItemFailed {
                        queue_id: self.queue_id,
                        target_id: self.target_id,
                        caller_id: self.caller_id,
                        delegation_id: self.delegation_id,
                        attempts: self.attempts,
                        error,
                        at,
                    }
                }
            }
            QueueItemCommand::Withdraw { reason, at } => {
                let current = self.status.ok_or(QueueItemError::NotFound)?;
                if !matches!(
                    current,
                    QueueItemStatus::Queued | QueueItemStatus::Dispatched
                ) {
                    return Ok(Vec::new());
                }
                QueueItemEvent::QueueItemFailed {
                    queue_id: self.queue_id,
                    target_id: self.target_id,
                    caller_id: self.caller_id,
                    delegation_id: self.delegation_id,
                    attempts: self.attempts,
                    error: reason,
                    at,
                }
            }
            QueueItemCommand::Expire { at } => {
                let current = self.status.ok_or(QueueItemError::NotFound)?;
                if current != QueueItemStatus::Queued {
                    return Err(QueueItemError::NotQueued { current });
                }
                if !self.has_expired_by(at) {
                    return Err(QueueItemError::NotYetExpired);
                }
                QueueItemEvent::QueueItemExpired {
                    queue_id: self.queue_id,
                    target_id: self.target_id,
                    caller_id: self.caller_id,
                    delegation_id: self.delegation_id,
                    at,
                }
            }
        };
        Ok(vec![event])
    }

    /// Whether the item has an expiry and `at` is at or past it.
    fn has_expired_by(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|expires_at| at >= expires_at)
    }
}

impl Aggregate for QueueItem {
    const TYPE: &'static str = "queue_item";
    type Command = QueueItemCommand;
    type Event = QueueItemEvent;
    type Error = QueueItemError;
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
        match event {
            QueueItemEvent::QueueItemEnqueued {
                queue_id,
                target_id,
                caller_id,
                priority,
                method,
                body,
                idempotency_key,
                expires_at,
                delegation_id,
                at,
            } => {
                self.queue_id = queue_id;
                self.status = Some(QueueItemStatus::Queued);
                self.target_id = target_id;
                self.caller_id = caller_id;
                self.priority = priority;
                self.method = method;
                self.body = body;
                self.idempotency_key = idempotency_key;
                self.expires_at = expires_at;
                self.delegation_id = delegation_id;
                self.enqueued_at = Some(at);
            }
            QueueItemEvent::QueueItemDispatched { attempt, at, .. } => {
                self.status = Some(QueueItemStatus::Dispatched);
                self.attempts = attempt;
                self.dispatched_at = Some(at);
            }
            QueueItemEvent::QueueItemCompleted { outcome, at, .. } => {
                self.status = Some(QueueItemStatus::Completed);
                self.response_body = response_body(&outcome);
                self.completed_at = Some(at);
            }
            QueueItemEvent::QueueItemRequeued { error, .. } => {
                self.status = Some(QueueItemStatus::Queued);
                self.last_error = Some(error);
            }
            QueueItemEvent::QueueItemFailed {
                attempts,
                error,
                at,
                ..
            } => {
                self.status = Some(QueueItemStatus::Failed);
                self.attempts = attempts;
                self.last_error = Some(error);
                self.completed_at = Some(at);
            }
            QueueItemEvent::QueueItemExpired { at, .. } => {
                self.status = Some(QueueItemStatus::Expired);
                self.completed_at = Some(at);
            }
        }
    }
}

#[cfg(test)]
mod tests;
