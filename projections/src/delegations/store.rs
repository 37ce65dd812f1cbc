//! The view's SQL: a change applied alone (a single entry) or a folded
//! [`Plan`] (a batch). The only file of the view that talks to PostgreSQL.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgConnection;

use super::{DelegationChange, Plan, StatusChange};
use crate::timestamp;

/// Apply a view change on the runner's transaction.
pub async fn apply_change(
    conn: &mut PgConnection,
    change: DelegationChange,
) -> Result<(), sqlx::Error> {
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
            let history = json!([{ "status": status, "at": timestamp(at) }]);
            sqlx::query(
                "insert into delegations (delegation_id, source_id, target_id, task, origin, status, \
                 idempotency_key, history, created_at, updated_at, deadline) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
            )
            .bind(delegation_id)
            .bind(source_id)
            .bind(target_id)
            .bind(task)
            .bind(origin)
            .bind(status)
            .bind(idempotency_key)
            .bind(history)
            .bind(at)
            .bind(deadline)
            .execute(conn)
            .await?;
        }
        DelegationChange::Update(StatusChange {
            delegation_id,
            status,
            at,
            attempts,
            remote_task_id,
            queue_id,
            result,
            response_preview,
            error,
            question,
        }) => {
            // A same-status event (a re-dispatch recording the remote task
            // id) refreshes fields but is not a new history step.
            let step = json!([{ "status": status, "at": timestamp(at) }]);
            sqlx::query(
                "update delegations set \
                 history = case when status = $2 then history else history || $3 end, \
                 status = $2, updated_at = $4, \
                 attempts = coalesce($5, attempts), \
                 remote_task_id = coalesce($6, remote_task_id), \
                 queue_id = coalesce($7, queue_id), \
                 result = coalesce($8, result), \
                 response_preview = coalesce($9, response_preview), \
                 error = coalesce($10, error), \
                 question = case when $2 = 'input_required' then coalesce($11, question) end \
                 where delegation_id = $1",
            )
            .bind(delegation_id)
            .bind(status)
            .bind(step)
            .bind(at)
            .bind(attempts)
            .bind(remote_task_id)
            .bind(queue_id)
            .bind(result)
            .bind(response_preview)
            .bind(error)
            .bind(question)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

fn history_json(steps: &[(&'static str, DateTime<Utc>)]) -> serde_json::Value {
    serde_json::Value::Array(
        steps
            .iter()
            .map(|(status, at)| json!({ "status": status, "at": timestamp(*at) }))
            .collect(),
    )
}

/// Write a folded batch: one INSERT for the new rows, one UPDATE for the
/// patches.
pub async fn apply_plan(conn: &mut PgConnection, plan: Plan) -> Result<(), sqlx::Error> {
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "insert into delegations (delegation_id, source_id, target_id, task, origin, status, \
             idempotency_key, deadline, created_at, updated_at, history, attempts, remote_task_id, \
             queue_id, result, response_preview, error, question) \
             select * from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::jsonb[], \
             $12::int[], $13::text[], $14::uuid[], $15::text[], $16::text[], $17::text[], $18::text[])",
        )
        .bind(rows.iter().map(|r| r.delegation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.target_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.task.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.origin).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.idempotency_key.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.deadline).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| history_json(&r.history)).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.remote_task_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.queue_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.result.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.response_preview.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.question.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.patches.is_empty() {
        let patches = &plan.patches;
        sqlx::query(
            "update delegations d set \
             history = d.history || case when d.status = p.steps->0->>'status' then p.steps - 0 else p.steps end, \
             status = p.status, updated_at = p.updated_at, \
             attempts = coalesce(p.attempts, d.attempts), \
             remote_task_id = coalesce(p.remote_task_id, d.remote_task_id), \
             queue_id = coalesce(p.queue_id, d.queue_id), \
             result = coalesce(p.result, d.result), \
             response_preview = coalesce(p.response_preview, d.response_preview), \
             error = coalesce(p.error, d.error), \
             question = case when p.status = 'input_required' then coalesce(p.question, d.question) end \
             from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::int[], $6::text[], \
             $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[]) \
             as p(delegation_id, status, steps, updated_at, attempts, remote_task_id, queue_id, result, \
             response_preview, error, question) \
             where d.delegation_id = p.delegation_id",
        )
        .bind(patches.iter().map(|p| p.delegation_id).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.status).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| history_json(&p.steps)).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.updated_at).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.attempts).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.remote_task_id.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.queue_id).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.result.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.response_preview.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.error.clone()).collect::<Vec<_>>())
        .bind(patches.iter().map(|p| p.question.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
