//! The `workspaces` view: the registry. Serves authentication (token hash →
//! workspace), discovery and the delegate endpoint's "does the target
//! exist" check.

use aggregates::workspace::WorkspaceEvent;
use sqlx::PgConnection;

use crate::{ApplyFuture, LedgerEvent, LogEntry, Projection};

/// Apply a workspace event on the runner's transaction. The event already
/// is the row change, so no separate mapping type is needed here.
pub async fn apply_event(
    conn: &mut PgConnection,
    event: &WorkspaceEvent,
) -> Result<(), sqlx::Error> {
    match event {
        WorkspaceEvent::WorkspaceRegistered {
            workspace_id,
            name,
            url,
            delivery_mode,
            token_hash,
            at,
        } => {
            sqlx::query(
                "insert into workspaces (id, name, url, delivery_mode, token_hash, registered_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(url)
            .bind(delivery_mode.as_str())
            .bind(token_hash)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceRegistrationUpdated {
            workspace_id,
            name,
            url,
            delivery_mode,
            at,
        } => {
            sqlx::query(
                "update workspaces set name = $2, url = $3, delivery_mode = $4, updated_at = $5 where id = $1",
            )
            .bind(workspace_id)
            .bind(name)
            .bind(url)
            .bind(delivery_mode.as_str())
            .bind(at)
            .execute(conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceCapacityReported {
            workspace_id,
            active_tasks,
            max_concurrent,
            at,
        } => {
            sqlx::query(
                "update workspaces set active_tasks = $2, max_concurrent = $3, updated_at = $4 where id = $1",
            )
            .bind(workspace_id)
            .bind(i64::from(*active_tasks))
            .bind(i64::from(*max_concurrent))
            .bind(at)
            .execute(conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceProtocolVersionSet {
            workspace_id,
            protocol_version,
            at,
        } => {
            sqlx::query(
                "update workspaces set protocol_version = $2, updated_at = $3 where id = $1",
            )
            .bind(workspace_id)
            .bind(protocol_version)
            .bind(at)
            .execute(conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceTokenRotated {
            workspace_id,
            token_hash,
            at,
        } => {
            sqlx::query("update workspaces set token_hash = $2, updated_at = $3 where id = $1")
                .bind(workspace_id)
                .bind(token_hash)
                .bind(at)
                .execute(conn)
                .await?;
        }
        WorkspaceEvent::WorkspaceTokenRevoked { workspace_id, at } => {
            sqlx::query("update workspaces set token_hash = null, updated_at = $2 where id = $1")
                .bind(workspace_id)
                .bind(at)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// The `workspaces` projection.
pub struct WorkspacesProjection;

impl Projection for WorkspacesProjection {
    fn name(&self) -> &'static str {
        "workspaces"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["workspaces"]
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        _entry: &'a LogEntry,
        event: &'a LedgerEvent,
    ) -> ApplyFuture<'a> {
        Box::pin(async move {
            if let LedgerEvent::Workspace(event) = event {
                apply_event(conn, event).await?;
            }
            Ok(())
        })
    }
}
