//! A batch of feed changes folded into the fewest statements: the
//! projection runner applies many log entries at once, and one INSERT plus
//! one UPDATE per batch is what keeps the feed up with the write path.
//! Pure, so the fold is tested without a database.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use super::{ActivityChange, ActivityRow};

/// A batch's changes, folded: every new row in one INSERT (a `delegate`
/// row inserted by the batch takes the batch's later updates with it), and
/// one update per older `delegate` row. The same result as applying the
/// changes one by one ([`apply_changes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub inserts: Vec<ActivityRow>,
    pub updates: Vec<DelegateRowUpdate>,
}

/// The batch's changes to a `delegate` row inserted by an earlier batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegateRowUpdate {
    pub delegation_id: Uuid,
    pub status: &'static str,
    /// The latest given (`coalesce(new, old)` each time).
    pub error_detail: Option<String>,
    pub response_body: Option<Value>,
}

/// Fold a batch's changes (pure).
pub fn plan(changes: impl IntoIterator<Item = ActivityChange>) -> Plan {
    let mut plan = Plan::default();
    let mut delegate_rows: HashMap<Uuid, usize> = HashMap::new();
    let mut updated: HashMap<Uuid, usize> = HashMap::new();
    for change in changes {
        match change {
            ActivityChange::Insert(row) => {
                if row.method == Some("delegate") {
                    if let Some(id) = row.delegation_id {
                        delegate_rows.insert(id, plan.inserts.len());
                    }
                }
                plan.inserts.push(row);
            }
            ActivityChange::UpdateDelegateRow {
                delegation_id,
                status,
                error_detail,
                response_body,
            } => {
                if let Some(row) = delegate_rows
                    .get(&delegation_id)
                    .and_then(|i| plan.inserts.get_mut(*i))
                {
                    row.status = Some(status);
                    if error_detail.is_some() {
                        row.error_detail = error_detail;
                    }
                    if response_body.is_some() {
                        row.response_body = response_body;
                    }
                    continue;
                }
                let index = *updated.entry(delegation_id).or_insert_with(|| {
                    plan.updates.push(DelegateRowUpdate {
                        delegation_id,
                        status,
                        error_detail: None,
                        response_body: None,
                    });
                    plan.updates.len() - 1
                });
                if let Some(update) = plan.updates.get_mut(index) {
                    update.status = status;
                    if error_detail.is_some() {
                        update.error_detail = error_detail;
                    }
                    if response_body.is_some() {
                        update.response_body = response_body;
                    }
                }
            }
        }
    }
    plan
}
