//! The feed's SQL: changes applied one by one (a single entry) or as a
//! folded [`Plan`] (a batch). The only file of the view that talks to
//! PostgreSQL.

use sqlx::PgConnection;

use super::{ActivityChange, Plan};

/// Apply feed changes on the runner's transaction.
pub async fn apply_changes(
    conn: &mut PgConnection,
    changes: Vec<ActivityChange>,
) -> Result<(), sqlx::Error> {
    for change in changes {
        match change {
            ActivityChange::Insert(row) => {
                sqlx::query(
                    "insert into activity_logs (id, workspace_id, activity_type, method, source_id, \
                     target_id, summary, status, request_body, response_body, error_detail, \
                     delegation_id, created_at, log_position, ordinal) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(row.id)
                .bind(row.workspace_id)
                .bind(row.activity_type)
                .bind(row.method)
                .bind(row.source_id)
                .bind(row.target_id)
                .bind(row.summary)
                .bind(row.status)
                .bind(row.request_body)
                .bind(row.response_body)
                .bind(row.error_detail)
                .bind(row.delegation_id)
                .bind(row.created_at)
                .bind(row.log_position)
                .bind(row.ordinal)
                .execute(&mut *conn)
                .await?;
            }
            ActivityChange::UpdateDelegateRow {
                delegation_id,
                status,
                error_detail,
                response_body,
            } => {
                sqlx::query(
                    "update activity_logs set status = $2, \
                     error_detail = coalesce($3, error_detail), \
                     response_body = coalesce($4, response_body) \
                     where delegation_id = $1 and method = 'delegate'",
                )
                .bind(delegation_id)
                .bind(status)
                .bind(error_detail)
                .bind(response_body)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Write a folded batch: one INSERT, one UPDATE.
pub async fn apply_plan(conn: &mut PgConnection, plan: Plan) -> Result<(), sqlx::Error> {
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "insert into activity_logs (id, workspace_id, activity_type, method, source_id, \
             target_id, summary, status, request_body, response_body, error_detail, \
             delegation_id, created_at, log_position, ordinal) \
             select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], \
             $6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::jsonb[], $11::text[], \
             $12::uuid[], $13::timestamptz[], $14::bigint[], $15::int[])",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.workspace_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.activity_type).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.method).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.source_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.target_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.summary.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.request_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.error_detail.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.delegation_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.log_position).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ordinal).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.updates.is_empty() {
        let updates = &plan.updates;
        sqlx::query(
            "update activity_logs a set status = u.status, \
             error_detail = coalesce(u.error_detail, a.error_detail), \
             response_body = coalesce(u.response_body, a.response_body) \
             from unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) \
             as u(delegation_id, status, error_detail, response_body) \
             where a.delegation_id = u.delegation_id and a.method = 'delegate'",
        )
        .bind(updates.iter().map(|u| u.delegation_id).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.status).collect::<Vec<_>>())
        .bind(
            updates
                .iter()
                .map(|u| u.error_detail.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            updates
                .iter()
                .map(|u| u.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
