//! A batch of view changes folded so each delegation is written once: the
//! projection runner applies many log entries at once, and a delegation
//! sent and moved within one batch is one INSERT, not an INSERT and its
//! UPDATEs. Pure, so the fold is tested without a database.

use std::collections::HashMap;

use aggregates::delegation::DelegationStatus;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::DelegationChange;

/// A batch's changes, folded so that each delegation is written once: a
/// delegation first seen in the batch is inserted whole, one from an
/// earlier batch gets a single patch. The same result as applying the
/// changes one by one ([`apply_change`]), in two statements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub inserts: Vec<NewRow>,
    pub patches: Vec<Patch>,
}

/// A delegation inserted by the batch, with the batch's later changes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub delegation_id: Uuid,
    pub source_id: Uuid,
    pub target_id: Uuid,
    pub task: String,
    pub origin: &'static str,
    pub status: &'static str,
    pub idempotency_key: Option<String>,
    pub deadline: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<(&'static str, DateTime<Utc>)>,
    pub attempts: i32,
    pub remote_task_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub result: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    pub question: Option<String>,
}

/// The batch's changes to a delegation inserted by an earlier batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub delegation_id: Uuid,
    /// The status it ends the batch in.
    pub status: &'static str,
    /// Status steps, consecutive repeats dropped; the first is dropped
    /// too when it repeats the stored status (decided in SQL).
    pub steps: Vec<(&'static str, DateTime<Utc>)>,
    pub updated_at: DateTime<Utc>,
    pub attempts: Option<i32>,
    pub remote_task_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub result: Option<String>,
    pub response_preview: Option<String>,
    pub error: Option<String>,
    /// The latest question since the last other status; the stored one
    /// is kept only if the batch ends waiting for input without a new one.
    pub question: Option<String>,
}

/// Fold a batch's changes (pure).
pub fn plan(changes: impl IntoIterator<Item = DelegationChange>) -> Plan {
    let mut plan = Plan::default();
    let mut inserted: HashMap<Uuid, usize> = HashMap::new();
    let mut patched: HashMap<Uuid, usize> = HashMap::new();
    for change in changes {
        match change {
            DelegationChange::Insert {
                delegation_id,
                source_id,
                target_id,
                task,
                origin,
                status,
                idempotency_key,
                deadline,
                at,
            } => {
                inserted.insert(delegation_id, plan.inserts.len());
                plan.inserts.push(NewRow {
                    delegation_id,
                    source_id,
                    target_id,
                    task,
                    origin,
                    status,
                    idempotency_key,
                    deadline,
                    created_at: at,
                    updated_at: at,
                    history: vec![(status, at)],
                    attempts: 0,
                    remote_task_id: None,
                    queue_id: None,
                    result: None,
                    response_preview: None,
                    error: None,
                    question: None,
                });
            }
            DelegationChange::Update(change) => {
                if let Some(row) = inserted
                    .get(&change.delegation_id)
                    .and_then(|i| plan.inserts.get_mut(*i))
                {
                    if row.status != change.status {
                        row.history.push((change.status, change.at));
                    }
                    row.status = change.status;
                    row.updated_at = change.at;
                    row.attempts = change.attempts.unwrap_or(row.attempts);
                    overwrite(&mut row.remote_task_id, change.remote_task_id);
                    overwrite(&mut row.queue_id, change.queue_id);
                    overwrite(&mut row.result, change.result);
                    overwrite(&mut row.response_preview, change.response_preview);
                    overwrite(&mut row.error, change.error);
                    row.question =
                        waiting_question(change.status, change.question, row.question.take());
                    continue;
                }
                let index = *patched.entry(change.delegation_id).or_insert_with(|| {
                    plan.patches.push(Patch {
                        delegation_id: change.delegation_id,
                        status: change.status,
                        steps: Vec::new(),
                        updated_at: change.at,
                        attempts: None,
                        remote_task_id: None,
                        queue_id: None,
                        result: None,
                        response_preview: None,
                        error: None,
                        question: None,
                    });
                    plan.patches.len() - 1
                });
                if let Some(patch) = plan.patches.get_mut(index) {
                    if patch
                        .steps
                        .last()
                        .is_none_or(|(last, _)| *last != change.status)
                    {
                        patch.steps.push((change.status, change.at));
                    }
                    patch.status = change.status;
                    patch.updated_at = change.at;
                    overwrite(&mut patch.attempts, change.attempts);
                    overwrite(&mut patch.remote_task_id, change.remote_task_id);
                    overwrite(&mut patch.queue_id, change.queue_id);
                    overwrite(&mut patch.result, change.result);
                    overwrite(&mut patch.response_preview, change.response_preview);
                    overwrite(&mut patch.error, change.error);
                    patch.question =
                        waiting_question(change.status, change.question, patch.question.take());
                }
            }
        }
    }
    plan
}

/// `coalesce(new, old)`.
fn overwrite<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

/// The question after a change to `status`: kept (or replaced) while the
/// delegation waits for input, gone otherwise.
fn waiting_question(status: &str, new: Option<String>, old: Option<String>) -> Option<String> {
    if status == DelegationStatus::InputRequired.as_str() {
        new.or(old)
    } else {
        None
    }
}
